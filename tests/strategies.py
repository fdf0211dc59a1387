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
