"""Wulff construction against wulffpack and analytic polyhedra; surface energies against ASE EMT."""

import math

import numpy as np
import pytest
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.optimize import BFGS

from mlptools.errors import InputError, ParameterError
from mlptools.workflows import wulff as wf

J = wf.EV_PER_A2_IN_J_PER_M2


@pytest.mark.parametrize("text, want", [
    ("100,110,111", [(1, 0, 0), (1, 1, 0), (1, 1, 1)]),
    ("1-10, 200 ,(111)", [(1, -1, 0), (1, 0, 0), (1, 1, 1)]),
    ("10 -2 1,2:1:0", [(10, -2, 1), (2, 1, 0)]),
])
def test_parse_facets(text, want):
    assert wf.parse_facets(text) == want


def test_parse_facets_hcp_four_index_and_errors():
    assert wf.parse_facets("0001,10-10,10-11", "hcp") == [(0, 0, 1), (1, 0, 0), (1, 0, 1)]
    with pytest.raises(ParameterError, match="i must be -\\(h\\+k\\)"):
        wf.parse_facets("1011", "hcp")
    with pytest.raises(ParameterError, match="facet '000': expected three Miller"):
        wf.parse_facets("000")
    with pytest.raises(ParameterError, match="facet 'abc'"):
        wf.parse_facets("abc")


@pytest.mark.parametrize("lattice, miller, count", [
    ("fcc", (1, 0, 0), 6), ("fcc", (1, 1, 0), 12), ("fcc", (1, 1, 1), 8), ("bcc", (2, 1, 0), 24),
    ("fcc", (3, 2, 1), 48), ("hcp", (0, 0, 1), 2), ("hcp", (1, 0, 0), 6), ("hcp", (1, 0, 1), 12),
])
def test_number_of_equivalent_facets(lattice, miller, count):
    cell = bulk("Ti", "hcp", a=2.95, c=4.68).cell if lattice == "hcp" else np.eye(3)
    normals = wf.equivalent_normals(miller, cell, lattice)
    assert len(normals) == count
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0)
    assert len(wf.point_group(lattice)) == (24 if lattice == "hcp" else 48)


def test_cube_and_octahedron_are_analytic():
    cube = wf.wulff_shape({(1, 0, 0): 0.5}, "fcc")
    assert cube.area_fractions == {(1, 0, 0): 1.0}
    assert cube.volume == pytest.approx(1.0) and cube.area == pytest.approx(6.0)
    assert cube.shape_factor == pytest.approx(6.0) and len(cube.vertices) == 8
    octa = wf.wulff_shape({(1, 1, 1): 1.0}, "fcc")
    edge = math.sqrt(6.0)  # inradius 1 → edge √6
    assert octa.volume == pytest.approx(math.sqrt(2) / 3 * edge**3)
    assert octa.area == pytest.approx(2 * math.sqrt(3) * edge**2)
    assert len(octa.vertices) == 6 and len(octa.faces) == 8


def test_regular_truncated_octahedron():
    # vertices are the permutations of (0, ±1, ±2): squares at x = ±2, hexagons at
    # |x|+|y|+|z| = 3, i.e. γ111/γ100 = √3/2; squares take 6/(6 + 12√3) of the area
    shape = wf.wulff_shape({(1, 0, 0): 2.0, (1, 1, 1): math.sqrt(3.0)}, "fcc")
    assert len(shape.vertices) == 24 and len(shape.faces) == 14
    assert shape.area_fractions[(1, 0, 0)] == pytest.approx(6 / (6 + 12 * math.sqrt(3)), abs=1e-12)
    assert shape.volume == pytest.approx(8 * math.sqrt(2) * math.sqrt(2) ** 3, rel=1e-12)


def test_hidden_facet_has_zero_area():
    shape = wf.wulff_shape({(1, 0, 0): 1.0, (1, 1, 0): 2.0}, "fcc")  # {110} planes beyond edges
    assert shape.area_fractions[(1, 1, 0)] == 0.0
    assert shape.area_fractions[(1, 0, 0)] == pytest.approx(1.0)


@pytest.mark.parametrize("lattice", ["fcc", "bcc", "hcp"])
def test_area_fractions_match_wulffpack(lattice, rng):
    wulffpack = pytest.importorskip("wulffpack")
    spglib = pytest.importorskip("spglib")  # wulffpack finds the point group with it
    if hasattr(spglib, "error"):
        spglib.error.OLD_ERROR_HANDLING = False
    if lattice == "hcp":
        crystal = bulk("Ti", "hcp", a=2.95, c=4.68)
        facets = [(0, 0, 1), (1, 0, 0), (1, 0, 1), (1, 1, 0)]
    else:
        crystal = bulk("Au" if lattice == "fcc" else "Fe", lattice)
        facets = [(1, 0, 0), (1, 1, 0), (1, 1, 1), (2, 1, 0)]
    for _ in range(3):
        gammas = dict(zip(facets, rng.uniform(0.9, 1.2, size=len(facets)), strict=True))
        ours = wf.wulff_shape(gammas, lattice, bulk(crystal.get_chemical_symbols()[0], lattice,
                                                     **({"a": 2.95, "c": 4.68} if lattice == "hcp"
                                                        else {"cubic": True})).cell)
        theirs = wulffpack.SingleCrystal(gammas, primitive_structure=crystal).facet_fractions
        for facet in facets:
            assert ours.area_fractions[facet] == pytest.approx(theirs.get(facet, 0.0), abs=1e-6)


@pytest.mark.parametrize("gammas, lattice", [
    ({(0, 0, 1): 1.0}, "hcp"),  # two parallel planes
    ({(1, 0, 0): 1.0}, "hcp"),  # a hexagonal prism without caps
])
def test_open_shapes_are_refused(gammas, lattice):
    cell = bulk("Ti", "hcp", a=2.95, c=4.68).cell
    with pytest.raises(ParameterError, match="do not enclose a closed shape"):
        wf.wulff_shape(gammas, lattice, cell)


def test_bad_energies_and_lattice():
    with pytest.raises(ParameterError, match=r"surface energy of \(111\) must be > 0"):
        wf.wulff_shape({(1, 0, 0): 1.0, (1, 1, 1): -0.1}, "fcc")
    with pytest.raises(ParameterError, match="unknown lattice 'diamnd'; use one of fcc"):
        wf.wulff_shape({(1, 0, 0): 1.0}, "diamnd")


def test_read_surface_energies(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("# facet gamma (J/m2)\n100 1.0\n1 1 1  0.8 # comment\n\n")
    got = wf.read_surface_energies(path, "fcc")
    assert got == {(1, 0, 0): pytest.approx(1.0 / J), (1, 1, 1): pytest.approx(0.8 / J)}
    path.write_text("100 -1.0\n")
    with pytest.raises(InputError, match=f"{path}: line 1: surface energy must be > 0"):
        wf.read_surface_energies(path, "fcc")
    path.write_text("100 abc\n")
    with pytest.raises(InputError, match="line 1: expected 'FACET GAMMA_J_PER_M2', got "
                                         "'100 abc'"):
        wf.read_surface_energies(path, "fcc")


def test_particle_is_the_crystal_cut_by_the_shape():
    crystal = bulk("Au", "fcc", a=4.08, cubic=True)
    shape = wf.wulff_shape({(1, 0, 0): 1.0, (1, 1, 1): 0.9}, "fcc")
    particle = wf.wulff_particle(shape, crystal, 500)
    assert abs(len(particle) - 500) < 0.15 * 500
    pos = particle.positions - particle.positions.mean(axis=0)  # centred on an atom: symmetric
    s = particle.info["scale"]
    assert np.all(pos @ shape.normals.T <= s * shape.gammas[shape.family] + 1e-6)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert d.min() == pytest.approx(4.08 / math.sqrt(2))  # fcc nearest neighbours, unrelaxed
    # the particle's volume matches the shape's at that scale (to the surface layer)
    assert len(particle) * crystal.get_volume() / 4 == pytest.approx(shape.volume * s**3, rel=0.25)
    assert not particle.pbc.any()


@pytest.mark.parametrize("m", [2, 3, 4])
def test_cube_particle_of_exact_size(m):
    # fcc sites are the points (i, j, k)·a/2 with i + j + k even; {100} planes at |x| = m·a/2
    # keep those with |i|, |j|, |k| <= m
    import itertools

    n = sum(1 for p in itertools.product(range(-m, m + 1), repeat=3) if sum(p) % 2 == 0)
    crystal = bulk("Cu", "fcc", a=3.6, cubic=True)
    particle = wf.wulff_particle(wf.wulff_shape({(1, 0, 0): 1.0}, "fcc"), crystal, n)
    assert len(particle) == n
    extent = np.ptp(particle.positions, axis=0)
    np.testing.assert_allclose(extent, m * 3.6, atol=1e-9)


def _emt_bulk_energy_and_a():
    from ase.eos import EquationOfState

    volumes, energies = [], []
    for a in np.linspace(3.98, 4.14, 9):
        atoms = bulk("Au", "fcc", a=a)
        atoms.calc = EMT()
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    v0, e0, _ = EquationOfState(volumes, energies).fit()
    return e0, (4 * v0) ** (1 / 3)


def _ase_gamma(builder, layers, a, e0):
    slab = builder("Au", size=(1, 1, layers), a=a, vacuum=10.0)
    slab.calc = EMT()
    BFGS(slab, logfile=None).run(fmax=0.002)
    area = np.linalg.norm(np.cross(slab.cell[0], slab.cell[1]))
    return (slab.get_potential_energy() - len(slab) * e0) / (2 * area)


def test_emt_au_surface_energies_match_direct_ase_slabs():
    e0_ref, a_ref = _emt_bulk_energy_and_a()
    calc = EMT()
    crystal, e_bulk = wf.relax_bulk(wf.bulk_crystal("Au", "fcc"), calc)
    a = crystal.cell.lengths()[0]
    assert a == pytest.approx(a_ref, abs=2e-3) and e_bulk == pytest.approx(e0_ref, abs=1e-5)
    for miller, builder in (((1, 1, 1), fcc111), ((1, 0, 0), fcc100)):
        ours = wf.surface_energy(crystal, e_bulk, calc, miller, tol=0.002)
        assert ours.converged
        direct = _ase_gamma(builder, 7, a, e_bulk)  # thick, built another way
        assert ours.gamma_J_m2 == pytest.approx(direct * J, abs=3e-3)
    # the EMT ordering of fcc metals: the close-packed (111) is the lowest
    assert wf.surface_energy(crystal, e_bulk, calc, (1, 1, 1)).gamma < \
        wf.surface_energy(crystal, e_bulk, calc, (1, 0, 0)).gamma
