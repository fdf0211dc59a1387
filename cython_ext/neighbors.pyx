# cython: language_level=3
"""Cell-list (binning) full neighbour list for any cell and any periodicity.

Index letters: ``n`` atoms (original order), ``k`` atoms sorted by bin, ``p`` pairs (grouped by
centre, CSR offsets ``first_n``), ``c`` Cartesian or frame direction, ``b`` bins.

Geometry (prepared by ``mlptools/neighbors.py``). The binning frame B has the periodic lattice
vectors as rows along periodic directions and an orthonormal complement along the others, so
the fractional coordinate along a non-periodic direction is a length in Å. ``inv_cc`` = B⁻¹
(f = r·B⁻¹). Along a periodic direction c, f is wrapped into [0, 1) (atom shift k_nc, wrapped
position r' = r − k·cell) and cut into ``nbins_c`` slabs; along a non-periodic one the bounding
box [lo, hi] is cut. Slab widths (Å, perpendicular) are ≥ the cutoff, so a neighbour is at most
``reach_c`` slabs away (reach > 1 only when the cutoff exceeds the plane spacing: many images).

A centre i visits the stencil of bins b_i + δ, δ_c ∈ [−reach_c, reach_c]; across a periodic
face the bin wraps and the image shift T_c counts the wraps. The pair vector is
    D = (r'_j − r'_i) + T·cell,    S = T + k_i − k_j,
written in that order so that D(j, i, −S) = −D(i, j, S) exactly: the list is exactly symmetric.
Per atom, slabs (and, for an orthogonal frame, edge/corner bins) farther than the cutoff from
the atom are skipped. A pair is kept when d² < ``t2``, the smallest double whose sqrt is ≥ the
cutoff, i.e. exactly when sqrt(d²) < cutoff.

Two passes over centres: count, exclusive prefix sum, fill. Each centre writes only its own rows
(its neighbours in stencil order, then by original index within a bin), so the prange is
race-free and the output is bitwise identical for any number of threads.
"""

import numpy as np

from cython.parallel cimport prange
from libc.math cimport floor, sqrt
from libc.stdint cimport int64_t


cdef enum:
    _CHUNK = 64     # candidates selected per step of the fill pass

cdef struct Grid:
    int64_t nbins[3]
    int64_t reach[3]
    int64_t pbc[3]
    double width[3]
    double cell[3][3]
    double prune          # cutoff (Å) with a safety margin, for skipping bins
    double prune2
    double t2             # acceptance threshold on d²
    bint orthogonal
    bint self_interaction
    const int64_t *start_b    # (n_bins + 1,) offsets of each bin's atoms in the sorted arrays
    const double *x_k         # (n,) sorted wrapped positions, one array per component
    const double *y_k
    const double *z_k
    const int64_t *atom_k     # (n,) original index of sorted atom k
    const int64_t *shift_kc   # (n, 3) wrap shift of sorted atom k
    const double *r_nc        # (n, 3) wrapped positions, original order
    const int64_t *bin_nc     # (n, 3) bin coordinates, original order
    const double *u_nc        # (n, 3) position inside the bin, in bin units [0, 1]
    const int64_t *shift_nc   # (n, 3) wrap shift, original order


cdef inline int64_t _floordiv(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a // b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline double _gap(int64_t d, double u, double w) noexcept nogil:
    """Perpendicular distance (Å) from a point at bin coordinate u to the slab d bins away."""
    if d > 0:
        return (d - u) * w
    if d < 0:
        return (u - d - 1) * w
    return 0.0


cdef inline void _ranges(const Grid *g, Py_ssize_t i, int64_t *lo, int64_t *hi) noexcept nogil:
    """Per-direction stencil range for centre i, without slabs beyond the cutoff."""
    cdef int c
    cdef int64_t b
    cdef double u, w
    for c in range(3):
        b = g.bin_nc[3 * i + c]
        u = g.u_nc[3 * i + c]
        w = g.width[c]
        lo[c] = -g.reach[c]
        hi[c] = g.reach[c]
        if not g.pbc[c]:
            if b + lo[c] < 0:
                lo[c] = -b
            if b + hi[c] > g.nbins[c] - 1:
                hi[c] = g.nbins[c] - 1 - b
        while hi[c] > 0 and _gap(hi[c], u, w) >= g.prune:
            hi[c] -= 1
        while lo[c] < 0 and _gap(lo[c], u, w) >= g.prune:
            lo[c] += 1


cdef inline void _wrap(int64_t *b, int64_t *t, int64_t nbins, bint periodic) noexcept nogil:
    """Fold bin coordinate b into [0, nbins) along a periodic direction; t counts the folds."""
    t[0] = 0
    if not periodic:
        return
    if nbins == 1:          # a whole-cell bin: every image is its own stencil step
        t[0] = b[0]
        b[0] = 0
        return
    while b[0] < 0:         # nbins > 1 means reach == 1: at most one fold
        b[0] += nbins
        t[0] -= 1
    while b[0] >= nbins:
        b[0] -= nbins
        t[0] += 1


cdef int64_t _centre(const Grid *g, Py_ssize_t i, bint fill, int64_t p, int64_t p_end,
                     int64_t *i_p, int64_t *j_p, double *d_p, double *D_pc, int64_t *S_pc
                     ) noexcept nogil:
    """Count (fill=False) the neighbours of centre i, or write them to rows p..p_end.

    Returns the count, or in fill mode the number of rows written (−1 if more than p_end − p
    pairs were found, which would mean the two passes disagree).
    """
    cdef int64_t lo[3]
    cdef int64_t hi[3]
    cdef int64_t dx, dy, dz, bx, by, bz, tx, ty, tz, b, k, k0, k1, j, count = 0, p0 = p
    # locals, not struct fields: the output stores could alias them and force reloads
    cdef int64_t nb0 = g.nbins[0], nb1 = g.nbins[1], nb2 = g.nbins[2]
    cdef bint pbc0 = g.pbc[0] != 0, pbc1 = g.pbc[1] != 0, pbc2 = g.pbc[2] != 0
    cdef bint orthogonal = g.orthogonal, skip_self
    cdef double w0 = g.width[0], w1 = g.width[1], w2 = g.width[2], prune2 = g.prune2
    cdef int64_t bi0 = g.bin_nc[3 * i], bi1 = g.bin_nc[3 * i + 1], bi2 = g.bin_nc[3 * i + 2]
    cdef int64_t ki0 = g.shift_nc[3 * i], ki1 = g.shift_nc[3 * i + 1]
    cdef int64_t ki2 = g.shift_nc[3 * i + 2]
    cdef double xi = g.r_nc[3 * i], yi = g.r_nc[3 * i + 1], zi = g.r_nc[3 * i + 2]
    cdef double ui0 = g.u_nc[3 * i], ui1 = g.u_nc[3 * i + 1], ui2 = g.u_nc[3 * i + 2]
    cdef double a00 = g.cell[0][0], a01 = g.cell[0][1], a02 = g.cell[0][2]
    cdef double a10 = g.cell[1][0], a11 = g.cell[1][1], a12 = g.cell[1][2]
    cdef double a20 = g.cell[2][0], a21 = g.cell[2][1], a22 = g.cell[2][2]
    cdef double gx, gy, gz, sx, sy, sz, ex, ey, ez, d2, t2 = g.t2
    cdef const double *xk = g.x_k
    cdef const double *yk = g.y_k
    cdef const double *zk = g.z_k
    cdef const int64_t *start_b = g.start_b
    cdef const int64_t *atom_k = g.atom_k
    cdef const int64_t *shift_kc = g.shift_kc
    cdef bint self_interaction = g.self_interaction
    cdef int64_t kbuf[_CHUNK]
    cdef double ebuf[3 * _CHUNK]
    cdef double dbuf[_CHUNK]
    cdef int64_t kk, kend, m, q
    _ranges(g, i, lo, hi)
    for dz in range(lo[2], hi[2] + 1):
        bz = bi2 + dz
        _wrap(&bz, &tz, nb2, pbc2)
        gz = _gap(dz, ui2, w2)
        gz = gz * gz
        for dy in range(lo[1], hi[1] + 1):
            by = bi1 + dy
            _wrap(&by, &ty, nb1, pbc1)
            gy = _gap(dy, ui1, w1)
            gy = gy * gy + gz
            if orthogonal and gy >= prune2:
                continue
            for dx in range(lo[0], hi[0] + 1):
                gx = _gap(dx, ui0, w0)
                if orthogonal and gx * gx + gy >= prune2:
                    continue
                bx = bi0 + dx
                _wrap(&bx, &tx, nb0, pbc0)
                b = bx + nb0 * (by + nb1 * bz)
                k0 = start_b[b]
                k1 = start_b[b + 1]
                if k0 == k1:
                    continue
                # T·cell, evaluated as a function of T alone so that −T gives exactly −(T·cell)
                sx = <double>tx * a00 + <double>ty * a10 + <double>tz * a20
                sy = <double>tx * a01 + <double>ty * a11 + <double>tz * a21
                sz = <double>tx * a02 + <double>ty * a12 + <double>tz * a22
                if not fill:
                    for k in range(k0, k1):
                        ex = (xk[k] - xi) + sx
                        ey = (yk[k] - yi) + sy
                        ez = (zk[k] - zi) + sz
                        count += (ex * ex + ey * ey + ez * ez) < t2
                    continue
                skip_self = (not self_interaction) and dx == 0 and dy == 0 and dz == 0
                # branch-free selection into a small stack buffer, then write the kept pairs:
                # the d² < t2 test is unpredictable for disordered systems
                k = k0
                while k < k1:
                    kend = k + _CHUNK if k + _CHUNK < k1 else k1
                    m = 0
                    for kk in range(k, kend):
                        ex = (xk[kk] - xi) + sx
                        ey = (yk[kk] - yi) + sy
                        ez = (zk[kk] - zi) + sz
                        d2 = ex * ex + ey * ey + ez * ez
                        kbuf[m] = kk
                        ebuf[3 * m] = ex
                        ebuf[3 * m + 1] = ey
                        ebuf[3 * m + 2] = ez
                        dbuf[m] = d2
                        m += d2 < t2
                    for q in range(m):
                        kk = kbuf[q]
                        j = atom_k[kk]
                        if skip_self and j == i:
                            continue
                        if p >= p_end:
                            return -1
                        if i_p != NULL:
                            i_p[p] = i
                        if j_p != NULL:
                            j_p[p] = j
                        if d_p != NULL:
                            d_p[p] = sqrt(dbuf[q])
                        if D_pc != NULL:
                            D_pc[3 * p] = ebuf[3 * q]
                            D_pc[3 * p + 1] = ebuf[3 * q + 1]
                            D_pc[3 * p + 2] = ebuf[3 * q + 2]
                        if S_pc != NULL:
                            S_pc[3 * p] = tx + ki0 - shift_kc[3 * kk]
                            S_pc[3 * p + 1] = ty + ki1 - shift_kc[3 * kk + 1]
                            S_pc[3 * p + 2] = tz + ki2 - shift_kc[3 * kk + 2]
                        p += 1
                    k = kend
    if fill:
        return p - p0
    if not self_interaction:
        count -= 1  # the centre itself (δ = 0, T = 0, d² = 0 < t2) was counted exactly once
    return count


cdef void _bin_atoms(const double[:, ::1] r_nc, const double[:, ::1] cell_cc,
                     const double[:, ::1] inv_cc, const double[:, ::1] binning_kc,
                     const int64_t[::1] pbc_c, const int64_t[::1] nbins_c,
                     double[:, ::1] rw_nc, int64_t[:, ::1] bin_nc, double[:, ::1] u_nc,
                     int64_t[:, ::1] shift_nc, int64_t[::1] bin_n) noexcept nogil:
    """Wrap positions along periodic directions and find each atom's bin."""
    cdef Py_ssize_t n, c, a, n_atoms = r_nc.shape[0]
    cdef double f, x, kk
    cdef double s[3]
    cdef int64_t b
    for n in range(n_atoms):
        s[0] = 0.0
        s[1] = 0.0
        s[2] = 0.0
        for c in range(3):
            f = r_nc[n, 0] * inv_cc[0, c] + r_nc[n, 1] * inv_cc[1, c] + r_nc[n, 2] * inv_cc[2, c]
            kk = 0.0
            if pbc_c[c]:
                kk = floor(f)
                f = f - kk
            x = (f - binning_kc[0, c]) * binning_kc[1, c]
            b = <int64_t>floor(x)
            if b < 0:
                b = 0
            if b > nbins_c[c] - 1:
                b = nbins_c[c] - 1
            x = x - b
            if x < 0.0:
                x = 0.0
            if x > 1.0:
                x = 1.0
            bin_nc[n, c] = b
            u_nc[n, c] = x
            shift_nc[n, c] = <int64_t>kk
            for a in range(3):
                s[a] = s[a] + kk * cell_cc[c, a]
        for a in range(3):
            rw_nc[n, a] = r_nc[n, a] - s[a]
        bin_n[n] = bin_nc[n, 0] + nbins_c[0] * (bin_nc[n, 1] + nbins_c[1] * bin_nc[n, 2])


def neighbor_pairs(
    const double[:, ::1] r_nc,         # IN (n_atoms, 3) Å positions
    const double[:, ::1] cell_cc,      # IN (3, 3) Å lattice vectors as rows (0 along non-periodic)
    const double[:, ::1] inv_cc,       # IN (3, 3) inverse of the binning frame: f = r·inv
    const double[:, ::1] binning_kc,   # IN (3, 3) rows: origin of f, bins per unit f, width (Å)
    const int64_t[::1] pbc_c,          # IN (3,) 0/1
    const int64_t[::1] nbins_c,        # IN (3,) bins per direction, >= 1
    const int64_t[::1] reach_c,        # IN (3,) stencil half-width in bins
    double t2,                         # keep pairs with d² < t2 (Å²)
    double prune,                      # skip bins farther than this (Å), a little > cutoff
    bint orthogonal,                   # the frame rows are mutually orthogonal
    bint self_interaction,
    bint want_i, bint want_j, bint want_d, bint want_D, bint want_S,
    int n_threads,                     # 0: OpenMP default
):
    """Full neighbour list; returns (first_n, i_p, j_p, d_p, D_pc, S_pc), unrequested ones None."""
    cdef Py_ssize_t n_atoms = r_nc.shape[0], n, c, a
    cdef int64_t n_bins = nbins_c[0] * nbins_c[1] * nbins_c[2], b, k, total, bad = 0
    cdef Grid g
    rw = np.empty((n_atoms, 3), dtype=np.float64)
    binc = np.empty((n_atoms, 3), dtype=np.int64)
    u = np.empty((n_atoms, 3), dtype=np.float64)
    shift = np.empty((n_atoms, 3), dtype=np.int64)
    binn = np.empty(n_atoms, dtype=np.int64)
    start = np.zeros(n_bins + 1, dtype=np.int64)
    xs = np.empty((3, n_atoms), dtype=np.float64)
    atom = np.empty(n_atoms, dtype=np.int64)
    shift_k = np.empty((n_atoms, 3), dtype=np.int64)
    counts = np.empty(n_atoms + 1, dtype=np.int64)
    cdef double[:, ::1] rw_nc = rw
    cdef int64_t[:, ::1] bin_nc = binc
    cdef double[:, ::1] u_nc = u
    cdef int64_t[:, ::1] shift_nc = shift
    cdef int64_t[::1] bin_n = binn
    cdef int64_t[::1] start_b = start
    cdef double[:, ::1] x_ck = xs
    cdef int64_t[::1] atom_k = atom
    cdef int64_t[:, ::1] shift_kc = shift_k
    cdef int64_t[::1] first_n = counts
    cdef int64_t[::1] i_v, j_v, S_v
    cdef double[::1] d_v, D_v
    cdef int64_t *i_ptr = NULL
    cdef int64_t *j_ptr = NULL
    cdef int64_t *S_ptr = NULL
    cdef double *d_ptr = NULL
    cdef double *D_ptr = NULL
    cdef int nt = n_threads

    with nogil:
        _bin_atoms(r_nc, cell_cc, inv_cc, binning_kc, pbc_c, nbins_c,
                   rw_nc, bin_nc, u_nc, shift_nc, bin_n)
        # counting sort by bin, stable in the original index
        for n in range(n_atoms):
            start_b[bin_n[n] + 1] += 1
        for b in range(n_bins):
            start_b[b + 1] += start_b[b]
        for n in range(n_atoms):
            b = bin_n[n]
            k = start_b[b]
            start_b[b] += 1
            atom_k[k] = n
            for c in range(3):
                x_ck[c, k] = rw_nc[n, c]
                shift_kc[k, c] = shift_nc[n, c]
        for b in range(n_bins - 1, 0, -1):
            start_b[b] = start_b[b - 1]
        if n_bins > 0:
            start_b[0] = 0

    for c in range(3):
        g.nbins[c] = nbins_c[c]
        g.reach[c] = reach_c[c]
        g.pbc[c] = pbc_c[c]
        g.width[c] = binning_kc[2, c]
        for a in range(3):
            g.cell[c][a] = cell_cc[c, a] if pbc_c[c] else 0.0
    g.prune = prune
    g.prune2 = prune * prune
    g.t2 = t2
    g.orthogonal = orthogonal
    g.self_interaction = self_interaction
    g.start_b = &start_b[0]
    g.x_k = &x_ck[0, 0] if n_atoms else NULL
    g.y_k = &x_ck[1, 0] if n_atoms else NULL
    g.z_k = &x_ck[2, 0] if n_atoms else NULL
    g.atom_k = &atom_k[0] if n_atoms else NULL
    g.shift_kc = &shift_kc[0, 0] if n_atoms else NULL
    g.r_nc = &rw_nc[0, 0] if n_atoms else NULL
    g.bin_nc = &bin_nc[0, 0] if n_atoms else NULL
    g.u_nc = &u_nc[0, 0] if n_atoms else NULL
    g.shift_nc = &shift_nc[0, 0] if n_atoms else NULL

    # pass 1: count per centre
    with nogil:
        if nt > 0:
            for n in prange(n_atoms, schedule="guided", num_threads=nt):
                first_n[n + 1] = _centre(&g, n, False, 0, 0, NULL, NULL, NULL, NULL, NULL)
        else:
            for n in prange(n_atoms, schedule="guided"):
                first_n[n + 1] = _centre(&g, n, False, 0, 0, NULL, NULL, NULL, NULL, NULL)
        first_n[0] = 0
        for n in range(n_atoms):
            first_n[n + 1] += first_n[n]
    total = first_n[n_atoms]

    i_p = np.empty(total, dtype=np.int64) if want_i else None
    j_p = np.empty(total, dtype=np.int64) if want_j else None
    d_p = np.empty(total, dtype=np.float64) if want_d else None
    D_pc = np.empty((total, 3), dtype=np.float64) if want_D else None
    S_pc = np.empty((total, 3), dtype=np.int64) if want_S else None
    if total > 0:
        if want_i:
            i_v = i_p
            i_ptr = &i_v[0]
        if want_j:
            j_v = j_p
            j_ptr = &j_v[0]
        if want_d:
            d_v = d_p
            d_ptr = &d_v[0]
        if want_D:
            D_v = D_pc.reshape(-1)
            D_ptr = &D_v[0]
        if want_S:
            S_v = S_pc.reshape(-1)
            S_ptr = &S_v[0]

        # pass 2: fill; each centre owns rows first_n[n] .. first_n[n + 1]
        with nogil:
            if nt > 0:
                for n in prange(n_atoms, schedule="guided", num_threads=nt):
                    bad += _centre(&g, n, True, first_n[n], first_n[n + 1],
                                   i_ptr, j_ptr, d_ptr, D_ptr, S_ptr) != first_n[n + 1] - first_n[n]
            else:
                for n in prange(n_atoms, schedule="guided"):
                    bad += _centre(&g, n, True, first_n[n], first_n[n + 1],
                                   i_ptr, j_ptr, d_ptr, D_ptr, S_ptr) != first_n[n + 1] - first_n[n]
        if bad:
            raise RuntimeError("neighbour list: count and fill passes disagree")
    return counts, i_p, j_p, d_p, D_pc, S_pc
