"""A stand-in for an mpi4py communicator: ranks as threads, allgather/bcast through a barrier.

``run_ranks(size, func)`` calls ``func(comm)`` in ``size`` threads and returns their results
by rank; an exception in any rank is re-raised (after all threads end).
"""

import threading


class ThreadComm:
    """The subset of mpi4py's Comm that mlptools uses: Get_rank, Get_size, allgather, bcast."""

    def __init__(self, rank, size, box, barrier):
        self.rank, self.size, self._box, self._barrier = rank, size, box, barrier

    def Get_rank(self):  # noqa: N802 (mpi4py's name)
        return self.rank

    def Get_size(self):  # noqa: N802
        return self.size

    def allgather(self, obj):
        self._box[self.rank] = obj
        self._barrier.wait()
        out = [self._box[r] for r in range(self.size)]
        self._barrier.wait()
        return out

    def bcast(self, obj, root=0):
        return self.allgather(obj)[root]


def run_ranks(size, func):
    """``[func(comm_0), ..., func(comm_{size-1})]`` run concurrently in threads."""
    box, barrier = {}, threading.Barrier(size)
    results, errors = {}, {}

    def run(rank):
        try:
            results[rank] = func(ThreadComm(rank, size, box, barrier))
        except BaseException as exc:  # handed to the caller
            errors[rank] = exc

    threads = [threading.Thread(target=run, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[min(errors)]
    return [results[r] for r in range(size)]
