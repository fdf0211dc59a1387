"""Stub for the compiled GAP 2-body/3-body kernel (cython_ext/nbody.pyx)."""

import numpy as np
from numpy.typing import NDArray

def distance_2b_instances(
    i_t: NDArray[np.int64],           # IN (n_inst,)
    j_t: NDArray[np.int64],           # IN (n_inst,)
    D_tc: NDArray[np.float64],        # IN (n_inst, 3) Å
    first_t: NDArray[np.int64],       # IN (n_inst + 1,) sample offsets
    cutoff: float,
    width: float,
    X_tf: NDArray[np.float64],        # OUT (n_inst, 1)
    w_t: NDArray[np.float64],         # OUT (n_inst,)
    samples_gk: NDArray[np.int64],    # OUT (n_grad, 2) (instance, atom)
    dX_gcf: NDArray[np.float64],      # OUT (n_grad, 3, 1), zeroed
    dw_gc: NDArray[np.float64],       # OUT (n_grad, 3), zeroed
    dXs_tccf: NDArray[np.float64],    # OUT (n_inst or 0, 3, 3, 1)
    gradients: bool,
    strain: bool,
) -> None: ...

def angle_3b_count(
    first_n: NDArray[np.int64],       # IN (n_atoms + 1,)
    j_p: NDArray[np.int64],           # IN (n_pairs,)
    r_p: NDArray[np.float64],         # IN (n_pairs,) Å
    centre_n: NDArray[np.int64],      # IN (n_atoms,) centre filter
    is1_n: NDArray[np.int64],         # IN (n_atoms,) matches z1
    is2_n: NDArray[np.int64],         # IN (n_atoms,) matches z2
    cutoff: float,
    count_n: NDArray[np.int64],       # OUT (n_atoms,) triplets per centre
    nsamp_n: NDArray[np.int64],       # OUT (n_atoms,) gradient samples per centre
) -> None: ...

def angle_3b_fill(
    first_n: NDArray[np.int64],
    j_p: NDArray[np.int64],
    D_pc: NDArray[np.float64],
    r_p: NDArray[np.float64],
    centre_n: NDArray[np.int64],
    is1_n: NDArray[np.int64],
    is2_n: NDArray[np.int64],
    row0_n: NDArray[np.int64],        # IN (n_atoms,) first row of each centre
    samp0_n: NDArray[np.int64],       # IN (n_atoms,) first gradient row of each centre
    cutoff: float,
    width: float,
    X_tf: NDArray[np.float64],        # OUT (n_inst, 3)
    w_t: NDArray[np.float64],         # OUT (n_inst,)
    jk_tk: NDArray[np.int64],         # OUT (n_inst, 2)
    samples_gk: NDArray[np.int64],    # OUT (n_grad, 2)
    dX_gcf: NDArray[np.float64],      # OUT (n_grad, 3, 3), zeroed
    dw_gc: NDArray[np.float64],       # OUT (n_grad, 3), zeroed
    dXs_tccf: NDArray[np.float64],    # OUT (n_inst or 0, 3, 3, 3)
    gradients: bool,
    strain: bool,
) -> None: ...
