"""Output files of long runs that grow as the run goes and can be cut back to a checkpoint.

An MD trajectory or thermo log is written line by line (so ``tail -f`` works and a crash keeps
what was simulated). The checkpoint records each file's size in bytes; on resume the file is
truncated to that size and appended to, so the resumed file is byte-identical to the one an
uninterrupted run writes.
"""

from __future__ import annotations

import os

from mlptools.errors import InputError


class ResumableText:
    """A text file appended to and flushed per record; :meth:`size` and :meth:`resume_at`.

    Parameters
    ----------
    path : str or os.PathLike
        Created (or emptied) by :meth:`start`, or cut back by :meth:`resume_at`.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._fh = None

    def start(self):
        """Start a new file (truncating an old one)."""
        self.close()
        try:
            self._fh = open(self.path, "w", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{self.path}: cannot write ({exc.strerror})") from None

    def resume_at(self, size):
        """Cut the file back to ``size`` bytes (what the checkpoint saw) and append from there."""
        self.close()
        try:
            actual = os.path.getsize(self.path)
        except OSError:
            actual = -1
        if actual < size:
            raise InputError(f"{self.path}: is shorter ({max(actual, 0)} bytes) than the "
                             f"checkpoint recorded ({size} bytes); cannot resume")
        with open(self.path, "r+b") as fh:
            fh.truncate(size)
        self._fh = open(self.path, "a", encoding="utf-8")

    @property
    def stream(self):
        """The open text stream (after :meth:`start` or :meth:`resume_at`)."""
        return self._fh

    def flush(self):
        """Flush Python's buffer and ask the OS to write the file out."""
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def size(self):
        """Bytes written so far (after a flush)."""
        self._fh.flush()
        return os.fstat(self._fh.fileno()).st_size

    def close(self):
        """Flush and close (idempotent)."""
        if self._fh is not None:
            self._fh.flush()
            self._fh.close()
            self._fh = None
