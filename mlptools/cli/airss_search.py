"""``mlptools airss-search``: random structure search with a potential (AIRSS)."""

import os
import sys
import time

import click

from mlptools.cli import _common as c


def _int_range(ctx, param, value):
    """'4' → (4, 4); '1-4' → (1, 4)."""
    if value is None:
        return None
    lo, sep, hi = str(value).partition("-")
    try:
        out = (int(lo), int(hi) if sep else int(lo))
    except ValueError:
        raise click.BadParameter(f"expected N or LO-HI (integers), got {value!r}") from None
    if out[0] < 1 or out[0] > out[1]:
        raise click.BadParameter(f"expected 1 <= LO <= HI, got {value!r}")
    return out


def _float_range(ctx, param, value):
    """'0.8-1.2' → (0.8, 1.2); '1' → (1, 1)."""
    lo, sep, hi = str(value).partition("-")
    try:
        out = (float(lo), float(hi) if sep else float(lo))
    except ValueError:
        raise click.BadParameter(f"expected F or LO-HI (numbers), got {value!r}") from None
    if not 0 < out[0] <= out[1]:
        raise click.BadParameter(f"expected 0 < LO <= HI, got {value!r}")
    return out


def _model_id(model):
    """How the checkpoint remembers the model: the spec, or a file's name and sha256."""
    if os.path.isfile(model):
        return f"{os.path.basename(model)} sha256:{c.file_sha256(model)}"
    return model


@click.command(short_help="Random structure search (AIRSS).")
@click.argument("model")
@click.option("--composition", required=True,
              help="One formula unit, e.g. Si8, Cu4, SiO2.")
@click.option("--nform", default="1", show_default=True, callback=_int_range,
              help="Formula units per structure: N or LO-HI (drawn uniformly).")
@click.option("--volume", "volume_per_atom", type=click.FloatRange(min=0, min_open=True),
              default=None,
              help="Target volume per atom (Å³) [default: mean of the elements' ASE reference "
                   "crystals, e.g. 20.0 for Si].")
@click.option("--volume-range", default="0.8-1.2", show_default=True, callback=_float_range,
              help="The cell volume is the target times a random factor in LO-HI.")
@click.option("--minsep", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Minimum separation of atoms in the random structures (Å) "
                   "[default: 0.8 × twice the smallest covalent radius, 1.78 for Si].")
@click.option("--symmetry", default=None, callback=_int_range,
              help="Random space group with N or LO-HI symmetry operations (e.g. 2-8), atoms "
                   "on its general positions; default none (P1).")
@click.option("--cluster", is_flag=True,
              help="Random clusters (no periodicity) instead of crystals.")
@click.option("--slab", is_flag=True,
              help="Random slabs: a layer periodic in x, y with 10 Å of vacuum along z; the "
                   "in-plane cell is relaxed.")
@click.option("-n", "--n-structures", type=click.IntRange(min=1), required=True,
              help="Number of random structures of this seed (a rerun adds the missing ones).")
@click.option("--pressure", "pressure_GPa", type=float, default=0.0, show_default=True,
              help="Hydrostatic pressure of the relaxation and the enthalpy (GPa).")
@click.option("--fmax", type=click.FloatRange(min=0, min_open=True), default=0.01,
              show_default=True,
              help="Force tolerance of the relaxation (eV/Å; the cell's too: virial/N in eV).")
@click.option("--max-steps", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Step limit of one relaxation (unconverged ones are discarded).")
@click.option("--cell-filter", type=click.Choice(["unit", "frechet"]), default="unit",
              show_default=True,
              help="ASE cell filter: UnitCellFilter, or FrechetCellFilter (slower per step).")
@click.option("--energy-tol", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="Two structures are the same only if their enthalpies differ by less than "
                   "this (eV/atom)...")
@click.option("--similarity", type=click.FloatRange(0, 1), default=0.999, show_default=True,
              help="... their mean SOAP vectors have at least this cosine, and their space "
                   "groups (spglib, if installed) agree.")
@click.option("-j", "--jobs", type=click.IntRange(min=0), default=1, show_default=True,
              help="Worker processes (0: all cores). Under mpirun the ranks share the work.")
@c.seed_option()
@c.output(required=True,
          help="Ranked unique structures (extxyz, written atomically), lowest enthalpy first.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint of finished relaxations (JSON lines) [default: OUTPUT.ckpt.jsonl].")
@c.verbosity_options
def airss_search(model, composition, nform, volume_per_atom, volume_range, minsep, symmetry,
                 cluster, slab, n_structures, pressure_GPa, fmax, max_steps, cell_filter,
                 energy_tol, similarity, jobs, seed, output, checkpoint):
    """Search for low-enthalpy structures by relaxing random ones (AIRSS).

    MODEL is a fitted model file or a calculator spec (sw, emt, tersoff, xtb,
    module.path:Class key=value). Each random structure has a random cell of the target
    volume, atoms at least --minsep apart and, with --symmetry, a random space group (or is
    a --cluster or a --slab). It is relaxed (positions and cell, under --pressure) with FIRE
    to --fmax; failures are counted with their reason. The unique structures, ranked by
    enthalpy per atom H = (E + pV)/N,
    are written to OUTPUT with info keys mlptools_energy, mlptools_enthalpy (eV),
    enthalpy_per_atom (eV/atom), volume_per_atom (Å³), pressure_GPa, spacegroup, times_found,
    structure_key and rank; a table like AIRSS's 'ca -r' goes to stdout.

    Every relaxation is appended to the checkpoint at once: after a kill, the same command
    resumes, and a rerun with a larger -n or another --seed adds to what is there (the
    ranking covers everything in the checkpoint). SIGTERM stops cleanly (exit 143).

    \b
    Examples:
      mlptools airss-search sw --composition Si8 --symmetry 2-8 -n 100 --seed 1 -o si8.xyz
      mlptools airss-search emt --composition Cu4 --nform 1-2 -n 50 -j 0 --seed 1 -o cu.xyz
      mpirun -n 4 mlptools airss-search model.h5 --composition Si8 -n 400 --seed 2 -o r.xyz
    """
    from ase.data import atomic_numbers

    from mlptools.calculators import calculator_from_argument, check_species_supported
    from mlptools.errors import ComputationError, Terminated
    from mlptools.io.extxyz import write_frames
    from mlptools.workflows import airss

    if output == "-":
        raise click.UsageError("-o must name a file: the ranking table goes to stdout")
    symbols = airss.parse_composition(composition)
    settings = airss.SearchSettings(
        composition=composition, nform=nform,
        volume_per_atom=volume_per_atom or airss.default_volume_per_atom(symbols),
        volume_range=volume_range, minsep=minsep or airss.default_minsep(symbols),
        symmetry=symmetry, cluster=cluster, slab=slab, pressure_GPa=pressure_GPa, fmax=fmax,
        max_steps=max_steps, cell_filter=cell_filter)
    calc = calculator_from_argument(model)  # fails here, once, on a bad MODEL
    check_species_supported(calc, [atomic_numbers[s] for s in symbols], model)
    comm = c.mpi_comm()
    rank = comm.Get_rank() if comm is not None else 0
    checkpoint = checkpoint or f"{output}.ckpt.jsonl"
    n_jobs = jobs or os.cpu_count() or 1
    started = time.monotonic()
    with c.sigterm_flag() as stop, c.progress(length=n_structures, label="relaxing") as bar:
        def progress(done, total):
            bar.length = total
            bar.update(done - bar.pos)

        result = airss.run_search(settings, model, seed=seed, n_structures=n_structures,
                                  checkpoint=checkpoint, model_id=_model_id(model),
                                  n_jobs=n_jobs, comm=comm, stop_requested=lambda: bool(stop),
                                  progress=progress if rank == 0 else None)
    if rank != 0:
        click.get_current_context().exit(Terminated.exit_code if result.stopped else 0)
    if result.stopped:
        raise Terminated(f"stopped by SIGTERM after {len(result.records)} relaxations; "
                         f"checkpoint {checkpoint} is up to date: rerun the same command to "
                         "resume")
    reasons = {}
    for rec in result.failures:
        kind = rec["reason"].split(" (")[0].split(":")[0]
        reasons[kind] = reasons.get(kind, 0) + 1
    for kind, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        c.log.warning("%d structure(s) discarded: %s", count, kind)
    ranked = airss.rank_structures(result.records, energy_tol=energy_tol, similarity=similarity,
                                   pressure_GPa=pressure_GPa)
    if not ranked:
        raise ComputationError(f"{checkpoint}: none of {len(result.records)} relaxations "
                               "converged (see the warnings); raise --max-steps or --fmax")
    write_frames([r.atoms for r in ranked], output)
    for line in airss.summary_lines(ranked, pressure_GPa, n_failed=len(result.failures)):
        click.echo(line)
    c.log.info("%d new relaxations in %.1f s; %d in the checkpoint", result.n_new,
               time.monotonic() - started, len(result.records))
    sys.stdout.flush()
