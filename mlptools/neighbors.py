"""Neighbour lists: ``neighbor_list(quantities, positions, cell, pbc, cutoff)``, ASE-style.

Quantity letters (as ase.neighborlist): ``i`` centre index, ``j`` neighbour index, ``d`` distance (Å),
``D`` vector r_j + S·cell − r_i (Å), ``S`` integer cell shift. Pairs come grouped by increasing ``i``
(CSR-like), so per-centre slices are ``np.searchsorted(i, np.arange(n + 1))``. The list is full:
both (i, j, S) and (j, i, −S) appear.

Interim implementation: delegates to ASE while the Cython kernel is written; the API is final.
"""

import numpy as np

from mlptools.errors import ParameterError

_VALID = set("ijdDS")


def _validate(quantities, positions, cell, pbc, cutoff):
    bad = set(quantities) - _VALID
    if bad:
        raise ParameterError(f"unknown neighbour-list quantity {sorted(bad)}; use letters of 'ijdDS'")
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ParameterError(f"positions must have shape (n_atoms, 3), got {positions.shape}")
    if not np.all(np.isfinite(positions)):
        raise ParameterError("positions contain NaN or inf")
    cell = np.ascontiguousarray(cell, dtype=np.float64)
    if cell.shape != (3, 3):
        raise ParameterError(f"cell must have shape (3, 3), got {cell.shape}")
    pbc = np.array(np.broadcast_to(pbc, 3), dtype=bool)
    if pbc.any() and abs(np.linalg.det(cell[pbc] @ cell[pbc].T)) < 1e-12:
        raise ParameterError("cell is singular along a periodic direction")
    cutoff = float(cutoff)
    if not np.isfinite(cutoff) or cutoff <= 0:
        raise ParameterError(f"cutoff must be > 0 Å, got {cutoff}")
    return positions, cell, pbc, cutoff


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
    return _reference_neighbor_list(quantities, positions, cell, pbc, cutoff, self_interaction)


def neighbor_list_atoms(quantities, atoms, cutoff, self_interaction=False):
    """:func:`neighbor_list` on an ``ase.Atoms``."""
    return neighbor_list(
        quantities, atoms.positions, atoms.cell.array, atoms.pbc, cutoff, self_interaction
    )


def _reference_neighbor_list(quantities, positions, cell, pbc, cutoff, self_interaction=False):
    """Oracle: ASE's neighbour list, re-sorted into our (i, j, S) order."""
    from ase.neighborlist import primitive_neighbor_list

    i, j, d, D, S = primitive_neighbor_list(
        "ijdDS", pbc, cell, positions, cutoff, self_interaction=self_interaction,
        use_scaled_positions=False,
    )
    order = np.lexsort((S[:, 2], S[:, 1], S[:, 0], j, i))
    out = {"i": i[order].astype(np.int64), "j": j[order].astype(np.int64), "d": d[order],
           "D": D[order], "S": S[order].astype(np.int64)}
    return tuple(out[q] for q in quantities)
