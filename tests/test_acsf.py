"""ACSF (G2/G4/G5): dscribe agreement, exact gradients, invariances, presets and errors."""

import json

import numpy as np
import pytest
from ase import Atoms
from gradcheck import numerical_position_gradient, numerical_strain_gradient
from hypothesis import given
from hypothesis import strategies as st
from strategies import cells, pbcs

from mlptools.descriptors.acsf import acsf, available_presets, load_acsf_hypers
from mlptools.descriptors.hypers import AcsfHypers
from mlptools.errors import InputError, ParameterError

HYPERS = AcsfHypers(
    cutoff=3.8, species=(8, 14),
    g2=((0.0, 0.0), (0.5, 1.5), (2.0, 2.5)),
    g4=((0.1, 1.0, 1.0), (0.05, 2.0, -1.0), (0.02, 4.5, 1.0)),
    g5=((0.1, 1.0, -1.0), (0.03, 3.0, 1.0)),
)


def random_atoms(rng, n=7, pbc=(True, True, True), length=4.5, min_distance=1.0, species=(8, 14)):
    """A random (triclinic when periodic) structure with a minimum interatomic distance."""
    cell = length * (np.eye(3) + 0.15 * rng.uniform(-1, 1, (3, 3)))
    positions = []
    while len(positions) < n:
        trial = rng.random(3) @ cell
        atoms = Atoms("H" * (len(positions) + 1), positions=positions + [trial], cell=cell,
                      pbc=pbc)
        if len(positions) == 0 or np.all(atoms.get_distances(len(positions), range(len(positions)),
                                                             mic=any(pbc)) >= min_distance):
            positions.append(trial)
    numbers = rng.choice(species, size=n)
    numbers[:2] = species[:2]
    return Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)


CONFIGS = {
    "periodic": (True, True, True),
    "mixed": (True, False, True),
    "cluster": (False, False, False),
}


def dense_gradient(ds, n_atoms):
    """(n_atoms, 3, n_rows, n_features) from the sparse gradients of a one-structure set."""
    out = np.zeros((n_atoms, 3, ds.n_rows, ds.n_features))
    for (row, _, atom), value in zip(ds.grad_samples, ds.grad_values, strict=True):
        out[atom, :, row] += value
    return out


# --------------------------------------------------------------------------------------- values


def _dscribe_reference(atoms, hypers):
    dscribe = pytest.importorskip("dscribe.descriptors")
    desc = dscribe.ACSF(
        species=list(hypers.species), r_cut=hypers.cutoff,
        g2_params=[list(p) for p in hypers.g2] or None,
        g4_params=[list(p) for p in hypers.g4] or None,
        g5_params=[list(p) for p in hypers.g5] or None,
        periodic=bool(atoms.pbc.any()),
    )
    ref = desc.create(atoms)
    n2 = len(hypers.g2)
    g1_columns = [a * (1 + n2) for a in range(len(hypers.species))]   # dscribe's G1 columns
    return np.delete(ref, g1_columns, axis=1)


@pytest.mark.parametrize("config", ["periodic", "cluster", "mixed"])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_dscribe(config, seed):
    atoms = random_atoms(np.random.default_rng(seed), n=8, pbc=CONFIGS[config])
    ours = acsf([atoms], HYPERS)
    ref = _dscribe_reference(atoms, HYPERS)
    assert ours.features.shape == ref.shape
    np.testing.assert_allclose(ours.features, ref, rtol=1e-10, atol=1e-10)
    assert np.abs(ours.features).max() > 0.1


def test_matches_dscribe_default_preset_three_species():
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.numbers[[1, 4]] = [8, 6]
    atoms.rattle(0.1, seed=3)
    hypers = load_acsf_hypers("default")
    ours = acsf(atoms, hypers)
    assert ours.hypers["species"] == [6, 8, 14]
    ref = _dscribe_reference(atoms, AcsfHypers.from_dict(ours.hypers))
    np.testing.assert_allclose(ours.features, ref, rtol=1e-10, atol=1e-10)


def test_layout_and_feature_names():
    atoms = random_atoms(np.random.default_rng(5), n=6, pbc=(False,) * 3)
    ds = acsf([atoms, atoms], HYPERS)
    n2, n4, n5 = len(HYPERS.g2), len(HYPERS.g4), len(HYPERS.g5)
    assert ds.kind == "acsf" and ds.n_structures == 2
    assert ds.n_features == 2 * n2 + 3 * (n4 + n5) == len(ds.feature_names)
    assert ds.feature_names[0] == "G2[O](eta=0,r_s=0)"
    assert ds.feature_names[n2] == "G2[Si](eta=0,r_s=0)"
    # pair blocks: (O,O), (O,Si), (Si,Si); G4 before G5 in each
    assert ds.feature_names[2 * n2] == "G4[O,O](eta=0.1,zeta=1,lambda=1)"
    assert ds.feature_names[2 * n2 + n4] == "G5[O,O](eta=0.1,zeta=1,lambda=-1)"
    assert ds.feature_names[2 * n2 + (n4 + n5)].startswith("G4[O,Si]")
    assert ds.feature_names[-1] == "G5[Si,Si](eta=0.03,zeta=3,lambda=1)"
    np.testing.assert_array_equal(ds.structure_index, np.repeat([0, 1], 6))
    np.testing.assert_array_equal(ds.center_index, np.tile(np.arange(6), 2))
    np.testing.assert_array_equal(ds.center_species, np.tile(atoms.numbers, 2))
    assert ds.cutoff_weight is None and ds.grad_values is None and ds.strain_grad is None
    # G2(eta=0) of species b is the smooth count Σ_j f_c(r_ij) over neighbours of species b
    d = atoms.get_all_distances()
    fc = np.where(d < HYPERS.cutoff, 0.5 * (np.cos(np.pi * d / HYPERS.cutoff) + 1), 0.0)
    np.fill_diagonal(fc, 0.0)
    np.testing.assert_allclose(ds.features[:6, 0], fc[:, atoms.numbers == 8].sum(1), atol=1e-12)
    np.testing.assert_allclose(ds.features[:6, n2], fc[:, atoms.numbers == 14].sum(1), atol=1e-12)


def test_smooth_to_zero_at_cutoff():
    rc = HYPERS.cutoff

    def trimer(r):
        # O at the origin, Si at r on x and at r on y: every pair within r·√2 of each other
        return Atoms("OSiSi", positions=[[0, 0, 0], [r, 0, 0], [0, r, 0]])

    values = [np.abs(acsf(trimer(rc - eps), HYPERS).features[0]).max() for eps in (1e-2, 1e-3)]
    assert values[0] < 1e-3 and values[1] < 1e-5 and values[1] < values[0] / 50
    ds = acsf(trimer(rc - 1e-3), HYPERS, gradients=True)
    assert np.abs(ds.grad_values).max() < 1e-2
    np.testing.assert_array_equal(acsf(trimer(rc), HYPERS).features[0], 0.0)
    np.testing.assert_array_equal(acsf(trimer(rc + 0.1), HYPERS).features, 0.0)


# ------------------------------------------------------------------------------------ gradients


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("seed", [10, 11])
def test_position_gradients_finite_difference(config, seed):
    atoms = random_atoms(np.random.default_rng(seed), n=6, pbc=CONFIGS[config])
    ds = acsf([atoms], HYPERS, gradients=True)

    def features(positions):
        moved = atoms.copy()
        moved.positions = positions
        return acsf([moved], HYPERS).features

    numeric = numerical_position_gradient(features, atoms.positions, h=1e-5)
    analytic = dense_gradient(ds, len(atoms))
    assert np.abs(analytic).max() > 0.1
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7)
    # samples are unique (row, atom), sorted, and always include the centre itself
    keys = ds.grad_samples[:, 0] * len(atoms) + ds.grad_samples[:, 2]
    assert np.all(np.diff(keys) > 0)
    own = ds.grad_samples[:, 0] == ds.grad_samples[:, 2]        # row r is atom r here
    np.testing.assert_array_equal(ds.grad_samples[own, 0], np.arange(len(atoms)))
    # translation invariance: the gradients of each row sum to zero over atoms
    np.testing.assert_allclose(analytic.sum(axis=0), 0.0, atol=1e-10)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_strain_gradients_finite_difference(config):
    atoms = random_atoms(np.random.default_rng(20), n=6, pbc=CONFIGS[config])
    ds = acsf([atoms], HYPERS, gradients=True, strain=True)

    def features(positions, cell):
        return acsf([Atoms(numbers=atoms.numbers, positions=positions, cell=cell,
                           pbc=atoms.pbc)], HYPERS).features

    numeric = numerical_strain_gradient(features, atoms.positions, atoms.cell.array, h=1e-5)
    analytic = np.moveaxis(ds.strain_grad, 0, 2)          # (3, 3, n_rows, F)
    assert np.abs(analytic).max() > 0.1
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ds.strain_grad, np.swapaxes(ds.strain_grad, 1, 2), atol=1e-10)


def test_strain_without_position_gradients():
    atoms = random_atoms(np.random.default_rng(21), n=5)
    full = acsf(atoms, HYPERS, gradients=True, strain=True)
    only = acsf(atoms, HYPERS, strain=True)
    assert only.grad_values is None
    np.testing.assert_array_equal(only.strain_grad, full.strain_grad)


def test_small_cell_self_images():
    # one atom in a cell smaller than the cutoff: all neighbours are its own images
    cell = [[2.6, 0, 0], [0.3, 2.7, 0], [0, 0.2, 2.9]]
    atoms = Atoms("Si", positions=[[0.1, 0.2, 0.3]], cell=cell, pbc=True)
    hypers = AcsfHypers(cutoff=3.8, g2=((0.5, 1.0),), g4=((0.1, 2.0, -1.0),), g5=((0.1, 1.0, 1.0),))
    ds = acsf(atoms, hypers, gradients=True, strain=True)
    assert ds.features.min() > 0
    np.testing.assert_array_equal(ds.grad_samples, [[0, 0, 0]])
    np.testing.assert_allclose(ds.grad_values, 0.0, atol=1e-12)

    def features(positions, cell):
        return acsf(Atoms("Si", positions=positions, cell=cell, pbc=True), hypers).features

    numeric = numerical_strain_gradient(features, atoms.positions, atoms.cell.array)
    np.testing.assert_allclose(np.moveaxis(ds.strain_grad, 0, 2), numeric, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------- invariances


@st.composite
def structures(draw):
    """Two-species structures in cells of 3.5–7 Å with any periodicity."""
    cell = draw(cells(min_length=3.5, max_length=7.0))
    pbc = draw(pbcs())
    n = draw(st.integers(2, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    positions = rng.random((n, 3)) @ cell
    keep = [0]
    for k in range(1, n):
        if np.all(np.linalg.norm(positions[keep] - positions[k], axis=1) >= 0.9):
            keep.append(k)
    numbers = rng.choice([8, 14], size=len(keep))
    return Atoms(numbers=numbers, positions=positions[keep], cell=cell, pbc=pbc), rng


def _rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@given(structures())
def test_invariant_under_rotation_translation_permutation(data):
    atoms, rng = data
    ref = acsf(atoms, HYPERS).features
    scale = max(1.0, np.abs(ref).max())

    rot = _rotation(rng)
    moved = Atoms(numbers=atoms.numbers, positions=atoms.positions @ rot.T + rng.normal(size=3),
                  cell=atoms.cell.array @ rot.T, pbc=atoms.pbc)
    np.testing.assert_allclose(acsf(moved, HYPERS).features, ref, rtol=1e-10, atol=1e-11 * scale)

    perm = rng.permutation(len(atoms))
    permuted = atoms[perm]
    np.testing.assert_allclose(acsf(permuted, HYPERS).features, ref[perm], rtol=1e-10,
                               atol=1e-11 * scale)

    # another periodic image of every atom (along periodic directions only)
    shifts = rng.integers(-2, 3, (len(atoms), 3)) * atoms.pbc
    imaged = Atoms(numbers=atoms.numbers, positions=atoms.positions + shifts @ atoms.cell.array,
                   cell=atoms.cell, pbc=atoms.pbc)
    np.testing.assert_allclose(acsf(imaged, HYPERS).features, ref, rtol=1e-10, atol=1e-11 * scale)


@pytest.mark.parametrize("seed", [30, 31])
def test_supercell_gives_same_per_atom_vectors(seed):
    atoms = random_atoms(np.random.default_rng(seed), n=5, length=3.6)
    atoms.wrap()
    ds = acsf(atoms, HYPERS)
    big = acsf(atoms.repeat((2, 2, 2)), HYPERS)
    np.testing.assert_allclose(big.features, np.tile(ds.features, (8, 1)), rtol=1e-10,
                               atol=1e-11)
    # and a different choice of image for every atom changes nothing
    shifted = atoms.copy()
    shifted.positions += np.random.default_rng(seed).integers(-2, 3, (len(atoms), 3)) @ atoms.cell
    np.testing.assert_allclose(acsf(shifted, HYPERS).features, ds.features, rtol=1e-10,
                               atol=1e-11)


# ------------------------------------------------------------------------- hypers and presets


def test_hypers_round_trip_and_spec_string():
    for hypers in (HYPERS, AcsfHypers(), load_acsf_hypers("compact")):
        assert AcsfHypers.from_dict(hypers.to_dict()) == hypers
        assert AcsfHypers.from_json(hypers.to_json()) == hypers
        assert json.loads(hypers.to_json())["type"] == "acsf"
    parsed = AcsfHypers.from_string("cutoff=5 species=Si,O g2=0.1,0;0.5,1.5 g4=0.01,2,-1 g5=")
    assert parsed == AcsfHypers(cutoff=5.0, species=(8, 14), g2=((0.1, 0.0), (0.5, 1.5)),
                                g4=((0.01, 2.0, -1.0),), g5=())
    assert parsed.to_dict()["g2"] == [[0.1, 0.0], [0.5, 1.5]]
    assert AcsfHypers(g2=[0.1, 0.0, 0.2, 0.0], g4=(), species=["Si"]).g2 == ((0.1, 0.0), (0.2, 0.0))


def test_presets_by_name_and_path(tmp_path):
    assert {"default", "compact"} <= set(available_presets())
    assert load_acsf_hypers("default") == AcsfHypers()
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"cutoff": 4.0, "g2": [[0.2, 0.0]], "g4": [], "g5": []}))
    assert load_acsf_hypers(path) == AcsfHypers(cutoff=4.0, g2=((0.2, 0.0),), g4=(), g5=())
    assert load_acsf_hypers(str(path)).cutoff == 4.0
    with pytest.raises(ParameterError,
                       match=r"unknown ACSF preset 'nope'; presets: .*compact.*default"):
        load_acsf_hypers("nope")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json: cannot read ACSF hypers"):
        load_acsf_hypers(bad)
    bad.write_text(json.dumps({"cutof": 4.0}))
    with pytest.raises(ParameterError, match="unknown acsf hyper 'cutof'; did you mean 'cutoff'"):
        load_acsf_hypers(bad)


@pytest.mark.parametrize("kwargs, match", [
    (dict(cutoff=0.0), r"acsf hyper 'cutoff' must be > 0"),
    (dict(cutoff=-2.0), r"acsf hyper 'cutoff' must be > 0"),
    (dict(g2=(), g4=(), g5=()), r"'g2', 'g4' and 'g5' are all empty"),
    (dict(g2=(0.1, 0.0, 0.3)), r"acsf hyper 'g2': expected \(eta, r_s\) groups of 2"),
    (dict(g2=((-0.1, 0.0),)), r"acsf hyper 'g2': eta must be >= 0"),
    (dict(g2=((0.1, -1.0),)), r"acsf hyper 'g2': r_s must be >= 0"),
    (dict(g4=((0.1, 0.5, 1.0),)), r"acsf hyper 'g4': zeta must be >= 1"),
    (dict(g5=((0.1, 1.0, 0.5),)), r"acsf hyper 'g5': lambda must be \+1 or -1"),
    (dict(g4=(("x", 1, 1),)), r"acsf hyper 'g4': cannot read 'x'"),
    (dict(species=("Xx",)), r"hyper 'species': unknown element 'Xx'"),
])
def test_bad_hypers_raise_parameter_error(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        AcsfHypers(**kwargs)


def test_unknown_species_in_fixed_list():
    atoms = Atoms("SiO", positions=[[0, 0, 0], [1.6, 0, 0]])
    with pytest.raises(ParameterError, match=r"acsf hyper 'species': O in the frames but not in"):
        acsf(atoms, AcsfHypers(species=(14,)))
    with pytest.raises(ParameterError, match="hypers of type 'distance_2b' given where 'acsf'"):
        from mlptools.descriptors.hypers import TwoBodyHypers

        acsf(atoms, TwoBodyHypers())
