"""Compute several descriptor kinds over a stream of structures, batch by batch.

The species list is fixed from the whole input before the first batch, so every batch (and every
row of a file) has the same feature layout.
"""

import dataclasses

from mlptools.errors import ParameterError


def _calculators():
    from mlptools.descriptors import acsf, nbody, soap

    return {
        "soap": soap.soap_power_spectrum,
        "acsf": acsf.acsf,
        "distance_2b": nbody.distance_2b,
        "angle_3b": nbody.angle_3b,
    }


def fix_species(hypers, species):
    """Hypers with an empty ``species`` field filled with ``species``; unknown species rejected."""
    if "species" not in {f.name for f in dataclasses.fields(hypers)}:
        return hypers
    if not hypers.species:
        return dataclasses.replace(hypers, species=tuple(int(z) for z in species))
    missing = sorted(set(species) - set(hypers.species))
    if missing:
        from ase.data import chemical_symbols

        names = ", ".join(chemical_symbols[z] for z in missing)
        raise ParameterError(f"species {names} in the input but not in the {hypers.type} species list")
    return hypers


def batches(frames, max_atoms):
    """Consecutive lists of frames holding at most ``max_atoms`` atoms (at least one frame each)."""
    batch, count = [], 0
    for atoms in frames:
        if batch and count + len(atoms) > max_atoms:
            yield batch
            batch, count = [], 0
        batch.append(atoms)
        count += len(atoms)
    if batch:
        yield batch


def describe_batches(frames, hypers_list, *, gradients=False, strain=False, max_atoms=20000):
    """Yield ``(n_atoms_per_structure, [DescriptorSet per hypers])`` batch by batch.

    Parameters
    ----------
    frames : sequence of ase.Atoms (read once to fix the species list)
    hypers_list : list of Hypers (SoapHypers, AcsfHypers, TwoBodyHypers, ThreeBodyHypers)
    gradients : bool, also dX/dr (1/Å)
    strain : bool, also dX/dε
    max_atoms : int, atoms per batch (bounds the memory of the gradients)
    """
    frames = list(frames)
    species = sorted({int(z) for atoms in frames for z in atoms.numbers})
    hypers_list = [fix_species(h, species) for h in hypers_list]
    calculators = _calculators()
    for batch in batches(frames, max_atoms):
        sets = [calculators[h.type](batch, h, gradients=gradients, strain=strain)
                for h in hypers_list]
        yield [len(atoms) for atoms in batch], sets
