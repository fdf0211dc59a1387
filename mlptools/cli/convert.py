"""``mlptools convert``: structures between extxyz, the HDF5 database and any ASE format."""

import click

from mlptools.cli import _common as c


@click.command(short_help="Convert structures: extxyz, HDF5, ASE formats.")
@c.inputs()
@c.output(help="Output file: .h5/.hdf5 is an mlptools structure database, anything else "
               "extxyz; '-' (the default) is extxyz on stdout. Written atomically.")
@click.option("--to", "to", type=click.Choice(["extxyz", "h5"]), default=None,
              help="Output format (default: from the output name).")
@c.require_option()
@c.min_distance_option()
@c.verbosity_options
def convert(inputs, output, to, require, min_distance):
    """Convert structures between extxyz, HDF5 and any format ASE reads.

    Inputs are extxyz ('-' or none = stdin), an mlptools structure database, or any format ASE
    reads (OUTCAR, vasprun.xml, CASTEP, Quantum ESPRESSO output, CIF, POSCAR, traj, ...); they are
    concatenated in order. Labels are kept with the standard keys: energy (eV), forces (eV/Å),
    stress (eV/Å³, ASE sign; derived as -virial/volume when only a virial in eV is given) and
    config_type. Extxyz -> HDF5 -> extxyz reproduces every value.

    \b
    Examples:
      mlptools convert OUTCAR_* -o dft.xyz
      mlptools convert train.xyz -o train.h5
      mlptools convert train.h5 | mlptools info -
    """
    from mlptools.io import structures

    fmt = structures.output_format(output, to)
    if fmt == "h5" and output == "-":
        raise click.UsageError("an HDF5 database cannot be written to stdout; give -o FILE.h5")
    frames = structures.iter_frames(list(inputs), require=require, min_distance=min_distance)
    provenance = c.provenance(inputs) if fmt == "h5" else None
    n = structures.write_structures(frames, output, fmt, provenance=provenance)
    c.log.info("wrote %d frames to %s", n, "<stdout>" if output == "-" else output)
