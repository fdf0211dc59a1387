"""hypothesis strategies for cells, positions and periodicity."""

import numpy as np
from hypothesis import strategies as st


@st.composite
def cells(draw, min_length=1.0, max_length=12.0, min_volume_fraction=0.3):
    """Triclinic cells from lengths and angles (60–120°), with a volume floor."""
    a, b, c = (draw(st.floats(min_length, max_length)) for _ in range(3))
    alpha, beta, gamma = (draw(st.floats(60.0, 120.0)) for _ in range(3))
    from ase.geometry import cellpar_to_cell

    cell = cellpar_to_cell([a, b, c, alpha, beta, gamma])
    volume = abs(np.linalg.det(cell))
    from hypothesis import assume

    assume(volume > min_volume_fraction * a * b * c)
    return cell


@st.composite
def pbcs(draw):
    return np.array([draw(st.booleans()) for _ in range(3)])


@st.composite
def atoms_in_cell(draw, max_atoms=12, min_distance=0.0, species=(14,)):
    """(positions, numbers, cell, pbc); fractional positions filtered by a minimum distance."""
    cell = draw(cells())
    pbc = draw(pbcs())
    n = draw(st.integers(1, max_atoms))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    frac = rng.random((n, 3))
    positions = frac @ cell
    if min_distance > 0:
        keep = [0]
        for k in range(1, n):
            if np.all(np.linalg.norm(positions[keep] - positions[k], axis=1) >= min_distance):
                keep.append(k)
        positions = positions[keep]
    numbers = rng.choice(np.asarray(species), size=len(positions))
    return positions, numbers, cell, pbc


@st.composite
def neighbor_systems(draw, max_atoms=10):
    """(positions, cell, pbc, cutoff) for neighbour-list oracles.

    Kinds: ``cell`` (cells() with mixed pbc), ``skewed`` (strongly sheared, cutoff up to twice
    the smallest plane spacing), ``tiny`` (cell edges 0.5–2 Å, cutoff up to 5 Å: many images),
    ``cluster`` (pbc all False, zero cell) and ``mixed_zero`` (zero cell rows along the
    non-periodic directions). Positions may lie outside the cell (fractional −1 … 2).
    """
    kind = draw(st.sampled_from(["cell", "skewed", "tiny", "cluster", "mixed_zero"]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, max_atoms))
    if kind == "cell":
        cell = draw(cells(min_length=2.0, max_length=10.0))
        pbc = draw(pbcs())
    elif kind == "skewed":
        lengths = [draw(st.floats(2.0, 8.0)) for _ in range(3)]
        shear = [draw(st.floats(-2.0, 2.0)) for _ in range(3)]
        cell = np.array([[lengths[0], 0.0, 0.0],
                         [shear[0] * lengths[0], lengths[1], 0.0],
                         [shear[1] * lengths[0], shear[2] * lengths[1], lengths[2]]])
        cell = cell @ _rotation(rng)
        pbc = draw(pbcs())
    elif kind == "tiny":
        cell = draw(cells(min_length=0.5, max_length=2.0))
        pbc = np.ones(3, dtype=bool)
        pbc[draw(st.integers(0, 3)):] = False  # 3, 2, 1 or 0 periodic directions
        n = min(n, 4)
    else:
        cell = draw(cells(min_length=2.0, max_length=10.0))
        pbc = draw(pbcs()) if kind == "mixed_zero" else np.zeros(3, dtype=bool)
        cell = np.where(pbc[:, None], cell, 0.0)
    frac = rng.uniform(-1.0, 2.0, size=(n, 3))
    if kind in ("cluster", "mixed_zero"):
        box = np.where(pbc[:, None], cell, 6.0 * np.eye(3))
        positions = frac @ box
    else:
        positions = frac @ cell
    spacing = 1.0 / np.linalg.norm(np.linalg.inv(np.where(pbc[:, None], cell, np.eye(3))), axis=0)
    if kind == "tiny":
        cutoff = draw(st.floats(0.3, 5.0))
    elif kind == "skewed":
        cutoff = draw(st.floats(0.5, 2.0)) * float(spacing.min())
    else:
        cutoff = draw(st.floats(0.5, 8.0))
    return positions, cell, pbc, cutoff


def _rotation(rng):
    """A random proper rotation matrix."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q
