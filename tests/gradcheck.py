"""Central finite differences: the one helper every gradient test uses.

h ≈ 1e-5 Å in float64 gives ~1e-9 relative truncation error for smooth functions; callers state
rtol/atol explicitly.
"""

import numpy as np


def numerical_position_gradient(func, positions, h=1e-5):
    """d func / d positions by central differences.

    func : callable (n_atoms, 3) -> array of any shape ``out``
    Returns (n_atoms, 3, *out.shape).
    """
    positions = np.array(positions, dtype=np.float64)
    ref = np.asarray(func(positions))
    grad = np.zeros(positions.shape + ref.shape)
    for a in range(positions.shape[0]):
        for c in range(3):
            p = positions.copy()
            p[a, c] += h
            fp = np.asarray(func(p))
            p[a, c] -= 2 * h
            fm = np.asarray(func(p))
            grad[a, c] = (fp - fm) / (2 * h)
    return grad


def numerical_strain_gradient(func, positions, cell, h=1e-5):
    """d func / d ε for a symmetric strain ε applied as r -> r (1 + ε), cell -> cell (1 + ε).

    func : callable (positions, cell) -> array ``out``; returns (3, 3, *out.shape).
    """
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    ref = np.asarray(func(positions, cell))
    grad = np.zeros((3, 3) + ref.shape)
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] += 0.5 * h
            eps[b, a] += 0.5 * h
            fp = np.asarray(func(positions @ (np.eye(3) + eps), cell @ (np.eye(3) + eps)))
            fm = np.asarray(func(positions @ (np.eye(3) - eps), cell @ (np.eye(3) - eps)))
            grad[a, b] = (fp - fm) / (2 * h)
    return grad


def directional_derivative(energy, positions, direction, h=1e-5):
    """-[E(r + h u) - E(r - h u)] / 2h: compare with F·u for a unit vector u."""
    positions = np.asarray(positions, dtype=np.float64)
    return -(energy(positions + h * direction) - energy(positions - h * direction)) / (2 * h)


def check_pair_baseline_derivatives(baseline, atoms, rng, *, h=1e-6, rtol=1e-6, atol=1e-7):
    """Assert a baseline's forces and dE/dε (``virial_de``) are its energy's derivatives."""
    import pytest

    res = baseline.compute(atoms)

    def energy(pos, cell=None):
        b = atoms.copy()
        if cell is not None:
            b.set_cell(cell)
        b.positions = pos
        return baseline.compute(b, forces=False, stress=False)["energies"].sum()

    u = rng.normal(size=atoms.positions.shape)
    fd = directional_derivative(energy, atoms.positions, u, h=h)
    assert np.sum(res["forces"] * u) == pytest.approx(fd, rel=rtol)
    dE = numerical_strain_gradient(energy, atoms.positions, atoms.cell.array, h=h)
    np.testing.assert_allclose(res["virial_de"], dE, rtol=rtol, atol=atol)
    return res
