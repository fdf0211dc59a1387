# cython: language_level=3
"""SOAP power spectrum with exact position and strain gradients.

Index letters: ``n`` atoms (= rows, one per centre), ``p`` pairs of the full neighbour list
(grouped by centre, CSR offsets ``first_n``), ``c``/``d`` Cartesian, ``f`` features, ``g``
gradient sample rows, ``k`` radial-table grid nodes, ``q`` (l, n) radial channels
(q = l·n_max + n), ``s``/``b`` species indices, ``lm`` spherical-harmonic channels
(lm = l² + l + m).

Maths (see mlptools/descriptors/soap.py for the conventions):

* density coefficients  c^s_{nlm} = Σ_{j∈s} R_{nl}(d_j) Y_lm(u_j)  (+ the centre's own Gaussian,
  a constant added to c^{s_i}_{n00}), with R_{nl}(d) = f_c(d) I_{nl}(d): the radial integral
  I_{nl} comes from a cubic Hermite table (values and derivatives on a uniform grid in d) and
  the smooth cutoff f_c is applied analytically;
* real spherical harmonics from the Cartesian recursion Y_lm = N_lm Q_l^m(z) {cos,sin}(mφ)·
  (x² + y²)^{m/2}, with the gradient on the sphere
  ∂Y_lm(D/d)/∂D = (∇F − u (u·∇F))/d for the extension F(x, y, z) = N_lm Q_l^m(z)·Re/Im (x+iy)^m;
* ∂c^s_{nlm}/∂D_j = R'_{nl} u_j Y_lm + R_{nl} ∂Y_lm/∂D_j (only for s = species of j);
* power spectrum P^{ab}_{nn'l} = Σ_m c^a_{nlm} c^b_{n'lm}; per neighbour j of species s the
  contraction G^b_{c,nn'l} = Σ_m ∂c^s_{nlm}/∂D_{j,c} c^b_{n'lm} gives every derivative:
  ∂P^{ss}_{nn'l} = G^s_{nn'} + G^s_{n'n}, ∂P^{sb}_{nn'l} = G^b_{nn'}, ∂P^{bs}_{nn'l} = G^b_{n'n};
  it is evaluated as the rank-2 form G^b_{c,nn'l} = R'_{nl} u_c A^b_{ln'} + R_{nl} B^b_{c,ln'}
  with A^b_{ln'} = Σ_m Y_lm c^b_{n'lm} and B^b_{c,ln'} = Σ_m ∂Y_lm/∂D_c c^b_{n'lm}
  (~4 n_max (l_max+1)² + 12 n_max² (l_max+1) FLOP per pair and species instead of a full
  Σ_m contraction for every (n, n'));
* with g = ∂X_i/∂D_ij:  dX_i/dr_j += g,  dX_i/dr_i −= g,  dX_i/dε_ab += D_ij,a g_b;
* normalisation X̂ = X/|X|:  dX̂ = (dX − X̂ (X̂·dX))/|X|, applied to every gradient/strain row of
  the centre after its sums are complete.

* adjoint (``soap_energy_gradient``): for an energy E = Σ_i V_i · X_i with V = ∂E/∂X given, the
  chain rule runs backwards instead: ∂E/∂c^a_{nlm} = Σ_f V_f κ_f (c^b_{n'lm} for the a-side,
  c^a_{nlm} for the b-side), κ = √2 off the diagonal, then per pair
  ∂E/∂D_c = Σ_{nl} R'_{nl} u_c Σ_m Y_lm ∂E/∂c_{nlm} + R_{nl} Σ_m ∂Y_lm/∂D_c ∂E/∂c_{nlm}:
  ~4 n_max (l_max+1)² FLOP per pair, no (pairs × 3 × features) array — how models predict.

Each centre writes only its own feature row, its own strain row and its own gradient rows
(``grad_first_n`` gives the contiguous range of gradient rows of each centre, ``slot_p`` the row
of the neighbour atom of each pair, ``slot_n`` the row of the centre itself), and every sum runs
in neighbour-list order, so results are bitwise identical for any number of threads.
"""

from cython.parallel cimport parallel, prange
from libc.math cimport cos, sin, sqrt, M_PI
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

cdef double SQRT2 = 1.4142135623730951


cdef inline void _cutoff(double d, double rc, double w, double *fc, double *dfc) noexcept nogil:
    """Shifted-cosine cutoff: 1 below rc − w, ½(1 + cos(π(d − rc + w)/w)) up to rc, 0 beyond."""
    cdef double t
    if d >= rc:
        fc[0] = 0.0
        dfc[0] = 0.0
    elif w <= 0.0 or d <= rc - w:
        fc[0] = 1.0
        dfc[0] = 0.0
    else:
        t = M_PI * (d - rc + w) / w
        fc[0] = 0.5 * (1.0 + cos(t))
        dfc[0] = -0.5 * M_PI / w * sin(t)


cdef inline void _scale(double d, double r0, double rate, int m, double *fc,
                        double *dfc) noexcept nogil:
    """Multiply the cutoff f_c (and f_c') by Willatt's radial scaling u(d) = c/(c + (d/r0)^m)."""
    cdef double x, xm, den, u, du
    if r0 <= 0.0:
        return
    x = d / r0
    xm = x ** m
    den = rate + xm
    u = rate / den
    du = 0.0 if m == 0 else -rate * m * xm / (x * r0) / (den * den)
    dfc[0] = dfc[0] * u + fc[0] * du
    fc[0] = fc[0] * u


cdef inline void _radial(double d, const double *table, Py_ssize_t n_nodes, double h, int nq,
                         double fc, double dfc, double *R, double *dR, bint grad) noexcept nogil:
    """R_q = f_c I_q(d) and its d-derivative from the cubic Hermite table.

    table layout [k][0: value, 1: h·derivative][q]."""
    cdef Py_ssize_t k, q
    cdef double t, t2, t3, h00, h10, h01, h11, d00, d10, d01, d11, v, dv
    cdef const double *a
    cdef const double *b
    t = d / h
    k = <Py_ssize_t>t
    if k > n_nodes - 2:
        k = n_nodes - 2
    t = t - k
    t2 = t * t
    t3 = t2 * t
    h00 = 2.0 * t3 - 3.0 * t2 + 1.0
    h10 = t3 - 2.0 * t2 + t
    h01 = -2.0 * t3 + 3.0 * t2
    h11 = t3 - t2
    d00 = (6.0 * t2 - 6.0 * t) / h
    d10 = (3.0 * t2 - 4.0 * t + 1.0) / h
    d01 = -d00
    d11 = (3.0 * t2 - 2.0 * t) / h
    a = table + k * 2 * nq
    b = a + 2 * nq
    if not grad:
        for q in range(nq):
            R[q] = fc * (h00 * a[q] + h10 * a[nq + q] + h01 * b[q] + h11 * b[nq + q])
        return
    for q in range(nq):
        v = h00 * a[q] + h10 * a[nq + q] + h01 * b[q] + h11 * b[nq + q]
        dv = d00 * a[q] + d10 * a[nq + q] + d01 * b[q] + d11 * b[nq + q]
        R[q] = fc * v
        dR[q] = dfc * v + fc * dv


cdef void _harmonics(const double *u, double d, int lmax, const double *ynorm, double *Q,
                     double *dQ, double *Cm, double *Sm, double *Y, double *dY,
                     bint grad) noexcept nogil:
    """Real spherical harmonics Y[lm] of the unit vector u and, if grad, ∂Y/∂D as dY[c][lm].

    Q[l][m] (stride lmax+1) is the associated Legendre polynomial without the (1 − z²)^{m/2}
    factor (no Condon–Shortley phase); Cm + i Sm = (x + i y)^m."""
    cdef int ell, m, L1 = lmax + 1, LM = L1 * L1, lm
    cdef double x = u[0], y = u[1], z = u[2], fx, fy, fz, dot, inv_d = 1.0 / d, nq
    Cm[0] = 1.0
    Sm[0] = 0.0
    for m in range(1, L1):
        Cm[m] = x * Cm[m - 1] - y * Sm[m - 1]
        Sm[m] = x * Sm[m - 1] + y * Cm[m - 1]
    for m in range(L1):
        if m == 0:
            Q[0] = 1.0
        else:
            Q[m * L1 + m] = (2 * m - 1) * Q[(m - 1) * L1 + m - 1]
        if m + 1 <= lmax:
            Q[(m + 1) * L1 + m] = (2 * m + 1) * z * Q[m * L1 + m]
        for ell in range(m + 2, L1):
            Q[ell * L1 + m] = ((2 * ell - 1) * z * Q[(ell - 1) * L1 + m]
                               - (ell + m - 1) * Q[(ell - 2) * L1 + m]) / (ell - m)
        if grad:
            dQ[m * L1 + m] = 0.0
            if m + 1 <= lmax:
                dQ[(m + 1) * L1 + m] = (2 * m + 1) * Q[m * L1 + m]
            for ell in range(m + 2, L1):
                dQ[ell * L1 + m] = ((2 * ell - 1) * (Q[(ell - 1) * L1 + m]
                                                     + z * dQ[(ell - 1) * L1 + m])
                                    - (ell + m - 1) * dQ[(ell - 2) * L1 + m]) / (ell - m)
    for ell in range(L1):
        lm = ell * ell + ell
        nq = ynorm[lm]
        Y[lm] = nq * Q[ell * L1]
        if grad:
            fx = 0.0
            fy = 0.0
            fz = nq * dQ[ell * L1]
            dot = u[2] * fz
            dY[lm] = (fx - x * dot) * inv_d
            dY[LM + lm] = (fy - y * dot) * inv_d
            dY[2 * LM + lm] = (fz - z * dot) * inv_d
        for m in range(1, ell + 1):
            nq = ynorm[lm + m]
            Y[lm + m] = nq * Q[ell * L1 + m] * Cm[m]
            Y[lm - m] = nq * Q[ell * L1 + m] * Sm[m]
            if grad:
                # cos part: F = N Q(z) C_m(x, y)
                fx = nq * Q[ell * L1 + m] * m * Cm[m - 1]
                fy = -nq * Q[ell * L1 + m] * m * Sm[m - 1]
                fz = nq * dQ[ell * L1 + m] * Cm[m]
                dot = x * fx + y * fy + z * fz
                dY[lm + m] = (fx - x * dot) * inv_d
                dY[LM + lm + m] = (fy - y * dot) * inv_d
                dY[2 * LM + lm + m] = (fz - z * dot) * inv_d
                # sin part: F = N Q(z) S_m(x, y)
                fx = nq * Q[ell * L1 + m] * m * Sm[m - 1]
                fy = nq * Q[ell * L1 + m] * m * Cm[m - 1]
                fz = nq * dQ[ell * L1 + m] * Sm[m]
                dot = x * fx + y * fy + z * fz
                dY[lm - m] = (fx - x * dot) * inv_d
                dY[LM + lm - m] = (fy - y * dot) * inv_d
                dY[2 * LM + lm - m] = (fz - z * dot) * inv_d


cdef inline double _dot(const double *a, const double *b, Py_ssize_t n) noexcept nogil:
    """Σ a_k b_k with four partial sums (fixed order: results do not depend on threads)."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t k = 0
    while k + 4 <= n:
        s0 += a[k] * b[k]
        s1 += a[k + 1] * b[k + 1]
        s2 += a[k + 2] * b[k + 2]
        s3 += a[k + 3] * b[k + 3]
        k += 4
    while k < n:
        s0 += a[k] * b[k]
        k += 1
    return (s0 + s1) + (s2 + s3)


cdef inline Py_ssize_t _nn_index(int n, int n2, int nmax, bint same) noexcept nogil:
    """Position of (n, n') in its species block: n <= n' row-major when a == b, else n·n_max + n'."""
    if same:
        return n * nmax - (n * (n - 1)) // 2 + (n2 - n)
    return n * nmax + n2


cdef void _density(Py_ssize_t i, const int64_t[::1] first_n, const int64_t[::1] j_p,
                   const double[:, ::1] D_pc, const int64_t[::1] spec_n,
                   const double[:, :, ::1] table_kxq, double h, double rc, double width,
                   const double[::1] scaling, const double[::1] ynorm_lm,
                   const double[:, ::1] center_sn, int nmax, int lmax, int n_species,
                   bint need_grad, double *cT, double *Rp, double *dRp, double *Yp,
                   double *dYp, double *up, double *Q, double *dQ, double *Cm,
                   double *Sm) noexcept nogil:
    """Centre i's density coefficients cT[s][lm][n] and, per pair p, R (Rp), R' (dRp), Y (Yp),
    ∂Y/∂D (dYp) and the unit vector (up), as laid out in ``_centre``'s workspace."""
    cdef int L1 = lmax + 1, LM = L1 * L1, nq = nmax * L1, S = n_species
    cdef Py_ssize_t p, p0 = first_n[i], np_ = first_n[i + 1] - first_n[i], k
    cdef int s, ell, m, n, c, lm0
    cdef double dist, fc, dfc, coef
    cdef double rloc[64]
    cdef double *crow
    cdef double *ucur
    cdef double *Rcur
    for k in range(S * LM * nmax):
        cT[k] = 0.0
    for p in range(np_):
        s = <int>spec_n[j_p[p0 + p]]
        ucur = up + 3 * p
        dist = sqrt(D_pc[p0 + p, 0] * D_pc[p0 + p, 0] + D_pc[p0 + p, 1] * D_pc[p0 + p, 1]
                    + D_pc[p0 + p, 2] * D_pc[p0 + p, 2])
        for c in range(3):
            ucur[c] = D_pc[p0 + p, c] / dist
        _cutoff(dist, rc, width, &fc, &dfc)
        _scale(dist, scaling[0], scaling[1], <int>scaling[2], &fc, &dfc)
        Rcur = Rp + p * nq
        _radial(dist, &table_kxq[0, 0, 0], table_kxq.shape[0], h, nq, fc, dfc, Rcur,
                dRp + p * nq, need_grad)
        _harmonics(ucur, dist, lmax, &ynorm_lm[0], Q, dQ, Cm, Sm, Yp + p * LM, dYp + p * 3 * LM,
                   need_grad)
        for ell in range(L1):
            lm0 = ell * ell
            # a stack copy: the compiler then knows the stores to cT cannot alias it
            for n in range(nmax):
                rloc[n] = Rcur[ell * nmax + n]
            for m in range(2 * ell + 1):
                crow = cT + (s * LM + lm0 + m) * nmax
                coef = Yp[p * LM + lm0 + m]
                for n in range(nmax):
                    crow[n] += rloc[n] * coef
    # the centre's own Gaussian (l = 0 only, constant)
    s = <int>spec_n[i]
    for n in range(nmax):
        cT[s * LM * nmax + n] += center_sn[s, n]


cdef void _centre(Py_ssize_t i, double *work,
                  const int64_t[::1] first_n, const int64_t[::1] j_p, const double[:, ::1] D_pc,
                  const int64_t[::1] spec_n, const int64_t[::1] slot_p, const int64_t[::1] slot_n,
                  const int64_t[::1] grad_first_n, const double[:, :, ::1] table_kxq, double h,
                  double rc, double width, const double[::1] scaling, const double[::1] ynorm_lm,
                  const double[:, ::1] center_sn, const int64_t[:, ::1] block_ss,
                  int nmax, int lmax, int n_species, bint normalize,
                  double[:, ::1] X_nf, double[:, :, ::1] dX_gcf, double[:, :, :, ::1] dXs_nccf,
                  bint do_grad, bint do_strain, Py_ssize_t max_pairs) noexcept nogil:
    cdef int L1 = lmax + 1, LM = L1 * L1, nq = nmax * L1, S = n_species
    cdef Py_ssize_t F = X_nf.shape[1]
    cdef Py_ssize_t p, p0 = first_n[i], p1 = first_n[i + 1], np_ = p1 - p0, k
    cdef Py_ssize_t f, off, g0 = 0, g1 = 0, sj, si
    cdef int s, b, a, ell, m, n, n2, c, cc, lm0
    cdef double val, coef, norm, dot, inv, y0, y1, y2, y3
    cdef double acc0[64]
    cdef double acc1[64]
    cdef double acc2[64]
    cdef double acc3[64]
    cdef bint need_grad = do_grad or do_strain
    # workspace layout (sizes from _workspace_size)
    cdef double *cT = work                                  # [S][LM][nmax]
    cdef double *Rp = cT + S * LM * nmax                    # [max_pairs][nq]
    cdef double *dRp = Rp + max_pairs * nq                  # [max_pairs][nq]
    cdef double *Yp = dRp + max_pairs * nq                  # [max_pairs][LM]
    cdef double *dYp = Yp + max_pairs * LM                  # [max_pairs][3][LM]
    cdef double *up = dYp + max_pairs * 3 * LM              # [max_pairs][3]
    cdef double *Q = up + max_pairs * 3                     # [L1][L1]
    cdef double *dQ = Q + L1 * L1
    cdef double *Cm = dQ + L1 * L1                          # [L1]
    cdef double *Sm = Cm + L1
    cdef double *AB = Sm + L1                               # [S][4][nmax][L1]
    cdef double *gp = AB + S * L1 * 4 * nmax                # [3][F]
    cdef double *U = gp + 3 * F                             # [3][nmax][L1]
    cdef double *sbuf = U + 3 * nq                          # [3][3][F]
    cdef double *Rt = sbuf + 9 * F                          # [nmax][L1]
    cdef double *gbuf = Rt + nq                             # [max_rows][3][F]
    cdef double *gpc
    cdef double *gj
    cdef double *gi
    cdef double *Uc
    cdef double *x
    cdef double *crow
    cdef double *Gb
    cdef double *Ycur
    cdef double *dYcur
    cdef double *Rcur
    cdef double *dRcur
    cdef double *ucur

    # ---- pass 1: radial functions, harmonics, density coefficients
    _density(i, first_n, j_p, D_pc, spec_n, table_kxq, h, rc, width, scaling, ynorm_lm,
             center_sn, nmax, lmax, n_species, need_grad, cT, Rp, dRp, Yp, dYp, up, Q, dQ, Cm, Sm)

    # ---- power spectrum
    for a in range(S):
        for b in range(a, S):
            off = block_ss[a, b]
            for ell in range(L1):
                lm0 = ell * ell
                for n in range(nmax):
                    for n2 in range(n if a == b else 0, nmax):
                        val = 0.0
                        for m in range(2 * ell + 1):
                            val = val + cT[(a * LM + lm0 + m) * nmax + n] * cT[(b * LM + lm0 + m) * nmax + n2]
                        if a != b or n != n2:
                            val = val * SQRT2
                        X_nf[i, off + _nn_index(n, n2, nmax, a == b) * L1 + ell] = val

    # ---- pass 2: gradients, one neighbour at a time, accumulated in the thread's buffers
    # (gbuf: this centre's gradient rows, sbuf: its strain row), then normalised and copied out
    if need_grad:
        g0 = grad_first_n[i]
        g1 = grad_first_n[i + 1]
        if do_grad:
            for k in range((g1 - g0) * 3 * F):
                gbuf[k] = 0.0
        if do_strain:
            for k in range(9 * F):
                sbuf[k] = 0.0
        si = slot_n[i] - g0
        for p in range(np_):
            s = <int>spec_n[j_p[p0 + p]]
            sj = slot_p[p0 + p] - g0
            ucur = up + 3 * p
            Rcur = Rp + p * nq
            dRcur = dRp + p * nq
            Ycur = Yp + p * LM
            dYcur = dYp + p * 3 * LM
            # transposed copies, l innermost: Rt[n][l] = R_nl, U[c][n][l] = R'_nl u_c
            for ell in range(L1):
                for n in range(nmax):
                    Rt[n * L1 + ell] = Rcur[ell * nmax + n]
                    U[n * L1 + ell] = dRcur[ell * nmax + n] * ucur[0]
                    U[nq + n * L1 + ell] = dRcur[ell * nmax + n] * ucur[1]
                    U[2 * nq + n * L1 + ell] = dRcur[ell * nmax + n] * ucur[2]
            # A^b_{l n'} = Σ_m Y_lm c^b_{n'lm},  B^b_{c l n'} = Σ_m ∂Y_lm/∂D_c c^b_{n'lm}
            for b in range(S):
                for ell in range(L1):
                    lm0 = ell * ell
                    # accumulate on the stack (no aliasing with cT), then store
                    for n2 in range(nmax):
                        acc0[n2] = 0.0
                        acc1[n2] = 0.0
                        acc2[n2] = 0.0
                        acc3[n2] = 0.0
                    for m in range(2 * ell + 1):
                        crow = cT + (b * LM + lm0 + m) * nmax
                        y0 = Ycur[lm0 + m]
                        y1 = dYcur[lm0 + m]
                        y2 = dYcur[LM + lm0 + m]
                        y3 = dYcur[2 * LM + lm0 + m]
                        for n2 in range(nmax):
                            coef = crow[n2]
                            acc0[n2] += y0 * coef
                            acc1[n2] += y1 * coef
                            acc2[n2] += y2 * coef
                            acc3[n2] += y3 * coef
                    Gb = AB + b * 4 * nq + ell              # [b][A, B_x, B_y, B_z][n'][l]
                    for n2 in range(nmax):
                        Gb[n2 * L1] = acc0[n2]
                        Gb[nq + n2 * L1] = acc1[n2]
                        Gb[2 * nq + n2 * L1] = acc2[n2]
                        Gb[3 * nq + n2 * L1] = acc3[n2]
            # ∂c^s_{nlm}/∂D_c = R'_nl u_c Y_lm + R_nl ∂Y_lm/∂D_c, hence
            # Σ_m ∂c^s_{nlm}/∂D_c c^b_{n'lm} = U_{c,nl} A^b_{n'l} + R_{nl} B^b_{c,n'l}
            # (U = R' u_c); symmetrised into block (s, b) or (b, s) of ∂X_i/∂D_ij
            for b in range(S):
                a = s if s < b else b
                off = block_ss[a, s if s > b else b]
                Gb = AB + b * 4 * nq
                for c in range(3):
                    gpc = gp + c * F
                    Uc = U + c * nq
                    for n in range(nmax):
                        for n2 in range(n if b == s else 0, nmax):
                            f = off + _nn_index(n, n2, nmax, b == s) * L1
                            if b == s:
                                coef = SQRT2 if n != n2 else 1.0
                                for ell in range(L1):
                                    gpc[f + ell] = coef * (
                                        Uc[n * L1 + ell] * Gb[n2 * L1 + ell]
                                        + Rt[n * L1 + ell] * Gb[(c + 1) * nq + n2 * L1 + ell]
                                        + Uc[n2 * L1 + ell] * Gb[n * L1 + ell]
                                        + Rt[n2 * L1 + ell] * Gb[(c + 1) * nq + n * L1 + ell])
                            elif s < b:
                                for ell in range(L1):
                                    gpc[f + ell] = SQRT2 * (
                                        Uc[n * L1 + ell] * Gb[n2 * L1 + ell]
                                        + Rt[n * L1 + ell] * Gb[(c + 1) * nq + n2 * L1 + ell])
                            else:
                                for ell in range(L1):
                                    gpc[f + ell] = SQRT2 * (
                                        Uc[n2 * L1 + ell] * Gb[n * L1 + ell]
                                        + Rt[n2 * L1 + ell] * Gb[(c + 1) * nq + n * L1 + ell])
            # scatter onto the neighbour atom (+), the centre (−) and the strain row
            for b in range(S):
                a = s if s < b else b
                off = block_ss[a, s if s > b else b]
                k = (nmax * (nmax + 1) // 2 if b == s else nmax * nmax) * L1
                if do_grad and sj != si:
                    for c in range(3):
                        gpc = gp + c * F + off
                        gj = gbuf + (sj * 3 + c) * F + off
                        gi = gbuf + (si * 3 + c) * F + off
                        for f in range(k):
                            gj[f] += gpc[f]
                            gi[f] -= gpc[f]
                if do_strain:
                    for c in range(3):
                        for cc in range(3):
                            val = D_pc[p0 + p, c]
                            gpc = gp + cc * F + off
                            gj = sbuf + (c * 3 + cc) * F + off
                            for f in range(k):
                                gj[f] += val * gpc[f]

    # ---- normalisation: X̂ = X/|X|, dX̂ = (dX − X̂ (X̂·dX))/|X|
    x = &X_nf[i, 0]
    inv = 1.0
    if normalize:
        norm = 0.0
        for f in range(F):
            norm = norm + x[f] * x[f]
        norm = sqrt(norm)
        if norm > 0.0:
            inv = 1.0 / norm
            for f in range(F):
                x[f] = x[f] * inv
    if do_grad:
        for k in range((g1 - g0) * 3):
            gj = gbuf + k * F
            gi = &dX_gcf[g0 + k // 3, k % 3, 0]
            if normalize:
                dot = _dot(x, gj, F)
                for f in range(F):
                    gi[f] = (gj[f] - x[f] * dot) * inv
            else:
                for f in range(F):
                    gi[f] = gj[f]
    if do_strain:
        for k in range(9):
            gj = sbuf + k * F
            gi = &dXs_nccf[i, k // 3, k % 3, 0]
            if normalize:
                dot = _dot(x, gj, F)
                for f in range(F):
                    gi[f] = (gj[f] - x[f] * dot) * inv
            else:
                for f in range(F):
                    gi[f] = gj[f]


def workspace_size(int nmax, int lmax, int n_species, Py_ssize_t n_features, Py_ssize_t max_pairs,
                   Py_ssize_t max_rows):
    """Doubles of per-thread workspace needed by :func:`soap_features`."""
    cdef Py_ssize_t L1 = lmax + 1, LM = L1 * L1, nq = nmax * L1
    return (n_species * LM * nmax + max_pairs * (2 * nq + 4 * LM + 3) + 2 * L1 * L1 + 2 * L1
            + n_species * L1 * 4 * nmax + 3 * n_features + 3 * nq + 9 * n_features
            + n_species * 3 * L1 * nmax * nmax
            + max_rows * 3 * n_features)


def soap_features(const int64_t[::1] first_n,       # IN (n_atoms + 1,) CSR offsets of pairs
                  const int64_t[::1] j_p,           # IN (n_pairs,) neighbour atom
                  const double[:, ::1] D_pc,        # IN (n_pairs, 3) Å, r_j + S·cell − r_i
                  const int64_t[::1] spec_n,        # IN (n_atoms,) species index
                  const int64_t[::1] slot_p,        # IN (n_pairs,) gradient row of atom j
                  const int64_t[::1] slot_n,        # IN (n_atoms,) gradient row of the centre
                  const int64_t[::1] grad_first_n,  # IN (n_atoms + 1,) gradient rows per centre
                  const double[:, :, ::1] table_kxq,  # IN (n_nodes, 2, n_max·(l_max+1))
                  double h, double cutoff, double width,
                  const double[::1] scaling,        # IN (3,) radial scaling r0 (Å; 0: off), c, m
                  const double[::1] ynorm_lm,       # IN ((l_max+1)²,) harmonic normalisation
                  const double[:, ::1] center_sn,   # IN (n_species, n_max) centre's c_{n00}
                  const int64_t[:, ::1] block_ss,   # IN (n_species, n_species) block offsets
                  int nmax, int lmax, int n_species, bint normalize,
                  double[:, ::1] X_nf,              # OUT (n_atoms, n_features)
                  double[:, :, ::1] dX_gcf,         # OUT (n_grad, 3, n_features)
                  double[:, :, :, ::1] dXs_nccf,    # OUT (n_atoms or 0, 3, 3, n_features)
                  bint gradients, bint strain, Py_ssize_t max_pairs, Py_ssize_t max_rows,
                  int n_threads):
    """Fill X_nf (and dX_gcf, dXs_nccf) for every centre; n_threads 0: OpenMP default."""
    cdef Py_ssize_t n_atoms = first_n.shape[0] - 1, i
    cdef Py_ssize_t wsize = workspace_size(nmax, lmax, n_species, X_nf.shape[1], max_pairs, max_rows)
    cdef double *work = NULL
    cdef unsigned char[::1] failed_n
    if n_atoms <= 0:
        return
    failed_n = bytearray(n_atoms)
    # num_threads=0 lets Cython fall back to omp_get_max_threads()
    with nogil, parallel(num_threads=n_threads):
        work = <double *>malloc(wsize * sizeof(double))
        for i in prange(n_atoms, schedule="dynamic"):
            if work == NULL:
                failed_n[i] = 1
            else:
                _centre(i, work, first_n, j_p, D_pc, spec_n, slot_p, slot_n, grad_first_n,
                        table_kxq, h, cutoff, width, scaling, ynorm_lm, center_sn, block_ss, nmax,
                        lmax, n_species, normalize, X_nf, dX_gcf, dXs_nccf, gradients, strain,
                        max_pairs)
        free(work)
    if any(failed_n):
        raise MemoryError("soap_features: cannot allocate the per-thread workspace")


# ------------------------------------------------------------------ energy gradient (adjoint)


cdef void _centre_energy_gradient(Py_ssize_t i, double *work, const int64_t[::1] first_n,
                                  const int64_t[::1] j_p, const double[:, ::1] D_pc,
                                  const int64_t[::1] spec_n, const double[:, :, ::1] table_kxq,
                                  double h, double rc, double width,
                                  const double[::1] scaling, const double[::1] ynorm_lm,
                                  const double[:, ::1] center_sn, const int64_t[:, ::1] block_ss,
                                  int nmax, int lmax, int n_species, const double[:, ::1] V_nf,
                                  double[:, ::1] H_pc, Py_ssize_t max_pairs) noexcept nogil:
    cdef int L1 = lmax + 1, LM = L1 * L1, nq = nmax * L1, S = n_species
    cdef Py_ssize_t p, p0 = first_n[i], np_ = first_n[i + 1] - first_n[i], k, off
    cdef int s, a, b, ell, m, n, n2, lm0, q
    cdef double vk, gm, ay, bx, by, bz, h0, h1, h2
    cdef double *cT = work                                  # [S][LM][nmax]
    cdef double *gT = cT + S * LM * nmax                    # [S][LM][nmax] ∂E/∂c
    cdef double *Rp = gT + S * LM * nmax                    # [max_pairs][nq]
    cdef double *dRp = Rp + max_pairs * nq
    cdef double *Yp = dRp + max_pairs * nq                  # [max_pairs][LM]
    cdef double *dYp = Yp + max_pairs * LM                  # [max_pairs][3][LM]
    cdef double *up = dYp + max_pairs * 3 * LM              # [max_pairs][3]
    cdef double *Q = up + max_pairs * 3
    cdef double *dQ = Q + L1 * L1
    cdef double *Cm = dQ + L1 * L1
    cdef double *Sm = Cm + L1
    cdef double *ca
    cdef double *cb
    cdef double *ga
    cdef double *gb
    cdef double *Y
    cdef double *dY
    _density(i, first_n, j_p, D_pc, spec_n, table_kxq, h, rc, width, scaling, ynorm_lm,
             center_sn, nmax, lmax, n_species, True, cT, Rp, dRp, Yp, dYp, up, Q, dQ, Cm, Sm)
    # ∂E/∂c^a_{nlm} from E = Σ_f V_f κ_f Σ_m c^a_{nlm} c^b_{n'lm} (κ = √2 off the diagonal)
    for k in range(S * LM * nmax):
        gT[k] = 0.0
    for a in range(S):
        for b in range(a, S):
            off = block_ss[a, b]
            for ell in range(L1):
                lm0 = ell * ell
                for n in range(nmax):
                    for n2 in range(n if a == b else 0, nmax):
                        vk = V_nf[i, off + _nn_index(n, n2, nmax, a == b) * L1 + ell]
                        if a != b or n != n2:
                            vk = vk * SQRT2
                        for m in range(2 * ell + 1):
                            ca = cT + (a * LM + lm0 + m) * nmax
                            cb = cT + (b * LM + lm0 + m) * nmax
                            ga = gT + (a * LM + lm0 + m) * nmax
                            gb = gT + (b * LM + lm0 + m) * nmax
                            ga[n] += vk * cb[n2]
                            gb[n2] += vk * ca[n]
    # per pair: ∂E/∂D_c = Σ_{nlm} ∂E/∂c^s_{nlm} (R'_nl u_c Y_lm + R_nl ∂Y_lm/∂D_c)
    for p in range(np_):
        s = <int>spec_n[j_p[p0 + p]]
        Y = Yp + p * LM
        dY = dYp + p * 3 * LM
        h0 = 0.0
        h1 = 0.0
        h2 = 0.0
        for ell in range(L1):
            lm0 = ell * ell
            for n in range(nmax):
                ay = 0.0
                bx = 0.0
                by = 0.0
                bz = 0.0
                for m in range(2 * ell + 1):
                    gm = gT[(s * LM + lm0 + m) * nmax + n]
                    ay = ay + Y[lm0 + m] * gm
                    bx = bx + dY[lm0 + m] * gm
                    by = by + dY[LM + lm0 + m] * gm
                    bz = bz + dY[2 * LM + lm0 + m] * gm
                q = ell * nmax + n
                vk = dRp[p * nq + q] * ay
                h0 = h0 + vk * up[3 * p] + Rp[p * nq + q] * bx
                h1 = h1 + vk * up[3 * p + 1] + Rp[p * nq + q] * by
                h2 = h2 + vk * up[3 * p + 2] + Rp[p * nq + q] * bz
        H_pc[p0 + p, 0] = h0
        H_pc[p0 + p, 1] = h1
        H_pc[p0 + p, 2] = h2


def soap_energy_gradient(const int64_t[::1] first_n,      # IN (n_atoms + 1,) CSR offsets of pairs
                         const int64_t[::1] j_p,          # IN (n_pairs,) neighbour atom
                         const double[:, ::1] D_pc,       # IN (n_pairs, 3) Å
                         const int64_t[::1] spec_n,       # IN (n_atoms,) species index
                         const double[:, :, ::1] table_kxq,
                         double h, double cutoff, double width, const double[::1] scaling,
                         const double[::1] ynorm_lm, const double[:, ::1] center_sn,
                         const int64_t[:, ::1] block_ss, int nmax, int lmax, int n_species,
                         const double[:, ::1] V_nf,       # IN (n_atoms, n_features) ∂E/∂X (raw)
                         double[:, ::1] H_pc,             # OUT (n_pairs, 3) eV/Å, ∂E/∂D_p
                         Py_ssize_t max_pairs, int n_threads):
    """∂E/∂D of every pair for E = Σ_i V_i · X_i (unnormalised power spectra X): the forces of
    any model through the chain rule, without the (pairs × 3 × features) gradient array."""
    cdef Py_ssize_t n_atoms = first_n.shape[0] - 1, i
    cdef Py_ssize_t L1 = lmax + 1, LM = L1 * L1, nq = nmax * L1
    cdef Py_ssize_t wsize = (2 * n_species * LM * nmax + max_pairs * (2 * nq + 4 * LM + 3)
                             + 2 * L1 * L1 + 2 * L1)
    cdef double *work = NULL
    cdef unsigned char[::1] failed_n
    if n_atoms <= 0:
        return
    failed_n = bytearray(n_atoms)
    with nogil, parallel(num_threads=n_threads):
        work = <double *>malloc(wsize * sizeof(double))
        for i in prange(n_atoms, schedule="dynamic"):
            if work == NULL:
                failed_n[i] = 1
            else:
                _centre_energy_gradient(i, work, first_n, j_p, D_pc, spec_n, table_kxq, h,
                                        cutoff, width, scaling, ynorm_lm, center_sn, block_ss, nmax,
                                        lmax, n_species, V_nf, H_pc, max_pairs)
        free(work)
    if any(failed_n):
        raise MemoryError("soap_energy_gradient: cannot allocate the per-thread workspace")
