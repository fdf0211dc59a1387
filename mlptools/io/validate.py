"""Checks of one frame as it is read, and normalisation of its labels.

Every problem is an ``InputError("path: frame N: problem")`` (N counts from 0, as ``ase.io.read``'s
``index``). Labels end up in a SinglePointCalculator: energy (eV), forces ``(n_atoms, 3)`` (eV/Å),
stress Voigt-6 ``xx yy zz yz xz xy`` (eV/Å³, ASE sign). A frame that only has a ``virial``
(3x3, eV) in its info gets ``stress = -virial / volume``.
"""

import numpy as np

from mlptools import keys
from mlptools.errors import InputError, ParameterError

#: label names accepted by ``require``
KNOWN_LABELS = keys.LABELS


def where(source, index):
    """The "path: frame N" prefix of messages."""
    return f"{source}: frame {index}"


def normalize_labels(atoms, source="<input>", index=0):
    """Put the reference labels of ``atoms`` into a SinglePointCalculator (in place) and return it.

    Keeps ``energy``, ``forces`` and ``stress`` of ``atoms.calc.results`` (other results, e.g.
    ``free_energy`` or ``magmoms`` of a DFT reader, are dropped); derives stress from
    ``info["virial"]`` when no stress is given; sets ``info["config_type"]`` to "default" when
    absent.
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    results = {}
    if atoms.calc is not None:
        raw = getattr(atoms.calc, "results", {}) or {}
        for key in keys.LABELS:
            if raw.get(key) is not None:
                results[key] = raw[key]
    if keys.ENERGY in results:
        energy = np.asarray(results[keys.ENERGY], dtype=np.float64)
        if energy.size != 1:
            raise InputError(f"{where(source, index)}: energy has {energy.size} values, expected 1")
        results[keys.ENERGY] = float(energy.reshape(()))
    if keys.FORCES in results:
        results[keys.FORCES] = np.asarray(results[keys.FORCES], dtype=np.float64)
    if keys.STRESS in results:
        results[keys.STRESS] = _voigt(results[keys.STRESS], "stress", source, index)
    elif keys.VIRIAL in atoms.info:
        virial = np.asarray(atoms.info[keys.VIRIAL], dtype=np.float64)
        if virial.size not in (6, 9):
            raise InputError(f"{where(source, index)}: virial has {virial.size} values, "
                             "expected 9 (3x3, eV)")
        volume = abs(atoms.cell.volume) if atoms.cell.rank == 3 else 0.0
        if volume <= 0:
            raise InputError(f"{where(source, index)}: virial given but the cell has no volume")
        results[keys.STRESS] = -_voigt(virial, "virial", source, index) / volume
    atoms.calc = SinglePointCalculator(atoms, **results) if results else None
    atoms.info.setdefault(keys.CONFIG_TYPE, keys.DEFAULT_CONFIG_TYPE)
    return atoms


def _voigt(value, name, source, index):
    value = np.asarray(value, dtype=np.float64)
    if value.shape == (6,):
        return value.copy()
    if value.size == 9:
        m = value.reshape(3, 3)
        return np.array([m[0, 0], m[1, 1], m[2, 2], m[1, 2], m[0, 2], m[0, 1]])
    raise InputError(f"{where(source, index)}: {name} has shape {value.shape}, expected (3, 3) "
                     "or Voigt (6,)")


def check_frame(atoms, source="<input>", index=0, *, require=(), min_distance=0.5):
    """Raise InputError naming ``source`` and frame ``index`` if ``atoms`` is not usable.

    Checks: at least one atom; finite positions and cell; energy, forces and stress finite and of
    the right shape; every label in ``require`` present; no two atoms closer than
    ``min_distance`` Å (0 disables the check).
    """
    at = where(source, index)
    n = len(atoms)
    if n == 0:
        raise InputError(f"{at}: no atoms")
    if not np.all(np.isfinite(atoms.positions)):
        raise InputError(f"{at}: positions contain NaN or inf")
    if not np.all(np.isfinite(atoms.cell.array)):
        raise InputError(f"{at}: cell contains NaN or inf")
    check_required(atoms, source, index, require)
    results = atoms.calc.results if atoms.calc is not None else {}
    shapes = {keys.ENERGY: (), keys.FORCES: (n, 3), keys.STRESS: (6,)}
    for key, shape in shapes.items():
        if results.get(key) is None:
            continue
        value = np.asarray(results[key], dtype=np.float64)
        if value.shape != shape:
            raise InputError(f"{at}: {key} have shape {value.shape}, expected {shape}"
                             if key == keys.FORCES else
                             f"{at}: {key} has shape {value.shape}, expected {shape}")
        if not np.all(np.isfinite(value)):
            raise InputError(f"{at}: {key} contain{'' if key == keys.FORCES else 's'} NaN or inf")
    if min_distance and min_distance > 0:
        _check_distances(atoms, at, float(min_distance))
    return atoms


def check_required(atoms, source, index, require):
    """Raise InputError "path: frame N: no forces (required)" for a missing label."""
    results = atoms.calc.results if atoms.calc is not None else {}
    for key in require:
        if key not in KNOWN_LABELS:
            raise ParameterError(f"unknown label {key!r}; use one of {', '.join(KNOWN_LABELS)}")
        if results.get(key) is None:
            raise InputError(f"{where(source, index)}: no {key} (required)")


def _check_distances(atoms, at, min_distance):
    from mlptools.neighbors import neighbor_list

    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = atoms.cell.array
    try:
        i, j, d = neighbor_list("ijd", atoms.positions, cell, pbc, min_distance)
    except ParameterError as exc:
        raise InputError(f"{at}: {exc}") from None
    if len(d):
        k = int(np.argmin(d))
        a, b = sorted((int(i[k]), int(j[k])))
        what = "an atom and its periodic image" if a == b else f"atoms {a} and {b}"
        raise InputError(f"{at}: {what} are {d[k]:.3f} Å apart (< {min_distance:g} Å; "
                         "--min-distance 0 disables this check)")
