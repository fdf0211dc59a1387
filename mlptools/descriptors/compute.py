"""Compute several descriptor kinds over a stream of structures, batch by batch.

The species list is fixed from the whole input before the first batch, so every batch (and every
row of a file) has the same feature layout.
"""

import dataclasses

from mlptools.errors import MlptoolsError, ParameterError


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
        raise ParameterError(f"species {names} in the input but not in the {hypers.type} "
                             f"species list")
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


def describe_batches(frames, hypers_list, *, gradients=False, strain=False, max_atoms=20000,
                     comm=None):
    """Yield ``(n_atoms_per_structure, [DescriptorSet per hypers])`` batch by batch.

    Parameters
    ----------
    frames : sequence of ase.Atoms (read once to fix the species list)
    hypers_list : list of Hypers (SoapHypers, AcsfHypers, TwoBodyHypers, ThreeBodyHypers)
    gradients : bool, also dX/dr (1/Å)
    strain : bool, also dX/dε
    max_atoms : int, atoms per batch (bounds the memory of the gradients)
    comm : mpi4py communicator, optional
        Every rank must pass the same frames. Batch ``k`` is computed on rank ``k % size`` and
        sent to rank 0, which alone yields, in input order, so its output is identical to a
        serial run; the other ranks yield nothing.
    """
    frames = list(frames)
    species = sorted({int(z) for atoms in frames for z in atoms.numbers})
    hypers_list = [fix_species(h, species) for h in hypers_list]
    calculators = _calculators()

    def compute(batch):
        sets = [calculators[h.type](batch, h, gradients=gradients, strain=strain)
                for h in hypers_list]
        return [len(atoms) for atoms in batch], sets

    if comm is None or comm.Get_size() == 1:
        for batch in batches(frames, max_atoms):
            yield compute(batch)
        return
    yield from _distributed(comm, list(batches(frames, max_atoms)), compute)


def _distributed(comm, batch_list, compute):
    rank, size = comm.Get_rank(), comm.Get_size()
    for k, batch in enumerate(batch_list):
        owner = k % size
        if rank == owner:
            try:
                result = ("ok", compute(batch))
            except MlptoolsError as exc:  # sent on, so rank 0 raises it instead of hanging
                result = ("error", exc)
            if rank != 0:
                comm.send(result, dest=0, tag=k)
        if rank == 0:
            if owner != 0:
                result = comm.recv(source=owner, tag=k)
            status, value = result
            if status == "error":
                raise value  # the CLI aborts the ranks still computing
            yield value
        elif rank == owner and result[0] == "error":
            return
