"""Neighbour lists: ``neighbor_list(quantities, positions, cell, pbc, cutoff)``, ASE-style.

Quantity letters (as ase.neighborlist): ``i`` centre index, ``j`` neighbour index, ``d``
distance (Å), ``D`` vector r_j + S·cell − r_i (Å), ``S`` integer cell shift. Pairs come grouped
by increasing ``i``
(CSR-like), so per-centre slices are ``np.searchsorted(i, np.arange(n + 1))``. The list is full:
both (i, j, S) and (j, i, −S) appear, and D(j, i, −S) = −D(i, j, S) exactly. A pair is listed when
d < cutoff (strictly, as ASE). Within one centre the order is deterministic (the kernel's cell
list order), not sorted by j.

Index letters: ``n`` atoms, ``p`` pairs, ``c`` Cartesian (or binning-frame direction).

The work is done by the Cython cell-list kernel ``mlptools._ext.neighbors`` (see
``cython_ext/neighbors.pyx`` for the algorithm); this module validates the input and prepares
the binning geometry. ``_reference_neighbor_list`` is a pure-NumPy brute force over all periodic
images, the oracle for the tests.
"""

import math

import numpy as np

from mlptools.errors import ParameterError

_VALID = set("ijdDS")
# bins are made at least this much wider than the cutoff, and bins are skipped only when farther
# than cutoff·(1 + _MARGIN): both absorb rounding in the fractional coordinates
_MARGIN = 1e-8
# more stencil cells than this per centre means an absurd cutoff / plane-spacing ratio
_MAX_STENCIL = 10**7


def _validate(quantities, positions, cell, pbc, cutoff):
    if not isinstance(quantities, str):
        raise ParameterError(
            f"quantities must be a string of letters of 'ijdDS', got {quantities!r}")
    bad = set(quantities) - _VALID
    if bad:
        raise ParameterError(
            f"unknown neighbour-list quantity {sorted(bad)}; use letters of 'ijdDS'")
    try:
        positions = np.ascontiguousarray(positions, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"positions must be a (n_atoms, 3) float array: {exc}") from None
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ParameterError(f"positions must have shape (n_atoms, 3), got {positions.shape}")
    if not np.isfinite(positions).all():
        raise ParameterError("positions contain NaN or inf")
    try:
        cell = np.ascontiguousarray(cell, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"cell must be a (3, 3) float array: {exc}") from None
    if cell.shape != (3, 3):
        raise ParameterError(f"cell must have shape (3, 3), got {cell.shape}")
    pbc = np.asarray(pbc, dtype=bool)
    if pbc.shape == ():
        pbc = np.repeat(pbc, 3)
    if pbc.shape != (3,):
        raise ParameterError(f"pbc must be a bool or 3 bools, got shape {pbc.shape}")
    rows = [row for row, p in zip(cell.tolist(), pbc.tolist(), strict=True) if p]
    if not all(math.isfinite(x) for row in rows for x in row):
        raise ParameterError("cell contains NaN or inf along a periodic direction")
    if rows and _gram_sine2(rows) <= 1e-20:
        raise ParameterError("cell is singular along a periodic direction")
    try:
        cutoff = float(cutoff)
    except (TypeError, ValueError):
        raise ParameterError(f"cutoff must be a number (Å), got {cutoff!r}") from None
    if not np.isfinite(cutoff) or cutoff <= 0:
        raise ParameterError(f"cutoff must be > 0 Å, got {cutoff}")
    return positions, cell, pbc, cutoff


def _gram_sine2(rows):
    """det(Gram) / Π|row|² of 1–3 vectors (0 when singular, 1 when orthogonal)."""
    def dot(u, v):
        return u[0] * v[0] + u[1] * v[1] + u[2] * v[2]

    def cross(u, v):
        return [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]]

    norm2 = 1.0
    for row in rows:
        norm2 *= dot(row, row)
    if not norm2 > 0:
        return 0.0
    if len(rows) == 1:
        return 1.0
    ab = cross(rows[0], rows[1])
    if len(rows) == 2:
        return dot(ab, ab) / norm2
    return dot(ab, rows[2]) ** 2 / norm2


def neighbor_list(quantities, positions, cell, pbc, cutoff, self_interaction=False):
    """Full neighbour list within ``cutoff`` (Å) for any cell and periodicity.

    Parameters
    ----------
    quantities : str
        Letters of ``'ijdDS'``; one array is returned per letter, in that order.
    positions : (n_atoms, 3) float64, Å
    cell : (3, 3) float64, Å, rows are lattice vectors (ignored along non-periodic directions)
    pbc : bool or (3,) bool
    cutoff : float, Å
    self_interaction : bool
        Include the pair (i, i, S=0).

    Returns
    -------
    tuple of arrays: i, j (n_pairs,) int64; d (n_pairs,) float64; D (n_pairs, 3) float64;
    S (n_pairs, 3) int64.
    """
    positions, cell, pbc, cutoff = _validate(quantities, positions, cell, pbc, cutoff)
    return _neighbor_list(quantities, positions, cell, pbc, cutoff, bool(self_interaction))


def neighbor_list_atoms(quantities, atoms, cutoff, self_interaction=False):
    """:func:`neighbor_list` on an ``ase.Atoms``."""
    return neighbor_list(
        quantities, atoms.positions, atoms.cell.array, atoms.pbc, cutoff, self_interaction
    )


def _empty(quantities):
    shapes = {"i": ((0,), np.int64), "j": ((0,), np.int64), "d": ((0,), np.float64),
              "D": ((0, 3), np.float64), "S": ((0, 3), np.int64)}
    return tuple(np.zeros(*shapes[q]) for q in quantities)


def _squared_threshold(cutoff):
    """The smallest double t with sqrt(t) >= cutoff: d² < t exactly when sqrt(d²) < cutoff."""
    t = cutoff * cutoff
    while math.sqrt(t) < cutoff:
        t = math.nextafter(t, math.inf)
    while t > 0 and math.sqrt(math.nextafter(t, 0.0)) >= cutoff:
        t = math.nextafter(t, 0.0)
    return t


def _binning(positions, cell, pbc, cutoff):
    """Binning frame and bins: (cell_cc, inv_cc, binning_kc, nbins_c, reach_c, orthogonal).

    Small 3-vectors are handled as Python floats: numpy call overhead would dominate here.
    """
    n = len(positions)
    k = int(pbc.sum())
    if k == 3:
        frame = cell
    else:
        # orthonormal complement of the periodic span: fractional coordinates along it are Å
        frame = np.empty((3, 3))
        if k == 0:
            frame[:] = np.eye(3)
        else:
            frame[pbc] = cell[pbc]
            frame[~pbc] = np.linalg.svd(cell[pbc])[2][k:]
    inv_cc = np.ascontiguousarray(np.linalg.inv(frame))
    inv = inv_cc.tolist()
    spacing = [1.0 / math.sqrt(inv[0][c] ** 2 + inv[1][c] ** 2 + inv[2][c] ** 2) for c in range(3)]
    periodic = pbc.tolist()
    lo = [0.0, 0.0, 0.0]
    extent = list(spacing)
    if k < 3:
        f = positions @ inv_cc
        fmin, fmax = f.min(axis=0).tolist(), f.max(axis=0).tolist()
        for c in range(3):
            if not periodic[c]:
                lo[c] = fmin[c]
                extent[c] = fmax[c] - fmin[c]
    width_min = cutoff * (1.0 + 10 * _MARGIN)
    nbins = [max(1, min(int(extent[c] / width_min), 2**20)) for c in range(3)]
    cap = max(64, 2 * n)                                      # memory stays O(n) for sparse cells
    while nbins[0] * nbins[1] * nbins[2] > cap:
        c = nbins.index(max(nbins))
        nbins[c] = (nbins[c] + 1) // 2
    width = [extent[c] / nbins[c] for c in range(3)]
    scale = [float(nbins[c]) if periodic[c] else (nbins[c] / extent[c] if extent[c] > 0 else 0.0)
             for c in range(3)]
    reach = [0, 0, 0]
    for c in range(3):
        if periodic[c] or nbins[c] > 1:
            reach[c] = int(math.floor(cutoff * (1.0 + _MARGIN) / width[c])) + 1
    if (2 * reach[0] + 1) * (2 * reach[1] + 1) * (2 * reach[2] + 1) > _MAX_STENCIL:
        raise ParameterError(f"cutoff {cutoff} Å spans too many periodic images of the cell "
                             f"(plane spacings {[round(spacing[c], 6) for c in range(3)]} Å)")
    fr = frame.tolist()
    dots = [sum(fr[a][x] * fr[b][x] for x in range(3)) for a, b in ((0, 1), (0, 2), (1, 2))]
    norms = [math.sqrt(sum(v * v for v in fr[a])) for a in range(3)]
    orthogonal = all(abs(dots[m]) <= 1e-12 * norms[a] * norms[b]
                     for m, (a, b) in enumerate(((0, 1), (0, 2), (1, 2))))
    binning_kc = np.array([lo, scale, width], dtype=np.float64)
    cell_cc = cell if k == 3 else np.where(pbc[:, None], cell, 0.0)
    return (np.ascontiguousarray(cell_cc), inv_cc, binning_kc, np.array(nbins, dtype=np.int64),
            np.array(reach, dtype=np.int64), orthogonal)


#: cells with fewer atoms run single-threaded unless n_threads is given
_SERIAL_BELOW = 256


def _neighbor_list(quantities, positions, cell, pbc, cutoff, self_interaction, n_threads=0):
    """The validated call into the kernel (``n_threads`` 0: OpenMP default)."""
    from mlptools._ext.neighbors import neighbor_pairs

    if len(positions) == 0:
        return _empty(quantities)
    if n_threads == 0 and len(positions) < _SERIAL_BELOW:
        # a parallel region costs a scheduler time slice per call on a busy machine, far more
        # than the ~0.1 ms a small cell takes on one core (descriptors call this per structure)
        n_threads = 1
    cell_p, inv_cc, binning_kc, nbins, reach, orthogonal = _binning(positions, cell, pbc, cutoff)
    _, i, j, d, D, S = neighbor_pairs(
        positions, cell_p, inv_cc, binning_kc, pbc.astype(np.int64), nbins, reach,
        _squared_threshold(cutoff), cutoff * (1.0 + _MARGIN), orthogonal, self_interaction,
        "i" in quantities, "j" in quantities, "d" in quantities, "D" in quantities,
        "S" in quantities, int(n_threads),
    )
    out = {"i": i, "j": j, "d": d, "D": D, "S": S}
    return tuple(out[q] for q in quantities)


def _reference_neighbor_list(quantities, positions, cell, pbc, cutoff, self_interaction=False):
    """Oracle: brute force over every atom pair and every periodic image, pure NumPy.

    A pair vector D = Δ + S·cell shorter than the cutoff has, along periodic direction c, a
    lattice coordinate (f_j − f_i + S_c) of magnitude < cutoff / h_c (h_c: plane spacing in the
    periodic sublattice, f: lattice coordinates of the positions' projections), so the images
    |S_c| <= ceil(cutoff / h_c) + ceil(max f_c − min f_c) cover every pair. Sorted by (i, j, S).
    O(n² · images): for small test systems only.
    """
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.array(np.broadcast_to(pbc, 3), dtype=bool)
    n = len(positions)
    if n == 0:
        return _empty(quantities)
    reach = np.zeros(3, dtype=np.int64)
    if pbc.any():
        rows = cell[pbc]
        spacing = 1.0 / np.sqrt(np.diag(np.linalg.inv(rows @ rows.T)))
        f = positions @ np.linalg.pinv(rows)
        spread = np.ceil(f.max(axis=0) - f.min(axis=0))
        reach[pbc] = (np.ceil(cutoff / spacing) + spread).astype(np.int64)
    ranges = [np.arange(-r, r + 1) for r in reach]
    S_s = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    shift_sc = S_s.astype(np.float64) @ np.where(pbc[:, None], cell, 0.0)
    i_l, j_l, S_l, D_l = [], [], [], []
    diff_nnc = positions[None, :, :] - positions[:, None, :]          # r_j − r_i
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    for s in range(len(S_s)):
        D_nnc = diff_nnc + shift_sc[s]
        d2 = np.einsum("ijc,ijc->ij", D_nnc, D_nnc)
        keep = np.sqrt(d2) < cutoff
        if not self_interaction and not S_s[s].any():
            keep &= ii != jj
        i_l.append(ii[keep])
        j_l.append(jj[keep])
        D_l.append(D_nnc[keep])
        S_l.append(np.broadcast_to(S_s[s], (int(keep.sum()), 3)))
    i = np.concatenate(i_l).astype(np.int64)
    j = np.concatenate(j_l).astype(np.int64)
    D = np.concatenate(D_l).reshape(-1, 3)
    S = np.concatenate(S_l).reshape(-1, 3).astype(np.int64)
    order = np.lexsort((S[:, 2], S[:, 1], S[:, 0], j, i))
    i, j, D, S = i[order], j[order], D[order], S[order]
    d = np.sqrt(np.einsum("pc,pc->p", D, D))
    out = {"i": i, "j": j, "d": d, "D": D, "S": S}
    return tuple(out[q] for q in quantities)
