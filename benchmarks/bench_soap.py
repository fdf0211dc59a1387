"""Benchmark: mlptools SOAP power spectrum against featomic and dscribe, in the same run.

Systems: rattled diamond Si with 216 and 1000 atoms, and a 512-atom amorphous-like Si cell
(random positions at crystal density with a 2.1 Å minimum distance). Hypers: cutoff 5 Å
(cutoff_width 1 Å for us and featomic; dscribe has no smooth cutoff), n_max 8, l_max 6,
σ 0.5 Å, GTO radial basis. Features alone and features + position gradients; ours also with
strain gradients. Every timing is the best of ``--repeat`` calls.

Threads: each thread count runs in a subprocess with ``OMP_NUM_THREADS`` (ours, via
``n_threads``) and ``RAYON_NUM_THREADS`` (featomic) set to it, and
``OMP_WAIT_POLICY=passive``; dscribe runs with ``n_jobs``
equal to it (it parallelises over structures only, so one structure uses one core), and its
gradients (numerical only for periodic cells, dense (N, N, 3, F) arrays) are timed on the
216-atom cell only.

FLOP estimate: ours counted from the loops of cython_ext/soap.pyx (see ``_flops_per_atom``);
the peak assumed is 16 double-precision FLOP/cycle/core (AVX2 with two FMA pipes) at the clock
from /proc/cpuinfo. Note that the extension is built for the baseline x86-64 ISA (SSE2, no FMA):
its own attainable peak is 4 FLOP/cycle/core.

Usage::

    .venv/bin/python benchmarks/bench_soap.py [--threads 1,2] [--repeat 3]

Output goes to stdout and to benchmarks/results/soap.txt.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CUTOFF, WIDTH, NMAX, LMAX, SIGMA = 5.0, 1.0, 8, 6, 0.5


def _systems():
    import numpy as np
    from ase import Atoms
    from ase.build import bulk

    rng = np.random.default_rng(20261124)
    out = {}
    for reps, name in ((3, "Si216"), (5, "Si1000")):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (reps, reps, reps)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        out[name] = atoms
    # amorphous-like: 512 random positions in the 4x4x4 diamond cell, minimum image distance 2.1 Å
    length = 4 * 5.43
    pos = []
    while len(pos) < 512:
        trial = rng.random(3) * length
        if pos:
            diff = np.asarray(pos) - trial
            diff -= length * np.round(diff / length)
            if np.min(np.einsum("ij,ij->i", diff, diff)) < 2.1 ** 2:
                continue
        pos.append(trial)
    out["aSi512"] = Atoms("Si512", positions=pos, cell=[length] * 3, pbc=True)
    return out


def _best(func, repeat):
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _flops_per_atom(n_pairs_per_atom, gradients, nmax=NMAX, lmax=LMAX, n_species=1):
    """FLOPs per centre of our kernel (leading terms, counted from the loops)."""
    L1, LM = lmax + 1, (lmax + 1) ** 2
    nq = nmax * L1
    F = n_species * nmax * (nmax + 1) // 2 * L1
    pair = 9 * nq + 20 * LM + 2 * nmax * LM            # radial spline, harmonics, density
    centre = sum((2 * ell + 1) * 2 * nmax * (nmax + 1) // 2 for ell in range(L1))
    total = n_pairs_per_atom * pair + centre
    if gradients:
        g_pair = (2 * 4 * LM * nmax              # A, B contractions
                  + 3 * 3 * L1 * nmax * nmax     # T = U A + R B
                  + 2 * 3 * F                    # gather (symmetrise) into dX/dD
                  + 2 * 3 * F)                   # scatter onto atom j and the centre
        total += n_pairs_per_atom * g_pair + (n_pairs_per_atom + 1) * 3 * 4 * F   # normalisation
    return total


def _clock_ghz():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) / 1000.0
    except OSError:
        pass
    return 2.5


def run_one(threads, repeat):
    """Measure everything at one thread count (called in a subprocess with the env set)."""
    import numpy as np

    from mlptools.descriptors.hypers import SoapHypers
    from mlptools.descriptors.soap import soap_power_spectrum
    from mlptools.neighbors import neighbor_list

    hp = SoapHypers(cutoff=CUTOFF, cutoff_width=WIDTH, n_max=NMAX, l_max=LMAX, sigma=SIGMA,
                    species=(14,))
    soap_power_spectrum(_systems()["Si216"], hp)            # build and cache the radial table
    rows = []
    try:
        import featomic
    except ImportError:
        featomic = None
    try:
        from dscribe.descriptors import SOAP
    except ImportError:
        SOAP = None
    for name, atoms in _systems().items():
        n = len(atoms)
        i_p = neighbor_list("i", atoms.positions, atoms.cell.array, atoms.pbc, CUTOFF)[0]
        pairs = len(i_p) / n
        rec = {"system": name, "n_atoms": n, "threads": threads, "pairs_per_atom": pairs}
        def ours(atoms=atoms, **kw):
            return soap_power_spectrum([atoms], hp, n_threads=threads, **kw)

        t, _ = _best(ours, repeat)
        rec["ours_features"] = n / t
        t, ds = _best(lambda: ours(gradients=True), repeat)
        rec["ours_gradients"] = n / t
        rec["ours_grad_MB"] = (ds.grad_values.nbytes + ds.grad_samples.nbytes) / 1e6
        del ds
        t, ds = _best(lambda: ours(gradients=True, strain=True), repeat)
        rec["ours_grad_strain"] = n / t
        del ds
        rec["flops_features"] = _flops_per_atom(pairs, False)
        rec["flops_gradients"] = _flops_per_atom(pairs, True)
        if featomic is not None:
            calc = featomic.SoapPowerSpectrum(
                cutoff={"radius": CUTOFF, "smoothing": {"type": "ShiftedCosine", "width": WIDTH}},
                density={"type": "Gaussian", "width": SIGMA, "center_atom_weight": 1.0},
                basis={"type": "TensorProduct", "max_angular": LMAX,
                       "radial": {"type": "Gto", "max_radial": NMAX - 1}})
            calc.compute([atoms])
            t, _ = _best(lambda calc=calc, atoms=atoms: calc.compute([atoms]), repeat)
            rec["featomic_features"] = n / t
            t, tm = _best(lambda calc=calc, atoms=atoms:
                          calc.compute([atoms], gradients=["positions"]), repeat)
            rec["featomic_gradients"] = n / t
            mem = 0
            for _, block in tm.items():
                g = block.gradient("positions")
                mem += np.asarray(g.values).nbytes + np.asarray(g.samples.values).nbytes
            rec["featomic_grad_MB"] = mem / 1e6
            del tm
        if SOAP is not None:
            desc = SOAP(species=["Si"], r_cut=CUTOFF, n_max=NMAX, l_max=LMAX, sigma=SIGMA,
                        rbf="gto", periodic=True)
            t, _ = _best(lambda desc=desc, atoms=atoms: desc.create(atoms, n_jobs=threads), repeat)
            rec["dscribe_features"] = n / t
            if n <= 216:
                t, (dd, _) = _best(lambda desc=desc, atoms=atoms:
                                   desc.derivatives(atoms, method="auto", n_jobs=threads), 1)
                rec["dscribe_gradients"] = n / t
                rec["dscribe_grad_MB"] = dd.nbytes / 1e6
                del dd
        rows.append(rec)
    return rows


def _fmt(x, width=9):
    return f"{x:>{width}.0f}" if x is not None else f"{'-':>{width}}"


def report(rows):
    ghz = _clock_ghz()
    lines = [
        f"SOAP power spectrum: cutoff {CUTOFF} Å (width {WIDTH}), n_max {NMAX}, l_max {LMAX}, "
        f"σ {SIGMA} Å, GTO; atoms/s (best of repeats); {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"host: {os.cpu_count()} cores, {ghz:.2f} GHz; peak assumed 16 FLOP/cycle/core (AVX2 FMA); "
        f"load average at the end {os.getloadavg()[0]:.2f} (other processes distort the "
        "multi-thread numbers)",
        "",
        f"{'system':<8}{'thr':>4}{'pairs':>7} | {'ours':>9}{'featomic':>9}{'dscribe':>9}"
        f"{'ratio':>7} | {'ours':>9}{'+strain':>9}{'featomic':>9}{'dscribe':>9}{'ratio':>7}"
        f" | {'%peak f':>8}{'%peak g':>8} | {'MB ours':>8}{'featomic':>9}{'dscribe':>9}",
        f"{'':<8}{'':>4}{'/atom':>7} | {'--- features only':<34} | "
        f"{'--- features + position gradients':<43} | {'':>16} | {'gradient memory':<26}",
    ]
    for r in rows:
        peers_f = [r.get("featomic_features"), r.get("dscribe_features")]
        best_f = max([p for p in peers_f if p] or [float("nan")])
        ratio_f = r["ours_features"] / best_f
        ratio_g = (r["ours_gradients"] / r["featomic_gradients"] if r.get("featomic_gradients")
                   else float("nan"))
        peak = 16 * ghz * 1e9 * r["threads"]
        pf = 100 * r["ours_features"] * r["flops_features"] / peak
        pg = 100 * r["ours_gradients"] * r["flops_gradients"] / peak
        lines.append(
            f"{r['system']:<8}{r['threads']:>4}{r['pairs_per_atom']:>7.1f} | "
            f"{_fmt(r['ours_features'])}{_fmt(r.get('featomic_features'))}"
            f"{_fmt(r.get('dscribe_features'))}{ratio_f:>6.1f}x | "
            f"{_fmt(r['ours_gradients'])}{_fmt(r['ours_grad_strain'])}"
            f"{_fmt(r.get('featomic_gradients'))}{_fmt(r.get('dscribe_gradients'))}"
            f"{ratio_g:>6.1f}x | {pf:>7.1f}%{pg:>7.1f}% | {r['ours_grad_MB']:>8.1f}"
            f"{r.get('featomic_grad_MB', float('nan')):>9.1f}"
            f"{r.get('dscribe_grad_MB', float('nan')):>9.1f}")
    lines += [
        "",
        "ratio (features) = ours / faster peer; ratio (gradients) = ours / featomic.",
        "FLOP/atom (ours, Si216): features "
        f"{rows[0]['flops_features'] / 1e6:.3f} M, features+gradients "
        f"{rows[0]['flops_gradients'] / 1e6:.3f} M.",
        "dscribe gradients: numerical (periodic), dense (N, N, 3, F), 216-atom cell only.",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        json.dump(run_one(args.worker, args.repeat), sys.stdout)
        return
    rows = []
    for threads in [int(t) for t in args.threads.split(",") if t]:
        # passive: idle OpenMP threads sleep instead of spinning; on a shared machine spinning
        # threads compete with other processes (measured here: the 2-thread neighbour list went
        # from 2.4 ms to 20 ms with one core busy elsewhere)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), RAYON_NUM_THREADS=str(threads),
                   OMP_WAIT_POLICY="passive", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        out = subprocess.run([sys.executable, __file__, "--worker", str(threads), "--repeat",
                              str(args.repeat)], env=env, check=True, capture_output=True,
                             text=True).stdout
        rows += json.loads(out)
    rows.sort(key=lambda r: (r["n_atoms"], r["threads"]))
    text = report(rows)
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "soap.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
