"""``mlptools md`` through the CLI: plumbing, the library equivalence, exit codes 1/2/3/143,
resume after SIGTERM."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from click.testing import CliRunner

from mlptools.calculators import StillingerWeber
from mlptools.cli import cli
from mlptools.workflows.md import MDSettings, Stage, run_md

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def si_file(tmp_path):
    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(2)
    atoms.rattle(0.03, rng=np.random.default_rng(0))
    path = tmp_path / "si.xyz"
    ase.io.write(path, atoms, format="extxyz")
    return path


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_help():
    result = _invoke("md", "--help")
    assert result.exit_code == 0
    for unit in ("(K)", "(GPa)", "(fs)", "eV"):
        assert unit in result.stdout


def test_cli_equals_library(si_file, tmp_path):
    traj, log = tmp_path / "t.xyz", tmp_path / "md.log"
    result = _invoke("md", "sw", si_file, "--ensemble", "nvt", "--temperature", 500,
                     "--timestep", 1, "--steps", 40, "--seed", 3, "--traj", traj, "--stride", 10,
                     "--log", log, "--log-stride", 5, "-o", tmp_path / "final.xyz")
    assert result.exit_code == 0, result.stderr
    assert "atom-steps/s" in result.stderr
    assert (tmp_path / "t.xyz.ckpt.npz").exists()
    frames = ase.io.read(traj, index=":", format="extxyz")
    assert [f.info["step"] for f in frames] == [0, 10, 20, 30, 40]
    lib = run_md(ase.io.read(si_file), StillingerWeber(),
                 MDSettings(ensemble="nvt", timestep_fs=1.0, traj_stride=10, log_stride=5),
                 [Stage("md", 40, 500.0)], rng=np.random.default_rng(3))
    # extxyz keeps 8 decimals of Å
    np.testing.assert_allclose(frames[-1].positions, lib.atoms.positions, rtol=0, atol=1e-8)
    final = ase.io.read(tmp_path / "final.xyz", format="extxyz")
    np.testing.assert_allclose(final.positions, lib.atoms.positions, rtol=0, atol=1e-8)
    np.testing.assert_allclose(final.get_momenta(), lib.atoms.get_momenta(), rtol=0, atol=1e-7)
    table = np.loadtxt(log)
    assert table.shape == (9, 10) and log.read_text().startswith("#")


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--ensemble", "nvx", "--temperature", "300"], 2, "'nvx' is not one of"),
    (["--ensemble", "nvt", "--temperature", "300", "--timestep", "-1"], 2, "--timestep"),
    (["--ensemble", "nvt"], 2, "needs --temperature"),
    (["--ensemble", "nvt", "--temperature", "300", "--seed", "1", "--max-uncertainty", "-1"], 1,
     "max_uncertainty must be > 0"),
])
def test_bad_options(si_file, tmp_path, args, code, message):
    argv = ["md", "sw", si_file, "--steps", 5, "--traj", tmp_path / "t.xyz"]
    if "--timestep" not in args:
        argv += ["--timestep", 1]
    result = _invoke(*argv, *args)
    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "t.xyz").exists()


def test_hdf5_trajectory_equals_extxyz_one_also_after_a_resume(si_file, tmp_path):
    from mlptools.io.h5 import iter_structures

    common = ["md", "sw", si_file, "--ensemble", "nvt", "--temperature", 500, "--timestep", 1,
              "--seed", 3, "--stride", 10, "--checkpoint-every", 10]
    assert _invoke(*common, "--steps", 40, "--traj", tmp_path / "t.xyz").exit_code == 0
    h5 = tmp_path / "t.h5"
    # 20 steps, then the same command extended to 40: resumed from the checkpoint
    assert _invoke(*common, "--steps", 20, "--traj", h5).exit_code == 0
    assert h5.exists() and (tmp_path / "t.h5.part.xyz").exists()
    result = _invoke(*common, "--steps", 40, "--traj", h5)
    assert result.exit_code == 0, result.stderr
    want = ase.io.read(tmp_path / "t.xyz", index=":")
    got = list(iter_structures(h5))
    assert len(got) == len(want) == 5
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-8)
        assert a.info["mlptools_energy"] == pytest.approx(b.info["mlptools_energy"], abs=1e-8)


def test_species_not_covered(tmp_path):
    path = tmp_path / "cu.xyz"
    ase.io.write(path, bulk("Cu", "fcc", a=3.6, cubic=True), format="extxyz")
    result = _invoke("md", "sw", path, "--ensemble", "nvt", "--temperature", 300, "--timestep",
                     1, "--steps", 5, "--seed", 1, "--traj", tmp_path / "t.xyz")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [f"Error: {path}: frame 0: species Cu not covered by the potential (it has "
                     "Si)"]
    assert not (tmp_path / "t.xyz").exists()


def test_missing_structure(tmp_path):
    result = _invoke("md", "sw", tmp_path / "nope.xyz", "--ensemble", "nve", "--timestep", 1,
                     "--steps", 5, "--traj", tmp_path / "t.xyz")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"Error: {tmp_path / 'nope.xyz'}: no such file"]
    assert not (tmp_path / "t.xyz").exists()


def test_extrapolation_guard_exit_3(si_file, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    out = tmp_path / "explore.xyz"
    result = _invoke("md", "md_calcs:GrowingUncertaintySW rate=0.002", si_file, "--ensemble",
                     "nvt", "--temperature", 800, "--timestep", 1, "--steps", 500, "--seed", 1,
                     "--traj", tmp_path / "t.xyz", "--stride", 5, "--max-uncertainty", 0.05,
                     "--extrapolated", out)
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert "passed --max-uncertainty 0.05" in lines[0] and str(out) in lines[0]
    frame = ase.io.read(out, format="extxyz")
    assert frame.info["step"] == 25 and frame.info["config_type"] == "md_extrapolation"
    assert frame.arrays["energies_uncertainty"].max() == pytest.approx(0.052)
    assert frame.calc is None or "energy" not in frame.calc.results  # not a label


def _md_command(si_file, tmp_path, tag, steps):
    return [sys.executable, "-m", "mlptools", "md", "sw", str(si_file), "--ensemble", "nvt",
            "--temperature", "700", "--timestep", "1", "--steps", str(steps), "--seed", "5",
            "--traj", str(tmp_path / f"{tag}.xyz"), "--stride", "20", "--log",
            str(tmp_path / f"{tag}.log"), "--checkpoint-every", "50"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    return env


def test_sigterm_exit_143_and_resume_is_identical(si_file, tmp_path):
    steps = 3000
    full = subprocess.run(_md_command(si_file, tmp_path, "full", steps), env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    cmd = _md_command(si_file, tmp_path, "part", steps)
    proc = subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE, text=True)
    log = tmp_path / "part.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the run is well under way
        if log.exists() and len(log.read_text().splitlines()) > 30:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "stopped by SIGTERM at step" in lines[0]
    assert "rerun the same command to resume" in lines[0]
    stopped_at = int(lines[0].split("at step ")[1].split()[0])
    assert 0 < stopped_at < steps
    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resumed at step {stopped_at}" in again.stderr
    assert (tmp_path / "full.xyz").read_bytes() == (tmp_path / "part.xyz").read_bytes()
    assert (tmp_path / "full.log").read_bytes() == (tmp_path / "part.log").read_bytes()
    frames = ase.io.read(tmp_path / "part.xyz", index=":", format="extxyz")
    assert [f.info["step"] for f in frames] == list(range(0, steps + 1, 20))
