"""Stub for the compiled SOAP kernel (cython_ext/soap.pyx); arrays are C-contiguous."""

import numpy as np
from numpy.typing import NDArray

def workspace_size(
    nmax: int, lmax: int, n_species: int, n_features: int, max_pairs: int, max_rows: int
) -> int: ...
def soap_features(
    first_n: NDArray[np.int64],       # IN (n_atoms + 1,) CSR offsets of each centre's pairs
    j_p: NDArray[np.int64],           # IN (n_pairs,) neighbour atom
    D_pc: NDArray[np.float64],        # IN (n_pairs, 3) Å, r_j + S·cell − r_i
    spec_n: NDArray[np.int64],        # IN (n_atoms,) species index
    slot_p: NDArray[np.int64],        # IN (n_pairs,) gradient row of the neighbour atom
    slot_n: NDArray[np.int64],        # IN (n_atoms,) gradient row of the centre
    grad_first_n: NDArray[np.int64],  # IN (n_atoms + 1,) first gradient row of each centre
    table_kxq: NDArray[np.float64],   # IN (n_nodes, 2, n_max·(l_max+1)) I_q(kh), h·I'_q(kh)
    h: float,                         # table spacing, Å
    cutoff: float,                    # Å
    width: float,                     # cutoff transition width, Å
    scaling: NDArray[np.float64],     # IN (3,) radial scaling r0 (Å; 0: off), rate c, exponent m
    ynorm_lm: NDArray[np.float64],    # IN ((l_max+1)²,) real-harmonic normalisation
    center_sn: NDArray[np.float64],   # IN (n_species, n_max) centre's own c_{n00}
    block_ss: NDArray[np.int64],      # IN (n_species, n_species) feature offset of block (a, b)
    nmax: int,
    lmax: int,
    n_species: int,
    normalize: bool,
    X_nf: NDArray[np.float64],        # OUT (n_atoms, n_features)
    dX_gcf: NDArray[np.float64],      # OUT (n_grad, 3, n_features)
    dXs_nccf: NDArray[np.float64],    # OUT (n_atoms or 0, 3, 3, n_features)
    gradients: bool,
    strain: bool,
    max_pairs: int,                   # largest number of pairs of one centre (>= 1)
    max_rows: int,                    # largest number of gradient rows of one centre
    n_threads: int,                   # 0: OpenMP default
) -> None: ...
def soap_energy_gradient(
    first_n: NDArray[np.int64],       # IN (n_atoms + 1,) CSR offsets of each centre's pairs
    j_p: NDArray[np.int64],           # IN (n_pairs,) neighbour atom
    D_pc: NDArray[np.float64],        # IN (n_pairs, 3) Å
    spec_n: NDArray[np.int64],        # IN (n_atoms,) species index
    table_kxq: NDArray[np.float64],
    h: float,
    cutoff: float,
    width: float,
    scaling: NDArray[np.float64],     # IN (3,) r0, c, m
    ynorm_lm: NDArray[np.float64],
    center_sn: NDArray[np.float64],
    block_ss: NDArray[np.int64],
    nmax: int,
    lmax: int,
    n_species: int,
    V_nf: NDArray[np.float64],        # IN (n_atoms, n_features) ∂E/∂X of the raw spectra
    H_pc: NDArray[np.float64],        # OUT (n_pairs, 3) ∂E/∂D of each pair
    max_pairs: int,
    n_threads: int,
) -> None: ...
