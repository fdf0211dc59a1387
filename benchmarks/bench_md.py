"""Benchmark: MD throughput (atom-steps/s) with Stillinger-Weber Si, and the per-step overhead.

For each cell (216 and 1000 atoms of liquid-like SW Si) it times, in the same run:

- ``calc``: one SW energy+forces+stress evaluation of a displaced configuration (what a step
  cannot avoid);
- ``ase``: ASE's own loop, ``VelocityVerlet(...).run(n)``;
- ``mlptools``: :func:`mlptools.workflows.md.run_md` (NVE, log every 10 steps, no trajectory)
  and NVT Langevin;

and reports atom-steps per second. The driver's own per-step cost is measured directly by
running ``run_md`` with a near-free calculator (harmonic springs, O(N) NumPy), and compared with
one SW call. Single-threaded (OMP_NUM_THREADS=1 set
before any import: on a busy 2-core machine the OpenMP neighbour list otherwise spins and makes
SW several times slower).

Usage: .venv/bin/python benchmarks/bench_md.py   (also writes benchmarks/results/md.txt)
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"   # before numpy / OpenMP are loaded

import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import best_time  # noqa: E402

HERE = Path(__file__).resolve().parent
STEPS = 200
CHUNK = 10  # steps are timed in chunks of 10; the best chunk is reported (least disturbed)


def hot_si(rep, seed=1):
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(rep)
    atoms.rattle(0.1, rng=np.random.default_rng(seed))
    return atoms


class Springs:
    """A near-free calculator (Einstein springs to the start sites): timing MD with it measures
    the integrator's own per-step cost."""

    def __new__(cls, sites, k=1.0):
        from ase.calculators.calculator import Calculator, all_changes

        class _Springs(Calculator):
            implemented_properties = ["energy", "free_energy", "forces", "stress"]

            def calculate(self, atoms=None, properties=None, system_changes=all_changes):
                super().calculate(atoms, properties, system_changes)
                d = self.atoms.positions - sites
                e = 0.5 * k * float((d * d).sum())
                self.results = {"energy": e, "free_energy": e, "forces": -k * d,
                                "stress": np.zeros(6)}

        return _Springs()


def time_calc(atoms):
    from mlptools.calculators import StillingerWeber

    work = atoms.copy()
    work.calc = StillingerWeber()
    rng = np.random.default_rng(0)

    def once():
        work.positions = work.positions + rng.normal(0, 1e-4, work.positions.shape)
        work.get_forces()

    return best_time(once, repeat=5, min_time=0.2)


def time_ase(atoms):
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from mlptools.calculators import StillingerWeber
    from mlptools.workflows.md import thermalize

    work = atoms.copy()
    work.calc = StillingerWeber()
    thermalize(work, 1000.0, np.random.default_rng(1))
    dyn = VelocityVerlet(work, 1.0 * units.fs)
    dyn.run(5)
    best = float("inf")
    for _ in range(STEPS // CHUNK):
        t0 = time.perf_counter()
        dyn.run(CHUNK)
        best = min(best, (time.perf_counter() - t0) / CHUNK)
    return best


def time_ours(atoms, ensemble, calc=None):
    from mlptools.calculators import StillingerWeber
    from mlptools.workflows.md import MDSettings, Stage, run_md

    settings = MDSettings(ensemble=ensemble, timestep_fs=1.0, log_stride=CHUNK, traj_stride=0,
                          checkpoint_stride=0)
    stamps = []  # progress() is called every log_stride = CHUNK steps

    def progress(step, total):
        stamps.append(time.perf_counter())

    run_md(atoms, calc or StillingerWeber(), settings, [Stage("md", STEPS, 1000.0)],
           rng=np.random.default_rng(1), progress=progress)
    return float(np.min(np.diff(stamps))) / CHUNK


def main():
    import ase

    lines = [
        f"MD with Stillinger-Weber Si, {STEPS} steps of 1 fs at ~1000 K, single thread "
        "(OMP_NUM_THREADS=1)",
        f"python {platform.python_version()}, numpy {np.__version__}, ase {ase.__version__}, "
        f"cpu {platform.machine()}, {os.cpu_count()} cores; load average "
        f"{os.getloadavg()[0]:.1f} (shared machine: absolute times are noisy)",
        "calc = one SW energy/forces/stress call; step = wall time per MD step (best 10-step "
        "chunk); 'springs' = run_md with a near-free calculator: the driver's own cost per step",
        "",
        f"{'atoms':>6} {'driver':>18} {'calc ms':>9} {'step ms':>9} {'atom-steps/s':>13}",
    ]
    for rep in (3, 5):
        atoms = hot_si(rep)
        t_calc = time_calc(atoms)
        for name, t_step in (("ase VelocityVerlet", time_ase(atoms)),
                             ("mlptools nve", time_ours(atoms, "nve")),
                             ("mlptools nvt", time_ours(atoms, "nvt"))):
            lines.append(f"{len(atoms):6d} {name:>18} {1e3 * t_calc:9.3f} {1e3 * t_step:9.3f} "
                         f"{len(atoms) / t_step:13.0f}")
        for ensemble in ("nve", "nvt"):
            t_free = time_ours(atoms, ensemble, Springs(atoms.positions.copy()))
            lines.append(f"{len(atoms):6d} {'springs ' + ensemble:>18} {'-':>9} "
                         f"{1e3 * t_free:9.3f} {len(atoms) / t_free:13.0f}   <- driver cost "
                         f"{1e6 * t_free:.0f} us/step = {100 * t_free / t_calc:.1f} % of one SW "
                         "call")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    out = HERE / "results" / "md.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
