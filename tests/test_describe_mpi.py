"""`mpirun -n 2 mlptools describe` writes the same file as a serial run (real MPI, 2 ranks)."""

import subprocess
import sys

import numpy as np
from ase.build import bulk
from ase.io import write
from mpi import mpi_env, mpirun

from mlptools.io.descriptors import read_descriptors


def test_mpirun_describe_equals_serial(tmp_path):
    mpi = mpirun()
    rng = np.random.default_rng(3)
    frames = []
    for k in range(5):  # five batches of one structure: both ranks get work, out of order
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        frames.append(atoms if k % 2 else atoms.repeat((1, 1, 2)))
    write(tmp_path / "in.xyz", frames, format="extxyz")
    args = ["-m", "mlptools", "describe", "in.xyz", "--soap", "cutoff=4 n_max=3 l_max=2",
            "--gradients", "--batch-atoms", "8"]
    serial = subprocess.run([sys.executable, *args, "-o", "serial.h5"], cwd=tmp_path,
                            env=mpi_env(), capture_output=True, text=True, timeout=120)
    assert serial.returncode == 0, serial.stderr
    par = subprocess.run([*mpi, sys.executable, *args, "-o", "mpi.h5"], cwd=tmp_path,
                         env=mpi_env(), capture_output=True, text=True, timeout=180)
    assert par.returncode == 0, par.stderr
    a = read_descriptors(tmp_path / "serial.h5")["soap"]
    b = read_descriptors(tmp_path / "mpi.h5")["soap"]
    for key in ("features", "structure_index", "grad_samples", "grad_values", "strain_grad"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)


def test_mpirun_describe_bad_input_is_one_line(tmp_path):
    mpi = mpirun()
    (tmp_path / "bad.xyz").write_text("4\nPBC garbage\nSi 0 0 0\n")
    par = subprocess.run([*mpi, sys.executable, "-m", "mlptools", "describe", "bad.xyz",
                          "-o", "d.h5"], cwd=tmp_path, env=mpi_env(), capture_output=True,
                         text=True, timeout=120)
    assert par.returncode == 1
    errors = [ln for ln in par.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "bad.xyz" in errors[0]
    assert "Traceback" not in par.stderr
    assert not (tmp_path / "d.h5").exists()
