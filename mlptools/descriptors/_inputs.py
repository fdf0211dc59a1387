"""Input handling shared by every descriptor: frames, hypers and the species list."""

import dataclasses

from mlptools.descriptors.hypers import Hypers
from mlptools.errors import ParameterError


def as_frames(frames):
    """Return a list of ase.Atoms (a single Atoms is accepted)."""
    from ase import Atoms

    if isinstance(frames, Atoms):
        return [frames]
    frames = list(frames)
    for k, atoms in enumerate(frames):
        if not isinstance(atoms, Atoms):
            raise ParameterError(f"frame {k}: expected ase.Atoms, got {type(atoms).__name__}")
    return frames


def as_hypers(hypers, cls):
    """``cls`` instance from an instance, a dict or a spec string."""
    if isinstance(hypers, cls):
        return hypers
    if isinstance(hypers, dict):
        return cls.from_dict(hypers)
    if isinstance(hypers, str):
        return cls.from_string(hypers)
    if isinstance(hypers, Hypers):
        raise ParameterError(f"hypers of type {hypers.type!r} given where {cls.type!r} is expected")
    raise ParameterError(f"expected {cls.__name__}, a dict or a spec string, got "
                         f"{type(hypers).__name__}")


def resolve_species(hypers, frames):
    """Hypers whose empty ``species`` is filled with the species of ``frames`` (sorted Z).

    A fixed list that lacks a species present in the frames is a ParameterError naming it.
    """
    present = sorted({int(z) for atoms in frames for z in atoms.numbers})
    if not hypers.species:
        return dataclasses.replace(hypers, species=tuple(present)) if present else hypers
    missing = sorted(set(present) - set(hypers.species))
    if missing:
        from ase.data import chemical_symbols

        raise ParameterError(
            f"{hypers.type} hyper 'species': "
            f"{', '.join(chemical_symbols[z] for z in missing)} in the frames but not in "
            f"species={[chemical_symbols[z] for z in hypers.species]}")
    return hypers
