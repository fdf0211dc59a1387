"""Extended XYZ, streamed frame by frame on files and pipes, through ASE's own parser.

``iter_frames`` reads any structure source (extxyz, any format ASE reads, our HDF5 database; see
:mod:`mlptools.io.structures`) and ``write_frames`` writes extxyz with the standard label keys
(``energy`` eV, ``forces`` eV/Å, ``stress`` eV/Å³ as 9 values, ASE sign; ``config_type``), which
GAP, MACE and the ASE tools read.

ASE's ``read_xyz`` scans a whole file before its first frame and slurps a pipe into memory, so the
frames are cut here, one at a time, and each is handed to ``ase.io.read(format="extxyz")``. That
also lets every error name the frame and line where it happened.
"""

import bz2
import contextlib
import gzip
import io
import lzma
import sys

from mlptools.errors import InputError

STDIN_NAME = "<stdin>"

_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def display_name(source):
    """How messages name ``source``: the path, or "<stdin>" for '-'."""
    return STDIN_NAME if str(source) == "-" else str(source)


@contextlib.contextmanager
def open_text(source):
    """Open a text source for reading: '-' is stdin, .gz/.bz2/.xz are decompressed."""
    if str(source) == "-":
        yield sys.stdin
        return
    path = str(source)
    opener = _OPENERS.get(path[path.rfind("."):].lower(), open)
    try:
        fh = opener(path, "rt", encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror or exc})") from None
    with fh:
        yield fh


def iter_extxyz(stream, name=STDIN_NAME):
    """Yield ``ase.Atoms`` frame by frame from an extxyz text stream (no label normalisation).

    Raises InputError "name: frame N: ..." for a garbled header, a truncated frame or a frame
    ASE cannot parse. Blank lines between frames are skipped.
    """
    lines = _numbered(stream, name)
    pending = None
    index = 0
    while True:
        if pending is None:
            pending = next(lines, None)
        while pending is not None and not pending[1].strip():
            pending = next(lines, None)
        if pending is None:
            return
        line_no, header = pending
        pending = None
        at = f"{name}: frame {index} (line {line_no})"
        try:
            n_atoms = int(header)
        except ValueError:
            raise InputError(f"{at}: garbled header: expected the number of atoms, got "
                             f"{_clip(header)!r}") from None
        if n_atoms < 0:
            raise InputError(f"{at}: garbled header: negative number of atoms {n_atoms}")
        chunk = [header]
        for k in range(n_atoms + 1):
            item = next(lines, None)
            if item is None:
                what = "a comment line" if k == 0 else f"{n_atoms} atom lines, got {k - 1}"
                raise InputError(f"{at}: truncated: expected {what} before the end of input")
            chunk.append(item[1])
        # Cell vectors of the old VEC convention may follow the atom lines of a plain-xyz comment.
        # Only then is the next line read ahead: an extxyz frame (with Lattice/Properties) is
        # yielded as soon as its last atom line arrives, so a pipeline never waits for the next.
        comment = chunk[1]
        if "Lattice" not in comment and "Properties" not in comment:
            while True:
                pending = next(lines, None)
                if pending is None or not pending[1].lstrip().startswith("VEC"):
                    break
                chunk.append(pending[1])
        yield _parse_frame("".join(chunk), at)
        index += 1


def _numbered(stream, name):
    line_no = 0
    try:
        for line in stream:
            line_no += 1
            yield line_no, line
    except UnicodeDecodeError:
        raise InputError(f"{name}: line {line_no + 1}: not a text file (invalid UTF-8)") from None
    except (EOFError, OSError) as exc:  # e.g. a truncated .gz
        raise InputError(f"{name}: line {line_no + 1}: cannot read ({exc})") from None


def _parse_frame(text, at):
    import ase.io

    try:
        return ase.io.read(io.StringIO(text), format="extxyz", index=0)
    except Exception as exc:  # ASE raises ValueError, XYZError, KeyError, IndexError, TypeError
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"{at}: cannot parse extxyz ({_clip(msg, 120)})") from None


def _clip(text, n=40):
    text = text.strip()
    return text if len(text) <= n else text[: n - 3] + "..."


def iter_frames(sources, *, require=(), min_distance=0.5, check=True):
    """Yield validated ``ase.Atoms`` from one or more structure sources, streaming.

    Parameters
    ----------
    sources : str, os.PathLike, or list of them
        Paths or '-' (extxyz on stdin); any format ASE reads (chosen from the file name and
        content), extended XYZ (also .gz/.bz2/.xz), or an mlptools structure database (HDF5).
    require : iterable of str
        Labels each frame must have ("energy", "forces", "stress").
    min_distance : float, Å
        Reject frames with two atoms closer than this; 0 disables the check.
    check : bool
        Run the checks of :func:`mlptools.io.validate.check_frame` (``require`` is always
        enforced).

    Yields
    ------
    ase.Atoms
        Labels in a SinglePointCalculator (energy eV, forces (n_atoms, 3) eV/Å, stress Voigt-6
        eV/Å³, ASE sign; stress derived from a virial when only that is given) and
        ``info["config_type"]`` set ("default" when absent).

    Raises
    ------
    InputError
        "path: frame N: problem" (frames count from 0), or "path: empty input (no frames)".
    """
    from mlptools.io.structures import iter_frames as _iter

    yield from _iter(sources, require=require, min_distance=min_distance, check=check)


def write_frames(frames, dest):
    """Write ``frames`` as extxyz to ``dest``, flushing after each frame; returns the count.

    Parameters
    ----------
    frames : iterable of ase.Atoms
        Labels are taken from ``atoms.calc.results`` and written with the standard keys.
    dest : str, os.PathLike or text stream
        '-' is stdout; a path is written atomically (complete or not at all).
    """
    if hasattr(dest, "write"):
        return _write_stream(frames, dest)
    if str(dest) == "-":
        return _write_stream(frames, sys.stdout)
    from mlptools.io.atomic import atomic_open

    with atomic_open(dest, "w", encoding="utf-8") as fh:
        return _write_stream(frames, fh)


def _write_stream(frames, fh):
    import ase.io

    count = 0
    for atoms in frames:
        ase.io.write(fh, atoms, format="extxyz")
        fh.flush()
        count += 1
    return count
