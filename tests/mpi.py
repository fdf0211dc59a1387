"""Running a command under real MPI in the tests: the mpirun to use and its environment."""

import os
import shutil
import sys

import pytest


def mpirun(n=2):
    """``[mpirun, -n, N, --oversubscribe]``: the venv's Open MPI (the mpi-runtime extra) first,
    then the system's; skips when there is none or no mpi4py."""
    exe = shutil.which("mpirun", path=os.path.dirname(sys.executable)) or shutil.which("mpirun")
    if exe is None:
        pytest.skip("no mpirun (pip install 'mlptools[mpi-runtime]' or a system MPI)")
    pytest.importorskip("mpi4py")
    return [exe, "-n", str(n), "--oversubscribe"]


def mpi_env(**extra):
    """The environment for it: Open MPI allowed as root (containers, CI), one thread per rank,
    and the interpreter's bin directory on PATH."""
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", **extra)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env
