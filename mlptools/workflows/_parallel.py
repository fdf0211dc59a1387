"""Share independent work items over MPI ranks with one writer (rank 0).

Used by ``build-db`` (labelling) and ``airss-search`` (relaxations): every rank works on its own
round-robin share of the items, the other ranks send each finished record to rank 0, and rank 0
alone records them (checkpoint, progress) as they arrive, between its own items.
"""

from __future__ import annotations

import contextlib

TAG = 77

__all__ = ["ase_serial", "run_worker", "run_writer"]


@contextlib.contextmanager
def ase_serial():
    """Make ASE's ``world`` a serial one while each rank works alone.

    Under mpirun ASE picks mpi4py's COMM_WORLD as soon as mpi4py is imported, and then its
    file I/O, MD, optimisers and file-based calculators broadcast from rank 0: collective calls
    that would deadlock when ranks work on different structures.
    """
    import ase.parallel

    world = ase.parallel.world
    saved = world.__dict__.get("comm")
    world.comm = ase.parallel.DummyMPI()
    try:
        yield
    finally:
        world.comm = saved


def run_writer(comm, items, work, stop_requested, record_done):
    """Rank 0: ``work(item)`` on its share, and ``record_done`` every rank's records as they come.

    ``work`` returns a JSON-able record, or None when it was interrupted by a stop request.
    Returns True when any rank stopped early because ``stop_requested()`` said so.
    """
    from mpi4py import MPI

    pending = comm.Get_size() - 1
    stopped = False

    def handle(msg):
        nonlocal pending, stopped
        kind, body = msg
        if kind == "result":
            record_done(body)
        else:  # "done"
            pending -= 1
            stopped = stopped or body

    def drain(block=False):
        while pending and (block or comm.iprobe(source=MPI.ANY_SOURCE, tag=TAG)):
            handle(comm.recv(source=MPI.ANY_SOURCE, tag=TAG))

    for item in items:
        drain()
        if stop_requested():
            stopped = True
            break
        record = work(item)
        if record is None:  # the work itself was interrupted (``work`` returns None)
            stopped = True
            break
        record_done(record)
    drain(block=True)
    return stopped


def run_worker(comm, items, work, stop_requested):
    """Other ranks: ``work(item)`` on their share, each record sent to rank 0; (stopped, n)."""
    stopped, n = False, 0
    try:
        for item in items:
            if stop_requested():
                stopped = True
                break
            record = work(item)
            if record is None:  # the work itself was interrupted
                stopped = True
                break
            record["rank"] = comm.Get_rank()
            comm.send(("result", record), dest=0, tag=TAG)
            n += 1
    finally:
        # always tell the writer, even on an unexpected error, so rank 0 never waits forever
        comm.send(("done", stopped), dest=0, tag=TAG)
    return stopped, n
