"""Stub for the compiled ACSF kernel (cython_ext/acsf.pyx); arrays are C-contiguous."""

import numpy as np
from numpy.typing import NDArray

def acsf_features(
    first_n: NDArray[np.int64],       # IN (n_atoms + 1,) CSR offsets of each centre's pairs
    j_p: NDArray[np.int64],           # IN (n_pairs,) neighbour atom
    D_pc: NDArray[np.float64],        # IN (n_pairs, 3) Å, r_j + S·cell − r_i
    spec_n: NDArray[np.int64],        # IN (n_atoms,) species index
    slot_p: NDArray[np.int64],        # IN (n_pairs,) gradient row of the neighbour atom
    slot_n: NDArray[np.int64],        # IN (n_atoms,) gradient row of the centre
    g2_k: NDArray[np.float64],        # IN (n2, 2) eta, r_s
    g4_k: NDArray[np.float64],        # IN (n4, 3) eta, zeta, lambda
    g5_k: NDArray[np.float64],        # IN (n5, 3) eta, zeta, lambda
    cutoff: float,
    n_species: int,
    X_nf: NDArray[np.float64],        # OUT (n_atoms, n_features), zeroed
    dX_gcf: NDArray[np.float64],      # OUT (n_grad, 3, n_features), zeroed
    dXs_nccf: NDArray[np.float64],    # OUT (n_atoms or 0, 3, 3, n_features), zeroed
    gradients: bool,
    strain: bool,
) -> None: ...
