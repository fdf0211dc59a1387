"""``mlptools validate`` plumbing: tables, JSON = library call, plots, report, exit codes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mlptools.cli import MlptoolsGroup
from mlptools.cli.validate import validate
from mlptools.io.structures import iter_frames
from mlptools.workflows import properties as P
from mlptools.workflows import validate as val


@pytest.fixture
def cli():
    return MlptoolsGroup(name="mlptools", commands=[validate])


@pytest.fixture
def cu(test_data):
    return str(test_data / "cu_emt.xyz")


def _run(cli, args):
    return CliRunner().invoke(cli, ["validate", *args])


def test_errors_json_equals_library_call(cli, cu, tmp_path):
    out = tmp_path / "v.json"
    result = _run(cli, ["lj", cu, "--json", str(out), "--predictions", str(tmp_path / "p.xyz")])
    assert result.exit_code == 0, result.output
    got = json.loads(out.read_text())
    from mlptools.calculators import make_calculator

    calc = make_calculator("lj")
    frames = [val.predict(a, calc, f"{cu}: frame {i}") for i, a in enumerate(iter_frames([cu]))]
    want = val.validation_errors(frames).to_dict()
    assert [r["config_type"] for r in got["errors"]["rows"]] == ["bulk", "cluster", "vacancy",
                                                                 "overall"]
    for g, w in zip(got["errors"]["rows"], want["rows"], strict=True):
        assert g["n_atoms"] == w["n_atoms"]
        assert g["forces_rmse"] == pytest.approx(w["forces_rmse"], rel=1e-12)
        assert g["energy_mae"] == pytest.approx(w["energy_mae"], rel=1e-12)
    assert got["errors"]["forces"][-1]["relative_rmse"] > 0
    # the text tables on stdout, the predictions file keeps references and predictions
    assert "overall" in result.stdout and "RMSE x" in result.stdout
    pred = list(iter_frames([str(tmp_path / "p.xyz")]))
    assert "mlptools_forces" in pred[0].arrays and pred[0].calc.results["forces"] is not None


def test_emt_against_emt_is_zero_with_plots_and_report(cli, cu, tmp_path):
    plots, report = tmp_path / "plots", tmp_path / "r.md"
    result = _run(cli, ["emt", cu, "--properties", "eos,elastic", "--element", "Cu",
                        "--lattice", "fcc", "--reference", "emt", "--plot-dir", str(plots),
                        "--report", str(report), "--format", "tsv",
                        "--max-force-rmse", "1e-6", "--max-property-error", "1e-6"])
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines() if line.startswith(("a\t",
                                                                                          "C44\t"))]
    assert [r[0] for r in rows] == ["a", "C44"]
    assert all(abs(float(r[4])) < 1e-9 for r in rows)
    assert sorted(p.name for p in plots.iterdir()) == ["energy.png", "eos.png", "forces.png",
                                                       "stress.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots.iterdir())
    text = report.read_text()
    assert "## Properties (reference: `emt`)" in text and "![eos](plots/eos.png)" in text
    assert "| elastic constant C44 | GPa |" in text


def test_published_reference_values_and_failed_check(cli, tmp_path):
    ref = tmp_path / "sw.json"
    ref.write_text(json.dumps({"a": 5.431, "C11": 151.4, "C12": 76.4, "C44": 56.4,
                               "source": "Cowley, PRL 60, 2379 (1988)"}))
    out = tmp_path / "v.json"
    args = ["tersoff", "--properties", "elastic", "--element", "Si", "--lattice", "diamond",
            "--reference", str(ref), "--json", str(out)]
    result = _run(cli, args + ["--max-property-error", "10"])
    assert result.exit_code == 3
    assert result.stderr.splitlines() == ["Error: check failed: C44 off by +22.38 % (> 10 %)"]
    # the same with per-property limits: C44 allowed 25 %, C11 (−5.9 %) only 5 %
    result = _run(cli, args + ["--max-error", "C44=25", "--max-error", "C11=5"])
    assert result.exit_code == 3
    assert result.stderr.splitlines() == ["Error: check failed: C11 off by -5.85 % (> 5 %)"]
    assert out.exists()  # a failed check still writes its outputs
    rows = {r["key"]: r for r in json.loads(out.read_text())["properties"]["rows"]}
    assert rows["C44"]["reference"] == 56.4
    assert rows["C44"]["model"] == pytest.approx(69.0, abs=0.5)


def test_properties_equal_library_call(cli, tmp_path):
    out = tmp_path / "v.json"
    result = _run(cli, ["sw", "--properties", "vacancy", "--element", "Si", "--lattice",
                        "diamond", "--json", str(out)])
    assert result.exit_code == 0, result.output
    conv, prim = P.starting_structure("Si", "diamond")
    from mlptools.calculators import make_calculator

    want = P.compute_properties(make_calculator("sw"), conv, prim, "vacancy")
    got = json.loads(out.read_text())["properties"]["model"]["values"]
    assert got == pytest.approx(want.values, rel=1e-12)
    assert "vacancy formation energy" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["sw", "{cu}"], "Error: {cu}: frame 0: species Cu not covered by the potential (it has Si)"),
    (["emt", "{bad}/no_forces.xyz", "--require", "forces"],
     "Error: {bad}/no_forces.xyz: frame 0: no forces (required)"),
    (["emt", "{cu}", "--properties", "elastc", "--element", "Cu", "--lattice", "fcc"],
     "Error: unknown property 'elastc'; did you mean 'elastic'? (known: eos, elastic, vacancy, "
     "surface, phonon, all)"),
    (["sw", "--properties", "eos", "--element", "Cu", "--lattice", "fcc"],
     "Error: --element Cu: species Cu not covered by the potential (it has Si)"),
    (["emt", "--properties", "eos", "--element", "Cu", "--lattice", "fcc", "--reference",
      "{tmp}/missing.json"], "Error: {tmp}/missing.json: no such file"),
    (["emt", "{bad}/nan_forces.xyz"], "Error: {bad}/nan_forces.xyz: frame 0: forces contain NaN "
                                      "or inf"),
    (["emt", "{cu}", "--max-error", "C45x=3"],
     "Error: unknown property 'C45x' (known: a, b, c, E0, V0, B, B', "
     "E_vac, C11, C12, C44, C44_0, gamma_111, nu_X_1, ...)"),
    (["nosuchmodel", "{cu}"], "Error: unknown calculator 'nosuchmodel' (known: emt, lj, sw, "
                              "tersoff, xtb, xtb:gfn1, xtb:gfn2, model:FILE, or "
                              "module.path:ClassName key=value ...)"),
])
def test_bad_input_is_one_line_and_no_output(cli, cu, test_data, tmp_path, args, message):
    subs = {"cu": cu, "bad": str(test_data / "bad"), "tmp": str(tmp_path)}
    out = tmp_path / "v.json"
    report = tmp_path / "r.md"
    result = _run(cli, [a.format(**subs) for a in args] + ["--json", str(out), "--report",
                                                           str(report)])
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [message.format(**subs)]
    assert "Traceback" not in result.output
    assert not out.exists() and not report.exists()


def test_bad_reference_json(cli, tmp_path):
    ref = tmp_path / "ref.json"
    ref.write_text('{"C11": 151.4, "lattice": 5.43}')
    result = _run(cli, ["sw", "--properties", "eos", "--element", "Si", "--lattice", "diamond",
                        "--reference", str(ref)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {ref}: unknown property 'lattice' (known: a, b, c, E0, V0, B, B', E_vac, C11, "
        "C12, C44, C44_0, gamma_111, nu_X_1, ...)"]


@pytest.mark.parametrize("args, message", [
    ([], "give DATA files and/or --properties"),
    (["--properties", "eos"], "--properties needs --element and --lattice, or --structure"),
    (["--max-error", "C44"], "expected PROPERTY=PERCENT (e.g. a=0.5, C44=5), got 'C44'"),
])
def test_usage_errors(cli, args, message):
    result = _run(cli, ["sw", *args])
    assert result.exit_code == 2 and message in result.stderr


def test_help(cli):
    result = _run(cli, ["--help"])
    assert result.exit_code == 0
    for text in ("meV/atom", "eV/Å", "GPa", "--reference", "mpirun", "--max-force-rmse"):
        assert text in result.stdout
    assert len(validate.get_short_help_str(limit=200)) <= 45
    assert isinstance(validate, click.Command)


def test_structure_file_as_crystal(cli, tmp_path):
    from ase.build import bulk
    from ase.io import write

    path = tmp_path / "cu.xyz"
    write(path, bulk("Cu", "fcc", 3.7, cubic=True), format="extxyz")
    out = tmp_path / "v.json"
    result = _run(cli, ["emt", "--properties", "eos", "--structure", str(path), "--json",
                        str(out)])
    assert result.exit_code == 0, result.output
    values = json.loads(out.read_text())["properties"]["model"]["values"]
    from mlptools.calculators import make_calculator

    by_lattice = P.compute_properties(make_calculator("emt"), P.starting_structure("Cu", "fcc")[0],
                                      properties="eos")
    assert values["a"] == pytest.approx(by_lattice.values["a"], rel=1e-5)
    assert values["B"] == pytest.approx(by_lattice.values["B"], rel=1e-3)


def test_shared_data_error_table(cli, shared_data, tmp_path):
    """SW against the mlearn DFT Si test set: counts per config type, RMSE = NumPy."""
    import numpy as np

    from mlptools.calculators import make_calculator

    data = shared_data / "mlearn" / "Si" / "test.xyz"
    out = tmp_path / "v.json"
    result = _run(cli, ["sw", str(data), "--require", "energy,forces", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = {r["config_type"]: r for r in json.loads(out.read_text())["errors"]["rows"]}
    frames = list(iter_frames([str(data)]))
    assert rows["overall"]["n_frames"] == len(frames)
    assert set(rows) == {a.info["config_type"] for a in frames} | {"overall"}
    calc = make_calculator("sw")
    diffs = []
    for atoms in frames:
        ref = atoms.calc.results["forces"]
        work = atoms.copy()
        work.calc = calc
        diffs.append(work.get_forces() - ref)
    rmse = float(np.sqrt(np.mean(np.concatenate(diffs) ** 2)))
    assert rows["overall"]["forces_rmse"] == pytest.approx(rmse, rel=1e-10)


def test_sigterm_stops_cleanly_without_output(tmp_path):
    out = tmp_path / "v.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlptools", "-v", "validate", "sw", "--properties", "all",
         "--element", "Si", "--lattice", "diamond", "--reference", "tersoff", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # wait until the work has started (the first progress line), then stop it
    first = proc.stderr.readline()
    assert "equilibrium structure" in first
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.splitlines()[-1] == "Error: stopped by SIGTERM; no output written"
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_mpirun_shares_properties_and_equals_serial(cli, cu, tmp_path):
    from mpi import mpirun

    exe = mpirun()[0]
    args = ["emt", cu, "--properties", "elastic,vacancy", "--element", "Cu", "--lattice", "fcc"]
    serial = tmp_path / "serial.json"
    assert _run(cli, [*args, "--json", str(serial)]).exit_code == 0
    parallel = tmp_path / "mpi.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    proc = subprocess.run([exe, "-n", "2", "--oversubscribe", sys.executable, "-m", "mlptools",
                           "validate", *args, "--json", str(parallel)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("vacancy formation energy") == 1  # one rank prints
    want, got = json.loads(serial.read_text()), json.loads(parallel.read_text())
    assert got["properties"]["model"]["values"] == pytest.approx(
        want["properties"]["model"]["values"], rel=1e-10)
    assert got["errors"]["rows"] == want["errors"]["rows"]
