"""Fitted models (GAP, linear, quadratic): exact derivatives, invariances, accuracy on SW data,
file round trips, E0, the ZBL baseline and the stacked QR solver."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from gradcheck import (
    check_pair_baseline_derivatives,
    directional_derivative,
    numerical_strain_gradient,
)

import mlptools
from mlptools import keys
from mlptools.calculators import make_calculator
from mlptools.errors import ComputationError, InputError, ParameterError
from mlptools.models import baselines, training
from mlptools.models.base import fit_e0, load_model, parse_e0, save_model
from mlptools.models.sparsify import select_rows
from mlptools.workflows.fit import fit_model

SOAP = {"cutoff": 4.5, "cutoff_width": 1.0, "n_max": 6, "l_max": 4, "sigma": 0.5}


def sw_frames(rng, n, *, repeat=(1, 1, 1), rattle=0.12, strain=0.03):
    """Rattled, strained diamond Si labelled with Stillinger-Weber."""
    calc = make_calculator("sw")
    out = []
    for _ in range(n):
        atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(repeat)
        eps = rng.uniform(-strain, strain, (3, 3))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        atoms.positions += rng.normal(0, rattle, atoms.positions.shape)
        atoms.calc = calc
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
        atoms.info["config_type"] = "bulk"
        out.append(atoms)
    return out


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    # 16-atom cells: with 8 the rattled second shell (3.84 Å) crosses SW's 3.77 Å cutoff in too
    # few environments to learn from
    return sw_frames(rng, 30, repeat=(2, 1, 1)), sw_frames(rng, 10, repeat=(2, 1, 1))


HYPERS = {
    "gap": {"soap": SOAP, "n_sparse": 150, "twobody": "none", "threebody": "none"},
    "gap+2b": {"soap": SOAP, "n_sparse": 150, "threebody": "none",
               "twobody": {"cutoff": 4.5, "n_sparse": 15, "delta": 0.5, "theta": 0.4}},
    "gap+3b": {"soap": SOAP, "n_sparse": 150, "twobody": "none",
               "threebody": {"cutoff": 3.7, "n_sparse": 60, "delta": 0.1, "theta": 1.0}},
    "linear": {"soap": {**SOAP, "normalize": False}},
    "quadratic": {"soap": {**SOAP, "normalize": False}, "n_components": 12},
}


@pytest.fixture(scope="module")
def fitted(data):
    train, valid = data
    return {kind: fit_model(kind.split("+")[0], train, h, rng=np.random.default_rng(1),
                            valid=valid)
            for kind, h in HYPERS.items()}


def _probe(rng):
    atoms = bulk("Si", "diamond", a=5.431).repeat(2)          # non-orthogonal cell
    atoms.positions += rng.normal(0, 0.1, atoms.positions.shape)
    return atoms


@pytest.mark.parametrize("kind", list(HYPERS))
def test_forces_are_minus_energy_gradient(fitted, kind, rng):
    model = fitted[kind].model
    atoms = _probe(rng)
    res = model.predict(atoms)

    def energy(pos):
        a = atoms.copy()
        a.positions = pos
        return model.predict(a, forces=False, stress=False)["energy"]

    for _ in range(3):
        u = rng.normal(size=atoms.positions.shape)
        u /= np.linalg.norm(u)
        # h = 3e-4 Å: GAP energies carry ~1e-11 eV of rounding (large, cancelling α), so much
        # smaller steps are noise-dominated; observed FD errors here are <= 1e-7 eV/Å
        fd = directional_derivative(energy, atoms.positions, u, h=3e-4)
        assert np.sum(res["forces"] * u) == pytest.approx(fd, rel=1e-6, abs=5e-7)


@pytest.mark.parametrize("kind", list(HYPERS))
def test_stress_is_strain_derivative_over_volume(fitted, kind, rng):
    model = fitted[kind].model
    atoms = _probe(rng)
    res = model.predict(atoms)

    def energy(pos, cell):
        a = atoms.copy()
        a.set_cell(cell)
        a.positions = pos
        return model.predict(a, forces=False, stress=False)["energy"]

    dE = numerical_strain_gradient(energy, atoms.positions, atoms.cell.array, h=2e-4)
    m = dE / atoms.get_volume()
    voigt = np.array([m[0, 0], m[1, 1], m[2, 2], m[1, 2], m[0, 2], m[0, 1]])
    np.testing.assert_allclose(res["stress"], voigt, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", list(HYPERS))
def test_rotation_translation_invariance(fitted, kind, rng):
    model = fitted[kind].model
    atoms = _probe(rng)
    ref = model.predict(atoms)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    moved = atoms.copy()
    moved.set_cell(atoms.cell.array @ q.T)
    moved.positions = atoms.positions @ q.T + rng.normal(size=3)
    got = model.predict(moved)
    assert got["energy"] == pytest.approx(ref["energy"], rel=1e-10, abs=1e-9)
    np.testing.assert_allclose(got["forces"], ref["forces"] @ q.T, atol=1e-8)
    np.testing.assert_allclose(got["energies"], ref["energies"], atol=1e-9)


# SW is a 3-body potential that these models can represent closely. Measured held-out errors
# (energy RMSE meV/atom, force RMSE / force RMS of the frames ~2.5 eV/Å): GAP 2.1, 0.032; GAP+2b
# 1.3, 0.022; GAP+3b 1.27, 0.020; linear 0.41, 0.0084; quadratic 0.48, 0.0079. Bounds: about
# twice those.
TOLERANCE = {"gap": (4.0, 0.065), "gap+2b": (2.6, 0.045), "gap+3b": (2.6, 0.04),
             "linear": (1.0, 0.02), "quadratic": (1.0, 0.02)}


@pytest.mark.parametrize("kind", list(HYPERS))
def test_reproduces_stillinger_weber_on_held_out_frames(fitted, data, kind):
    _, valid = data
    row = fitted[kind].valid_errors.overall
    force_rms = np.sqrt(np.mean(np.concatenate([a.get_forces().ravel() for a in valid]) ** 2))
    e_tol, f_tol = TOLERANCE[kind]
    assert row.energy_rmse < e_tol, row
    assert row.forces_rmse < f_tol * force_rms, (row, force_rms)
    assert row.n_frames == len(valid)


@pytest.mark.parametrize("kind", list(HYPERS))
def test_file_round_trip_gives_identical_predictions(fitted, kind, tmp_path, rng):
    model = fitted[kind].model
    path = tmp_path / f"{kind}.h5"
    save_model(path, model, provenance={"test": True})
    calc = mlptools.load(path)
    assert calc.model.kind == kind.split("+")[0]
    assert len(getattr(calc.model, "twobody_terms", [])) == (kind in ("gap+2b", "gap+3b"))
    assert calc.species == (14,)
    assert calc.cutoff == pytest.approx(4.5)
    atoms = _probe(rng)
    ref = model.predict(atoms)
    atoms.calc = calc
    assert atoms.get_potential_energy() == ref["energy"]
    np.testing.assert_array_equal(atoms.get_forces(), ref["forces"])
    np.testing.assert_array_equal(atoms.get_stress(), ref["stress"])
    np.testing.assert_array_equal(calc.get_property("energies", atoms), ref["energies"])
    assert load_model(path).training_errors["train"]["rows"][-1]["config_type"] == "overall"


def test_unknown_species_raises_input_error(fitted):
    atoms = bulk("C", "diamond", a=3.57)
    atoms.calc = mlptools.models.calculator.MlpCalculator(fitted["gap"].model)
    with pytest.raises(InputError, match="species C not covered by the model"):
        atoms.get_potential_energy()


def test_gap_uncertainty_grows_away_from_the_data(fitted, data, rng):
    model = fitted["gap"].model
    near = data[1][0]
    far = bulk("Si", "diamond", a=5.431 * 0.8, cubic=True)   # 20 % compressed: no data there
    far.positions += rng.normal(0, 0.05, far.positions.shape)
    pn = model.predict(near, uncertainty=True)
    pf = model.predict(far, uncertainty=True)
    for p, atoms in ((pn, near), (pf, far)):
        assert p[keys.ENERGIES_UNCERTAINTY].shape == (len(atoms),)
        assert p[keys.FORCES_UNCERTAINTY].shape == (len(atoms),)
        assert np.all(p[keys.ENERGIES_UNCERTAINTY] >= 0)
    assert pf[keys.ENERGIES_UNCERTAINTY].mean() > 5 * pn[keys.ENERGIES_UNCERTAINTY].mean()
    assert pf[keys.FORCES_UNCERTAINTY].mean() > pn[keys.FORCES_UNCERTAINTY].mean()
    assert pn[keys.ENERGY_UNCERTAINTY] == pytest.approx(
        np.sqrt(np.sum(pn[keys.ENERGIES_UNCERTAINTY] ** 2)))


def test_gap_variance_is_prior_far_from_every_sparse_point(fitted):
    model = fitted["gap"].model
    # a feature vector orthogonal to every sparse point: k_x = 0, variance = δ² k(x, x)
    X = np.zeros((1, model.sparse_features.shape[1]))
    var = model.local_variance(X + 0.0, np.zeros((1, model.n_sparse)))
    assert var[0] == pytest.approx(0.0)
    x = model.sparse_features[:1]
    kx = model.delta ** 2 * (x @ model.sparse_features.T) ** model.zeta
    # at a sparse point the posterior variance is below the prior δ²
    assert model.local_variance(x, kx)[0] < 0.5 * model.delta ** 2


# --------------------------------------------------------------------------------- E0, baseline


def test_e0_isolated_given_and_fitted(rng):
    a = bulk("Si", "diamond", a=5.43, cubic=True)
    frames = []
    for k in range(5):
        f = a.copy()
        f.numbers[: k + 1] = 32
        n_ge = k + 1
        f.calc = SinglePointCalculator(f, energy=-4.0 * (8 - n_ge) - 3.5 * n_ge)
        frames.append(f)
    e0, method = fit_e0(frames, (14, 32))
    assert method == "fitted"
    assert e0[14] == pytest.approx(-4.0) and e0[32] == pytest.approx(-3.5)
    from ase import Atoms

    iso = Atoms("Si", positions=[[0, 0, 0]])
    iso.calc = SinglePointCalculator(iso, energy=-0.16)
    iso.info["config_type"] = "IsolatedAtom"
    e0, method = fit_e0(frames + [iso], (14, 32), given={32: -0.1})
    assert e0 == {14: -0.16, 32: -0.1} and method == "given+isolated"
    assert parse_e0("Si=-0.16, Ge=-0.1") == {14: -0.16, 32: -0.1}
    with pytest.raises(ParameterError, match="unknown element 'Xx'"):
        parse_e0("Xx=1")


def test_zbl_energy_forces_stress(rng):
    zbl = baselines.ZBL()
    r_in, r_out = zbl.radii(14, 14)
    atoms = bulk("Si", "diamond", a=5.431, cubic=True)
    atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
    atoms.positions[1] = atoms.positions[0] + [0.9, 0.3, 0.2]          # a close contact
    res = zbl.compute(atoms)
    d = np.linalg.norm(atoms.positions[1] - atoms.positions[0])
    assert d < r_in
    phi, _ = baselines.zbl_pair(np.array([d]), 14, 14)
    # only the one close pair is inside r_out: its energy is the bare ZBL value
    assert res["energies"].sum() == pytest.approx(phi[0], rel=1e-12)
    # the universal screening at x = r/a = 1, from the published coefficients:
    # 0.18175 e^-3.1998 + 0.50986 e^-0.94229 + 0.28022 e^-0.4029 + 0.02817 e^-0.20162 = 0.41644
    a = 0.46850 / (2 * 14 ** 0.23)
    phi1, _ = baselines.zbl_pair(np.array([a]), 14, 14)
    assert phi1[0] * a / (baselines.E2_4PIEPS0 * 196) == pytest.approx(0.41644, abs=1e-5)

    # a contact inside the switching region: finite differences of forces and stress
    atoms.positions[1] = atoms.positions[0] + [1.3, 0.3, 0.2]
    check_pair_baseline_derivatives(zbl, atoms, rng)
    assert baselines.from_string("none") is None
    with pytest.raises(ParameterError, match="inner < outer"):
        baselines.from_string("zbl inner=0.8 outer=0.7")


# --------------------------------------------------------------------------------- solver


def test_stacked_qr_matches_lstsq(rng):
    A = rng.normal(size=(5000, 60))
    b = rng.normal(size=5000)
    qr = training.StackedQR(60, block=700)
    for k in range(0, 5000, 333):
        qr.add(A[k:k + 333], b[k:k + 333])
    w, R = qr.solve()
    ref = np.linalg.lstsq(A, b, rcond=None)[0]
    np.testing.assert_allclose(w, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(R.T @ R, A.T @ A, rtol=1e-9, atol=1e-9)
    sing = training.StackedQR(3)
    sing.add(np.array([[1.0, 1.0, 0.0], [2.0, 2.0, 0.0]]), np.ones(2))
    with pytest.raises(ComputationError, match="singular least-squares system: raise x"):
        sing.solve("raise x")


def test_integer_power_by_squaring_matches_numpy_and_keeps_its_input(rng):
    from mlptools.models.gap import _int_power

    x = rng.uniform(-1.0, 1.0, (6, 5))
    x0 = x.copy()
    for n in range(14):
        np.testing.assert_allclose(_int_power(x, n), x ** n, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(x, x0)


def test_sparse_selection(rng):
    X = rng.normal(size=(300, 10))
    X = np.vstack([X, X[:50]])                      # duplicates are never picked twice
    for method in ("cur", "fps"):
        rows = select_rows(X, 40, method, rng=rng)
        assert len(rows) == 40 == len(np.unique(np.round(X[rows], 10), axis=0))
    assert len(select_rows(X, 1000, "fps", rng=rng)) == 300
    with pytest.raises(ParameterError, match="sparse method"):
        select_rows(X, 4, "random", rng=rng)


def test_singular_linear_system_names_the_hyper(data):
    train, _ = data
    with pytest.raises(ComputationError, match="ridge"):
        fit_model("linear", train[:1], {"soap": {**SOAP, "normalize": False}, "ridge": 0.0,
                                        "sigma_force": 0.0, "sigma_virial": 0.0},
                  rng=np.random.default_rng(0))


def test_frames_without_forces_are_refused_when_sigma_force_is_set(data):
    train, _ = data
    a = train[0].copy()
    a.calc = SinglePointCalculator(a, energy=train[0].get_potential_energy())
    with pytest.raises(InputError, match="frame 1: no forces"):
        fit_model("linear", [train[1], a], HYPERS["linear"], rng=np.random.default_rng(0))


def test_hypers_round_trip_and_unknown_key():
    from mlptools.models.gap import GapHypers
    from mlptools.models.linear import LinearHypers

    h = GapHypers.from_dict({"soap": SOAP, "zeta": 2, "n_sparse": 10})
    assert GapHypers.from_dict(h.to_dict()) == h
    assert GapHypers.from_json(h.to_json()) == h
    off = GapHypers.from_dict({"twobody": "none"})
    assert off.twobody is None and GapHypers.from_dict(off.to_dict()) == off
    assert GapHypers().twobody.cutoff == 5.0
    assert LinearHypers.from_string("ridge=1e-3 n_components=5").n_components == 5
    with pytest.raises(ParameterError, match="did you mean 'n_sparse'"):
        GapHypers.from_dict({"n_spars": 10})


def test_model_spec_calculator_with_uncertainty(fitted, tmp_path, rng):
    from mlptools.calculators import calculator_from_argument, make_calculator

    path = tmp_path / "gap.h5"
    save_model(path, fitted["gap"].model)
    calc = make_calculator(f"model:{path} uncertainty=true")
    atoms = _probe(rng)
    atoms.calc = calc
    atoms.get_potential_energy()
    assert keys.ENERGY_UNCERTAINTY in calc.results
    assert calc.get_property(keys.FORCES_UNCERTAINTY, atoms).shape == (len(atoms),)
    assert calculator_from_argument(str(path)).species == (14,)


def test_zbl_switches_off_below_the_training_distances(data):
    from mlptools.neighbors import neighbor_list

    train, _ = data
    zbl = baselines.ZBL(inner=0.6, outer=1.2).fit_to(train, (14,))   # 2.66 Å before fitting
    d_min = min(neighbor_list("d", a.positions, a.cell.array, a.pbc, 3.0)[0].min()
                for a in train)
    r_in, r_out = zbl.radii(14, 14)
    assert r_out == pytest.approx(d_min - 0.2) and r_in == pytest.approx(r_out / 2)
    assert all(zbl.compute(a)["energies"].sum() == 0.0 for a in train)
    again = baselines.from_dict(zbl.to_dict())
    assert again.radii(14, 14) == (r_in, r_out)


def test_frame_weights_and_config_type_sigmas(data, rng):
    train, valid = data
    h = {"soap": {**SOAP, "normalize": False}}
    ref = fit_model("linear", train, h, rng=rng).model
    bad = train[0].copy()
    bad.calc = SinglePointCalculator(bad, energy=train[0].get_potential_energy() + 50.0,
                                     forces=train[0].get_forces() + 3.0,
                                     stress=train[0].get_stress())
    bad.info["weight"] = 0.0                       # a weight-0 frame is ignored
    got = fit_model("linear", train + [bad], h, rng=rng).model
    probe = valid[0]
    # (the feature standardisation still sees the frame, so compare predictions, not weights)
    assert got.predict(probe)["energy"] == pytest.approx(ref.predict(probe)["energy"], abs=1e-6)
    np.testing.assert_allclose(got.predict(probe)["forces"], ref.predict(probe)["forces"],
                               atol=1e-6)
    # a huge σ for one config type has the same effect as leaving those frames out
    bad.info.pop("weight")
    bad.info["config_type"] = "junk"
    loose = fit_model("linear", train + [bad], {**h, "config_type_sigma": "junk=1e6,1e6,1e6"},
                      rng=rng).model
    assert loose.predict(probe)["energy"] == pytest.approx(ref.predict(probe)["energy"],
                                                           abs=1e-6)


def test_threebody_weight_derivative_matches_finite_differences_also_at_equal_bonds():
    from mlptools.models.threebody import _weight

    rng = np.random.default_rng(4)
    # r_ij, r_ik inside the transition region, and r_ij == r_ik exactly (q = 0: the limit)
    r = np.column_stack([rng.uniform(2.9, 3.6, 20), rng.uniform(2.9, 3.6, 20)])
    r[:5, 1] = r[:5, 0]
    X = np.column_stack([r.sum(1), (r[:, 0] - r[:, 1]) ** 2, rng.uniform(2, 5, 20)])
    _, dw = _weight(X, 3.7, 0.6)
    h = np.array([1e-6, 1e-8, 1e-6])
    for f in range(3):
        step = np.zeros(3)
        step[f] = h[f]
        lo = X - step
        lo[:, 1] = np.maximum(lo[:, 1], 0.0)  # q >= 0: one-sided at q = 0
        num = (_weight(X + step, 3.7, 0.6)[0] - _weight(lo, 3.7, 0.6)[0]) / (
            (X + step)[:, f] - lo[:, f])
        np.testing.assert_allclose(dw[:, f], num, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["gap", "gap+3b", "linear"])
def test_fitted_model_conserves_energy_in_nve(fitted, kind, data, tmp_path):
    """Velocity Verlet with a fitted model: forces are the exact gradient of its energy, so the
    total energy has no secular drift. 16 Si atoms at ~2000 K, 1 fs, 1000 steps (1 ps).

    Bound: |drift| < 1e-4 eV/atom/ps and fluctuations < 2e-3 eV/atom. Measured: GAP 6e-6,
    GAP+3b 3.5e-5 eV/atom/ps (the fitted slope is fluctuation noise: at 0.5 fs both fall to
    ~2e-6 and the fluctuations by 4×, as for a second-order integrator); SW itself gives
    5e-7 (tests/test_md.py)."""
    from mlptools.io.resumable import ResumableText
    from mlptools.models.calculator import MlpCalculator
    from mlptools.workflows.md import MDSettings, Stage, run_md

    atoms = data[1][0].copy()
    atoms.calc = None
    from ase.md.velocitydistribution import thermalize_momenta

    thermalize_momenta(atoms, temperature_K=1200, rng=np.random.default_rng(2))
    log = tmp_path / "nve.log"
    settings = MDSettings(ensemble="nve", timestep_fs=1.0, log_stride=5, traj_stride=0,
                          checkpoint_stride=0)
    run_md(atoms, MlpCalculator(fitted[kind].model), settings, [Stage("md", 1000, None)],
           rng=np.random.default_rng(1), log_file=ResumableText(log))
    d = np.loadtxt(log)
    n = len(atoms)
    e_tot = d[:, 5] / n
    slope = np.polyfit(d[:, 1] / 1000, e_tot, 1)[0]
    assert abs(slope) < 1e-4, slope
    assert np.abs(e_tot - e_tot[0]).max() < 2e-3


def test_threebody_sparse_budget_is_shared_by_species_triples(rng):
    """The default-on 3-body term stays bounded for multicomponent data: T triples share
    max_total_sparse (Si, Ge, C: 3 centres x 6 neighbour pairs = 18 triples)."""
    from mlptools.models.threebody import ThreeBodyTermHypers, make_terms

    frames = []
    for _ in range(3):
        a = bulk("Si", "diamond", a=5.431, cubic=True).repeat((2, 1, 1))
        a.positions += rng.normal(0, 0.15, a.positions.shape)
        a.numbers = rng.choice([6, 14, 32], len(a))
        frames.append(a)
    species = (6, 14, 32)
    one = make_terms(ThreeBodyTermHypers(n_sparse=40, max_total_sparse=10 ** 6), frames, species)
    assert len(one) == 18
    assert max(t.n_sparse for t in one) == 40
    capped = make_terms(ThreeBodyTermHypers(n_sparse=40, max_total_sparse=180), frames, species)
    assert [t.n_sparse for t in capped] == [min(10, t.n_sparse) for t in one]
    assert sum(t.n_sparse for t in capped) <= 180
    with pytest.raises(ParameterError, match="max_total_sparse"):
        ThreeBodyTermHypers(max_total_sparse=1)


def test_compiled_contraction_matches_the_dense_2b_and_3b_kernels(rng):
    """squared_exponential_contract (Cython, no (p, m) temporaries) against the NumPy kernel
    matrices the fit uses: Σ_m α_m k_pm and Σ_m α_m k_pm X_mf, for 3 features and for 1."""
    from mlptools.models.threebody import ThreeBodyTerm, ThreeBodyTermHypers
    from mlptools.models.twobody import TwoBodyTerm, TwoBodyTermHypers, squared_exponential_contract

    h3 = ThreeBodyTermHypers(delta=0.7, theta=0.8)
    X_m = rng.uniform(0.0, 3.0, (37, 3))
    term = ThreeBodyTerm(h3, 14, 14, 14, X_m, rng.normal(size=37))
    X = rng.uniform(0.0, 3.0, (501, 3))
    k_alpha = term._kernel(X) * term.alpha[None, :]
    ka, kx = squared_exponential_contract(X, X_m, term.alpha, h3.theta, h3.delta)
    np.testing.assert_allclose(ka, k_alpha.sum(axis=1), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(kx, k_alpha @ X_m, rtol=1e-12, atol=1e-14)
    ka0, _ = squared_exponential_contract(X[:0], X_m, term.alpha, h3.theta, h3.delta)
    assert ka0.shape == (0,)

    h2 = TwoBodyTermHypers(delta=1.3, theta=0.4)
    pair = TwoBodyTerm(h2, 14, 14, np.linspace(1.5, 5.0, 23), rng.normal(size=23))
    r = rng.uniform(1.0, 5.0, (300, 1))
    k_alpha = (h2.delta ** 2 * np.exp(-0.5 * (r - pair.r_m[None, :]) ** 2 / h2.theta ** 2)
               * pair.alpha[None, :])
    ka, kr = squared_exponential_contract(r, pair.r_m, pair.alpha, h2.theta, h2.delta)
    np.testing.assert_allclose(ka, k_alpha.sum(axis=1), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(kr[:, 0], k_alpha @ pair.r_m, rtol=1e-12, atol=1e-14)
