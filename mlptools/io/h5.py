"""HDF5 files of mlptools: the common versioned header, and the structure database.

Every mlptools HDF5 file carries the same root attributes, so ``mlptools info`` can describe any
of them and every reader can refuse a file it does not understand with one clear line:

===================  ===========================================================================
``format``           kind of file: "mlptools-structures", "mlptools-descriptors", "mlptools-model"
``format_version``   int, bumped on any incompatible layout change
``units``            JSON object, quantity -> unit
``hypers``           JSON (optional): hyperparameters that produced the file
``provenance``       JSON object: mlptools version, argv, host, time, input sha256
===================  ===========================================================================

Structure database (format "mlptools-structures", version 1). ``s`` indexes frames, ``n`` atoms of
all frames concatenated (frame ``s`` owns rows ``offset[s]:offset[s] + n_atoms[s]``)::

    /frames/n_atoms      (s,) int64
    /frames/offset       (s,) int64      first row of the frame in /atoms/*
    /frames/cell         (s, 3, 3) f8    Å, rows are lattice vectors
    /frames/pbc          (s, 3) bool
    /frames/energy       (s,) f8         eV, NaN where absent     /frames/has_energy (s,) bool
    /frames/stress       (s, 3, 3) f8    eV/Å³, ASE sign          /frames/has_stress (s,) bool
    /frames/has_forces   (s,) bool
    /frames/config_type  (s,) str
    /frames/info         (s,) str        JSON of atoms.info (with config_type, keeps key order)
    /frames/arrays       (s,) str        JSON of extra per-atom arrays (masses, tags, ...), "{}"
    /atoms/numbers       (n,) int64
    /atoms/positions     (n, 3) f8       Å
    /atoms/forces        (n, 3) f8       eV/Å, NaN where the frame has none

Datasets are chunked and gzip-compressed and grow as frames are appended, so writing streams.
Floats are stored as float64 and info as JSON (``repr`` of floats), so a round trip is exact.
"""

import json

import h5py
import numpy as np

from mlptools import keys
from mlptools.errors import InputError
from mlptools.io.atomic import atomic_path

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

STRUCTURES_FORMAT = "mlptools-structures"
STRUCTURES_VERSION = 1
STRUCTURES_UNITS = {"positions": "Å", "cell": "Å", "energy": "eV", "forces": "eV/Å",
                    "stress": "eV/Å³ (ASE sign, positive = tensile)"}

_HEADER_JSON = ("units", "hypers", "provenance")


# --------------------------------------------------------------------------------------------------
# the common header


def is_hdf5(path):
    """True if ``path`` is a regular file that starts with the HDF5 signature."""
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


def write_header(h5obj, kind, version, units, provenance, hypers=None):
    """Write the root attributes every mlptools HDF5 file carries.

    Parameters
    ----------
    h5obj : h5py.File or h5py.Group
        Where the attributes go (normally the open file).
    kind : str
        The ``format`` attribute, e.g. "mlptools-descriptors".
    version : int
        The ``format_version`` attribute.
    units, provenance : dict
        Stored as JSON.
    hypers : dict, optional
        Stored as JSON when given.
    """
    h5obj.attrs["format"] = str(kind)
    h5obj.attrs["format_version"] = int(version)
    h5obj.attrs["units"] = json.dumps(units or {}, sort_keys=True, ensure_ascii=False)
    h5obj.attrs["provenance"] = json.dumps(provenance or {}, sort_keys=True, ensure_ascii=False,
                                           default=str)
    if hypers is not None:
        h5obj.attrs["hypers"] = json.dumps(hypers, sort_keys=True, ensure_ascii=False, default=str)


def _attr(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_header(path):
    """The root attributes of an HDF5 file, JSON fields decoded.

    Returns
    -------
    dict with keys ``format`` (str or None), ``format_version`` (int or None), ``units``,
    ``hypers`` (or None), ``provenance``.

    Raises
    ------
    InputError
        "path: not an HDF5 file" or "path: damaged HDF5 file (...)".
    """
    if not is_hdf5(path):
        raise InputError(f"{path}: not an HDF5 file")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _attr(v) for k, v in f.attrs.items()}
    except OSError as exc:
        raise InputError(f"{path}: damaged HDF5 file ({exc})") from None
    header = {"format": attrs.get("format"), "format_version": attrs.get("format_version")}
    for key in _HEADER_JSON:
        text = attrs.get(key)
        try:
            header[key] = json.loads(text) if text is not None else None
        except (TypeError, ValueError):
            raise InputError(f"{path}: attribute {key!r} is not valid JSON") from None
    return header


def check_header(path, kind, supported_versions):
    """Check that ``path`` is an mlptools file of ``kind`` in a version this code reads.

    Returns the header (see :func:`read_header`). Raises InputError
    "path: not an mlptools descriptors file" or
    "path: format version 9 not supported (this mlptools reads 1)".
    """
    header = read_header(path)
    if header["format"] != kind:
        name = kind.removeprefix("mlptools-")
        found = f" (it is {header['format']!r})" if header["format"] else ""
        raise InputError(f"{path}: not an mlptools {name} file{found}")
    if header["format_version"] not in tuple(supported_versions):
        reads = ", ".join(str(v) for v in supported_versions)
        raise InputError(f"{path}: format version {header['format_version']} not supported "
                         f"(this mlptools reads {reads})")
    return header


def dataset_shapes(path):
    """``{name: (shape, dtype str)}`` of every dataset in the file, for ``mlptools info``."""
    shapes = {}
    try:
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    shapes[name] = (tuple(int(n) for n in obj.shape), str(obj.dtype))
            f.visititems(visit)
    except OSError as exc:
        raise InputError(f"{path}: damaged HDF5 file ({exc})") from None
    return shapes


def group_hypers(path):
    """``{group name: hypers}`` of every group carrying a JSON ``hypers`` attribute."""
    found = {}
    try:
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Group) and "hypers" in obj.attrs:
                    try:
                        found[name] = json.loads(_attr(obj.attrs["hypers"]))
                    except (TypeError, ValueError):
                        found[name] = str(_attr(obj.attrs["hypers"]))
            f.visititems(visit)
    except OSError as exc:
        raise InputError(f"{path}: damaged HDF5 file ({exc})") from None
    return found


# --------------------------------------------------------------------------------------------------
# JSON of free-form info, exact for floats and arrays


def _json_default(value):
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    symbol = getattr(value, "symbol", None)  # ase.spacegroup.Spacegroup (extxyz stores the symbol)
    if isinstance(symbol, str):
        return symbol
    return str(value)


def _json_hook(obj):
    if "__ndarray__" in obj and "dtype" in obj and len(obj) == 2:
        return np.array(obj["__ndarray__"], dtype=np.dtype(obj["dtype"]))
    return obj


def dumps_info(info):
    """JSON of a free-form dict; NumPy arrays keep their dtype and shape."""
    return json.dumps(info, default=_json_default, ensure_ascii=False)


def loads_info(text):
    """Inverse of :func:`dumps_info`."""
    return json.loads(text, object_hook=_json_hook)


# --------------------------------------------------------------------------------------------------
# the structure database

_STR = h5py.string_dtype()
_FRAME_FIELDS = {  # name: (per-frame shape, dtype, fill)
    "n_atoms": ((), np.int64), "offset": ((), np.int64), "cell": ((3, 3), np.float64),
    "pbc": ((3,), bool), "energy": ((), np.float64), "has_energy": ((), bool),
    "stress": ((3, 3), np.float64), "has_stress": ((), bool), "has_forces": ((), bool),
    "config_type": ((), _STR), "info": ((), _STR), "arrays": ((), _STR),
}
_ATOM_FIELDS = {"numbers": ((), np.int64), "positions": ((3,), np.float64),
                "forces": ((3,), np.float64)}
_BUFFER_FRAMES = 512
_STANDARD_ARRAYS = ("numbers", "positions")


def _voigt_to_3x3(v):
    xx, yy, zz, yz, xz, xy = v
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]], dtype=np.float64)


def _3x3_to_voigt(m):
    return np.array([m[0, 0], m[1, 1], m[2, 2], m[1, 2], m[0, 2], m[0, 1]], dtype=np.float64)


def _create(group, name, row_shape, dtype, chunk_rows):
    return group.create_dataset(
        name, shape=(0,) + row_shape, maxshape=(None,) + row_shape, dtype=dtype,
        chunks=(chunk_rows,) + row_shape, compression="gzip", compression_opts=4,
        shuffle=dtype is not _STR,
    )


def _extend(ds, values):
    start = ds.shape[0]
    ds.resize(start + len(values), axis=0)
    ds[start:] = values


class StructureWriter:
    """Append frames to a structure database, atomically (context manager).

    The file appears at ``path`` only when the ``with`` block completes; any exception removes
    the temporary file. Frames are buffered and written in blocks of 512.
    """

    def __init__(self, path, provenance=None):
        self.path = path
        self.provenance = provenance or {}
        self.n_frames = 0
        self._n_atoms = 0
        self._frames = {k: [] for k in _FRAME_FIELDS}
        self._atoms = {k: [] for k in _ATOM_FIELDS}
        self._atomic = None
        self._file = None

    def __enter__(self):
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._file = h5py.File(tmp, "w")
            write_header(self._file, STRUCTURES_FORMAT, STRUCTURES_VERSION, STRUCTURES_UNITS,
                         self.provenance)
            frames = self._file.create_group("frames")
            atoms = self._file.create_group("atoms")
            for name, (shape, dtype) in _FRAME_FIELDS.items():
                _create(frames, name, shape, dtype, 4096)
            for name, (shape, dtype) in _ATOM_FIELDS.items():
                _create(atoms, name, shape, dtype, 16384)
        except BaseException as exc:
            self._close()
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._flush()
        except BaseException as err:
            self._close()
            self._atomic.__exit__(type(err), err, err.__traceback__)
            raise
        self._close()
        return self._atomic.__exit__(exc_type, exc, tb)

    def _close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def append(self, atoms):
        """Add one ``ase.Atoms`` (labels from ``atoms.calc.results``, config_type from info)."""
        n = len(atoms)
        results = atoms.calc.results if atoms.calc is not None else {}
        fr = self._frames
        fr["n_atoms"].append(n)
        fr["offset"].append(self._n_atoms)
        fr["cell"].append(np.asarray(atoms.cell.array, dtype=np.float64))
        fr["pbc"].append(np.asarray(atoms.pbc, dtype=bool))
        energy = results.get(keys.ENERGY)
        fr["has_energy"].append(energy is not None)
        fr["energy"].append(np.nan if energy is None else float(energy))
        stress = results.get(keys.STRESS)
        fr["has_stress"].append(stress is not None)
        if stress is None:
            fr["stress"].append(np.full((3, 3), np.nan))
        else:
            stress = np.asarray(stress, dtype=np.float64)
            fr["stress"].append(stress if stress.shape == (3, 3) else _voigt_to_3x3(stress))
        forces = results.get(keys.FORCES)
        fr["has_forces"].append(forces is not None)
        fr["config_type"].append(str(atoms.info.get(keys.CONFIG_TYPE, keys.DEFAULT_CONFIG_TYPE)))
        fr["info"].append(dumps_info(atoms.info))
        extra = {k: v for k, v in atoms.arrays.items() if k not in _STANDARD_ARRAYS}
        fr["arrays"].append(dumps_info(extra) if extra else "{}")
        at = self._atoms
        at["numbers"].append(np.asarray(atoms.numbers, dtype=np.int64))
        at["positions"].append(np.asarray(atoms.positions, dtype=np.float64))
        at["forces"].append(np.full((n, 3), np.nan) if forces is None
                            else np.asarray(forces, dtype=np.float64).reshape(n, 3))
        self._n_atoms += n
        self.n_frames += 1
        if len(fr["n_atoms"]) >= _BUFFER_FRAMES:
            self._flush()

    def _flush(self):
        if not self._frames["n_atoms"]:
            return
        for name, values in self._frames.items():
            dtype = _FRAME_FIELDS[name][1]
            _extend(self._file["frames"][name],
                    np.array(values, dtype=object if dtype is _STR else dtype))
            values.clear()
        for name, values in self._atoms.items():
            _extend(self._file["atoms"][name], np.concatenate(values))
            values.clear()


def write_structures(path, frames, provenance=None):
    """Write an iterable of ``ase.Atoms`` to a structure database at ``path``; returns the count."""
    with StructureWriter(path, provenance) as writer:
        for atoms in frames:
            writer.append(atoms)
    return writer.n_frames


def _frame_atoms(block, atom_block, s, row0):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    n = int(block["n_atoms"][s])
    rows = slice(int(block["offset"][s]) - row0, int(block["offset"][s]) - row0 + n)
    atoms = Atoms(numbers=atom_block["numbers"][rows], positions=atom_block["positions"][rows],
                  cell=block["cell"][s], pbc=block["pbc"][s])
    atoms.info.update(loads_info(_text(block["info"][s])))
    atoms.info[keys.CONFIG_TYPE] = _text(block["config_type"][s])
    for name, value in loads_info(_text(block["arrays"][s])).items():
        atoms.arrays[name] = value
    results = {}
    if block["has_energy"][s]:
        results[keys.ENERGY] = float(block["energy"][s])
    if block["has_forces"][s]:
        results[keys.FORCES] = atom_block["forces"][rows].copy()
    if block["has_stress"][s]:
        results[keys.STRESS] = _3x3_to_voigt(block["stress"][s])
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def iter_structures(path, block_frames=_BUFFER_FRAMES):
    """Yield the frames of a structure database as ``ase.Atoms``, reading block by block.

    Labels are set on a SinglePointCalculator (energy eV, forces eV/Å, stress Voigt-6 eV/Å³);
    ``info["config_type"]`` is always set.
    """
    check_header(path, STRUCTURES_FORMAT, (STRUCTURES_VERSION,))
    try:
        with h5py.File(path, "r") as f:
            frames, atoms = f["frames"], f["atoms"]
            n_frames = frames["n_atoms"].shape[0]
            for start in range(0, n_frames, block_frames):
                stop = min(n_frames, start + block_frames)
                block = {k: frames[k][start:stop] for k in _FRAME_FIELDS}
                row0 = int(block["offset"][0])
                row1 = int(block["offset"][-1] + block["n_atoms"][-1])
                atom_block = {k: atoms[k][row0:row1] for k in _ATOM_FIELDS}
                for s in range(stop - start):
                    yield _frame_atoms(block, atom_block, s, row0)
    except (KeyError, OSError, ValueError) as exc:
        raise InputError(f"{path}: damaged structure database ({exc})") from None


def count_structures(path):
    """Number of frames and atoms in a structure database, without reading the frames."""
    check_header(path, STRUCTURES_FORMAT, (STRUCTURES_VERSION,))
    with h5py.File(path, "r") as f:
        return int(f["frames/n_atoms"].shape[0]), int(f["atoms/numbers"].shape[0])
