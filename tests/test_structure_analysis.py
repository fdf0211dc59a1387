"""Structural analysis against independent truths: crystal shells, ideal gas, exact ring counts
of known graphs, and matscipy's shortest-path ring statistics on an amorphous network."""

import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, graphene

from mlptools.analysis.structure import (
    analyze_structures,
    bond_angle_distribution,
    coordination_numbers,
    density_g_cm3,
    radial_distribution,
    ring_statistics,
)
from mlptools.errors import InputError

A_SI = 5.431
TETRAHEDRAL = math.degrees(math.acos(-1.0 / 3.0))


def diamond(repeat=2):
    return bulk("Si", "diamond", a=A_SI, cubic=True).repeat(repeat)


def test_diamond_rdf_shells():
    """Diamond shells at a√3/4 (4 atoms), a/√2 (12), a√11/4 (12): peak positions and the
    integral of ρ g(r) 4πr² over each shell give the coordination of that shell."""
    atoms = diamond(3)
    rdf = radial_distribution([atoms], r_max=5.0, bin_width=0.01, cutoff=2.85)
    assert rdf.first_peak_A == pytest.approx(A_SI * math.sqrt(3) / 4, abs=0.01)
    rho = (len(atoms) - 1) / atoms.get_volume()
    dr = rdf.r[1] - rdf.r[0]
    shell_volume = 4.0 / 3.0 * np.pi * ((rdf.r + dr / 2) ** 3 - (rdf.r - dr / 2) ** 3)
    shells = [(A_SI * math.sqrt(3) / 4, 4), (A_SI / math.sqrt(2), 12),
              (A_SI * math.sqrt(11) / 4, 12)]
    for r0, count in shells:
        window = np.abs(rdf.r - r0) < 0.1
        assert rho * np.sum(rdf.g[window] * shell_volume[window]) == pytest.approx(count)
        assert rdf.r[window][np.argmax(rdf.g[window])] == pytest.approx(r0, abs=0.006)
    # nothing between the shells
    gap = (rdf.r > 2.5) & (rdf.r < 3.7)
    assert np.all(rdf.g[gap] == 0)


def test_ideal_gas_rdf_is_one(rng):
    """Uncorrelated uniform points: g(r) = 1 on average at every r (the N(N−1) normalisation)."""
    frames = [Atoms("Ar200", positions=rng.random((200, 3)) * 12.0, cell=[12.0] * 3, pbc=True)
              for _ in range(20)]
    rdf = radial_distribution(frames, r_max=6.0, bin_width=0.25)
    far = rdf.r > 1.0  # the small-r bins hold few pairs: noisy
    assert np.abs(rdf.g[far].mean() - 1.0) < 0.01
    assert np.all(np.abs(rdf.g[far] - 1.0) < 0.15)


def test_diamond_coordination_and_angles():
    atoms = diamond(2)
    cn = coordination_numbers([atoms], 2.85)
    assert np.all(cn == 4)
    angles, edges, density = bond_angle_distribution([atoms], 2.85)
    assert len(angles) == 6 * len(atoms)  # C(4, 2) pairs of bonds per atom
    np.testing.assert_allclose(angles, TETRAHEDRAL, atol=1e-9)
    assert np.sum(density * np.diff(edges)) == pytest.approx(1.0)


def test_density_of_crystalline_silicon():
    # 8 atoms of 28.0855 u in a 5.431 Å cube: 2.329 g/cm³ (the handbook value)
    assert density_g_cm3(diamond(1)) == pytest.approx(2.329, abs=0.001)


@pytest.mark.parametrize("cell", ["primitive", "cubic", "2x2x2"])
def test_diamond_has_only_six_rings(cell):
    """Every diamond atom lies on 12 six-rings and on no other shortest-path ring: 2 rings per
    atom. The 2-atom primitive cell checks the unwrapped periodic graph (ring atoms repeat in
    different images there)."""
    atoms = {"primitive": bulk("Si", "diamond", a=A_SI),
             "cubic": diamond(1), "2x2x2": diamond(2)}[cell]
    assert ring_statistics(atoms, 2.85, max_size=10) == {6: 2 * len(atoms)}


def test_rings_of_a_cube_cluster():
    """The cube graph: 6 square faces and 4 skew hexagons (a ring of 6 whose opposite corners
    are 3 bonds apart) are shortest-path rings; its 8-cycles are not."""
    cube = Atoms("Si8", positions=[[x, y, z] for x in (0, 2.3) for y in (0, 2.3)
                                   for z in (0, 2.3)], cell=[20.0] * 3, pbc=False)
    assert ring_statistics(cube, 2.5, max_size=10) == {4: 6, 6: 4}


def test_rings_of_graphene_and_a_triangle():
    sheet = graphene(vacuum=5.0).repeat((3, 3, 1))
    sheet.pbc = True
    assert ring_statistics(sheet, 1.6) == {6: len(sheet) // 2}
    triangle = Atoms("Si3", positions=[[0, 0, 0], [2.3, 0, 0], [1.15, 2.0, 0]], cell=[20] * 3)
    assert ring_statistics(triangle, 2.5) == {3: 1}


def test_rings_agree_with_matscipy_on_amorphous_network(rng):
    """A random network (rattled, compressed diamond: 3- to 13-rings) against matscipy's
    Franzblau implementation (unbounded search; its maxlength option is off by one)."""
    matscipy_rings = pytest.importorskip("matscipy.rings")
    atoms = diamond(3)
    atoms.set_cell(atoms.cell * 0.94, scale_atoms=True)
    atoms.rattle(0.35, rng=rng)
    ours = ring_statistics(atoms, 2.85, max_size=10)
    theirs = matscipy_rings.ring_statistics(atoms, 2.85, maxlength=-1)
    theirs = {k: int(v) for k, v in enumerate(theirs) if v and k <= 10}
    assert len(ours) >= 6
    assert ours == theirs


def test_analyze_structures_summary():
    result = analyze_structures([diamond(2)], max_ring_size=8)
    assert result.cutoff_A == 2.85  # the stated Si default
    assert result.coordination == {4: 1.0} and result.mean_coordination == 4.0
    assert result.rings_per_atom == {6: 2.0}
    data = result.to_dict()
    assert data["fourfold_fraction"] == 1.0
    assert data["mean_bond_angle_deg"] == pytest.approx(TETRAHEDRAL)
    assert data["first_peak_A"] == pytest.approx(2.35, abs=0.02)
    assert len(data["rdf"]["r_A"]) == len(data["rdf"]["g"])
    assert any("g(r) first peak" in line for line in result.lines())


def test_rdf_needs_periodic_cell():
    atoms = diamond(1)
    atoms.pbc = False
    with pytest.raises(InputError, match="periodic in all three directions"):
        radial_distribution([atoms])
    # the other analyses work on clusters
    assert analyze_structures([atoms], rings=False).rdf is None


def test_small_cell_rings_equal_supercell_rings(rng):
    """Rings traced on the unwrapped periodic graph of a 64-atom cell equal (per cell) those
    matscipy finds in its 2×2×2 supercell, where no ring wraps the cell."""
    matscipy_rings = pytest.importorskip("matscipy.rings")
    atoms = diamond(2)
    atoms.rattle(0.3, rng=rng)
    ours = ring_statistics(atoms, 2.85, max_size=8)
    theirs = matscipy_rings.ring_statistics(atoms.repeat(2), 2.85, maxlength=-1)
    theirs = {k: int(v) // 8 for k, v in enumerate(theirs) if v and k <= 8}
    assert sum(ours.values()) > 0
    assert ours == theirs
