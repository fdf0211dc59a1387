"""Benchmark: mlptools neighbour list against ASE, matscipy and vesin, in the same run.

Systems: diamond Si supercells (64, 512, 4096, 32768 atoms) and a 2000-atom liquid-like cell
(random positions at the density of liquid Si, 2.57 g/cm³, minimum separation 2 Å, seed 2026).
Cutoff 5 Å, full list, quantities 'ijSdD' for everyone. Everything runs single-threaded
(OMP_NUM_THREADS=1 is set before any import); mlptools is also timed on 2 threads.

Usage: .venv/bin/python benchmarks/bench_neighbors.py
(also writes benchmarks/results/neighbors.txt)
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"   # before numpy / OpenMP are loaded

import platform  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import best_time  # noqa: E402

CUTOFF = 5.0
HERE = Path(__file__).resolve().parent


def diamond_si(rep):
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (rep, rep, rep)
    return atoms.positions.copy(), atoms.cell.array.copy()


def liquid_si(n=2000, seed=2026, min_distance=2.0):
    """Random positions at liquid-Si density with a minimum (minimum-image) separation."""
    density = 2.57 / 28.0855 * 6.02214076e23 * 1e-24          # atoms / Å³
    length = (n / density) ** (1 / 3)
    cell = np.eye(3) * length
    rng = np.random.default_rng(seed)
    pos = np.empty((n, 3))
    k = 0
    while k < n:
        trial = rng.uniform(0, length, 3)
        delta = pos[:k] - trial
        delta -= length * np.round(delta / length)
        if k == 0 or np.min(np.einsum("pc,pc->p", delta, delta)) >= min_distance**2:
            pos[k] = trial
            k += 1
    return pos, cell


def main():
    from ase.neighborlist import primitive_neighbor_list
    from matscipy.neighbours import neighbour_list as matscipy_nl
    from vesin import NeighborList

    from mlptools.neighbors import _neighbor_list, neighbor_list

    systems = [(f"Si diamond {r}x{r}x{r}", *diamond_si(r)) for r in (2, 4, 8, 16)]
    systems.insert(3, ("Si liquid-like", *liquid_si()))
    pbc = np.array([True, True, True])
    vesin_nl = NeighborList(cutoff=CUTOFF, full_list=True)

    runners = {
        "ours": lambda P, C: neighbor_list("ijSdD", P, C, pbc, CUTOFF),
        "ase": lambda P, C: primitive_neighbor_list("ijSdD", pbc, C, P, CUTOFF),
        "matscipy": lambda P, C: matscipy_nl("ijSdD", positions=P, cell=C, pbc=pbc,
                                            cutoff=CUTOFF),
        "vesin": lambda P, C: vesin_nl.compute(P, C, True, quantities="ijSdD"),
        "ours-2t": lambda P, C: _neighbor_list("ijSdD", P, C, pbc, CUTOFF, False, n_threads=2),
    }
    peers = ["ase", "matscipy", "vesin"]

    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    import ase
    import matscipy
    import vesin

    out(f"neighbour list, cutoff {CUTOFF} Å, full list 'ijSdD', single thread "
        f"(OMP_NUM_THREADS=1); ours-2t = mlptools on 2 threads")
    out(f"python {platform.python_version()}, numpy {np.__version__}, ase {ase.__version__}, "
        f"matscipy {matscipy.__version__}, vesin {vesin.__version__}, "
        f"cpu {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    out("time = best-of-N wall time per call (ms); Mp/s = million pairs per second; "
        "speedup = t_peer / t_ours (> 1: ours is faster)")
    out()
    head = (f"{'system':<22}{'atoms':>7}{'pairs':>9} | " + "".join(f"{k:>9}" for k in runners)
            + " | " + "".join(f"{k:>9}" for k in runners) + " | "
            + "".join(f"{'x ' + k:>11}" for k in peers))
    out(f"{'':<38} | {'time per call (ms)':^45} | {'M pairs / s':^45} | {'speedup of ours':^33}")
    out(head)
    out("-" * len(head))
    for name, P, C in systems:
        n_pairs = len(neighbor_list("i", P, C, pbc, CUTOFF)[0])
        # all peers agree on the pair count
        counts = {"ase": len(runners["ase"](P, C)[0]), "vesin": len(runners["vesin"](P, C)[0]),
                  "matscipy": len(runners["matscipy"](P, C)[0])}
        assert all(c == n_pairs for c in counts.values()), (name, n_pairs, counts)
        times = {k: best_time(lambda f=f, P=P, C=C: f(P, C)) for k, f in runners.items()}
        rates = {k: n_pairs / t / 1e6 for k, t in times.items()}
        out(f"{name:<22}{len(P):>7}{n_pairs:>9} | "
            + "".join(f"{times[k] * 1e3:>9.3f}" for k in runners) + " | "
            + "".join(f"{rates[k]:>9.2f}" for k in runners) + " | "
            + "".join(f"{times[k] / times['ours']:>11.2f}" for k in peers))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "neighbors.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
