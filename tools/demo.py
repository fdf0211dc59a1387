"""``make demo``: the main job of mlptools on an embedded default, start to finish.

Builds a silicon reference database labelled by Stillinger–Weber (the embedded reference, no
external code), then runs every stage that is registered on it, as a user would type it, in
``demo/`` (override with ``MLPTOOLS_DEMO_DIR``). Each stage is a real ``mlptools`` command; the
script prints the command line before running it and stops at the first failure with its exit
status.
"""

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "examples" / "recipes" / "si-sw.toml"


def registered_commands():
    from mlptools.cli import cli

    return set(cli.commands)


def stages():
    """(name, argv, needs) in pipeline order; a stage runs only when its command is registered."""
    return [
        ("build-db", ["build-db", str(RECIPE), "--seed", "1", "--split", "test=0.1",
                      "-o", "si-sw.xyz"], "build-db"),
        ("info", ["info", "si-sw.xyz"], "info"),
        ("describe", ["describe", "si-sw.test.xyz", "--soap", "cutoff=5 n_max=8 l_max=6 sigma=0.5",
                      "--gradients", "-o", "si-sw.test.soap.h5"], "describe"),
        ("info-desc", ["info", "si-sw.test.soap.h5"], "info"),
        ("fit", ["fit", "si-sw.xyz", "--valid", "si-sw.test.xyz", "--model", "gap",
                 "--n-sparse", "500", "--seed", "1", "-o", "si-gap.h5"], "fit"),
        ("info-model", ["info", "si-gap.h5"], "info"),
        ("validate", ["validate", "si-gap.h5", "si-sw.test.xyz", "--properties",
                      "eos,elastic,vacancy,surface", "--element", "Si", "--lattice", "diamond",
                      "--reference", "sw", "--report", "validate.md"], "validate"),
    ]


def main():
    workdir = Path(os.environ.get("MLPTOOLS_DEMO_DIR", ROOT / "demo"))
    workdir.mkdir(parents=True, exist_ok=True)
    have = registered_commands()
    exe = [sys.executable, "-m", "mlptools"]
    print(f"mlptools demo in {workdir}", flush=True)
    for name, argv, needs in stages():
        if needs not in have:
            print(f"-- skipping {name}: `mlptools {needs}` is not available yet", flush=True)
            continue
        print(f"\n$ mlptools {shlex.join(argv)}", flush=True)
        start = time.perf_counter()
        status = subprocess.call(exe + argv, cwd=workdir)
        if status != 0:
            print(f"demo: stage {name} failed with exit status {status}", file=sys.stderr)
            return status
        print(f"-- {name}: {time.perf_counter() - start:.1f} s", flush=True)
    print(f"\ndemo finished; outputs in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
