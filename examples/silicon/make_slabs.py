"""Write the Si(100) and Si(111) slabs that si.toml anneals with SW (run once; output committed).

The slabs are cut as `mlptools validate --properties surface` cuts them (the same oriented cell
and the termination of lowest SW energy, so (111) is cut between the widely spaced planes),
(100) repeated 2x2 in plane (room for dimers), (111) 1x1 (32 atoms), about 10 Å thick with
12 Å of vacuum.

    PYTHONPATH=../.. python make_slabs.py
"""
import numpy as np
from ase.build import bulk
from ase.io import write

from mlptools.calculators import make_calculator
from mlptools.workflows.properties import _oriented_cell, _slab

si = bulk("Si", "diamond", a=5.431, cubic=True)
sw = make_calculator("sw")
for miller, repeat in (((1, 0, 0), (2, 2, 1)), ((1, 1, 1), (1, 1, 1))):
    oriented, normal = _oriented_cell(si, miller, 10.0)
    heights = np.unique(np.round(oriented.get_scaled_positions(wrap=True)[:, 2], 6))
    gaps = np.diff(np.concatenate([heights, [heights[0] + 1.0]]))
    best = None
    for h, g in zip(heights, gaps, strict=True):
        slab = _slab(oriented, normal, (h + g / 2) % 1.0, 12.0)
        slab.calc = sw
        e = slab.get_potential_energy()
        if best is None or e < best[0] - 1e-9:
            best = (e, slab)
    slab = best[1].repeat(repeat)
    slab.calc = None
    name = "slab-{}{}{}.xyz".format(*miller)
    write(name, slab, format="extxyz")
    print(name, len(slab), np.round(slab.cell.lengths(), 3))
