"""Physical properties against independent truth: analytic E(V), ASE's EOS and phonons, published
elastic constants of Stillinger–Weber and Tersoff silicon, and exact SW bond counting."""

import math
import os
import tempfile

import numpy as np
import pytest
from ase.build import bulk
from threadcomm import run_ranks

from mlptools.calculators import make_calculator
from mlptools.errors import ComputationError, InputError, ParameterError
from mlptools.units import EV_PER_A2_TO_J_PER_M2, GPA_TO_EV_PER_A3
from mlptools.workflows import properties as P


@pytest.fixture(scope="module")
def sw_si():
    calc = make_calculator("sw")
    conv, prim = P.starting_structure("Si", "diamond")
    relaxed, primitive = P.equilibrium(conv, prim, calc, P.PropertySettings())
    return calc, relaxed, primitive


# ---------------------------------------------------------------------------------------------
# Birch-Murnaghan
# ---------------------------------------------------------------------------------------------


def test_birch_murnaghan_fit_recovers_analytic_parameters():
    e0, v0, b0_gpa, bp = -3.7, 16.0, 120.0, 4.6
    v = np.linspace(0.92, 1.08, 9) * v0
    e = P.birch_murnaghan(v, e0, v0, b0_gpa * GPA_TO_EV_PER_A3, bp)
    fit = P.fit_birch_murnaghan(v, e)
    assert fit["E0"] == pytest.approx(e0, abs=1e-10)
    assert fit["V0"] == pytest.approx(v0, rel=1e-9)
    assert fit["B"] == pytest.approx(b0_gpa, rel=1e-7)
    assert fit["B'"] == pytest.approx(bp, rel=1e-6)
    assert fit["rms"] < 1e-10


def test_birch_murnaghan_bulk_modulus_is_v_d2e_dv2():
    # B = V d²E/dV² at V0, independent of the closed form: central second difference
    e0, v0, b0, bp = 0.0, 20.0, 0.6, 4.0
    h = 1e-3
    d2 = (P.birch_murnaghan(v0 + h, e0, v0, b0, bp) - 2 * P.birch_murnaghan(v0, e0, v0, b0, bp)
          + P.birch_murnaghan(v0 - h, e0, v0, b0, bp)) / h**2
    assert v0 * d2 == pytest.approx(b0, rel=1e-6)


def test_birch_murnaghan_fit_agrees_with_ase_eos():
    from ase.eos import EquationOfState

    # a Morse-like E(V) that is not Birch-Murnaghan: both fits of the same points must agree
    v = np.linspace(14.0, 18.0, 11)
    e = 0.8 * (1 - np.exp(-0.9 * (v ** (1 / 3) - 16.0 ** (1 / 3)))) ** 2
    ours = P.fit_birch_murnaghan(v, e)
    v0, e0, b = EquationOfState(v, e, eos="birchmurnaghan").fit()
    assert ours["V0"] == pytest.approx(v0, rel=1e-6)
    assert ours["E0"] == pytest.approx(e0, abs=1e-8)
    assert ours["B"] * GPA_TO_EV_PER_A3 == pytest.approx(b, rel=1e-5)


def test_birch_murnaghan_needs_a_minimum_inside():
    v = np.linspace(10, 12, 7)
    with pytest.raises(ComputationError, match="lies outside the scan"):
        P.fit_birch_murnaghan(v, (v - 14.0) ** 2)
    with pytest.raises(ComputationError, match="at least 5 volumes"):
        P.fit_birch_murnaghan(v[:3], v[:3] ** 2)


def test_emt_copper_eos_matches_ase_eos_on_emt():
    calc = make_calculator("emt")
    conv, _ = P.starting_structure("Cu", "fcc")
    props = P.compute_properties(calc, conv, properties="eos")
    # independent route: ASE's EquationOfState on EMT energies of ase.build.bulk cells
    a_grid = np.linspace(3.50, 3.68, 13)
    volumes, energies = [], []
    for a in a_grid:
        atoms = bulk("Cu", "fcc", a=a)
        atoms.calc = make_calculator("emt")
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    from ase.eos import EquationOfState

    v0, e0, b = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    assert props.values["a"] == pytest.approx((4 * v0) ** (1 / 3), rel=2e-4)
    assert props.values["E0"] == pytest.approx(e0, abs=2e-5)
    assert props.values["B"] == pytest.approx(b / GPA_TO_EV_PER_A3, rel=5e-3)


# ---------------------------------------------------------------------------------------------
# elastic constants
# ---------------------------------------------------------------------------------------------


def test_stillinger_weber_silicon_published_values(sw_si):
    """SW Si (ε = 2.1683 eV): a = 5.431 Å, C11 = 151.4, C12 = 76.4, C44 = 56.4 GPa (relaxed).

    E. R. Cowley, Phys. Rev. Lett. 60, 2379 (1988), as quoted in LAMMPS
    examples/ELASTIC/in.elastic ("the analytical results"). (matscipy's tests list 161.6 / 81.6 /
    60.3 for SW: the same constants for ε = 2.315 eV, ratio 1.068.)
    """
    calc, relaxed, _ = sw_si
    c = P.elastic_constants(relaxed, calc)
    values = P._elastic_values(c, cubic=True)
    assert relaxed.cell.lengths() == pytest.approx([5.431] * 3, abs=1e-3)
    assert values["C11"] == pytest.approx(151.4, abs=0.5)
    assert values["C12"] == pytest.approx(76.4, abs=0.5)
    assert values["C44"] == pytest.approx(56.4, abs=0.5)
    # internal relaxation halves C44 in diamond; C11 and C12 have no internal strain
    assert values["C44_0"] > 1.8 * values["C44"]
    assert np.asarray(c["C_0"])[0, 0] == pytest.approx(values["C11"], abs=0.05)
    # cubic symmetry of the full matrix: zeros where they must be
    full = np.asarray(c["C"])
    assert np.abs(full[:3, 3:]).max() < 0.05 and np.abs(full[3:, 3:] - np.diag(
        np.diag(full[3:, 3:]))).max() < 0.05


def test_tersoff_silicon_published_values():
    """Tersoff T3 Si: a = 5.432 Å, C11 = 143, C12 = 75, C44 = 69, C44⁰ = 119, B = 98 GPa.

    J. Tersoff, Phys. Rev. B 38, 9902 (1988), Table I (values also in matscipy's
    tests/manybody/test_manybody_molecules and test_manybody reference lists).
    """
    calc = make_calculator("tersoff")
    conv, prim = P.starting_structure("Si", "diamond")
    props = P.compute_properties(calc, conv, prim, "eos,elastic")
    v = props.values
    assert v["a"] == pytest.approx(5.432, abs=2e-3)
    assert v["E0"] == pytest.approx(-4.63, abs=0.01)
    assert v["C11"] == pytest.approx(143, abs=1.0)
    assert v["C12"] == pytest.approx(75, abs=1.0)
    assert v["C44"] == pytest.approx(69, abs=1.0)
    assert v["C44_0"] == pytest.approx(119, abs=1.0)
    assert v["B"] == pytest.approx(98, abs=1.0)


def test_bulk_modulus_from_eos_equals_elastic(sw_si):
    calc, relaxed, _ = sw_si
    eos = P.equation_of_state(relaxed, calc, strain=0.02, points=9)
    c = P._elastic_values(P.elastic_constants(relaxed, calc), cubic=True)
    assert eos["B"] == pytest.approx((c["C11"] + 2 * c["C12"]) / 3, rel=3e-3)


def _voigt_to_tensor(c_vv):
    index = {(0, 0): 0, (1, 1): 1, (2, 2): 2, (1, 2): 3, (2, 1): 3, (0, 2): 4, (2, 0): 4,
             (0, 1): 5, (1, 0): 5}
    c = np.zeros((3, 3, 3, 3))
    for (i, j), p in index.items():
        for (k, m), q in index.items():
            c[i, j, k, m] = c_vv[p, q]
    return c


def test_elastic_constants_transform_as_a_tensor(sw_si):
    # rotating the crystal by 30° about z must rotate C_ijkl: a check of the general (non
    # axis-aligned) path, and the primitive cell must give the conventional cell's tensor

    calc, relaxed, prim = sw_si
    c_conv = np.asarray(P.elastic_constants(relaxed, calc)["C"])
    rotated = relaxed.copy()
    rotated.rotate(30, "z", rotate_cell=True)
    c_rot = np.asarray(P.elastic_constants(rotated, calc)["C"])
    t = np.radians(30)
    r = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    expected = np.einsum("ia,jb,kc,ld,abcd->ijkl", r, r, r, r, _voigt_to_tensor(c_conv))
    assert np.allclose(_voigt_to_tensor(c_rot), expected, atol=0.1)
    c_prim = np.asarray(P.elastic_constants(prim, calc)["C"])
    assert np.allclose(c_prim, c_conv, atol=0.1)


# ---------------------------------------------------------------------------------------------
# vacancy and surfaces: exact bond counting for Stillinger-Weber
# ---------------------------------------------------------------------------------------------
# In diamond SW every angle is tetrahedral (three-body energy and its gradient vanish) and only
# nearest neighbours interact, so E0 = 2 φ2(r_nn): a vacancy breaks 4 bonds (E_f = −E0 before
# relaxation), a (100) surface atom 2 bonds on a²/2, a (111) atom 1 bond on √3 a²/4.


def test_sw_vacancy_unrelaxed_is_minus_cohesive_energy(sw_si):
    calc, relaxed, _ = sw_si
    e0 = relaxed.get_potential_energy() / len(relaxed)
    result = P.vacancy_formation_energy(relaxed, calc)
    assert result["atoms"] == 64 and result["repeat"] == [2, 2, 2]
    assert result["E_vac_unrelaxed"] == pytest.approx(-e0, abs=1e-8)
    assert result["E_vac"] <= result["E_vac_unrelaxed"] + 1e-6
    assert result["converged"]


@pytest.mark.parametrize("miller, bonds_per_area", [
    ((1, 0, 0), lambda a: 2 / (a * a / 2)),
    ((1, 1, 1), lambda a: 1 / (math.sqrt(3) * a * a / 4)),
])
def test_sw_surface_energy_by_bond_counting(sw_si, miller, bonds_per_area):
    calc, relaxed, _ = sw_si
    a = relaxed.cell.lengths()[0]
    phi2 = relaxed.get_potential_energy() / len(relaxed) / 2
    expected = -phi2 * bonds_per_area(a) / 2 * EV_PER_A2_TO_J_PER_M2
    result = P.surface_energy(relaxed, calc, miller)
    assert result["gamma_unrelaxed"] == pytest.approx(expected, rel=1e-6)
    assert result["gamma"] <= result["gamma_unrelaxed"] + 1e-6
    assert result["thickness"] >= 10.0


def test_surface_energy_of_emt_copper_is_ordered(tmp_path):
    # fcc: the close-packed (111) facet has the lowest energy, (110) the highest
    calc = make_calculator("emt")
    conv, _ = P.starting_structure("Cu", "fcc")
    relaxed = P.relax_structure(conv, calc)
    gamma = {m: P.surface_energy(relaxed, calc, m)["gamma"] for m in P.DEFAULT_FACETS}
    assert gamma[(1, 1, 1)] < gamma[(1, 0, 0)] < gamma[(1, 1, 0)]
    v = P.vacancy_formation_energy(relaxed, calc)
    assert v["atoms"] == 108 and 0.5 < v["E_vac"] < v["E_vac_unrelaxed"]


# ---------------------------------------------------------------------------------------------
# phonons
# ---------------------------------------------------------------------------------------------


def test_phonons_match_ase_phonons(sw_si):
    from ase import units
    from ase.phonons import Phonons

    calc, _, prim = sw_si
    fc = P.force_constants(prim, calc, supercell=4)
    path = prim.cell.bandpath(npoints=30)
    q = [path.special_points[k] for k in "GXL"] + list(path.kpts[::6])
    ours = P._frequencies(prim, fc, q)
    with tempfile.TemporaryDirectory() as tmp:
        ph = Phonons(prim, make_calculator("sw"), supercell=(4, 4, 4), delta=0.01,
                     name=os.path.join(tmp, "ph"))
        ph.run()
        ph.read(acoustic=True)
        theirs = ph.band_structure(q, verbose=False) / units._hplanck * units._e * 1e-12
    assert np.allclose(ours, theirs, atol=1e-4)
    # acoustic modes vanish at Γ; the optical mode is triply degenerate
    assert np.abs(ours[0, :3]).max() < 1e-3
    assert np.ptp(ours[0, 3:]) < 1e-6


def test_phonon_frequencies_result(sw_si):
    calc, _, prim = sw_si
    result = P.phonon_frequencies(prim, calc, supercell=2, band_points=20, dos_grid=4)
    assert set(result["points"]) == {"G", "X", "L"}
    assert len(result["bands"]) == 20 and len(result["bands"][0]) == 6
    dos = result["dos"]
    assert np.trapezoid(dos["density"], dos["frequency"]) == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ParameterError, match="not special points"):
        P.phonon_frequencies(prim, calc, supercell=1, points=["M"])


# ---------------------------------------------------------------------------------------------
# comparison, reference values, orchestration
# ---------------------------------------------------------------------------------------------


def test_a_calculator_against_itself_has_zero_error():
    conv, prim = P.starting_structure("Cu", "fcc")
    result = P.validate_properties(make_calculator("emt"), conv, prim, "eos,elastic,phonon",
                                   reference=make_calculator("emt"),
                                   settings=P.PropertySettings(phonon_supercell=2, eos_points=7))
    keys = [r.key for r in result.rows]
    assert {"a", "E0", "B", "C11", "C12", "C44", "nu_X_1"} <= set(keys)
    for row in result.rows:
        assert row.reference is not None
        assert row.error == pytest.approx(0.0, abs=1e-9)
        assert row.error_percent == pytest.approx(0.0, abs=1e-7)


def test_published_values_side_by_side():
    model = P.CrystalProperties(values={"a": 5.44, "C11": 140.0, "E_vac": 3.0}, details={})
    ref = P.reference_from_dict({"a": 5.431, "C11": 151.4, "source": "Cowley 1988"}, "ref.json")
    rows = {r.key: r for r in P.compare_properties(model, ref)}
    assert rows["a"].error == pytest.approx(0.009)
    assert rows["a"].error_percent == pytest.approx(100 * 0.009 / 5.431)
    assert rows["C11"].error_percent == pytest.approx(100 * (140 - 151.4) / 151.4)
    assert rows["E_vac"].reference is None and rows["E_vac"].error is None
    text = P.properties_table(list(rows.values()))
    assert "lattice constant a" in text and "-11.4" in text
    assert P.properties_table(list(rows.values()), markdown=True).startswith("| property |")


@pytest.mark.parametrize("data, message", [
    ({"C11": 1, "lattice": 5.4}, "ref.json: unknown property 'lattice'"),
    ({"a": "5.4"}, "ref.json: a: expected a number"),
    ([1, 2], "ref.json: expected a JSON object"),
])
def test_bad_reference_values(data, message):
    with pytest.raises(InputError, match=message):
        P.reference_from_dict(data, "ref.json")


def test_unknown_property_suggests():
    with pytest.raises(ParameterError, match="unknown property 'elastc'; did you mean 'elastic'"):
        P.compute_properties(make_calculator("sw"), bulk("Si", "diamond", 5.43),
                             properties="elastc")
    assert P.property_info("gamma_111") == ("surface energy (111) (relaxed)", "J/m²")
    assert P.property_info("nu_G_4")[1] == "THz"


def test_non_periodic_structure_is_rejected():
    from ase import Atoms

    with pytest.raises(InputError, match="periodic in 3-D"):
        P.starting_structure(structure=Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]]))


def test_tasks_are_shared_between_ranks():
    # two "ranks" in threads (tests/threadcomm.py): each computes its share of the independent
    # tasks, both end with the serial result
    conv, prim = P.starting_structure("Cu", "fcc")
    settings = P.PropertySettings(facets=((1, 1, 1), (1, 0, 0)), phonon_supercell=2,
                                  vacancy_min_length=7.0, slab_thickness=6.0, eos_points=5)
    serial = P.compute_properties(make_calculator("emt"), conv, prim, "all", settings=settings)
    shared = {}

    def on_rank(comm):
        real = comm.allgather

        def recording_allgather(part):
            shared[comm.Get_rank()] = set(part)
            return real(part)

        comm.allgather = recording_allgather
        return P.compute_properties(make_calculator("emt"), conv, prim, "all", settings=settings,
                                    comm=comm)

    results = run_ranks(2, on_rank)
    # tasks: elastic, vacancy, surface (111), surface (100), phonon
    assert shared == {0: {0, 2, 4}, 1: {1, 3}}
    for result in results:
        assert result.values == pytest.approx(serial.values, rel=1e-9, abs=1e-9)



def test_full_elastic_matrix_of_a_hexagonal_crystal():
    # hcp (EMT Cu): C obeys hexagonal symmetry: C22 = C11,
    # C23 = C13, C55 = C44 and C66 = (C11 − C12)/2 (transverse isotropy), the rest zero
    calc = make_calculator("emt")
    conv, prim = P.starting_structure("Cu", "hcp", a=2.55)
    props = P.compute_properties(calc, conv, prim, "elastic")
    v = props.values
    assert "c" in v and "b" not in v
    assert v["C22"] == pytest.approx(v["C11"], abs=0.05)
    assert v["C23"] == pytest.approx(v["C13"], abs=0.05)
    assert v["C55"] == pytest.approx(v["C44"], abs=0.05)
    assert v["C66"] == pytest.approx((v["C11"] - v["C12"]) / 2, abs=0.05)
    c = np.asarray(props.details["elastic"]["C"])
    assert np.abs(c[:3, 3:]).max() < 0.05


def test_table_without_reference_has_the_model_column_only():
    model = P.CrystalProperties(values={"a": 5.44, "C11": 140.0}, details={})
    lines = P.properties_table(P.compare_properties(model), model_name="sw").splitlines()
    assert lines[0].split() == ["property", "unit", "sw"]
    assert lines[2].split()[-1] == "5.4400"


def test_eos_of_a_non_cubic_cell_relaxes_its_shape():
    # hcp: each E–V point relaxes c/a at its volume, so it lies at or below the energy of the
    # same volume reached by scaling the relaxed cell at fixed shape
    calc = make_calculator("emt")
    conv, _ = P.starting_structure("Cu", "hcp", a=2.55)
    relaxed = P.relax_structure(conv, calc)
    eos = P.equation_of_state(relaxed, calc, strain=0.04, points=5)
    squeezed = relaxed.copy()
    squeezed.set_cell(relaxed.cell.array * 0.96 ** (1 / 3), scale_atoms=True)
    squeezed.calc = calc
    assert eos["energies"][0] <= squeezed.get_potential_energy() / len(squeezed) + 1e-9
    assert eos["volumes"][0] == pytest.approx(squeezed.get_volume() / len(squeezed))


@pytest.mark.parametrize("miller, per_atom", [((1, 0, 0), 2), ((1, 1, 0), 1), ((1, 1, 1), 1)])
def test_slab_terminations_count_broken_bonds(miller, per_atom):
    # diamond: the fewest broken bonds per surface atom are 2 on (100), 1 on (110) and (111)
    conv, _ = P.starting_structure("Si", "diamond", a=5.431)
    candidates = P.slab_terminations(conv, miller)
    best = candidates[0]
    atoms_per_face = {(1, 0, 0): 2, (1, 1, 0): 4, (1, 1, 1): 4}[miller]  # this in-plane cell
    assert best["broken_bonds"] == per_atom * atoms_per_face
    if miller == (1, 1, 1):  # the other (111) cut breaks three bonds per atom
        assert candidates[-1]["broken_bonds"] == 3 * atoms_per_face
    d = best["slab"].get_all_distances(mic=True)
    np.fill_diagonal(d, 10)
    assert d.min() == pytest.approx(5.431 * math.sqrt(3) / 4, rel=1e-6)  # no overlaps
