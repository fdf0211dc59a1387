"""Benchmark: fit time / peak memory of ``mlptools fit``, and prediction cost per atom per MD step.

Fit: runs ``mlptools fit TRAIN --model KIND`` in a subprocess (peak RSS is that child's own,
from ``os.wait4``), with ``OMP_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` set to ``--threads``,
and reports wall time and peak memory. ``--train`` may be given once per data set.

Prediction: for each model file, a rattled ~1000-atom cell of its first element's ASE reference
crystal (diamond Si: 5×5×5 cubic cells, 1000 atoms; bcc Mo: 8×8×8, 1024); each "step" moves the
atoms slightly and asks the calculator for energy, forces and stress (a full recomputation: SOAP
with gradients, kernel, contraction), single-threaded unless ``--predict-threads`` says
otherwise. Reported: best-of-``--repeat`` seconds per step and ms per atom per step.

Usage::

    .venv/bin/python benchmarks/bench_fit.py --train ../shared/data/mlearn/Si/train.xyz \\
        [--train ../shared/data/mlearn/Mo/train.xyz] [--kinds gap,linear,quadratic] \\
        [--threads 2] [--predict-threads 1] [--repeat 3]
    .venv/bin/python benchmarks/bench_fit.py --models si-gap.h5 si-lin.h5   # prediction only

Output goes to stdout and to benchmarks/results/fit.txt.
"""

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _env(threads):
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    return env


def time_fit(train, kind, threads, out, extra=()):
    """(wall s, peak RSS MB, stdout) of one ``mlptools fit`` subprocess."""
    cmd = [sys.executable, "-m", "mlptools", "fit", str(train), "--model", kind, "-o", str(out),
           *extra]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(cmd, env=_env(threads), stdout=stdout, stderr=stderr, text=True)
        # wait4, not RUSAGE_CHILDREN: the latter is the maximum over every child so far
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, cmd, stdout.read(), stderr.read())
        return wall, usage.ru_maxrss / 1024.0, stdout.read()


_PREDICT = r"""
import sys, time, numpy as np
from ase.build import bulk
from ase.data import chemical_symbols
import mlptools
calc = mlptools.load(sys.argv[1])
repeat = int(sys.argv[2])
rng = np.random.default_rng(1)
cell = bulk(chemical_symbols[int(calc.species[0])], cubic=True)
atoms = cell * round((1000 / len(cell)) ** (1 / 3))
atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
atoms.calc = calc
atoms.get_forces()                     # warm-up: radial tables, caches
best = float("inf")
for _ in range(repeat):
    atoms.positions += rng.normal(0, 1e-3, atoms.positions.shape)
    t0 = time.perf_counter()
    atoms.get_potential_energy(); atoms.get_forces(); atoms.get_stress()
    best = min(best, time.perf_counter() - t0)
print(len(atoms), best)
"""


def time_predict(model, threads, repeat):
    out = subprocess.run([sys.executable, "-c", _PREDICT, str(model), str(repeat)],
                         env=_env(threads), capture_output=True, text=True, check=True).stdout
    n, seconds = out.split()
    return int(n), float(seconds)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", action="append", default=[],
                   help="training set (repeatable: one row per set and kind)")
    p.add_argument("--models", nargs="*", default=(),
                   help="time the prediction of these model files only (no fit)")
    p.add_argument("--kinds", default="gap,linear,quadratic")
    p.add_argument("--threads", type=int, default=2, help="threads of the fit")
    p.add_argument("--predict-threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--keep", default=None, help="directory to keep the model files in")
    args = p.parse_args()

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    trains = ", ".join(args.train) or "-"
    lines = [f"mlptools fit benchmark; {now} UTC; train {trains}; fit threads {args.threads}, "
             f"prediction threads {args.predict_threads}; "
             f"load average {os.getloadavg()[0]:.2f} at start",
             f"{'model':<13} {'fit s':>8} {'peak MB':>8} | {'atoms':>6} {'s/step':>8} "
             f"{'ms/atom/step':>13}"]
    print(lines[0], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(args.keep or tmp)
        where.mkdir(parents=True, exist_ok=True)
        jobs = [(Path(m).stem, Path(m), None) for m in args.models]
        for train in args.train:
            tag = Path(train).resolve().parent.name
            jobs += [(f"{tag}-{kind}", where / f"{tag}-{kind}.h5", (train, kind))
                     for kind in args.kinds.split(",")]
        for name, model, job in jobs:
            wall = peak = float("nan")
            if job is not None:
                wall, peak, _ = time_fit(*job, args.threads, model)
            n, sec = time_predict(model, args.predict_threads, args.repeat)
            lines.append(f"{name:<13} {wall:8.1f} {peak:8.0f} | {n:6d} {sec:8.3f} "
                         f"{1000.0 * sec / n:13.4f}")
            print(lines[-1], flush=True)
    lines.append(f"load average at the end {os.getloadavg()[0]:.2f} (other processes distort "
                 "timings)")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "fit.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[1:]))


if __name__ == "__main__":
    main()
