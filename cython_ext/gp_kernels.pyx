# cython: language_level=3
"""Gaussian-process kernel contractions for prediction with fitted α.

Index letters: ``t`` instances (descriptor rows), ``m`` sparse points, ``f`` features.

The squared-exponential covariance of GAP's 2-body and 3-body terms,
k_tm = δ² exp(−Σ_f (X_tf − X_mf)² / 2θ²), is only ever needed contracted with the fitted
weights at prediction, so the (t, m) and (t, m, f) temporaries of a NumPy version (for bcc
metals ~90 triplets per atom × a few hundred sparse points) are never formed. Each instance
writes only its own outputs, so prange is race-free and the result does not depend on the
number of threads.
"""

from cython.parallel cimport prange
from libc.math cimport exp


def squared_exponential_contract(
    const double[:, ::1] X_tf,      # IN (n_inst, n_feat) descriptor rows
    const double[:, ::1] X_mf,      # IN (n_sparse, n_feat) sparse points, same units
    const double[::1] alpha_m,      # IN (n_sparse,) fitted weights
    double theta,                   # length scale θ of every feature (units of X)
    double delta,                   # energy scale δ (eV)
    double[::1] ka_t,               # OUT (n_inst,) Σ_m α_m k_tm (eV × units of α)
    double[:, ::1] kx_tf,           # OUT (n_inst, n_feat) Σ_m α_m k_tm X_mf
):
    """Fill Σ_m α_m k_tm and Σ_m α_m k_tm X_mf for every instance t."""
    cdef Py_ssize_t t, m, f
    cdef Py_ssize_t n_inst = X_tf.shape[0], n_sparse = X_mf.shape[0], n_feat = X_tf.shape[1]
    cdef double half_inv_theta2 = 0.5 / (theta * theta), delta2 = delta * delta
    cdef double d, r2, k, s
    with nogil:
        for t in prange(n_inst, schedule="static"):
            s = 0.0
            for f in range(n_feat):
                kx_tf[t, f] = 0.0
            for m in range(n_sparse):
                r2 = 0.0
                for f in range(n_feat):
                    d = X_tf[t, f] - X_mf[m, f]
                    r2 = r2 + d * d
                k = alpha_m[m] * exp(-half_inv_theta2 * r2)
                s = s + k
                for f in range(n_feat):
                    kx_tf[t, f] = kx_tf[t, f] + k * X_mf[m, f]
            ka_t[t] = delta2 * s
            for f in range(n_feat):
                kx_tf[t, f] = delta2 * kx_tf[t, f]
