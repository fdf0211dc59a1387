"""Reference calculators: textbook values, exact forces/stress (finite differences), errors."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from gradcheck import (
    directional_derivative,
    numerical_position_gradient,
    numerical_strain_gradient,
)
from hypothesis import assume, given
from strategies import atoms_in_cell

from mlptools.calculators import (
    StillingerWeber,
    isolated_atom_energies,
    make_calculator,
    parse_spec,
)
from mlptools.errors import ComputationError, ParameterError


def _energy(calc, atoms):
    def energy(positions, cell=None):
        work = atoms.copy()
        if cell is not None:
            work.set_cell(cell)
        work.positions = positions
        work.calc = calc
        return work.get_potential_energy()

    return energy


def _rattled_si(rng, cell="cubic", sigma=0.1):
    if cell == "cubic":
        atoms = bulk("Si", "diamond", 5.431, cubic=True)
    else:  # primitive, non-orthogonal, 2x2x2
        atoms = bulk("Si", "diamond", 5.431).repeat(2)
    atoms.positions += rng.normal(0, sigma, atoms.positions.shape)
    return atoms


def test_sw_diamond_cohesive_energy():
    atoms = bulk("Si", "diamond", 5.431)
    atoms.calc = make_calculator("sw")
    assert atoms.get_potential_energy() / len(atoms) == pytest.approx(-4.3366, abs=1e-4)
    # diamond is the SW equilibrium: near-zero pressure, zero forces
    assert np.abs(atoms.get_stress()).max() < 1e-4
    assert np.abs(atoms.get_forces()).max() < 1e-10


def test_sw_default_parameters_are_stillinger_weber_1985():
    p = StillingerWeber().parameters
    assert (p["epsilon"], p["sigma"], p["a"], p["lambda_"], p["gamma"]) == (
        2.1683, 2.0951, 1.80, 21.0, 1.20)
    assert (p["A"], p["B"], p["p"], p["q"]) == (7.049556277, 0.6022245584, 4, 0)


@pytest.mark.parametrize("cell", ["cubic", "primitive"])
def test_sw_forces_are_minus_energy_gradient(rng, cell):
    atoms = _rattled_si(rng, cell)
    calc = make_calculator("sw")
    atoms.calc = calc
    forces = atoms.get_forces()
    grad = numerical_position_gradient(_energy(make_calculator("sw"), atoms), atoms.positions)
    np.testing.assert_allclose(forces, -grad, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(forces.sum(axis=0), 0, atol=1e-10)


@pytest.mark.parametrize("cell", ["cubic", "primitive"])
def test_sw_stress_is_strain_derivative(rng, cell):
    atoms = _rattled_si(rng, cell)
    atoms.calc = make_calculator("sw")
    stress = atoms.get_stress(voigt=False)
    grad = numerical_strain_gradient(_energy(make_calculator("sw"), atoms), atoms.positions,
                                     atoms.cell.array)
    np.testing.assert_allclose(stress, grad / atoms.get_volume(), rtol=1e-6, atol=1e-8)


def test_sw_cluster_and_per_atom_energies(rng):
    atoms = Atoms("Si5", positions=rng.normal(0, 1.3, (5, 3)) + 10, cell=[20] * 3, pbc=False)
    atoms.calc = make_calculator("sw")
    energy = atoms.get_potential_energy()
    assert atoms.get_potential_energies().sum() == pytest.approx(energy)
    grad = numerical_position_gradient(_energy(make_calculator("sw"), atoms), atoms.positions)
    np.testing.assert_allclose(atoms.get_forces(), -grad, rtol=1e-6, atol=1e-7)


def test_sw_invariances(rng):
    atoms = _rattled_si(rng, "primitive", sigma=0.05)
    atoms.calc = make_calculator("sw")
    e = atoms.get_potential_energy()
    big = atoms.repeat((2, 1, 1))
    big.calc = make_calculator("sw")
    assert big.get_potential_energy() == pytest.approx(2 * e, rel=1e-12)
    perm = atoms[rng.permutation(len(atoms))]
    perm.calc = make_calculator("sw")
    assert perm.get_potential_energy() == pytest.approx(e, rel=1e-12)
    rot = atoms.copy()
    rot.rotate(37, (1, 2, 3), rotate_cell=True)
    rot.calc = make_calculator("sw")
    assert rot.get_potential_energy() == pytest.approx(e, rel=1e-12)


@given(atoms_in_cell(max_atoms=8, min_distance=1.8))
def test_sw_properties_on_random_cells(system):
    from ase.neighborlist import neighbor_list

    positions, numbers, cell, pbc = system
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)
    assume(len(neighbor_list("d", atoms, 1.8)) == 0)  # no (image) pair closer than 1.8 Å
    atoms.calc = make_calculator("sw")
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    np.testing.assert_allclose(f.sum(axis=0), 0, atol=1e-9)
    rng = np.random.default_rng(len(atoms))
    u = rng.normal(size=f.shape)
    u /= np.linalg.norm(u)
    fd = directional_derivative(_energy(make_calculator("sw"), atoms), atoms.positions, u)
    assert np.sum(f * u) == pytest.approx(fd, rel=1e-5, abs=1e-6)
    moved = atoms.copy()
    moved.rotate(rng.uniform(0, 360), rng.normal(size=3), rotate_cell=True)
    moved.positions += rng.normal(size=3)
    if pbc.all():
        moved.wrap()
    moved.calc = make_calculator("sw")
    assert moved.get_potential_energy() == pytest.approx(e, rel=1e-9, abs=1e-9)


def test_sw_agrees_with_matscipy(rng):
    manybody = pytest.importorskip("matscipy.calculators.manybody",
                                   reason="matscipy not installed (an oracle only)")
    from matscipy.calculators.manybody.explicit_forms import stillinger_weber as msw

    atoms = _rattled_si(rng, "primitive")
    atoms.calc = make_calculator("sw")
    ref = atoms.copy()
    ref.calc = manybody.Manybody(**msw.StillingerWeber(msw.Stillinger_Weber_PRB_31_5262_Si))
    assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(atoms.get_stress(), ref.get_stress(), rtol=0, atol=1e-12)


def test_tersoff_diamond_cohesive_energy():
    energies = {}
    for a in (5.40, 5.432, 5.46):
        atoms = bulk("Si", "diamond", a)
        atoms.calc = make_calculator("tersoff")
        energies[a] = atoms.get_potential_energy() / len(atoms)
    assert energies[5.432] == pytest.approx(-4.63, abs=5e-3)
    assert energies[5.432] < min(energies[5.40], energies[5.46])


def test_tersoff_forces_directional_derivative(rng):
    atoms = _rattled_si(rng, "cubic", sigma=0.05)
    atoms.calc = make_calculator("tersoff")
    forces = atoms.get_forces()
    u = rng.normal(size=atoms.positions.shape)
    u /= np.linalg.norm(u)
    fd = directional_derivative(_energy(make_calculator("tersoff"), atoms), atoms.positions, u)
    assert np.sum(forces * u) == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_lj_defaults_put_the_minimum_at_the_bond_length():
    from ase.data import covalent_radii

    r0 = 2 * covalent_radii[18]
    e = {}
    for r in (0.95 * r0, r0, 1.05 * r0):
        dimer = Atoms("Ar2", positions=[[0, 0, 0], [r, 0, 0]], cell=[20] * 3, pbc=False)
        dimer.calc = make_calculator("lj")
        e[r] = dimer.get_potential_energy()
    assert e[r0] < e[0.95 * r0] and e[r0] < e[1.05 * r0]


def test_import_path_with_kwargs():
    calc = make_calculator("ase.calculators.lj:LennardJones sigma=2.0 epsilon=0.5")
    assert calc.parameters.sigma == 2.0 and calc.parameters.epsilon == 0.5


def test_emt_isolated_atom_energies():
    e0 = isolated_atom_energies(["Cu", "Al"], "emt")
    assert list(e0) == ["Al", "Cu"]  # sorted by atomic number
    assert e0["Cu"] == pytest.approx(make_e0_direct("Cu"), rel=1e-12)
    assert isolated_atom_energies(["Si"], "sw") == {"Si": 0.0}


def make_e0_direct(symbol):
    atoms = Atoms(symbol, positions=[[10, 10, 10]], cell=[20] * 3, pbc=False)
    atoms.calc = make_calculator("emt")
    return atoms.get_potential_energy()


def test_isolated_atom_failure_names_the_species():
    with pytest.raises(ComputationError, match="isolated U atom"):
        isolated_atom_energies(["U"], "emt")


def test_parse_spec():
    assert parse_spec("lj sigma=2.0 smooth=True name=x") == (
        "lj", {"sigma": 2.0, "smooth": True, "name": "x"})


@pytest.mark.parametrize("spec, message", [
    ("dft", r"unknown calculator 'dft'.*known: emt, lj, sw, tersoff, xtb"),
    ("tersof", r"did you mean 'tersoff'"),
    ("", r"empty calculator spec"),
    ("lj sigma", r"expected key=value, got 'sigma'"),
    ("no_such_module.x:Calc", r"cannot import 'no_such_module.x'"),
    ("ase.calculators.lj:Nope", r"'ase.calculators.lj' has no 'Nope'"),
    ("sw epsilon=1 nonsense=2", r"calculator 'sw': unknown Stillinger-Weber parameter"),
    ("ase.calculators.tersoff:Tersoff", r"calculator 'ase.calculators.tersoff:Tersoff': .*"
                                        r"missing 1 required positional argument"),
    ("collections:OrderedDict", r"OrderedDict is not an ASE calculator"),
])
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(ParameterError, match=message) as info:
        make_calculator(spec)
    assert "\n" not in str(info.value)


def test_xtb():
    pytest.importorskip("tblite.ase", reason="tblite not installed (pip install tblite)")
    atoms = Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]], cell=[15] * 3, pbc=False)
    for spec in ("xtb", "xtb:gfn1"):
        atoms.calc = make_calculator(spec)
        e = atoms.get_potential_energy()
        f = atoms.get_forces()
        assert np.isfinite(e) and e < -50  # a real TB total energy (eV), not a toy zero
        assert f[0, 0] == pytest.approx(-f[1, 0], abs=1e-6)
    cell = bulk("Si", "diamond", 5.43)
    cell.calc = make_calculator("xtb")
    assert cell.get_stress().shape == (6,)


def test_calculator_from_argument_takes_a_spec_or_names_the_problem(tmp_path):
    from mlptools.calculators import StillingerWeber, calculator_from_argument

    assert isinstance(calculator_from_argument("sw"), StillingerWeber)
    with pytest.raises(ParameterError, match="unknown calculator 'nosuch.h5'"):
        calculator_from_argument("nosuch.h5")


def test_check_species_supported_names_the_missing_species():
    from mlptools.calculators import StillingerWeber, check_species_supported
    from mlptools.errors import InputError

    check_species_supported(StillingerWeber(), [14, 14], "x.xyz: frame 0")
    with pytest.raises(InputError, match=r"x.xyz: frame 0: species C, O not covered .*has Si"):
        check_species_supported(StillingerWeber(), [14, 8, 6], "x.xyz: frame 0")
