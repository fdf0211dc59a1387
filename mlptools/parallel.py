"""MPI helpers shared by the commands that run under ``mpirun`` (the communicator is passed in)."""

import contextlib


@contextlib.contextmanager
def ase_serial():
    """Make ASE's ``world`` a serial one while each rank works alone.

    Under mpirun ASE picks mpi4py's COMM_WORLD as soon as mpi4py is imported, and then its
    file I/O, MD and file-based calculators broadcast from rank 0: collective calls that would
    deadlock when ranks generate or label different structures.
    """
    import ase.parallel

    world = ase.parallel.world
    saved = world.__dict__.get("comm")
    world.comm = ase.parallel.DummyMPI()
    try:
        yield
    finally:
        world.comm = saved
