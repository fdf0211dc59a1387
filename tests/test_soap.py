"""SOAP power spectrum: peer values (featomic), exact gradients (finite differences),
invariances."""

import dataclasses

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from gradcheck import numerical_position_gradient, numerical_strain_gradient
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from strategies import atoms_in_cell

from mlptools.descriptors.hypers import SoapHypers
from mlptools.descriptors.soap import (
    featomic_to_full,
    soap_energy_derivatives,
    soap_feature_names,
    soap_power_spectrum,
    unfold_power_spectrum,
)
from mlptools.errors import ParameterError

# small hypers keep the finite-difference tests fast; the code paths are the same
SMALL = SoapHypers(cutoff=3.5, cutoff_width=1.0, n_max=3, l_max=3, sigma=0.4, species=(1, 8),
                   center_weight=0.7)


def _random_atoms(rng, n=6, pbc=True, species=(1, 8), cell_scale=4.5):
    cell = np.diag([cell_scale, cell_scale * 1.1, cell_scale * 1.2]) + rng.normal(0, 0.3, (3, 3))
    positions = rng.random((n, 3)) @ cell
    return Atoms(numbers=rng.choice(species, n), positions=positions, cell=cell, pbc=pbc)


def _features(atoms, hypers):
    return soap_power_spectrum([atoms], hypers).features


# ----------------------------------------------------------------------------- hypers


@pytest.mark.parametrize("key, value, match", [
    ("n_max", 0, "'n_max'"),
    ("l_max", -1, "'l_max'"),
    ("cutoff", -1.0, "'cutoff'"),
    ("cutoff", 0.0, "'cutoff'"),
    ("cutoff_width", 5.0, "'cutoff_width'"),
    ("cutoff_width", -0.1, "'cutoff_width'"),
    ("sigma", 0.0, "'sigma'"),
    ("scaling_r0", -1.0, "'scaling_r0'"),
    ("scaling_rate", 0.0, "'scaling_rate'"),
    ("scaling_exponent", 1.5, "'scaling_exponent'"),
    ("radial_basis", "dvr", "'radial_basis'"),
    ("center_weight", float("nan"), "'center_weight'"),
])
def test_hypers_validation(key, value, match):
    with pytest.raises(ParameterError, match=match):
        SoapHypers(**{key: value})


def test_hypers_round_trip_and_unknown_key():
    hp = SoapHypers.from_string("cutoff=4 n_max=3 l_max=2 species=Si,O normalize=false")
    assert hp.species == (8, 14) and hp.cutoff == 4.0 and hp.normalize is False
    assert SoapHypers.from_dict(hp.to_dict()) == hp
    assert SoapHypers.from_json(hp.to_json()) == hp
    with pytest.raises(ParameterError, match="did you mean 'n_max'"):
        SoapHypers.from_dict({"nmax": 4})


def test_unknown_species_in_fixed_list():
    atoms = Atoms("HOSi", positions=[[0, 0, 0], [1.5, 0, 0], [0, 1.5, 0]])
    with pytest.raises(ParameterError, match="Si in the frames"):
        soap_power_spectrum([atoms], SMALL)


def test_species_resolved_from_frames_and_layout():
    atoms = Atoms("H2O", positions=[[0, 0, 0], [0.9, 0, 0], [0, 1.0, 0.2]])
    hp = dataclasses.replace(SMALL, species=())
    ds = soap_power_spectrum([atoms], hp)
    assert ds.hypers["species"] == [1, 8]
    n, L1 = hp.n_max, hp.l_max + 1
    assert ds.n_features == L1 * (2 * n * (n + 1) // 2 + n * n) == len(ds.feature_names)
    assert ds.feature_names[0] == "P[H,H](n=0,n'=0,l=0)"
    assert ds.feature_names[-1] == f"P[O,O](n={n - 1},n'={n - 1},l={L1 - 1})"
    assert soap_feature_names(SoapHypers.from_dict(ds.hypers)) == ds.feature_names
    assert_allclose(np.linalg.norm(ds.features, axis=1), 1.0, rtol=1e-12)
    assert ds.center_species.tolist() == [1, 1, 8]


# ----------------------------------------------------------------------------- conventions


def test_folded_dot_product_equals_full_power_spectrum(rng):
    """X·X' over the stored (folded, √2-scaled) features equals the full P·P'."""
    hp = dataclasses.replace(SMALL, normalize=False)
    atoms = _random_atoms(rng, n=8)
    X = _features(atoms, hp)
    P = unfold_power_spectrum(X, hp).reshape(len(atoms), -1)
    assert_allclose(X @ X.T, P @ P.T, rtol=1e-12, atol=1e-14)
    # the full spectrum is symmetric under (a, n) <-> (b, n')
    Pf = unfold_power_spectrum(X, hp)
    assert_allclose(Pf, Pf.transpose(0, 2, 1, 4, 3, 5), rtol=0, atol=0)


@pytest.mark.parametrize("scaling", [None, (2.5, 1.0, 4), (3.0, 0.5, 6)],
                         ids=["plain", "willatt-2.5-1-4", "willatt-3-0.5-6"])
def test_against_featomic(rng, scaling):
    """Same values as featomic 0.6 after the documented map (featomic_to_full), to 1e-7 of the
    largest entry (featomic's and our radial splines are each accurate to ~1e-8), and
    normalised kernel similarities equal to 1e-8; with and without Willatt's radial scaling."""
    featomic = pytest.importorskip("featomic")
    hp = SoapHypers(cutoff=4.0, cutoff_width=0.5, n_max=4, l_max=3, sigma=0.5, normalize=False,
                    species=(6, 14), center_weight=0.8)
    density = {"type": "Gaussian", "width": hp.sigma, "center_atom_weight": hp.center_weight}
    if scaling is not None:
        hp = dataclasses.replace(hp, scaling_r0=scaling[0], scaling_rate=scaling[1],
                                 scaling_exponent=scaling[2])
        density["scaling"] = {"type": "Willatt2018", "scale": scaling[0], "rate": scaling[1],
                              "exponent": scaling[2]}
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.positions += rng.normal(0, 0.1, atoms.positions.shape)
    atoms.numbers[:3] = 6
    ours = unfold_power_spectrum(_features(atoms, hp), hp)
    calc = featomic.SoapPowerSpectrum(
        cutoff={"radius": hp.cutoff, "smoothing": {"type": "ShiftedCosine",
                                                   "width": hp.cutoff_width}},
        density=density,
        basis={"type": "TensorProduct", "max_angular": hp.l_max,
               "radial": {"type": "Gto", "max_radial": hp.n_max - 1}})
    theirs = featomic_to_full(calc.compute([atoms]), hp, len(atoms))
    scale = np.abs(theirs).max()
    assert_allclose(ours, theirs, rtol=0, atol=1e-7 * scale)
    A, B = ours.reshape(len(atoms), -1), theirs.reshape(len(atoms), -1)
    A = A / np.linalg.norm(A, axis=1)[:, None]
    B = B / np.linalg.norm(B, axis=1)[:, None]
    assert_allclose(A @ A.T, B @ B.T, rtol=0, atol=1e-8)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("pbc", [True, (True, False, True), False], ids=["pbc", "mixed", "none"])
@pytest.mark.parametrize("normalize", [False, True])
def test_position_gradients_finite_differences(rng, pbc, normalize):
    # radial scaling on in the normalised cases: its derivative is then checked too
    hp = dataclasses.replace(SMALL, normalize=normalize, scaling_r0=2.0 if normalize else 0.0)
    atoms = _random_atoms(rng, n=6, pbc=pbc)
    ds = soap_power_spectrum([atoms], hp, gradients=True)
    n = len(atoms)
    analytic = np.stack([ds.dense_gradient(r, n) for r in range(n)])       # (rows, n, 3, F)

    def func(positions):
        moved = atoms.copy()
        moved.positions = positions
        return _features(moved, hp)

    numeric = numerical_position_gradient(func, atoms.positions, h=1e-5).transpose(2, 0, 1, 3)
    assert np.abs(analytic).max() > 1e-2
    assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    # the samples are the centre and its distinct neighbour atoms, sorted, without duplicates
    keys = ds.grad_samples[:, 0] * n + ds.grad_samples[:, 2]
    assert np.all(np.diff(keys) > 0)


def test_gradients_small_cell_with_images(rng):
    """A cell smaller than the cutoff: several images of one atom (and of the centre itself)
    fold onto one sample row."""
    hp = dataclasses.replace(SMALL, cutoff=4.0, normalize=True)
    atoms = _random_atoms(rng, n=3, pbc=True, cell_scale=2.6)
    ds = soap_power_spectrum([atoms], hp, gradients=True, strain=True)
    n = len(atoms)
    assert ds.grad_samples.shape[0] == n * n
    analytic = np.stack([ds.dense_gradient(r, n) for r in range(n)])

    def func(positions):
        moved = atoms.copy()
        moved.positions = positions
        return _features(moved, hp)

    numeric = numerical_position_gradient(func, atoms.positions).transpose(2, 0, 1, 3)
    assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    # translation invariance: the rows of one centre sum to zero
    assert_allclose(analytic.sum(axis=1), 0.0, atol=1e-12)


@pytest.mark.parametrize("pbc", [True, (True, True, False), False], ids=["pbc", "mixed", "none"])
def test_strain_gradient_finite_differences(rng, pbc):
    hp = dataclasses.replace(SMALL, normalize=True)
    atoms = _random_atoms(rng, n=5, pbc=pbc)
    ds = soap_power_spectrum([atoms], hp, strain=True)

    def func(positions, cell):
        return _features(Atoms(atoms.numbers, positions, cell=cell, pbc=pbc), hp)

    numeric = numerical_strain_gradient(func, atoms.positions, atoms.cell.array)
    assert_allclose(ds.strain_grad, numeric.transpose(2, 0, 1, 3), rtol=1e-6, atol=1e-8)
    assert_allclose(ds.strain_grad, ds.strain_grad.transpose(0, 2, 1, 3), atol=1e-12)


@pytest.mark.parametrize("pbc", [True, False], ids=["pbc", "none"])
@pytest.mark.parametrize("normalize", [False, True])
def test_adjoint_energy_derivatives(rng, pbc, normalize):
    """The adjoint contraction against finite differences of a nonlinear energy of the spectra,
    and against the full gradient arrays contracted with the same ∂ε/∂X."""
    from mlptools.models.training import contract_gradients

    hp = dataclasses.replace(SMALL, normalize=normalize, scaling_r0=2.5 if pbc else 0.0,
                             scaling_exponent=3)
    atoms = _random_atoms(rng, n=7, pbc=pbc)
    w = rng.normal(size=_features(atoms, hp).shape[1])

    def local_energy(X):
        y = X @ w
        return np.sin(y), np.cos(y)[:, None] * w[None, :]

    res = soap_energy_derivatives(atoms, hp, local_energy, n_threads=2)

    def energy(positions, cell=None):
        moved = atoms.copy()
        if cell is not None:
            moved.set_cell(cell)
        moved.positions = positions
        return local_energy(_features(moved, hp))[0].sum()

    num = numerical_position_gradient(energy, atoms.positions)
    assert np.abs(num).max() > 1e-3
    assert_allclose(res["dE_dr"], num, rtol=1e-6, atol=1e-9)
    ds = soap_power_spectrum([atoms], hp, gradients=True, strain=True)
    assert_allclose(res["features"], ds.features, rtol=1e-12, atol=1e-15)
    dE_dr, dE_de = contract_gradients(ds, local_energy(ds.features)[1], len(atoms))
    assert_allclose(res["dE_dr"], dE_dr, rtol=1e-10, atol=1e-12)
    assert_allclose(res["dE_de"], dE_de, rtol=1e-10, atol=1e-12)
    if pbc is True:
        assert_allclose(res["dE_de"], numerical_strain_gradient(
            energy, atoms.positions, atoms.cell.array), rtol=1e-6, atol=1e-9)
    # the thread count does not change the result
    again = soap_energy_derivatives(atoms, hp, local_energy, n_threads=1)
    assert np.array_equal(again["dE_dr"], res["dE_dr"])


def test_thread_count_bitwise_identical(rng):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 1, 1)
    atoms.positions += rng.normal(0, 0.1, atoms.positions.shape)
    hp = SoapHypers(cutoff=4.0, n_max=4, l_max=3)
    one = soap_power_spectrum([atoms], hp, gradients=True, strain=True, n_threads=1)
    two = soap_power_spectrum([atoms], hp, gradients=True, strain=True, n_threads=2)
    for key in ("features", "grad_values", "strain_grad", "grad_samples"):
        assert np.array_equal(getattr(one, key), getattr(two, key)), key


def test_several_frames_and_empty_frame(rng):
    a = _random_atoms(rng, n=4)
    b = _random_atoms(rng, n=3, pbc=False)
    ds = soap_power_spectrum([a, Atoms(), b], SMALL, gradients=True, strain=True)
    assert ds.n_structures == 3 and ds.n_rows == 7
    assert ds.structure_index.tolist() == [0] * 4 + [2] * 3
    alone = soap_power_spectrum([b], SMALL, gradients=True, strain=True)
    assert_allclose(ds.features[4:], alone.features, rtol=0, atol=0)
    sel = ds.grad_samples[:, 1] == 2
    assert_allclose(ds.grad_values[sel], alone.grad_values, rtol=0, atol=0)
    assert np.array_equal(ds.grad_samples[sel, 0] - 4, alone.grad_samples[:, 0])
    assert_allclose(ds.strain_grad[4:], alone.strain_grad, rtol=0, atol=0)


# ----------------------------------------------------------------------------- invariances


def _rotation(seed):
    q = np.random.default_rng(seed).normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array([[a*a + b*b - c*c - d*d, 2*(b*c - a*d), 2*(b*d + a*c)],
                     [2*(b*c + a*d), a*a - b*b + c*c - d*d, 2*(c*d - a*b)],
                     [2*(b*d - a*c), 2*(c*d + a*b), a*a - b*b - c*c + d*d]])


@given(atoms_in_cell(max_atoms=8, min_distance=0.7, species=(1, 8)),
       st.integers(0, 2**31 - 1))
def test_rotation_translation_wrap_invariance(system, seed):
    positions, numbers, cell, pbc = system
    atoms = Atoms(numbers, positions, cell=cell, pbc=pbc)
    ref = _features(atoms, SMALL)
    R = _rotation(seed)
    shift = np.random.default_rng(seed).normal(size=3) * 3.0
    moved = Atoms(numbers, positions @ R.T + shift, cell=cell @ R.T, pbc=pbc)
    assert_allclose(_features(moved, SMALL), ref, rtol=1e-9, atol=1e-10)
    if np.all(pbc):
        wrapped = atoms.copy()
        wrapped.wrap()
        assert_allclose(_features(wrapped, SMALL), ref, rtol=1e-9, atol=1e-10)


@given(atoms_in_cell(max_atoms=8, min_distance=0.7, species=(1, 8)),
       st.integers(0, 2**31 - 1))
def test_permutation_invariance(system, seed):
    positions, numbers, cell, pbc = system
    atoms = Atoms(numbers, positions, cell=cell, pbc=pbc)
    ref = soap_power_spectrum([atoms], SMALL, gradients=True)
    perm = np.random.default_rng(seed).permutation(len(atoms))
    got = soap_power_spectrum([atoms[perm]], SMALL, gradients=True)
    assert_allclose(got.features, ref.features[perm], rtol=1e-10, atol=1e-12)
    n = len(atoms)
    for new_row, old_row in enumerate(perm[:3]):
        assert_allclose(got.dense_gradient(new_row, n), ref.dense_gradient(old_row, n)[perm],
                        rtol=1e-10, atol=1e-12)


@given(atoms_in_cell(max_atoms=5, min_distance=0.7, species=(1, 8)))
def test_supercell_gives_same_per_atom_vectors(system):
    positions, numbers, cell, pbc = system
    atoms = Atoms(numbers, positions, cell=cell, pbc=True)
    ref = _features(atoms, SMALL)
    big = _features(atoms * (2, 2, 2), SMALL)
    assert_allclose(big, np.tile(ref, (8, 1)), rtol=1e-9, atol=1e-10)


def test_smooth_at_cutoff():
    """As a neighbour crosses the cutoff, its contribution and its gradient go to zero."""
    hp = dataclasses.replace(SMALL, normalize=False)
    rc = hp.cutoff
    iso = _features(Atoms("O", positions=[[0, 0, 0]]), hp)[0]

    def dimer(r):
        ds = soap_power_spectrum([Atoms("OH", positions=[[0, 0, 0], [r, 0, 0]])], hp,
                                 gradients=True)
        return ds.features[0], ds.dense_gradient(0, 2)[1, 0]

    prev = None
    for delta in (1e-2, 1e-3, 1e-4):
        x, g = dimer(rc - delta)
        dx, dg = np.abs(x - iso).max(), np.abs(g).max()
        if prev is not None:      # f_c ~ delta², f_c' ~ delta
            assert dx < prev[0] * 0.02 and dg < prev[1] * 0.2
        prev = (dx, dg)
    assert prev[0] < 1e-8 and prev[1] < 1e-3
    x, g = dimer(rc + 1e-9)
    assert np.array_equal(x, iso) and not np.any(g)


def test_isolated_atom_without_centre_weight_is_zero():
    hp = dataclasses.replace(SMALL, center_weight=0.0, normalize=True)
    atoms = Atoms("HO", positions=[[0, 0, 0], [10.0, 0, 0]])
    ds = soap_power_spectrum([atoms], hp, gradients=True, strain=True)
    assert np.all(np.isfinite(ds.features)) and not np.any(ds.features)
    assert not np.any(ds.grad_values) and not np.any(ds.strain_grad)
    assert ds.grad_samples.tolist() == [[0, 0, 0], [1, 0, 1]]
