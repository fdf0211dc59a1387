"""Stub for the compiled GP kernel contractions (cython_ext/gp_kernels.pyx)."""

import numpy as np
from numpy.typing import NDArray

def squared_exponential_contract(
    X_tf: NDArray[np.float64],        # IN (n_inst, n_feat)
    X_mf: NDArray[np.float64],        # IN (n_sparse, n_feat)
    alpha_m: NDArray[np.float64],     # IN (n_sparse,)
    theta: float,
    delta: float,                     # eV
    ka_t: NDArray[np.float64],        # OUT (n_inst,)
    kx_tf: NDArray[np.float64],       # OUT (n_inst, n_feat)
) -> None: ...
