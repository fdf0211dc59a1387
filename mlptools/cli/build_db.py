"""``mlptools build-db``: a labelled reference database from a recipe file."""

import os
import signal
import sys
import time

import click

from mlptools.cli import _common as c


def _parse_split(ctx, param, values):
    out = {}
    for value in values:
        name, sep, frac = value.partition("=")
        try:
            out[name.strip()] = float(frac)
        except ValueError:
            sep = ""
        if not sep or not name.strip() or name.strip() == "train":
            raise click.BadParameter(f"expected NAME=FRACTION (e.g. test=0.1, not train), got "
                                     f"{value!r}")
    return out


def _split_path(output, name):
    root, ext = os.path.splitext(output)
    return f"{root}.{name}{ext or '.xyz'}"


@click.command(short_help="Generate and label a reference database.")
@click.argument("recipe", type=click.Path(dir_okay=False))
@c.seed_option(required=False)
@click.option("--calc", "calc", metavar="SPEC", default=None,
              help="Reference calculator, overriding the recipe's [label] calc: emt, lj, sw, "
                   "tersoff, xtb, xtb:gfn1, xtb:gfn2, or module.path:Class key=value ... "
                   "(e.g. 'ase.calculators.vasp:Vasp xc=PBE encut=400').")
@c.output(help="Output extxyz ('-' = stdout, the default); written atomically at the end. "
               "Energies eV, forces eV/Å, stress eV/Å³.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint file (JSON lines) to resume from [default: OUTPUT.ckpt.jsonl, "
                   "none for stdout].")
@click.option("--split", "split", multiple=True, callback=_parse_split, metavar="NAME=FRAC",
              help="Hold out FRAC of every config_type as set NAME, written to OUTPUT.NAME.xyz "
                   "(repeatable; overrides the recipe's [split]).")
@click.option("--explore", "explore_model", metavar="MODEL", default=None,
              help="Grow the database where an interim potential (a model file or a calculator "
                   "spec) is least certain: short MD from every generated structure, then only "
                   "the most uncertain snapshots are labelled.")
@click.option("--explore-keep", type=click.IntRange(1), default=50, show_default=True,
              help="Snapshots kept for labelling with --explore.")
@click.option("--explore-steps", type=click.IntRange(1), default=200, show_default=True,
              help="MD steps from each generated structure with --explore.")
@click.option("--explore-stride", type=click.IntRange(1), default=10, show_default=True,
              help="Steps between candidate snapshots with --explore.")
@click.option("--explore-temperature", type=click.FloatRange(min=0, min_open=True),
              default=1000.0, show_default=True, help="Langevin temperature (K) with --explore.")
@click.option("--explore-timestep", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="MD timestep (fs) with --explore.")
@c.verbosity_options
def build_db(recipe, seed, calc, output, checkpoint, split, explore_model, explore_keep,
             explore_steps, explore_stride, explore_temperature, explore_timestep):
    """Generate structures from a recipe and label them (energy, forces, stress).

    The recipe (TOML, or YAML with PyYAML) lists structure ingredients: crystal prototypes,
    volume scans, strains, rattles, vacancies, interstitials, surfaces, MD liquid and
    melt-quench amorphous snapshots, AIRSS-style random structures and imported DFT data; each
    frame is tagged with its config_type. The same recipe and --seed give the same structures.
    Isolated-atom energies (E0) are labelled too (config_type IsolatedAtom).

    Every labelled structure is appended to the checkpoint at once: after a crash or kill, the
    same command resumes without labelling anything twice. SIGTERM stops after the current
    structure (exit 143). A failing calculation is reported and skipped. Under
    'mpirun -n N' the ranks label in parallel (needs mpi4py) and rank 0 writes.

    \b
    Examples:
      mlptools build-db examples/recipes/si-sw.toml --seed 1 -o si.xyz
      mlptools build-db recipe.toml --seed 1 --calc xtb --split test=0.1 -o db.xyz
      mpirun -n 4 mlptools build-db recipe.toml --seed 1 -o db.xyz
      mlptools build-db recipe.toml --seed 2 --explore model.h5 --explore-keep 40 -o new.xyz
    """
    import numpy as np

    from mlptools.errors import ParameterError, Terminated
    from mlptools.io.extxyz import write_frames
    from mlptools.workflows import build_db as bd
    from mlptools.workflows.explore import ExploreSettings
    from mlptools.workflows.recipe import load_recipe

    explore = None
    if explore_model is not None:
        explore = (explore_model, ExploreSettings(
            temperature_K=explore_temperature, steps=explore_steps, stride=explore_stride,
            keep=explore_keep, timestep_fs=explore_timestep))
    comm = c.mpi_comm()
    rank = comm.Get_rank() if comm is not None else 0
    spec = load_recipe(recipe)
    seed = spec.seed if seed is None else seed
    if seed is None:
        raise ParameterError(f"{recipe}: no seed: give --seed or a top-level seed in the recipe")
    fractions = split or spec.split
    if fractions and output == "-":
        raise click.UsageError(f"{'--split' if split else 'the recipe [split]'} needs a named "
                               "-o OUTPUT (the other sets are written beside it)")
    if checkpoint is None and output != "-":
        checkpoint = f"{output}.ckpt.jsonl"

    stop = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    started = time.monotonic()
    try:
        with c.progress(length=1, label="labelling") as bar:
            first = []  # (time, done) when labelling started: generation is not in the ETA
            last_log = [0.0]

            def progress(done, total):
                now = time.monotonic()
                if not first:
                    first.append((now, done - 1))
                    bar.pos = done - 1
                bar.length = total
                bar.update(done - bar.pos)
                if now - last_log[0] > 30 or done == total:  # for logs (-v) without a TTY
                    last_log[0] = now
                    rate = (now - first[0][0]) / max(done - first[0][1], 1)
                    c.log.info("labelled %d/%d, ETA %.0f s", done, total, rate * (total - done))

            result = bd.build_database(spec, seed=seed, calc=calc, checkpoint=checkpoint,
                                       comm=comm, stop_requested=lambda: bool(stop),
                                       progress=progress if rank == 0 else None,
                                       explore=explore)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if rank != 0:  # rank 0 reports and writes
        click.get_current_context().exit(Terminated.exit_code if result.stopped else 0)
    if result.stopped:
        done = f"stopped by SIGTERM after {len(result.frames) + len(result.failures)} of " \
               f"{result.n_total} structures"
        if checkpoint is None:
            raise Terminated(f"{done}; nothing written (no checkpoint: give --checkpoint to "
                             "resume later)")
        raise Terminated(f"{done}; checkpoint {checkpoint} is up to date: rerun the same "
                         "command to resume")
    for sid, config_type, error in result.failures:
        c.log.warning("structure %s (%s) failed: %s", sid, config_type, error)
    if fractions:
        sets = bd.split_by_config_type(result.frames, fractions, np.random.default_rng(
            [seed, 1]))
        for name, frames in sets.items():
            if name != "train":
                write_frames(frames, _split_path(output, name))
        frames = sets["train"]
    else:
        frames = result.frames
    n = write_frames(frames, output)
    if not c.quiet():
        for line in result.summary.lines():
            click.echo(line, err=True)
        click.echo(f"wrote {n} frames to {'<stdout>' if output == '-' else output}"
                   + "".join(f", {len(s)} to {_split_path(output, k)}"
                             for k, s in (sets.items() if fractions else ()) if k != "train")
                   + f" in {time.monotonic() - started:.1f} s", err=True)
    sys.stdout.flush()
