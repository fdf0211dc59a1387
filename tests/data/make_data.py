"""Regenerate the tiny test files of tests/data (see README.md). Run from the repository root:

    .venv/bin/python tests/data/make_data.py

Deterministic: fixed seeds, ASE's EMT calculator (no external code, no download).
"""

from pathlib import Path

import h5py
import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.cluster import Icosahedron
from ase.io import write

HERE = Path(__file__).resolve().parent
BAD = HERE / "bad"


def labelled(atoms, config_type, stress=True):
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if stress:
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info["config_type"] = config_type
    return atoms


def cu_frames():
    rng = np.random.default_rng(7)
    frames = []
    for strain in (0.0, 0.02):
        a = bulk("Cu", "fcc", a=3.61 * (1 + strain), cubic=True)
        a.rattle(0.05, rng=rng)
        frames.append(labelled(a, "bulk"))
    vac = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    del vac[3]
    vac.rattle(0.05, rng=rng)
    frames.append(labelled(vac, "vacancy"))
    cluster = Icosahedron("Cu", noshells=2)
    cluster.rattle(0.05, rng=rng)
    frames.append(labelled(cluster, "cluster", stress=False))  # non-periodic: no stress
    return frames


def main():
    frames = cu_frames()
    write(HERE / "cu_emt.xyz", frames, format="extxyz")
    good = (HERE / "cu_emt.xyz").read_text().splitlines(keepends=True)
    first = good[: 2 + 4]  # the first frame: 4 atoms

    BAD.mkdir(exist_ok=True)
    (BAD / "empty.xyz").write_text("")
    (BAD / "truncated.xyz").write_text("".join(good[: 2 + 4 + 2 + 2]))  # frame 1 cut after 2 atoms
    (BAD / "garbled_header.xyz").write_text("".join(first) + "four\n" + "".join(first[1:]))
    nan = list(first)
    cols = nan[3].split()
    cols[-1] = "nan"
    nan[3] = " ".join(cols) + "\n"
    (BAD / "nan_forces.xyz").write_text("".join(nan))
    shape = [first[0], first[1].replace("forces:R:3", "forces:R:2")]
    shape += [" ".join(line.split()[:-1]) + "\n" for line in first[2:]]
    (BAD / "forces_shape.xyz").write_text("".join(shape))
    over = list(first)
    cols = over[3].split()
    ref = over[2].split()
    cols[1:4] = [f"{float(x) + 0.1:.8f}" for x in ref[1:4]]
    over[3] = " ".join(cols) + "\n"
    (BAD / "overlap.xyz").write_text("".join(over))
    (BAD / "no_forces.xyz").write_text(
        '2\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3 energy=-1.0 pbc="T T T"\n'
        "Cu 0 0 0\nCu 2 2 2\n"
    )
    with h5py.File(BAD / "wrong_version.h5", "w") as f:
        f.attrs["format"] = "mlptools-structures"
        f.attrs["format_version"] = 9
        f.attrs["units"] = "{}"
        f.attrs["provenance"] = "{}"


if __name__ == "__main__":
    main()
