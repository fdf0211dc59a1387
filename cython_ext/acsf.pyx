# cython: language_level=3
"""Behler-Parrinello symmetry functions G2, G4, G5 with position and strain gradients.

Index letters: ``n`` atoms (= rows, one per centre), ``p`` pairs of the full neighbour list
(grouped by centre, CSR offsets ``first_n``), ``c``/``d`` Cartesian, ``f`` features,
``g`` gradient sample rows, ``k`` parameter sets.

Every quantity is a function of the pair vectors D_ij = r_j + S·cell − r_i. With g_j = ∂T/∂D_ij,
    dT/dr_j += g_j,   dT/dr_i −= g_j,   dT/dε_ab += D_ij,a g_j,b   (ε symmetric strain).
Periodic images fold onto atoms through ``slot_p`` (gradient row of the neighbour atom of pair p
in its centre's sample list) and ``slot_n`` (gradient row of the centre itself). Each centre
writes only its own feature row, its own strain row and its own gradient rows, so the prange over
centres is race-free and every sum runs in neighbour-list order: results do not depend on the
number of threads.

Feature layout (n_s species, n2/n4/n5 parameter sets):
    [G2 block of neighbour species 0 .. n_s−1, each n2 wide]
    [angular block per unordered species pair (a >= b) at a(a+1)/2 + b, each n4 + n5 wide:
     G4 parameters first, then G5]
"""

from cython.parallel cimport prange
from libc.math cimport cos, exp, pow, sin, sqrt, M_PI
from libc.stdint cimport int64_t


cdef inline double _fc(double r, double rc) noexcept nogil:
    if r >= rc:
        return 0.0
    return 0.5 * (cos(M_PI * r / rc) + 1.0)


cdef inline double _dfc(double r, double rc) noexcept nogil:
    if r >= rc:
        return 0.0
    return -0.5 * M_PI / rc * sin(M_PI * r / rc)


cdef inline void _add_pair_grad(double[:, :, ::1] dX_gcf, double[:, :, :, ::1] dXs_nccf,
                                Py_ssize_t n, Py_ssize_t slot_j, Py_ssize_t slot_i,
                                Py_ssize_t f, const double *D, const double *g,
                                bint do_grad, bint do_strain) noexcept nogil:
    """Scatter ∂T/∂D (g) onto atom j (+), the centre i (−) and the strain row of centre n."""
    cdef Py_ssize_t a, b
    if do_grad:
        for a in range(3):
            dX_gcf[slot_j, a, f] += g[a]
            dX_gcf[slot_i, a, f] -= g[a]
    if do_strain:
        for a in range(3):
            for b in range(3):
                dXs_nccf[n, a, b, f] += D[a] * g[b]


cdef void _centre(Py_ssize_t n,
                  const int64_t[::1] first_n, const int64_t[::1] j_p, const double[:, ::1] D_pc,
                  const int64_t[::1] spec_n, const int64_t[::1] slot_p, const int64_t[::1] slot_n,
                  const double[:, ::1] g2_k, const double[:, ::1] g4_k, const double[:, ::1] g5_k,
                  double rc, Py_ssize_t n_species,
                  double[:, ::1] X_nf, double[:, :, ::1] dX_gcf, double[:, :, :, ::1] dXs_nccf,
                  bint do_grad, bint do_strain) noexcept nogil:
    cdef Py_ssize_t n2 = g2_k.shape[0], n4 = g4_k.shape[0], n5 = g5_k.shape[0]
    cdef Py_ssize_t ang0 = n_species * n2
    cdef Py_ssize_t p, q, k, a, f, sj, sk, pair, si
    cdef double r, fc, dfc, e, dt, eta, rs, zeta, lam
    cdef double Dj[3]
    cdef double Dk[3]
    cdef double Djk[3]
    cdef double gj[3]
    cdef double gk[3]
    cdef double rij, rik, rjk, fij, fik, fjk, dfij, dfik, dfjk, cos_t, base, ang, dang
    cdef double rij2, rik2, rjk2, E, F, dEF_ij, dEF_ik, dEF_jk, dT_dc, dT_dij, dT_dik, dT_djk
    cdef double dc_j, dc_k
    cdef bint ok_jk
    si = slot_n[n]

    # radial G2
    for p in range(first_n[n], first_n[n + 1]):
        r = sqrt(D_pc[p, 0] * D_pc[p, 0] + D_pc[p, 1] * D_pc[p, 1] + D_pc[p, 2] * D_pc[p, 2])
        if r >= rc or r == 0.0:
            continue
        fc = _fc(r, rc)
        dfc = _dfc(r, rc)
        for a in range(3):
            Dj[a] = D_pc[p, a]
        sj = spec_n[j_p[p]]
        for k in range(n2):
            eta = g2_k[k, 0]
            rs = g2_k[k, 1]
            e = exp(-eta * (r - rs) * (r - rs))
            f = sj * n2 + k
            X_nf[n, f] += e * fc
            if do_grad or do_strain:
                # dG/dr = e (−2η(r − r_s) f_c + f_c'), ∂r/∂D = D/r
                dt = e * (-2.0 * eta * (r - rs) * fc + dfc) / r
                for a in range(3):
                    gj[a] = dt * Dj[a]
                _add_pair_grad(dX_gcf, dXs_nccf, n, slot_p[p], si, f, Dj, gj, do_grad, do_strain)

    if n4 + n5 == 0:
        return

    # angular G4 / G5 over unordered pairs of neighbour entries (p < q)
    for p in range(first_n[n], first_n[n + 1]):
        for a in range(3):
            Dj[a] = D_pc[p, a]
        rij2 = Dj[0] * Dj[0] + Dj[1] * Dj[1] + Dj[2] * Dj[2]
        rij = sqrt(rij2)
        if rij >= rc or rij == 0.0:
            continue
        fij = _fc(rij, rc)
        dfij = _dfc(rij, rc)
        sj = spec_n[j_p[p]]
        for q in range(p + 1, first_n[n + 1]):
            for a in range(3):
                Dk[a] = D_pc[q, a]
                Djk[a] = Dk[a] - Dj[a]
            rik2 = Dk[0] * Dk[0] + Dk[1] * Dk[1] + Dk[2] * Dk[2]
            rik = sqrt(rik2)
            if rik >= rc or rik == 0.0:
                continue
            fik = _fc(rik, rc)
            dfik = _dfc(rik, rc)
            rjk2 = Djk[0] * Djk[0] + Djk[1] * Djk[1] + Djk[2] * Djk[2]
            rjk = sqrt(rjk2)
            ok_jk = rjk < rc and rjk > 0.0
            fjk = _fc(rjk, rc) if ok_jk else 0.0
            dfjk = _dfc(rjk, rc) if ok_jk else 0.0
            cos_t = (Dj[0] * Dk[0] + Dj[1] * Dk[1] + Dj[2] * Dk[2]) / (rij * rik)
            sk = spec_n[j_p[q]]
            if sj >= sk:
                pair = sj * (sj + 1) // 2 + sk
            else:
                pair = sk * (sk + 1) // 2 + sj
            # G4 (k < n4) then G5 (k >= n4)
            for k in range(n4 + n5):
                if k < n4:
                    if not ok_jk:
                        continue
                    eta = g4_k[k, 0]
                    zeta = g4_k[k, 1]
                    lam = g4_k[k, 2]
                    E = exp(-eta * (rij2 + rik2 + rjk2))
                    F = fij * fik * fjk
                else:
                    eta = g5_k[k - n4, 0]
                    zeta = g5_k[k - n4, 1]
                    lam = g5_k[k - n4, 2]
                    E = exp(-eta * (rij2 + rik2))
                    F = fij * fik
                base = 1.0 + lam * cos_t
                if base < 0.0:
                    base = 0.0      # rounding at θ = 0 or π
                ang = pow(2.0, 1.0 - zeta) * pow(base, zeta)
                f = ang0 + pair * (n4 + n5) + k
                X_nf[n, f] += ang * E * F
                if not (do_grad or do_strain):
                    continue
                dang = pow(2.0, 1.0 - zeta) * zeta * lam * pow(base, zeta - 1.0)
                # T = A(c) E F;  ∂T/∂c = A' E F;  ∂T/∂r = A ∂(E F)/∂r
                dT_dc = dang * E * F
                if k < n4:
                    dEF_ij = E * (-2.0 * eta * rij * F + dfij * fik * fjk)
                    dEF_ik = E * (-2.0 * eta * rik * F + fij * dfik * fjk)
                    dEF_jk = E * (-2.0 * eta * rjk * F + fij * fik * dfjk)
                else:
                    dEF_ij = E * (-2.0 * eta * rij * F + dfij * fik)
                    dEF_ik = E * (-2.0 * eta * rik * F + fij * dfik)
                    dEF_jk = 0.0
                dT_dij = ang * dEF_ij / rij
                dT_dik = ang * dEF_ik / rik
                dT_djk = ang * dEF_jk / rjk if ok_jk else 0.0
                # ∂c/∂D_ij = D_ik/(r_ij r_ik) − c D_ij/r_ij², and j <-> k; r_jk = |D_ik − D_ij|
                for a in range(3):
                    dc_j = Dk[a] / (rij * rik) - cos_t * Dj[a] / rij2
                    dc_k = Dj[a] / (rij * rik) - cos_t * Dk[a] / rik2
                    gj[a] = dT_dc * dc_j + dT_dij * Dj[a] - dT_djk * Djk[a]
                    gk[a] = dT_dc * dc_k + dT_dik * Dk[a] + dT_djk * Djk[a]
                _add_pair_grad(dX_gcf, dXs_nccf, n, slot_p[p], si, f, Dj, gj, do_grad, do_strain)
                _add_pair_grad(dX_gcf, dXs_nccf, n, slot_p[q], si, f, Dk, gk, do_grad, do_strain)


def acsf_features(
    const int64_t[::1] first_n,     # IN (n_atoms + 1,) CSR offsets of each centre's pairs
    const int64_t[::1] j_p,         # IN (n_pairs,) neighbour atom index
    const double[:, ::1] D_pc,      # IN (n_pairs, 3) Å, r_j + S·cell − r_i
    const int64_t[::1] spec_n,      # IN (n_atoms,) species index of each atom (0..n_species−1)
    const int64_t[::1] slot_p,      # IN (n_pairs,) gradient row of the pair's neighbour atom
    const int64_t[::1] slot_n,      # IN (n_atoms,) gradient row of the centre atom itself
    const double[:, ::1] g2_k,      # IN (n2, 2) eta, r_s
    const double[:, ::1] g4_k,      # IN (n4, 3) eta, zeta, lambda
    const double[:, ::1] g5_k,      # IN (n5, 3) eta, zeta, lambda
    double cutoff,
    Py_ssize_t n_species,
    double[:, ::1] X_nf,            # OUT (n_atoms, n_features), zeroed by the caller
    double[:, :, ::1] dX_gcf,       # OUT (n_grad, 3, n_features) or (0, 3, F), zeroed
    double[:, :, :, ::1] dXs_nccf,  # OUT (n_atoms, 3, 3, n_features) or (0, 3, 3, F), zeroed
    bint gradients,
    bint strain,
):
    """Accumulate G2/G4/G5 (and their gradients) for every centre into the caller's arrays."""
    cdef Py_ssize_t n, n_atoms = X_nf.shape[0]
    with nogil:
        for n in prange(n_atoms, schedule="dynamic"):
            _centre(n, first_n, j_p, D_pc, spec_n, slot_p, slot_n, g2_k, g4_k, g5_k, cutoff,
                    n_species, X_nf, dX_gcf, dXs_nccf, gradients, strain)
