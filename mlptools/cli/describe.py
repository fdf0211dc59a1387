"""``mlptools describe``: per-atom descriptors (+ gradients) to HDF5."""

import click

from mlptools.cli import _common as c


@click.command(short_help="Per-atom descriptors (+gradients) to HDF5.")
@c.inputs()
@c.output(hdf5=True)
@click.option("--soap", "soap_spec", is_flag=False, flag_value="", default=None, metavar="HYPERS",
              help="SOAP power spectrum, e.g. \"cutoff=5 n_max=8 l_max=6 sigma=0.5\" (Å); keys "
                   "cutoff, cutoff_width, n_max, l_max, sigma, center_weight, normalize and the "
                   "radial scaling c/(c + (r/r0)^m): scaling_r0 (Å, 0 = off), scaling_rate (c), "
                   "scaling_exponent (m). --soap alone uses the defaults.")
@click.option("--acsf", "acsf_spec", metavar="PRESET|FILE",
              help="Behler-Parrinello symmetry functions from a preset name or a JSON file.")
@click.option("--twobody", "twobody_spec", is_flag=False, flag_value="", default=None,
              metavar="HYPERS", help="GAP distance_2b, e.g. \"cutoff=5\" (Å).")
@click.option("--threebody", "threebody_spec", is_flag=False, flag_value="", default=None,
              metavar="HYPERS", help="GAP angle_3b, e.g. \"cutoff=3.5\" (Å).")
@click.option("--species", metavar="LIST",
              help="Fixed species list, e.g. Si,O (default: the species in the input).")
@click.option("--gradients", type=click.Choice(["none", "positions", "positions+strain"]),
              is_flag=False, flag_value="positions+strain", default="none", show_default=True,
              help="Also store dX/dr (1/Å) and dX/dε; --gradients alone means positions+strain.")
@click.option("--batch-atoms", type=click.IntRange(1), default=20000, show_default=True,
              help="Atoms computed per batch (bounds memory).")
@click.option("--min-distance", type=click.FloatRange(0), default=0.5, show_default=True,
              help="Reject atoms closer than this (Å); 0 disables the check.")
@c.verbosity_options
def describe(inputs, output, soap_spec, acsf_spec, twobody_spec, threebody_spec, species,
             gradients, batch_atoms, min_distance):
    """Compute per-atom descriptors of structures (positions in Å) into an HDF5 file.

    Without a descriptor option, SOAP with its defaults is computed. The file records the
    hyperparameters, units and the input's provenance; `mlptools info` shows them.

    \b
    Examples:
      mlptools describe train.xyz --soap "cutoff=5 n_max=8 l_max=6 sigma=0.5" --gradients -o si.h5
      mlptools build-db recipe.toml -o - | mlptools describe - --acsf default -o desc.h5
      mpirun -n 4 mlptools describe train.xyz --gradients -o si.h5

    Under mpirun the batches (--batch-atoms) are computed round-robin on all ranks; rank 0
    reads the input and writes the file, identical to a serial run.
    """
    from mlptools.descriptors import hypers as hp
    from mlptools.io.extxyz import iter_frames

    chosen = []
    if soap_spec is not None or not (acsf_spec or twobody_spec is not None
                                     or threebody_spec is not None):
        chosen.append(hp.SoapHypers.from_string(soap_spec or ""))
    if acsf_spec:
        from mlptools.descriptors.acsf import load_acsf_hypers

        chosen.append(load_acsf_hypers(acsf_spec))
    if twobody_spec is not None:
        chosen.append(hp.TwoBodyHypers.from_string(twobody_spec))
    if threebody_spec is not None:
        chosen.append(hp.ThreeBodyHypers.from_string(threebody_spec))
    if species:
        chosen = [_with_species(h, species) for h in chosen]

    comm = c.mpi_comm()
    if comm is None:
        frames = list(iter_frames(list(inputs) or ["-"], min_distance=min_distance))
        _write(output, inputs, frames, chosen, gradients, batch_atoms, None)
        return
    from mlptools.workflows._parallel import ase_serial

    with ase_serial():
        _describe_mpi(comm, inputs, output, chosen, gradients, batch_atoms, min_distance)


def _describe_mpi(comm, inputs, output, chosen, gradients, batch_atoms, min_distance):
    from mlptools.errors import MlptoolsError
    from mlptools.io.extxyz import iter_frames

    # only rank 0 reads (stdin reaches rank 0 alone) and writes; every rank computes
    frames = error = None
    if comm.Get_rank() == 0:
        try:
            frames = list(iter_frames(list(inputs) or ["-"], min_distance=min_distance))
        except MlptoolsError as exc:
            error = exc
    frames, error = comm.bcast((frames, error), root=0)
    try:
        if error is not None:
            raise error
        _write(output if comm.Get_rank() == 0 else None, inputs, frames, chosen, gradients,
               batch_atoms, comm)
    except MlptoolsError as exc:
        if comm.Get_rank() != 0:
            click.get_current_context().exit(exc.exit_code)  # rank 0 reports it
        if error is None:  # other ranks may still be computing: stop them all
            click.echo(f"Error: {exc}", err=True)
            comm.Abort(exc.exit_code)
        raise


def _write(output, inputs, frames, chosen, gradients, batch_atoms, comm):
    from mlptools.descriptors.compute import describe_batches
    from mlptools.io.descriptors import DescriptorWriter

    batches = describe_batches(frames, chosen, gradients=gradients != "none",
                               strain=gradients == "positions+strain", max_atoms=batch_atoms,
                               comm=comm)
    if output is None:  # a worker rank: compute and send its share
        for _ in batches:
            pass
        return
    with DescriptorWriter(output, c.provenance(inputs)) as writer, \
            c.progress(length=sum(len(a) for a in frames), label="describe") as bar:
        for n_atoms, sets in batches:
            writer.append(n_atoms, sets)
            bar.update(sum(n_atoms))


def _with_species(hypers, text):
    import dataclasses

    from ase.data import atomic_numbers

    from mlptools.errors import ParameterError

    if "species" not in {f.name for f in dataclasses.fields(hypers)}:
        return hypers
    numbers = []
    for symbol in (s.strip() for s in text.split(",") if s.strip()):
        if symbol not in atomic_numbers:
            raise ParameterError(f"--species: unknown element {symbol!r}")
        numbers.append(atomic_numbers[symbol])
    return dataclasses.replace(hypers, species=tuple(sorted(numbers)))
