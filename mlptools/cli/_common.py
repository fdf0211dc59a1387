"""Conventions shared by every subcommand: options, stdin/stdout, logging, progress, provenance.

Options are stored on ``click.get_current_context().meta`` so that ``-v/-q/--debug`` work both
before and after the subcommand name (``mlptools -v info x.xyz`` and ``mlptools info -v x.xyz``).
"""

import contextlib
import datetime
import hashlib
import logging
import os
import socket
import sys

import click

import mlptools

DEBUG_KEY = "mlptools.debug"
VERBOSITY_KEY = "mlptools.verbosity"

log = logging.getLogger("mlptools")


def _meta():
    return click.get_current_context().meta


def _set_verbosity(delta):
    def callback(ctx, param, value):
        if value:
            ctx.meta[VERBOSITY_KEY] = ctx.meta.get(VERBOSITY_KEY, 0) + delta * value
            configure_logging(ctx.meta[VERBOSITY_KEY])
        return value

    return callback


def _set_debug(ctx, param, value):
    if value:
        ctx.meta[DEBUG_KEY] = True
        configure_logging(max(ctx.meta.get(VERBOSITY_KEY, 0), 2))
    return value


class _StderrHandler(logging.StreamHandler):
    """A handler that looks up sys.stderr at emit time (click's test runner swaps it)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure_logging(verbosity=0):
    """Attach the one stderr handler: -q shows errors only, default warnings, -v info, -vv debug."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
        max(-1, min(verbosity, 2)), logging.DEBUG
    )
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level)


def verbosity_options(f):
    """-v/--verbose, -q/--quiet and --debug (also accepted by the group)."""
    f = click.option(
        "--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
        help="Show full tracebacks on errors.",
    )(f)
    f = click.option(
        "-q", "--quiet", count=True, expose_value=False, is_eager=True, callback=_set_verbosity(-1),
        help="Only report errors on stderr.",
    )(f)
    f = click.option(
        "-v", "--verbose", count=True, expose_value=False, is_eager=True,
        callback=_set_verbosity(+1), help="More diagnostics on stderr (-vv for debug).",
    )(f)
    return f


def quiet():
    """True when -q was given."""
    return _meta().get(VERBOSITY_KEY, 0) < 0


def inputs(name="inputs", required=False, help="Structure files (extxyz, or any format ASE reads); "
           "'-' or none reads extxyz from stdin."):
    """Positional INPUT... that accepts '-' for stdin."""
    return click.argument(
        name, nargs=-1, required=required, type=click.Path(allow_dash=True, dir_okay=False),
    )


def output(hdf5=False, required=None, help=None):
    """-o/--output FILE; '-' is stdout for text formats. HDF5 outputs cannot stream, so are
    required."""
    if required is None:
        required = hdf5
    if help is None:
        help = ("Output HDF5 file (written atomically)." if hdf5 else
                "Output file ('-' = stdout, the default); written atomically.")
    return click.option(
        "-o", "--output", type=click.Path(allow_dash=not hdf5, dir_okay=False),
        required=required, default=None if required else "-", show_default=not required,
        help=help,
    )


def seed_option(required=True):
    """--seed INT; every random number of a stochastic command derives from it."""
    return click.option(
        "--seed", type=int, required=required, default=None,
        help="Seed of the random number generator (same seed, same result).",
    )


def make_rng(seed):
    """The one generator passed down to the library."""
    import numpy as np

    return np.random.default_rng(seed)


def progress(iterable=None, length=None, label=None):
    """A progress bar on stderr, shown only when stderr is a TTY and -q is not given."""
    return click.progressbar(
        iterable, length=length, label=label, file=sys.stderr,
        hidden=quiet() or not sys.stderr.isatty(),
    )


@contextlib.contextmanager
def open_text_output(path):
    """Yield a text stream for ``path``: stdout for '-', else an atomically written file."""
    from mlptools.io.atomic import atomic_open

    if path in (None, "-"):
        yield sys.stdout
        sys.stdout.flush()
    else:
        with atomic_open(path, "w") as fh:
            yield fh


def file_sha256(path, chunk=1 << 20):
    """sha256 of a file (None for stdin or a missing path)."""
    if path in (None, "-") or not os.path.isfile(path):
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def provenance(input_paths=()):
    """Where a file came from: version, command line, host, time and sha256 of each input."""
    return {
        "mlptools_version": mlptools.__version__,
        "argv": list(sys.argv),
        "host": socket.gethostname(),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "inputs": [{"path": str(p), "sha256": file_sha256(p)} for p in input_paths],
    }


def min_distance_option(default=0.5):
    """--min-distance Å: reject frames with two atoms closer than this (0 disables)."""
    return click.option(
        "--min-distance", type=click.FloatRange(0), default=default, show_default=True,
        help="Reject frames with atoms closer than this (Å); 0 disables the check.",
    )


def require_option():
    """--require LABELS: comma-separated labels every frame must have."""

    def parse(ctx, param, value):
        if not value:
            return ()
        names = tuple(v.strip() for v in value.split(",") if v.strip())
        known = ("energy", "forces", "stress")
        bad = [n for n in names if n not in known]
        if bad:
            raise click.BadParameter(f"unknown label {bad[0]!r}; use {', '.join(known)}")
        return names

    return click.option(
        "--require", metavar="LABELS", default="", callback=parse,
        help="Comma-separated labels every frame must have: energy (eV), forces (eV/Å), "
             "stress (eV/Å³).",
    )


# environment variables set by mpirun/srun: the CLI (not the library) decides to use MPI
_MPI_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


def mpi_comm():
    """MPI.COMM_WORLD when started by mpirun/srun with more than one rank, else None."""
    if not any(int(os.environ.get(v, "1") or 1) > 1 for v in _MPI_SIZE_VARS):
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        from mlptools.errors import ParameterError

        raise ParameterError("running under mpirun needs mpi4py: pip install mpi4py") from None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


@contextlib.contextmanager
def sigterm_flag():
    """Yield a list that gets an entry when SIGTERM arrives (batch systems stop jobs with it).

    The command polls it (``lambda: bool(stop)``) and stops cleanly; the previous handler is
    restored afterwards.
    """
    import signal

    stop = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)
