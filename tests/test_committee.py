"""Committees (nn and linear): mean prediction, spread as uncertainty, file round trip, CLI.

Independent truths: the spread of a committee must grow away from its training data
(compressed / expanded cells against training-like ones), the mean must equal the average of
the members' own predictions, and forces stay the exact derivative of the mean energy.
"""

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.io import write
from click.testing import CliRunner
from gradcheck import directional_derivative
from test_nn import si_frames

import mlptools
from mlptools import keys
from mlptools.cli import MlptoolsGroup
from mlptools.cli.fit import fit
from mlptools.models import committee as cm
from mlptools.models import linear, nn
from mlptools.models.base import load_model, save_model

NN = nn.NNHypers(hidden=(10, 10), max_iter=300, patience=100, acsf="compact")


@pytest.fixture(scope="module")
def train():
    return si_frames(40, np.random.default_rng(11), max_strain=0.02, sigma=0.08)


@pytest.fixture(scope="module")
def nn_committee(train):
    return cm.fit_nn_committee(train, NN, n_members=4, rng=np.random.default_rng(2))


def _spread(model, frames):
    return np.array([model.predict(a, uncertainty=True)[keys.ENERGY_UNCERTAINTY] / len(a)
                     for a in frames])


def _scaled(volume_factor, rng, count=3):
    out = []
    for atoms in si_frames(count, rng, max_strain=0.0, sigma=0.08):
        atoms.calc = None
        atoms.set_cell(atoms.cell * volume_factor ** (1 / 3), scale_atoms=True)
        out.append(atoms)
    return out


@pytest.mark.parametrize("kind", ["nn", "linear"])
def test_spread_grows_away_from_training_data(kind, train, nn_committee, rng):
    if kind == "nn":
        model = nn_committee
    else:
        hypers = linear.LinearHypers.from_dict({"soap": {"cutoff": 4.0, "n_max": 3, "l_max": 2},
                                                "ridge": 1e-8, "sigma_virial": 0, "sigma_force": 0})
        model = cm.fit_committee(linear.fit_linear, train[:20], hypers, n_members=4,
                                 rng=np.random.default_rng(5))
    near = _spread(model, _scaled(1.0, rng))
    far = np.concatenate([_spread(model, _scaled(f, rng)) for f in (0.7, 1.4)])
    assert np.all(np.isfinite(far)) and near.max() > 0
    assert far.min() > 3 * near.max(), (near, far)
    res = model.predict(_scaled(1.4, rng, 1)[0], uncertainty=True)
    assert res[keys.FORCES_UNCERTAINTY].shape == (8,)
    assert res[keys.ENERGIES_UNCERTAINTY].shape == (8,)


def test_mean_is_average_of_members(nn_committee, rng):
    atoms = si_frames(1, rng)[0]
    res = nn_committee.predict(atoms, uncertainty=True)
    members = [m.predict(atoms) for m in nn_committee.members]
    e_k = np.array([p["energy"] for p in members])
    np.testing.assert_allclose(res["energy"], e_k.mean(), rtol=1e-12)
    np.testing.assert_allclose(res["forces"], np.mean([p["forces"] for p in members], axis=0),
                               atol=1e-12)
    np.testing.assert_allclose(res["stress"], np.mean([p["stress"] for p in members], axis=0),
                               atol=1e-14)
    np.testing.assert_allclose(res[keys.ENERGY_UNCERTAINTY],
                               nn_committee.energy_uncertainty_scale * e_k.std(), rtol=1e-10)
    f_knc = np.array([p["forces"] for p in members])
    np.testing.assert_allclose(res[keys.FORCES_UNCERTAINTY], nn_committee.force_uncertainty_scale
                               * np.sqrt(f_knc.var(axis=0).mean(axis=1)), rtol=1e-10)
    # members differ (bootstrap and seeds), so there is a spread at all
    assert e_k.std() > 0


def test_committee_forces_are_derivatives(nn_committee, rng):
    atoms = si_frames(1, rng)[0]
    res = nn_committee.predict(atoms)

    def energy_at(positions):
        a = atoms.copy()
        a.positions = positions
        return nn_committee.predict(a, forces=False, stress=False)["energy"]

    u = rng.normal(size=atoms.positions.shape)
    u /= np.linalg.norm(u)
    fd = directional_derivative(energy_at, atoms.positions, u)
    np.testing.assert_allclose(np.sum(res["forces"] * u), fd, rtol=1e-6, atol=1e-7)


def test_calibration_matches_errors_on_held_out(nn_committee, rng):
    held_out = si_frames(6, rng, max_strain=0.02, sigma=0.08)
    a_e, a_f = cm.calibrate(nn_committee, held_out)
    assert a_e > 0 and a_f > 0
    num = den = 0.0
    for atoms in held_out:
        p = nn_committee.predict(atoms, uncertainty=True)
        num += np.sum((p["forces"] - atoms.get_forces()) ** 2) / 3
        den += np.sum(p[keys.FORCES_UNCERTAINTY] ** 2)
    assert num / den == pytest.approx(1.0, rel=1e-9)


def test_file_round_trip_and_load(nn_committee, tmp_path, rng):
    path = tmp_path / "committee.h5"
    save_model(path, nn_committee)
    back = load_model(path)
    assert isinstance(back, cm.Committee) and back.member_kind == "nn"
    assert len(back.members) == 4
    atoms = si_frames(1, rng)[0]
    a = nn_committee.predict(atoms, uncertainty=True)
    b = back.predict(atoms, uncertainty=True)
    for key in ("energy", "forces", "stress", keys.ENERGY_UNCERTAINTY, keys.FORCES_UNCERTAINTY):
        np.testing.assert_array_equal(a[key], b[key])
    calc = mlptools.load(path)
    atoms.calc = calc
    calc.get_property(keys.FORCES_UNCERTAINTY, atoms)
    np.testing.assert_array_equal(calc.results[keys.FORCES_UNCERTAINTY],
                                  a[keys.FORCES_UNCERTAINTY])


def test_needs_two_members(train):
    with pytest.raises(mlptools.errors.ParameterError, match="at least 2 members"):
        cm.fit_nn_committee(train[:4], NN, n_members=1, rng=np.random.default_rng(0))


# ------------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli():
    return MlptoolsGroup(name="mlptools", commands=[fit])


@pytest.fixture(scope="module")
def files(tmp_path_factory, train):
    d = tmp_path_factory.mktemp("nnfit")
    write(d / "train.xyz", train[:12], format="extxyz")
    write(d / "valid.xyz", train[24:28], format="extxyz")
    return d


def test_cli_nn_model_equals_library_fit(cli, files, tmp_path):
    from mlptools.io.structures import iter_frames
    from mlptools.workflows.fit import fit_model

    out = tmp_path / "nn.h5"
    spec = "hidden=8 max_iter=40"
    result = CliRunner().invoke(cli, ["fit", str(files / "train.xyz"), "--model", "nn",
                                      "--acsf", "compact", "--hypers", spec, "--seed", "4",
                                      "--valid", str(files / "valid.xyz"), "--format", "json",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    tables = json.loads(result.stdout)
    assert set(tables) == {"train", str(files / "valid.xyz")}
    hypers = nn.NNHypers.from_string(spec + " acsf=compact")
    ref = fit_model("nn", list(iter_frames([files / "train.xyz"])), hypers,
                    rng=np.random.default_rng(4))
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.calc = mlptools.load(out)
    assert atoms.get_potential_energy() == pytest.approx(ref.model.predict(atoms)["energy"],
                                                         rel=1e-12)
    assert tables["train"]["rows"][-1]["forces_rmse"] == pytest.approx(
        ref.train_errors.overall.forces_rmse, rel=1e-9)


def test_cli_committee_text_table(cli, files, tmp_path):
    out = tmp_path / "c.h5"
    result = CliRunner().invoke(cli, ["fit", str(files / "train.xyz"), "--model", "linear",
                                      "--soap", "cutoff=4 n_max=3 l_max=2", "--committee", "3",
                                      "--sigma-force", "0", "--sigma-virial", "0", "--seed", "1",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "linear committee of 3" in result.stdout
    assert "meV/atom" in result.stdout
    model = load_model(out)
    assert isinstance(model, cm.Committee) and len(model.members) == 3


@pytest.mark.parametrize("args, match", [
    (["--model", "gap", "--acsf", "compact"], "--acsf applies to --model nn only"),
    (["--model", "nn", "--hypers", "hidden=0"], "'hidden'"),
    (["--model", "nn", "--acsf", "nosuchpreset"], "unknown ACSF preset"),
    (["--model", "linear", "--checkpoint", "ck.npz"], "--checkpoint applies to --model nn"),
])
def test_cli_bad_options(cli, files, tmp_path, args, match):
    out = tmp_path / "bad.h5"
    result = CliRunner().invoke(cli, ["fit", str(files / "train.xyz"), *args, "-o", str(out)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and match in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()


def test_cli_committee_needs_two(cli, files, tmp_path):
    result = CliRunner().invoke(cli, ["fit", str(files / "train.xyz"), "--committee", "1",
                                      "-o", str(tmp_path / "x.h5")])
    assert result.exit_code == 2


def test_cli_help_mentions_nn_and_units(cli):
    result = CliRunner().invoke(cli, ["fit", "--help"])
    assert result.exit_code == 0
    for text in ("nn", "--committee", "--acsf", "eV/Å"):
        assert text in result.stdout


def test_cli_committee_checkpoint_rerun_gives_the_same_model(cli, files, tmp_path):
    ckpt = tmp_path / "ck.npz"
    models = []
    for k in range(2):
        out = tmp_path / f"c{k}.h5"
        result = CliRunner().invoke(cli, ["fit", str(files / "train.xyz"), "--model", "nn",
                                          "--acsf", "compact", "--hypers", "hidden=6 max_iter=30",
                                          "--committee", "2", "--checkpoint", str(ckpt),
                                          "--seed", "3", "-o", str(out)])
        assert result.exit_code == 0, result.output
        models.append(load_model(out))
    for a, b in zip(models[0].members, models[1].members, strict=True):
        np.testing.assert_array_equal(a._theta(), b._theta())
    assert set(np.load(ckpt).files) >= {"member_0/theta", "member_1/theta"}
