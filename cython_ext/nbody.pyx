# cython: language_level=3
"""GAP's distance_2b and angle_3b instances, their covariance cutoffs and gradients.

Index letters: ``n`` atoms, ``p`` pairs (full neighbour list grouped by centre, CSR offsets
``first_n``), ``t`` instances (rows: pairs for 2b, triplets for 3b), ``g`` gradient sample rows,
``c``/``d`` Cartesian, ``f`` features.

Cutoff (GAP ``coordination_function``): f(r) = 1 for r <= r_c − w, ½(cos(π(r − r_c + w)/w) + 1)
for r_c − w < r < r_c, 0 beyond.

All quantities depend on pair vectors D = r_j + S·cell − r_i. With g = ∂X/∂D:
dX/dr_j += g, dX/dr_i −= g, dX/dε_ab += D_a g_b. Samples of one instance are its distinct atoms
(periodic images folded), in the order centre, j, k; a self-image pair has a single sample.

angle_3b runs two passes over centres: count (triplets and samples per centre) → offsets
(exclusive cumulative sums, in Python) → fill. Each centre writes only its own rows, so prange is
race-free and the output order does not depend on the number of threads.
"""

from cython.parallel cimport prange
from libc.math cimport cos, sin, sqrt, M_PI
from libc.stdint cimport int64_t


cdef inline double _fcut(double r, double rc, double w) noexcept nogil:
    if r <= rc - w:
        return 1.0
    if r >= rc:
        return 0.0
    return 0.5 * (cos(M_PI * (r - rc + w) / w) + 1.0)


cdef inline double _dfcut(double r, double rc, double w) noexcept nogil:
    if r <= rc - w or r >= rc:
        return 0.0
    return -0.5 * M_PI / w * sin(M_PI * (r - rc + w) / w)


def distance_2b_instances(
    const int64_t[::1] i_t,         # IN (n_inst,) first atom of each pair instance
    const int64_t[::1] j_t,         # IN (n_inst,) second atom
    const double[:, ::1] D_tc,      # IN (n_inst, 3) Å, r_j + S·cell − r_i
    const int64_t[::1] first_t,     # IN (n_inst + 1,) offsets of each instance's samples
    double cutoff,
    double width,
    double[:, ::1] X_tf,            # OUT (n_inst, 1) r (Å)
    double[::1] w_t,                # OUT (n_inst,) covariance cutoff f(r)
    int64_t[:, ::1] samples_gk,     # OUT (n_grad, 2) (instance, atom) or (0, 2)
    double[:, :, ::1] dX_gcf,       # OUT (n_grad, 3, 1) or (0, 3, 1)
    double[:, ::1] dw_gc,           # OUT (n_grad, 3) or (0, 3)
    double[:, :, :, ::1] dXs_tccf,  # OUT (n_inst, 3, 3, 1) or (0, 3, 3, 1)
    bint gradients,
    bint strain,
):
    """Fill r, f(r) and (optionally) their position/strain gradients for each pair instance."""
    cdef Py_ssize_t t, a, b, g, n_inst = i_t.shape[0]
    cdef double r, fr, dfr
    with nogil:
        for t in prange(n_inst, schedule="static"):
            r = sqrt(D_tc[t, 0] * D_tc[t, 0] + D_tc[t, 1] * D_tc[t, 1] + D_tc[t, 2] * D_tc[t, 2])
            fr = _fcut(r, cutoff, width)
            dfr = _dfcut(r, cutoff, width)
            X_tf[t, 0] = r
            w_t[t] = fr
            if gradients:
                g = first_t[t]
                samples_gk[g, 0] = t
                samples_gk[g, 1] = i_t[t]
                if j_t[t] != i_t[t]:
                    # ∂r/∂r_j = D/r, ∂r/∂r_i = −D/r; a self-image pair does not depend on r_i
                    samples_gk[g + 1, 0] = t
                    samples_gk[g + 1, 1] = j_t[t]
                    for a in range(3):
                        dX_gcf[g, a, 0] = -D_tc[t, a] / r
                        dX_gcf[g + 1, a, 0] = D_tc[t, a] / r
                        dw_gc[g, a] = -dfr * D_tc[t, a] / r
                        dw_gc[g + 1, a] = dfr * D_tc[t, a] / r
            if strain:
                for a in range(3):
                    for b in range(3):
                        dXs_tccf[t, a, b, 0] = D_tc[t, a] * D_tc[t, b] / r


cdef inline bint _triplet_ok(Py_ssize_t p, Py_ssize_t q, const int64_t[::1] j_p,
                             const int64_t[::1] is1_n, const int64_t[::1] is2_n,
                             const double[::1] r_p, double rc) noexcept nogil:
    cdef int64_t j = j_p[p], k = j_p[q]
    if r_p[p] >= rc or r_p[q] >= rc:
        return False
    return (is1_n[j] and is2_n[k]) or (is2_n[j] and is1_n[k])


cdef inline Py_ssize_t _n_samples(int64_t i, int64_t j, int64_t k) noexcept nogil:
    cdef Py_ssize_t m = 1
    if j != i:
        m += 1
    if k != i and k != j:
        m += 1
    return m


def angle_3b_count(
    const int64_t[::1] first_n,     # IN (n_atoms + 1,) CSR offsets of each centre's pairs
    const int64_t[::1] j_p,         # IN (n_pairs,)
    const double[::1] r_p,          # IN (n_pairs,) Å
    const int64_t[::1] centre_n,    # IN (n_atoms,) 1 if the atom passes the centre filter
    const int64_t[::1] is1_n,       # IN (n_atoms,) 1 if the atom matches z1
    const int64_t[::1] is2_n,       # IN (n_atoms,) 1 if the atom matches z2
    double cutoff,
    int64_t[::1] count_n,           # OUT (n_atoms,) triplets per centre
    int64_t[::1] nsamp_n,           # OUT (n_atoms,) gradient samples per centre
):
    """Pass 1: number of triplets (i; j < k) and of their gradient samples for each centre."""
    cdef Py_ssize_t n, p, q, c, s, n_atoms = first_n.shape[0] - 1
    with nogil:
        for n in prange(n_atoms, schedule="dynamic"):
            c = 0
            s = 0
            if centre_n[n]:
                for p in range(first_n[n], first_n[n + 1]):
                    for q in range(p + 1, first_n[n + 1]):
                        if _triplet_ok(p, q, j_p, is1_n, is2_n, r_p, cutoff):
                            c = c + 1
                            s = s + _n_samples(n, j_p[p], j_p[q])
            count_n[n] = c
            nsamp_n[n] = s


cdef void _fill_centre(Py_ssize_t n, const int64_t[::1] first_n, const int64_t[::1] j_p,
                       const double[:, ::1] D_pc, const double[::1] r_p,
                       const int64_t[::1] is1_n, const int64_t[::1] is2_n,
                       double rc, double w, Py_ssize_t t, Py_ssize_t g,
                       double[:, ::1] X_tf, double[::1] w_t, int64_t[:, ::1] jk_tk,
                       int64_t[:, ::1] samples_gk, double[:, :, ::1] dX_gcf, double[:, ::1] dw_gc,
                       double[:, :, :, ::1] dXs_tccf, bint do_grad, bint do_strain) noexcept nogil:
    cdef Py_ssize_t p, q, a, b, f, gi, gj, gk
    cdef int64_t j, k
    cdef double rij, rik, rjk, fij, fik, dfij, dfik
    cdef double uj[3]
    cdef double uk[3]
    cdef double ujk[3]
    cdef double Djk[3]
    cdef double gJ[3][3]
    cdef double gK[3][3]
    cdef double wJ[3]
    cdef double wK[3]
    for p in range(first_n[n], first_n[n + 1]):
        for q in range(p + 1, first_n[n + 1]):
            if not _triplet_ok(p, q, j_p, is1_n, is2_n, r_p, rc):
                continue
            j = j_p[p]
            k = j_p[q]
            rij = r_p[p]
            rik = r_p[q]
            for a in range(3):
                Djk[a] = D_pc[q, a] - D_pc[p, a]
            rjk = sqrt(Djk[0] * Djk[0] + Djk[1] * Djk[1] + Djk[2] * Djk[2])
            fij = _fcut(rij, rc, w)
            fik = _fcut(rik, rc, w)
            X_tf[t, 0] = rij + rik
            X_tf[t, 1] = (rij - rik) * (rij - rik)
            X_tf[t, 2] = rjk
            w_t[t] = fij * fik
            jk_tk[t, 0] = j
            jk_tk[t, 1] = k
            if do_grad or do_strain:
                dfij = _dfcut(rij, rc, w)
                dfik = _dfcut(rik, rc, w)
                for a in range(3):
                    uj[a] = D_pc[p, a] / rij
                    uk[a] = D_pc[q, a] / rik
                    ujk[a] = Djk[a] / rjk if rjk > 0.0 else 0.0
                    # ∂X/∂D_ij and ∂X/∂D_ik for X = (r_ij + r_ik, (r_ij − r_ik)², |D_ik − D_ij|)
                    gJ[0][a] = uj[a]
                    gK[0][a] = uk[a]
                    gJ[1][a] = 2.0 * (rij - rik) * uj[a]
                    gK[1][a] = -2.0 * (rij - rik) * uk[a]
                    gJ[2][a] = -ujk[a]
                    gK[2][a] = ujk[a]
                    wJ[a] = dfij * fik * uj[a]
                    wK[a] = fij * dfik * uk[a]
                if do_grad:
                    # samples: centre, then j and k unless they fold onto an earlier atom
                    gi = g
                    samples_gk[g, 0] = t
                    samples_gk[g, 1] = n
                    g = g + 1
                    if j == n:
                        gj = gi
                    else:
                        gj = g
                        samples_gk[g, 0] = t
                        samples_gk[g, 1] = j
                        g = g + 1
                    if k == n:
                        gk = gi
                    elif k == j:
                        gk = gj
                    else:
                        gk = g
                        samples_gk[g, 0] = t
                        samples_gk[g, 1] = k
                        g = g + 1
                    for a in range(3):
                        for f in range(3):
                            dX_gcf[gj, a, f] += gJ[f][a]
                            dX_gcf[gk, a, f] += gK[f][a]
                            dX_gcf[gi, a, f] -= gJ[f][a] + gK[f][a]
                        dw_gc[gj, a] += wJ[a]
                        dw_gc[gk, a] += wK[a]
                        dw_gc[gi, a] -= wJ[a] + wK[a]
                if do_strain:
                    for a in range(3):
                        for b in range(3):
                            for f in range(3):
                                dXs_tccf[t, a, b, f] = (D_pc[p, a] * gJ[f][b]
                                                        + D_pc[q, a] * gK[f][b])
            t = t + 1


def angle_3b_fill(
    const int64_t[::1] first_n,     # IN (n_atoms + 1,)
    const int64_t[::1] j_p,         # IN (n_pairs,)
    const double[:, ::1] D_pc,      # IN (n_pairs, 3) Å
    const double[::1] r_p,          # IN (n_pairs,) Å
    const int64_t[::1] centre_n,    # IN (n_atoms,)
    const int64_t[::1] is1_n,       # IN (n_atoms,)
    const int64_t[::1] is2_n,       # IN (n_atoms,)
    const int64_t[::1] row0_n,      # IN (n_atoms,) first instance row of each centre
    const int64_t[::1] samp0_n,     # IN (n_atoms,) first gradient row of each centre
    double cutoff,
    double width,
    double[:, ::1] X_tf,            # OUT (n_inst, 3)
    double[::1] w_t,                # OUT (n_inst,) f(r_ij) f(r_ik)
    int64_t[:, ::1] jk_tk,          # OUT (n_inst, 2) atoms j, k (folded)
    int64_t[:, ::1] samples_gk,     # OUT (n_grad, 2) (instance, atom), or (0, 2)
    double[:, :, ::1] dX_gcf,       # OUT (n_grad, 3, 3), zeroed, or (0, 3, 3)
    double[:, ::1] dw_gc,           # OUT (n_grad, 3), zeroed, or (0, 3)
    double[:, :, :, ::1] dXs_tccf,  # OUT (n_inst, 3, 3, 3), or (0, 3, 3, 3)
    bint gradients,
    bint strain,
):
    """Pass 2: write each centre's triplets at the offsets from :func:`angle_3b_count`."""
    cdef Py_ssize_t n, n_atoms = first_n.shape[0] - 1
    with nogil:
        for n in prange(n_atoms, schedule="dynamic"):
            if centre_n[n]:
                _fill_centre(n, first_n, j_p, D_pc, r_p, is1_n, is2_n, cutoff, width,
                             row0_n[n], samp0_n[n], X_tf, w_t, jk_tk, samples_gk, dX_gcf,
                             dw_gc, dXs_tccf, gradients, strain)
