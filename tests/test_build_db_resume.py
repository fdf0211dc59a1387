"""build-db in production: kill -9 and resume, SIGTERM, and labelling over MPI (mpirun -n 2)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mpi import mpirun

from mlptools.workflows import build_db as bd
from mlptools.workflows.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent

RECIPE = """
seed = 11
[label]
calc = "sw"

[[structures]]
kind = "rattle"
config_type = "rattled"
base = { prototype = "diamond", symbol = "Si", a = 5.431, cubic = true }
count = 24
sigma = 0.05

[[structures]]
kind = "vacancy"
config_type = "vacancy"
base = { prototype = "diamond", symbol = "Si", a = 5.431, cubic = true }
count = 6
rattle = 0.02  # all vacancies of a perfect cell are equivalent: de-duplication would drop them
"""
N_TOTAL = 24 + 6 + 1  # + the isolated atom

SLOW_CALC = '''
import time
from mlptools.calculators import StillingerWeber


class SlowSW(StillingerWeber):
    """Stillinger-Weber that takes `delay` seconds per structure (a stand-in for DFT)."""

    def __init__(self, delay=0.05):
        super().__init__()
        self.delay = delay

    def calculate(self, atoms=None, properties=None, system_changes=None):
        time.sleep(self.delay)
        super().calculate(atoms, properties, system_changes)
'''

SCRIPT = '''
import json, signal, sys
from mlptools.workflows.build_db import build_database
from mlptools.workflows.recipe import load_recipe

recipe, checkpoint, calc, out, use_mpi = sys.argv[1:6]
stop = []
signal.signal(signal.SIGTERM, lambda *args: stop.append(1))
comm = None
if use_mpi == "1":
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
result = build_database(load_recipe(recipe), checkpoint=checkpoint, calc=calc, comm=comm,
                        stop_requested=lambda: bool(stop))
if comm is None or comm.Get_rank() == 0:
    with open(out, "w") as fh:
        json.dump({"ids": [a.info["structure_id"] for a in result.frames],
                   "energies": [a.calc.results["energy"] for a in result.frames],
                   "stopped": result.stopped, "now": result.n_labelled_now}, fh)
sys.exit(143 if result.stopped else 0)
'''


@pytest.fixture
def setup(tmp_path, monkeypatch):
    (tmp_path / "slowcalc.py").write_text(SLOW_CALC)
    (tmp_path / "run.py").write_text(SCRIPT)
    (tmp_path / "r.toml").write_text(RECIPE)
    monkeypatch.syspath_prepend(str(tmp_path))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), env.get("PYTHONPATH", "")])
    return tmp_path, env


def _results(checkpoint):
    return [json.loads(line) for line in Path(checkpoint).read_bytes().splitlines()
            if line.endswith(b"}") and json.loads(line)["type"] == "result"]


def _start(tmp_path, env, calc, out="out.json", mpi=None):
    cmd = [sys.executable, str(tmp_path / "run.py"), str(tmp_path / "r.toml"),
           str(tmp_path / "ck.jsonl"), calc, str(tmp_path / out), "1" if mpi else "0"]
    if mpi:
        cmd = mpi + cmd
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_results(checkpoint, n, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(checkpoint).exists() and len(_results(checkpoint)) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"builder exited early: {proc.stderr.read().decode()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("builder made no progress")


def _reference(tmp_path, calc):
    """An uninterrupted in-process build, for comparison."""
    return bd.build_database(load_recipe(tmp_path / "r.toml"), calc=calc)


def test_kill_9_then_resume_labels_nothing_twice_and_loses_nothing(setup):
    tmp_path, env = setup
    calc = "slowcalc:SlowSW delay=0.05"
    ckpt = tmp_path / "ck.jsonl"
    proc = _start(tmp_path, env, calc)
    _wait_for_results(ckpt, 6, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    first = {r["id"] for r in _results(ckpt)}
    assert 6 <= len(first) < N_TOTAL

    proc = _start(tmp_path, env, calc)
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["now"] == N_TOTAL - len(first)  # only the missing ones were labelled
    ids = [r["id"] for r in _results(ckpt)]
    assert len(ids) == len(set(ids)) == N_TOTAL  # nothing twice, nothing lost
    ref = _reference(tmp_path, calc)
    assert out["ids"] == [a.info["structure_id"] for a in ref.frames]
    assert out["energies"] == [a.calc.results["energy"] for a in ref.frames]


def test_sigterm_stops_after_the_current_structure(setup):
    tmp_path, env = setup
    calc = "slowcalc:SlowSW delay=0.05"
    ckpt = tmp_path / "ck.jsonl"
    proc = _start(tmp_path, env, calc)
    _wait_for_results(ckpt, 3, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["stopped"] and len(out["ids"]) < N_TOTAL
    assert ckpt.read_bytes().endswith(b"\n")  # the checkpoint ends on a complete record
    assert len(_results(ckpt)) == len(out["ids"])

    proc = _start(tmp_path, env, calc)
    assert proc.wait(timeout=120) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert len(out["ids"]) == N_TOTAL and not out["stopped"]


def test_mpirun_two_ranks_label_in_parallel_with_one_writer(setup):
    mpi = mpirun()
    tmp_path, env = setup
    # Open MPI refuses to run as root unless told (containers, CI)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    calc = "slowcalc:SlowSW delay=0.01"
    proc = _start(tmp_path, env, calc, mpi=mpi)
    try:
        assert proc.wait(timeout=180) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    out = json.loads((tmp_path / "out.json").read_text())
    results = _results(tmp_path / "ck.jsonl")
    ids = [r["id"] for r in results]
    assert len(ids) == len(set(ids)) == N_TOTAL
    assert {r.get("rank", 0) for r in results} == {0, 1}  # both ranks labelled
    ref = _reference(tmp_path, calc)
    assert out["ids"] == [a.info["structure_id"] for a in ref.frames]
    assert out["energies"] == [a.calc.results["energy"] for a in ref.frames]


CLI_SCRIPT = '''
import sys
from mlptools.cli import MlptoolsGroup
from mlptools.cli.build_db import build_db

group = MlptoolsGroup(name="mlptools", commands=[build_db])
group.main(args=sys.argv[1:], prog_name="mlptools")
'''


def test_cli_sigterm_exits_143_and_leaves_no_output(setup):
    tmp_path, env = setup
    (tmp_path / "cli.py").write_text(CLI_SCRIPT)
    out = tmp_path / "db.xyz"
    ckpt = tmp_path / "db.xyz.ckpt.jsonl"
    cmd = [sys.executable, str(tmp_path / "cli.py"), "build-db", str(tmp_path / "r.toml"),
           "--calc", "slowcalc:SlowSW delay=0.05", "-o", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_results(ckpt, 3, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    stderr = proc.stderr.read().decode().splitlines()
    assert len(stderr) == 1 and stderr[0].startswith("Error: stopped by SIGTERM after ")
    assert "rerun the same command to resume" in stderr[0]
    assert not out.exists()
    proc = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(ase_read(out)) == N_TOTAL


def ase_read(path):
    import ase.io

    return ase.io.read(path, index=":")


def test_cli_under_mpirun_writes_once(setup):
    mpi = mpirun()
    tmp_path, env = setup
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    (tmp_path / "cli.py").write_text(CLI_SCRIPT)
    out = tmp_path / "db.xyz"
    cmd = mpi + [sys.executable, str(tmp_path / "cli.py"), "build-db", str(tmp_path / "r.toml"),
                 "--calc", "slowcalc:SlowSW delay=0.01", "-o", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, timeout=180)
    assert proc.returncode == 0, proc.stderr.decode()
    frames = ase_read(out)
    ids = [a.info["structure_id"] for a in frames]
    assert len(ids) == len(set(ids)) == N_TOTAL
    ranks = {r.get("rank", 0) for r in _results(tmp_path / "db.xyz.ckpt.jsonl")}
    assert ranks == {0, 1}
    assert proc.stderr.decode().count("total 30 frames") == 1  # one summary, from rank 0
