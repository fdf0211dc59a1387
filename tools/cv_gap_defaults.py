"""Choose GAP defaults by held-out validation on the training sets only (never on test.xyz).

Each element's train.xyz is split once, per config type, into 80 % fit / 20 % held out
(numpy seed ``--seed``, default 7); every variant is fitted with ``mlptools fit`` on the 80 %
and scored on the 20 %.
A variant's score is the mean over elements and over (energy, force) of its error divided by
the baseline's (< 1 is better), for MAE and for RMSE. The defaults in ``mlptools fit --help``
were taken from this table (benchmarks/results/cv-gap-defaults.txt); the test sets were
scored once afterwards.

Usage::

    .venv/bin/python tools/cv_gap_defaults.py --data ../shared/data/mlearn --work /tmp/cv \\
        [--elements Si,Mo] [--variants "3b=--threebody" "d03=--hypers delta=0.3" ...]

Each variant is ``name=options`` (options split on spaces, then key=value groups kept together by
quoting in the shell). Results are cached per variant and element in ``--work``.
"""

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

# the variants scored for the defaults of 2026-12 (options as given to `mlptools fit`, on top of
# the defaults before that change: SOAP δ 1 eV, no radial scaling, no 3-body term)
VARIANTS = {
    "base": "--hypers delta=1 --threebody none --soap scaling_r0=0",
    "3b": "--hypers delta=1 --soap scaling_r0=0",
    "sE1": "--hypers delta=1 --threebody none --soap scaling_r0=0 --sigma-energy 0.001",
    "3b_d03": "--soap scaling_r0=0",
    "3b_rs3m4": "--hypers delta=1",
    "3b_rs3m4_d03": "",
    "3b_d03_sE1": "--soap scaling_r0=0 --sigma-energy 0.001",
}


def split(data, element, work, seed=7, fraction=0.2):
    from ase.io import read, write

    fit, held = work / f"{element}_fit.xyz", work / f"{element}_held.xyz"
    if fit.exists() and held.exists():
        return fit, held
    frames = read(data / element / "train.xyz", index=":")
    rng = np.random.default_rng(seed)
    types = np.array([f.info.get("config_type", "") for f in frames])
    out = np.zeros(len(frames), bool)
    for t in np.unique(types):
        idx = np.flatnonzero(types == t)
        out[rng.choice(idx, size=max(1, round(fraction * len(idx))), replace=False)] = True
    write(fit, [f for f, o in zip(frames, out, strict=True) if not o], format="extxyz")
    write(held, [f for f, o in zip(frames, out, strict=True) if o], format="extxyz")
    return fit, held


def score(fit, held, options, out):
    if not out.exists():
        cmd = [str(Path(sys.executable).with_name("mlptools")), "fit", str(fit), "--valid",
               str(held), "--format", "json", "-q", "-o", str(out.with_suffix(".h5")),
               *shlex.split(options)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode:
            sys.exit(f"{shlex.join(cmd)}: {run.stderr.strip()}")
        out.write_text(run.stdout)
    tables = json.loads(out.read_text())
    rows = tables[str(held)]["rows"]
    o = next(r for r in rows if r["config_type"] == "overall")
    return o["energy_mae"], o["forces_mae"], o["energy_rmse"], o["forces_rmse"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="directory with <El>/train.xyz")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--elements", default="Si,Mo")
    p.add_argument("--variants", nargs="*", default=None, help="name=options ...")
    p.add_argument("--seed", type=int, default=7, help="numpy seed of the fit/held-out split "
                   "(use a fresh --work per seed)")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    variants = (dict(v.split("=", 1) for v in args.variants) if args.variants else VARIANTS)
    elements = args.elements.split(",")
    errors = {}
    for name, options in variants.items():
        for el in elements:
            fit, held = split(args.data, el, args.work, seed=args.seed)
            errors[name, el] = score(fit, held, options, args.work / f"{name}_{el}.json")
            print(f"{name} {el}: E MAE {errors[name, el][0]:.3f} meV/atom, F MAE "
                  f"{errors[name, el][1]:.4f} eV/Å", file=sys.stderr, flush=True)
    base = next(iter(variants))
    ranked = []
    for name in variants:
        mae = np.mean([errors[name, el][i] / errors[base, el][i]
                       for el in elements for i in (0, 1)])
        rmse = np.mean([errors[name, el][i] / errors[base, el][i]
                        for el in elements for i in (2, 3)])
        ranked.append((mae, rmse, name))
    head = "variant".ljust(16) + "MAE-score RMSE-score" + "".join(
        f"  {el}: E MAE (meV/atom) F MAE (eV/Å)" for el in elements)
    print(head)
    for mae, rmse, name in sorted(ranked):
        cells = "".join(f"  {errors[name, el][0]:17.2f} {errors[name, el][1]:12.4f}"
                        for el in elements)
        print(f"{name:<16}{mae:9.3f} {rmse:10.3f}{cells}")


if __name__ == "__main__":
    main()
