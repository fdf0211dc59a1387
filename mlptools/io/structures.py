"""Reading structures from any source and writing them as extxyz or HDF5; summaries for ``info``.

Sources are dispatched on content and name: the HDF5 signature means our structure database,
``.xyz``/``.extxyz`` (also compressed) and '-' mean extended XYZ, anything else goes to ASE's
format detection (OUTCAR, vasprun.xml, CASTEP, Quantum ESPRESSO output, CIF, POSCAR, traj, ...).
"""

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from mlptools import keys
from mlptools.errors import InputError
from mlptools.io import extxyz, h5
from mlptools.io.validate import check_frame, check_required, normalize_labels, where

#: output formats of :func:`write_structures`
OUTPUT_FORMATS = ("extxyz", "h5")

log = logging.getLogger(__name__)

_EXTXYZ_SUFFIXES = (".xyz", ".extxyz")
_H5_SUFFIXES = (".h5", ".hdf5")


def _as_list(sources):
    if sources is None:
        return ["-"]
    if isinstance(sources, (str, os.PathLike)):
        return [sources]
    sources = list(sources)
    return sources or ["-"]


def source_format(source):
    """"extxyz", "h5" or an ASE format name for ``source`` ('-' is extxyz)."""
    if str(source) == "-":
        return "extxyz"
    path = Path(source)
    if not path.exists():
        raise InputError(f"{source}: no such file")
    if path.is_dir():
        raise InputError(f"{source}: is a directory")
    if h5.is_hdf5(path):
        return "h5"
    name = path.name.lower()
    for compressed in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(compressed)
    if name.endswith(_EXTXYZ_SUFFIXES):
        return "extxyz"
    if path.stat().st_size == 0:
        return "extxyz"  # reported as empty input below
    from ase.io.formats import UnknownFileTypeError, filetype, ioformats

    try:
        fmt = filetype(str(path))
        if fmt not in ioformats or not ioformats[fmt].can_read:
            raise UnknownFileTypeError(fmt)
        return fmt
    except UnknownFileTypeError:
        raise InputError(f"{source}: unknown structure format (use extxyz, an mlptools HDF5 "
                         "file, or a format ASE reads)") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot open ({exc})") from None


def iter_raw(source):
    """Yield the frames of one source as read, before normalisation and checks."""
    fmt = source_format(source)
    name = extxyz.display_name(source)
    if fmt == "extxyz":
        with extxyz.open_text(source) as fh:
            yield from extxyz.iter_extxyz(fh, name)
    elif fmt == "h5":
        h5.check_header(source, h5.STRUCTURES_FORMAT, (h5.STRUCTURES_VERSION,))
        yield from h5.iter_structures(source)
    else:
        yield from _iter_ase(source, fmt)


def _iter_ase(path, fmt):
    import ase.io

    frames = ase.io.iread(str(path), index=":", format=fmt)
    index = 0
    while True:
        # ASE readers warn through `warnings`; pass them on as one log line each, naming the frame
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                atoms = next(frames)
            except StopIteration:
                return
            except Exception as exc:  # every ASE reader has its own exceptions
                raise InputError(f"{where(path, index)}: cannot read as {fmt} "
                                 f"({_one_line(exc)})") from None
            finally:
                for w in caught:
                    log.warning("%s: %s", where(path, index), _one_line(w.message))
        yield atoms
        index += 1


def _one_line(exc, n=120):
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return msg if len(msg) <= n else msg[: n - 3] + "..."


def iter_frames(sources, *, require=(), min_distance=0.5, check=True):
    """Validated, label-normalised frames of every source in turn (see ``extxyz.iter_frames``)."""
    require = tuple(require)
    for source in _as_list(sources):
        name = extxyz.display_name(source)
        count = 0
        for atoms in iter_raw(source):
            normalize_labels(atoms, name, count)
            if check:
                check_frame(atoms, name, count, require=require, min_distance=min_distance)
            elif require:
                check_required(atoms, name, count, require)
            yield atoms
            count += 1
        if count == 0:
            raise InputError(f"{name}: empty input (no frames)")


def output_format(dest, to=None):
    """The output format: ``to`` if given, else "h5" for .h5/.hdf5 names, else "extxyz"."""
    if to is not None:
        if to not in OUTPUT_FORMATS:
            raise ValueError(f"unknown output format {to!r}")
        return to
    return "h5" if str(dest).lower().endswith(_H5_SUFFIXES) else "extxyz"


def write_structures(frames, dest, fmt=None, provenance=None):
    """Write frames to ``dest`` as extxyz ('-' = stdout) or our HDF5 database; returns the count.

    Named outputs are written atomically.
    """
    fmt = output_format(dest, fmt)
    if fmt == "h5":
        if str(dest) == "-":
            raise ValueError("an HDF5 database cannot be written to stdout")
        return h5.write_structures(dest, frames, provenance=provenance)
    return extxyz.write_frames(frames, dest)


def summarize(frames):
    """A summary of a set of frames (what ``mlptools info`` prints).

    Returns
    -------
    dict
        ``frames``, ``atoms`` (total), ``atoms_per_frame`` [min, max], ``species``
        {symbol: atom count}, ``config_types`` {name: frame count}, ``labels``
        {energy|forces|stress: frames having it}, ``energy_per_atom_eV`` [min, max] or None,
        ``max_abs_force_eV_per_A`` (largest |component|) or None, ``volume_A3`` [min, max] over
        frames with a 3-D cell, or None.
    """
    from ase.data import chemical_symbols

    n_frames = n_atoms = 0
    sizes = [np.inf, -np.inf]
    species = {}
    config_types = {}
    labels = dict.fromkeys(keys.LABELS, 0)
    e_range = [np.inf, -np.inf]
    v_range = [np.inf, -np.inf]
    f_max = -np.inf
    for atoms in frames:
        n = len(atoms)
        n_frames += 1
        n_atoms += n
        sizes = [min(sizes[0], n), max(sizes[1], n)]
        z, counts = np.unique(atoms.numbers, return_counts=True)
        for zz, cc in zip(z, counts, strict=True):
            species[int(zz)] = species.get(int(zz), 0) + int(cc)
        ct = str(atoms.info.get(keys.CONFIG_TYPE, keys.DEFAULT_CONFIG_TYPE))
        config_types[ct] = config_types.get(ct, 0) + 1
        results = atoms.calc.results if atoms.calc is not None else {}
        for key in keys.LABELS:
            if results.get(key) is not None:
                labels[key] += 1
        if results.get(keys.ENERGY) is not None and n:
            e = float(results[keys.ENERGY]) / n
            e_range = [min(e_range[0], e), max(e_range[1], e)]
        if results.get(keys.FORCES) is not None and n:
            f_max = max(f_max, float(np.max(np.abs(results[keys.FORCES]))))
        if atoms.cell.rank == 3:
            v = abs(float(atoms.cell.volume))
            v_range = [min(v_range[0], v), max(v_range[1], v)]

    def span(r):
        return None if not np.isfinite(r[0]) else [float(r[0]), float(r[1])]

    return {
        "frames": n_frames,
        "atoms": n_atoms,
        "atoms_per_frame": [int(sizes[0]), int(sizes[1])] if n_frames else None,
        "species": {chemical_symbols[z]: species[z] for z in sorted(species)},
        "config_types": dict(sorted(config_types.items())),
        "labels": labels,
        "energy_per_atom_eV": span(e_range),
        "max_abs_force_eV_per_A": float(f_max) if np.isfinite(f_max) else None,
        "volume_A3": span(v_range),
    }


def describe_hdf5(path):
    """Header, dataset shapes and per-group hypers of any mlptools HDF5 file (no data read)."""
    header = h5.read_header(path)
    if header["format"] is None:
        raise InputError(f"{path}: not an mlptools file (HDF5 without a 'format' attribute)")
    header["datasets"] = {k: {"shape": list(s), "dtype": d}
                          for k, (s, d) in h5.dataset_shapes(path).items()}
    groups = h5.group_hypers(path)
    if groups:
        header["group_hypers"] = groups
    if header["format"] == "mlptools-model":
        from mlptools.models.base import model_summary

        header["model"] = model_summary(path)
    return header
