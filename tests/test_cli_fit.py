"""``mlptools fit`` plumbing: model equals the library fit, tables on stdout, one-line errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from click.testing import CliRunner
from test_fit_models import sw_frames

import mlptools
from mlptools.cli import MlptoolsGroup
from mlptools.cli.fit import fit
from mlptools.models.gap import GapHypers
from mlptools.workflows.fit import fit_model

SOAP = "cutoff=4.5 n_max=4 l_max=3"


@pytest.fixture
def cli():
    return MlptoolsGroup(name="mlptools", commands=[fit])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fit")
    rng = np.random.default_rng(3)
    train, valid = sw_frames(rng, 12, repeat=(2, 1, 1)), sw_frames(rng, 4, repeat=(2, 1, 1))
    for a in valid[:2]:
        a.info["config_type"] = "other"
    write(d / "train.xyz", train, format="extxyz")
    write(d / "valid.xyz", valid, format="extxyz")
    return d, train, valid


def test_cli_model_equals_library_fit(cli, files, tmp_path):
    d, train, valid = files
    out = tmp_path / "m.h5"
    result = CliRunner().invoke(cli, ["fit", str(d / "train.xyz"), "--valid", str(d / "valid.xyz"),
                                      "--soap", SOAP, "--n-sparse", "60", "--seed", "5",
                                      "--format", "json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    tables = json.loads(result.stdout)
    assert set(tables) == {"train", str(d / "valid.xyz")}
    names = [r["config_type"] for r in tables[str(d / "valid.xyz")]["rows"]]
    assert names == ["bulk", "other", "overall"]
    hypers = GapHypers.from_dict({"soap": {"cutoff": 4.5, "n_max": 4, "l_max": 3},
                                  "n_sparse": 60})
    ref = fit_model("gap", list(_read(d / "train.xyz")), hypers, rng=np.random.default_rng(5))
    calc = mlptools.load(out)
    atoms = valid[0].copy()
    atoms.calc = calc
    want = ref.model.predict(valid[0])
    assert atoms.get_potential_energy() == pytest.approx(want["energy"], rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), want["forces"], rtol=1e-9, atol=1e-12)
    assert tables["train"]["rows"][-1]["energy_rmse"] == pytest.approx(
        ref.train_errors.overall.energy_rmse, rel=1e-9)


def _read(path):
    from mlptools.io.structures import iter_frames

    return iter_frames([path])


@pytest.mark.parametrize("kind", ["linear", "quadratic"])
def test_linear_kinds_from_stdin_text_table(cli, files, tmp_path, kind):
    d, _, _ = files
    out = tmp_path / "m.h5"
    text = (d / "train.xyz").read_text()
    result = CliRunner().invoke(cli, ["fit", "-", "--model", kind, "--soap", SOAP,
                                      "--hypers", "n_components=6", "-o", str(out)], input=text)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"train ({kind}, fitted in")
    assert "meV/atom" in result.stdout and "overall" in result.stdout
    assert mlptools.load(out).model.kind == kind


def test_tsv_table(cli, files, tmp_path):
    d, _, _ = files
    result = CliRunner().invoke(cli, ["fit", str(d / "train.xyz"), "--valid", str(d / "valid.xyz"),
                                      "--model", "linear", "--soap", SOAP, "--format", "tsv",
                                      "-o", str(tmp_path / "m.h5")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("set\tconfig_type\tn_frames")
    assert lines[1].startswith("train\tbulk\t12\t")
    assert lines[-1].startswith(f"{d / 'valid.xyz'}\toverall\t4\t")


def test_help(cli):
    result = CliRunner().invoke(cli, ["fit", "--help"])
    assert result.exit_code == 0
    for text in ("eV/atom", "eV/Å", "GPa", "meV/atom", "--n-sparse", "--max-memory"):
        assert text in result.stdout


def _bad(tmp_path, files, kind):
    d, train, valid = files
    if kind == "no-forces":
        frames = [a.copy() for a in train[:3]]
        for a, src in zip(frames, train, strict=False):
            a.calc = SinglePointCalculator(a, energy=src.get_potential_energy())
        path = tmp_path / "noforces.xyz"
        write(path, frames, format="extxyz")
        return [str(path)], f"Error: {path}: frame 0: no forces, but --sigma-force is set"
    if kind == "valid-species":
        frames = [a.copy() for a in valid[:2]]
        frames[1].numbers[0] = 6
        for a, src in zip(frames, valid, strict=False):
            a.calc = SinglePointCalculator(a, energy=src.get_potential_energy(),
                                           forces=src.get_forces())
        path = tmp_path / "c.xyz"
        write(path, frames, format="extxyz")
        return ([str(d / "train.xyz"), "--valid", str(path)],
                f"Error: {path}: frame 1: species C not in the training data (Si)")
    if kind == "memory":
        return ([str(d / "train.xyz"), "--max-memory", "0.001"],
                "Error: the fit needs about")
    if kind == "singular":
        return ([str(d / "train.xyz"), "--model", "linear", "--hypers", "ridge=0",
                 "--sigma-force", "0", "--sigma-virial", "0"],
                "Error: singular least-squares system: raise hyper 'ridge'")
    if kind == "hyper":
        return ([str(d / "train.xyz"), "--hypers", "zeta=4 detla=2"],
                "Error: unknown gap hyper 'detla'; did you mean 'delta'?")
    if kind == "missing":
        return [str(tmp_path / "nope.xyz")], f"Error: {tmp_path / 'nope.xyz'}: no such file"
    if kind == "table":
        path = tmp_path / "pair.table"
        path.write_text("Si-Si\nN 3\n\n1 1.0 1 1\n")
        return ([str(d / "train.xyz"), "--baseline", f"table {path}"],
                f"Error: {path}:2: section 'Si-Si' needs N >= 4 rows")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["no-forces", "valid-species", "memory", "singular", "hyper",
                                  "missing", "table"])
def test_bad_inputs_exit_1_with_one_line(cli, files, tmp_path, kind):
    args, message = _bad(tmp_path, files, kind)
    out = tmp_path / "model.h5"
    result = CliRunner().invoke(cli, ["fit", *args, "--soap", SOAP, "--n-sparse", "20",
                                      "-o", str(out)] if "--model" not in args else
                                ["fit", *args, "--soap", SOAP, "-o", str(out)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not list(tmp_path.glob(".model.h5.*"))


def test_info_shows_the_model(cli, files, tmp_path):
    from mlptools.cli.info import info

    d, _, _ = files
    out = tmp_path / "m.h5"
    assert CliRunner().invoke(cli, ["fit", str(d / "train.xyz"), "--model", "linear", "--soap",
                                    SOAP, "-o", str(out)]).exit_code == 0
    group = MlptoolsGroup(name="mlptools", commands=[info])
    result = CliRunner().invoke(group, ["info", "--format", "json", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kind"] == "mlptools-model"
    assert summary["model"]["model_kind"] == "linear"
    assert summary["model"]["species"] == ["Si"]
    assert summary["model"]["train_errors"]["n_frames"] == 12
    assert "model/weights" in summary["datasets"]


def test_precomputed_descriptors_give_the_same_model(cli, files, tmp_path):
    from mlptools.cli.describe import describe

    d, _, valid = files
    desc = tmp_path / "desc.h5"
    group = MlptoolsGroup(name="mlptools", commands=[describe, fit])
    soap = "cutoff=4.5 n_max=4 l_max=3 cutoff_width=1 sigma=0.5 normalize=false"
    r = CliRunner().invoke(group, ["describe", str(d / "train.xyz"), "--soap", soap,
                                   "--gradients", "-o", str(desc)])
    assert r.exit_code == 0, r.output
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    for out, extra in ((a, ["--soap", soap]), (b, ["--descriptors", str(desc)])):
        r = CliRunner().invoke(group, ["fit", str(d / "train.xyz"), "--model", "linear",
                                       *extra, "-o", str(out)])
        assert r.exit_code == 0, r.output
    want = mlptools.load(a).model.predict(valid[0])
    got = mlptools.load(b).model.predict(valid[0])
    assert got["energy"] == pytest.approx(want["energy"], rel=1e-12)
    np.testing.assert_allclose(got["forces"], want["forces"], rtol=1e-10, atol=1e-12)
    # descriptors of other frames are refused, naming the file
    r = CliRunner().invoke(group, ["fit", str(d / "valid.xyz"), "--model", "linear",
                                   "--descriptors", str(desc), "-o", str(tmp_path / "c.h5")])
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [f"Error: {desc}: 12 structures that do not match the 4 "
                                     "training frames (atom counts differ)"]


@pytest.mark.parametrize("option", ["--soap", "--hypers"])
def test_unbalanced_quote_in_hypers_is_one_line(tmp_path, option):
    from click.testing import CliRunner

    from mlptools.cli import cli

    out = tmp_path / "m.h5"
    result = CliRunner().invoke(cli, ["fit", str(Path(__file__).parent / "data" / "cu_emt.xyz"),
                                      option, "n_max='4", "-o", str(out)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "No closing quotation" in lines[0]
    assert not out.exists()
