"""``mlptools airss-search``: CLI = library, one-line errors, SIGTERM and resume, mpirun."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import click
import pytest
from click.testing import CliRunner
from mpi import mpirun
from test_build_db_resume import SLOW_CALC  # a Stillinger-Weber that sleeps in each call

from mlptools.cli import MlptoolsGroup
from mlptools.cli.airss_search import airss_search
from mlptools.workflows import airss

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--composition", "Si8", "--symmetry", "2-8", "--volume", "20", "--minsep", "1.8",
        "--fmax", "0.05"]


@pytest.fixture
def cli():
    return MlptoolsGroup(name="mlptools", commands=[airss_search])


def test_output_equals_the_library_call(cli, tmp_path):
    out = tmp_path / "r.xyz"
    result = CliRunner().invoke(cli, ["airss-search", "sw", *ARGS, "-n", "3", "--seed", "7",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    settings = airss.SearchSettings("Si8", symmetry=(2, 8), volume_per_atom=20.0, minsep=1.8,
                                    fmax=0.05)
    ranked = airss.rank_structures(airss.run_search(settings, "sw", seed=7,
                                                    n_structures=3).records)
    frames = ase.io.read(out, index=":")
    assert len(frames) == len(ranked)
    for got, want in zip(frames, ranked, strict=True):
        assert got.info["structure_key"] == want.key
        assert got.info["mlptools_enthalpy"] == pytest.approx(want.enthalpy, abs=1e-9)
        assert got.info["times_found"] == want.times_found
        assert got.get_volume() == pytest.approx(want.volume, rel=1e-9)
    table = result.stdout.splitlines()
    assert table[0].split()[:3] == ["#", "key", "P/GPa"]
    assert [line.split()[1] for line in table[1:-1]] == [r.key for r in ranked]
    assert (tmp_path / "r.xyz.ckpt.jsonl").exists()


def test_rerun_with_more_structures_adds_to_the_checkpoint(cli, tmp_path):
    out = tmp_path / "r.xyz"
    base = ["airss-search", "sw", *ARGS, "--seed", "8", "-o", str(out)]
    assert CliRunner().invoke(cli, [*base, "-n", "2"]).exit_code == 0
    result = CliRunner().invoke(cli, [*base, "-n", "3", "-v"])
    assert result.exit_code == 0
    assert "1 new relaxations" in result.stderr and "3 in the checkpoint" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["sw", "--composition", "Cu4"], "Error: sw: species Cu not covered by the potential "
                                     "(it has Si)"),
    (["sw", "--composition", "Xy4"], "Error: composition 'Xy4': unknown element 'Xy'"),
    (["dft", "--composition", "Si8"], "Error: unknown calculator 'dft'"),
])
def test_errors_are_one_line(cli, tmp_path, args, message):
    out = tmp_path / "x.xyz"
    result = CliRunner().invoke(cli, ["airss-search", *args, "-n", "1", "--seed", "1",
                                      "-o", str(out)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message)
    assert not out.exists() and not Path(f"{out}.ckpt.jsonl").exists()


def test_checkpoint_of_other_settings_is_refused(cli, tmp_path):
    out = tmp_path / "r.xyz"
    assert CliRunner().invoke(cli, ["airss-search", "sw", *ARGS, "-n", "1", "--seed", "1",
                                    "-o", str(out)]).exit_code == 0
    out.unlink()
    result = CliRunner().invoke(cli, ["airss-search", "sw", *ARGS, "--pressure", "2", "-n", "1",
                                      "--seed", "1", "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {out}.ckpt.jsonl: checkpoint of a search with other settings (pressure_GPa); "
        "use another output (or remove the checkpoint to start afresh)"]
    assert not out.exists()


def test_nothing_converged_is_an_error(cli, tmp_path):
    out = tmp_path / "x.xyz"
    result = CliRunner().invoke(cli, ["airss-search", "sw", *ARGS, "--max-steps", "1", "-n", "2",
                                      "--seed", "1", "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith(f"Error: {out}.ckpt.jsonl: none of 2 "
                                                     "relaxations converged")
    assert "2 structure(s) discarded: not converged in 1 steps" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("bad", [["--nform", "3-1"], ["--symmetry", "x"],
                                 ["--volume-range", "1.2-0.8"], ["-o", "-"]])
def test_bad_ranges_are_usage_errors(cli, tmp_path, bad):
    result = CliRunner().invoke(cli, ["airss-search", "sw", "--composition", "Si8", "-n", "1",
                                      "--seed", "1", "-o", str(tmp_path / "x.xyz"), *bad])
    assert result.exit_code == 2
    assert "expected" in result.stderr or "-o must name a file" in result.stderr


def test_help(cli):
    result = CliRunner().invoke(cli, ["airss-search", "--help"])
    assert result.exit_code == 0
    for word in ("GPa", "Å³", "eV/Å", "mpirun", "--seed", "--symmetry"):
        assert word in result.stdout
    assert len(airss_search.get_short_help_str(limit=200)) <= 45
    assert isinstance(airss_search, click.Command)


def _env(tmp_path):
    (tmp_path / "slowcalc.py").write_text(SLOW_CALC)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _results(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines(keepends=True)
            if line.endswith(b"\n") and json.loads(line)["type"] == "result"]


def _command(tmp_path, model, n, extra=()):
    return [sys.executable, "-m", "mlptools", "airss-search", model, *ARGS, "-n", str(n),
            "--seed", "3", "-o", str(tmp_path / "r.xyz"), *extra]


def test_sigterm_stops_cleanly_and_a_rerun_completes(tmp_path):
    env = _env(tmp_path)
    ckpt = tmp_path / "r.xyz.ckpt.jsonl"
    model = "slowcalc:SlowSW delay=0.004"
    proc = subprocess.Popen(_command(tmp_path, model, 5), env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_results(ckpt)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()
    lines = err.decode().splitlines()
    assert lines[-1].startswith("Error: stopped by SIGTERM after") and "rerun" in lines[-1]
    assert not (tmp_path / "r.xyz").exists()  # nothing half-done
    assert ckpt.read_bytes().endswith(b"\n")
    done = {r["key"] for r in _results(ckpt)}
    assert 2 <= len(done) < 5

    proc = subprocess.run(_command(tmp_path, model, 5, ["-v"]), env=env, cwd=tmp_path,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    keys = [r["key"] for r in _results(ckpt)]
    assert len(keys) == len(set(keys)) == 5  # nothing twice, nothing lost
    assert f"{5 - len(done)} new relaxations" in proc.stderr.decode()
    frames = ase.io.read(io.StringIO((tmp_path / "r.xyz").read_text()), index=":",
                         format="extxyz")
    assert sum(a.info["times_found"] for a in frames) == sum(
        r["status"] == "ok" for r in _results(ckpt))


def test_mpirun_two_ranks_share_the_search(tmp_path):
    mpi = mpirun()
    env = _env(tmp_path)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    proc = subprocess.run(mpi + _command(tmp_path, "sw", 4), env=env, cwd=tmp_path,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    results = _results(tmp_path / "r.xyz.ckpt.jsonl")
    assert sorted(r["key"] for r in results) == [f"3:{i}" for i in range(4)]
    assert {r.get("rank", 0) for r in results} == {0, 1}  # both ranks relaxed
    settings = airss.SearchSettings("Si8", symmetry=(2, 8), volume_per_atom=20.0, minsep=1.8,
                                    fmax=0.05)
    serial = {r["key"]: r for r in airss.run_search(settings, "sw", seed=3,
                                                    n_structures=4).records}
    for rec in results:
        assert rec["status"] == serial[rec["key"]]["status"]
        assert rec.get("enthalpy") == serial[rec["key"]].get("enthalpy")
    table = proc.stdout.decode().splitlines()  # rank 0 alone prints
    assert table[0].split()[1] == "key" and table[-1].startswith("# ")
