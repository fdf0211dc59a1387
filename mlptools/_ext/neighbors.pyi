"""Stub for the compiled cell-list neighbour-list kernel (cython_ext/neighbors.pyx).

Arrays are C-contiguous; the geometry arguments are prepared by ``mlptools.neighbors._binning``.
"""

import numpy as np
from numpy.typing import NDArray

def neighbor_pairs(
    r_nc: NDArray[np.float64],        # IN (n_atoms, 3) Å positions
    cell_cc: NDArray[np.float64],     # IN (3, 3) Å lattice vectors as rows, 0 along open directions
    inv_cc: NDArray[np.float64],      # IN (3, 3) inverse of the binning frame: f = r·inv
    binning_kc: NDArray[np.float64],  # IN (3, 3) rows: origin of f, bins per unit f, bin width (Å)
    pbc_c: NDArray[np.int64],         # IN (3,) 0/1
    nbins_c: NDArray[np.int64],       # IN (3,) bins per direction, >= 1
    reach_c: NDArray[np.int64],       # IN (3,) stencil half-width in bins
    t2: float,                        # keep pairs with d² < t2 (Å²)
    prune: float,                     # skip bins farther than this (Å)
    orthogonal: bool,                 # frame rows mutually orthogonal
    self_interaction: bool,
    want_i: bool,
    want_j: bool,
    want_d: bool,
    want_D: bool,
    want_S: bool,
    n_threads: int,                   # 0: OpenMP default
) -> tuple[
    NDArray[np.int64],                # first_n (n_atoms + 1,) CSR offsets
    NDArray[np.int64] | None,         # i_p (n_pairs,)
    NDArray[np.int64] | None,         # j_p (n_pairs,)
    NDArray[np.float64] | None,       # d_p (n_pairs,) Å
    NDArray[np.float64] | None,       # D_pc (n_pairs, 3) Å
    NDArray[np.int64] | None,         # S_pc (n_pairs, 3)
]: ...
