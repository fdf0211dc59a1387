"""`mpirun -n 2 mlptools fit` (GAP): design rows built on both ranks, R factors merged (TSQR)."""

import subprocess
import sys

import numpy as np
import pytest
from ase.io import write
from mpi import mpi_env, mpirun
from test_fit_models import sw_frames

import mlptools


def test_mpirun_gap_fit_equals_serial(tmp_path):
    mpi = mpirun()
    rng = np.random.default_rng(11)
    write(tmp_path / "train.xyz", sw_frames(rng, 12, repeat=(2, 1, 1)), format="extxyz")
    probe = sw_frames(rng, 2, repeat=(2, 1, 1))
    # batch_atoms=16: one frame per batch, so both ranks build rows
    args = ["-m", "mlptools", "fit", "train.xyz", "--n-sparse", "40", "--soap",
            "cutoff=4.5 n_max=4 l_max=3", "--hypers", "batch_atoms=16", "--seed", "3",
            "--format", "json"]
    serial = subprocess.run([sys.executable, *args, "-o", "serial.h5"], cwd=tmp_path,
                            env=mpi_env(), capture_output=True, text=True, timeout=300)
    assert serial.returncode == 0, serial.stderr
    par = subprocess.run([*mpi, sys.executable, *args, "-o", "mpi.h5"], cwd=tmp_path,
                         env=mpi_env(), capture_output=True, text=True, timeout=300)
    assert par.returncode == 0, par.stderr
    assert par.stdout.count('"train"') == 1  # one rank printed the table
    a, b = mlptools.load(tmp_path / "serial.h5"), mlptools.load(tmp_path / "mpi.h5")
    for atoms in probe:
        x, y = atoms.copy(), atoms.copy()
        x.calc, y.calc = a, b
        assert y.get_potential_energy() == pytest.approx(x.get_potential_energy(), rel=1e-9)
        np.testing.assert_allclose(y.get_forces(), x.get_forces(), rtol=0, atol=1e-7)
