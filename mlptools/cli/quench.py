"""``mlptools quench``: amorphous structures by melt-quench MD, with their structural analysis."""

import click

from mlptools.cli import _common as c
from mlptools.cli.analyze import analysis_options, run_analysis
from mlptools.cli.md import (
    Trajectory,
    extrapolated_error,
    load_model,
    progress_callback,
    sigterm_flag,
    terminated,
)


@click.command(short_help="Amorphous structures by melt-quench MD.")
@click.argument("model", metavar="MODEL", required=False)
@click.option("--element", default="Si", show_default=True, help="Chemical element.")
@click.option("--n-atoms", type=click.IntRange(1), default=216, show_default=True,
              help="Atoms in the cubic periodic box.")
@click.option("--density", "density_g_cm3", type=click.FloatRange(0, min_open=True),
              default=2.33, show_default=True, help="Mass density (g/cm³), fixed during the run.")
@click.option("--start", type=click.Path(dir_okay=False), default=None,
              help="Start from this structure (last frame) instead of a random box.")
@click.option("--melt", "melt_K", type=click.FloatRange(0, min_open=True), default=3000.0,
              show_default=True, help="Melting temperature (K).")
@click.option("--melt-time", "melt_ps", type=click.FloatRange(0), default=10.0,
              show_default=True, help="Time at --melt (ps).")
@click.option("--liquid", "liquid_K", type=click.FloatRange(0, min_open=True), default=None,
              help="Temperature the liquid is equilibrated at and the quench starts from (K) "
                   "[default: --melt].")
@click.option("--equilibrate-time", "equilibrate_ps", type=click.FloatRange(0), default=10.0,
              show_default=True, help="Time at --liquid (ps).")
@click.option("--quench-rate", "rate_K_per_s", type=click.FloatRange(0, min_open=True),
              default=1e13, show_default=True, help="Linear cooling rate (K/s).")
@click.option("--anneal", "anneal_K", type=click.FloatRange(0), default=500.0,
              show_default=True, help="Temperature the quench ends at and the glass is annealed "
                                      "at (K).")
@click.option("--anneal-time", "anneal_ps", type=click.FloatRange(0), default=10.0,
              show_default=True, help="Time at --anneal (ps).")
@click.option("--timestep", "timestep_fs", type=click.FloatRange(0, min_open=True), default=1.0,
              show_default=True, help="MD time step (fs).")
@click.option("--tdamp", "tdamp_fs", type=click.FloatRange(0, min_open=True), default=100.0,
              show_default=True, help="Langevin time constant 1/friction (fs).")
@click.option("--fmax", type=click.FloatRange(0), default=0.01, show_default=True,
              help="Force criterion of the final relaxation (eV/Å); 0 skips it.")
@click.option("--max-uncertainty", type=float, default=None,
              help="Extrapolation guard as in 'mlptools md' (eV per atom, or eV/Å).")
@click.option("--traj", type=click.Path(dir_okay=False), default=None,
              help="MD trajectory (extxyz; a .h5 name writes an HDF5 structure database at "
                   "the end), a frame every --stride steps.")
@click.option("--stride", type=click.IntRange(1), default=1000, show_default=True,
              help="Steps between trajectory frames.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), default=None,
              help="Thermo log (whitespace table as 'mlptools md' writes).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint (.npz) [default: OUTPUT.ckpt.npz for a named -o].")
@click.option("--checkpoint-every", type=click.IntRange(1), default=5000, show_default=True,
              help="Steps between checkpoints.")
@click.option("-o", "--output", type=click.Path(allow_dash=True, dir_okay=False), default="-",
              show_default=True, help="Final relaxed structure (extxyz; '-' = stdout).")
@click.option("--analyze-only", "analyze_only", type=click.Path(allow_dash=True, dir_okay=False),
              default=None, help="Only analyse this structure file (no MD; MODEL not needed).")
@analysis_options
@c.seed_option(required=False)
@c.verbosity_options
def quench(model, element, n_atoms, density_g_cm3, start, melt_K, melt_ps, liquid_K,
           equilibrate_ps, rate_K_per_s, anneal_K, anneal_ps, timestep_fs, tdamp_fs, fmax,
           max_uncertainty, traj, stride, log_path, checkpoint, checkpoint_every, output,
           analyze_only, cutoff_A, r_max_A, bin_width_A, max_ring, no_rings, json_path,
           plot_prefix, seed):
    """Make an amorphous structure by melt-quench MD and analyse it.

    Random atoms in a cubic box at --density are melted at --melt, equilibrated at --liquid,
    cooled linearly at --quench-rate to --anneal, annealed there and relaxed (FIRE, fixed
    cell). MD is NVT with a Langevin thermostat at fixed density, checkpointed and resumable
    like 'mlptools md' (SIGTERM: exit 143). The relaxed structure is written to -o and its
    analysis (g(r) first peak, coordination at --cutoff, bond angles, shortest-path rings,
    density) printed: on stdout, or on stderr when the structure goes to stdout.

    The quench takes (liquid - anneal) / rate: 2500 K at 1e13 K/s is 250 ps, 250000 steps of
    1 fs.

    \b
    Examples:
      mlptools quench sw --element Si --n-atoms 216 --density 2.33 --melt 3000 \\
          --quench-rate 1e13 --anneal 500 --seed 1 -o a-si.xyz --json a-si.json --plot a-si
      mlptools quench --analyze-only a-si.xyz --cutoff 2.85
    """
    from mlptools.calculators import check_species_supported
    from mlptools.io.extxyz import write_frames
    from mlptools.io.resumable import ResumableText
    from mlptools.workflows.md import MDSettings
    from mlptools.workflows.quench import QuenchProtocol, melt_quench, random_box

    analysis = dict(cutoff_A=cutoff_A, r_max_A=r_max_A, bin_width_A=bin_width_A,
                    max_ring=max_ring, no_rings=no_rings, json_path=json_path,
                    plot_prefix=plot_prefix)
    if analyze_only is not None:
        from mlptools.io.structures import iter_frames

        run_analysis(list(iter_frames([analyze_only], min_distance=0.0))[-1:], **analysis)
        return
    trajectory = Trajectory(traj)
    if model is None:
        raise click.UsageError("MODEL is required (unless --analyze-only)")
    if seed is None:
        raise click.UsageError("--seed is required (random start and Langevin thermostat)")
    protocol = QuenchProtocol(melt_K=melt_K, quench_rate_K_per_s=rate_K_per_s,
                              anneal_K=anneal_K, liquid_K=liquid_K, melt_ps=melt_ps,
                              equilibrate_ps=equilibrate_ps, anneal_ps=anneal_ps,
                              timestep_fs=timestep_fs)
    settings = MDSettings(ensemble="nvt", timestep_fs=timestep_fs, thermostat="langevin",
                          tdamp_fs=tdamp_fs, traj_stride=stride if traj else 0,
                          log_stride=min(stride, 100), checkpoint_stride=checkpoint_every,
                          max_uncertainty=max_uncertainty)
    rng = c.make_rng(seed)
    calc = load_model(model)
    if start is not None:
        from mlptools.cli.md import read_structure

        atoms, index = read_structure(start, -1)
        where = f"{start}: frame {index}"
    else:
        atoms = random_box(element, n_atoms, density_g_cm3, rng)
        where = f"--element {element}"
    check_species_supported(calc, atoms.numbers, where)
    if checkpoint is None and output != "-":
        checkpoint = f"{output}.ckpt.npz"
    total = sum(s.steps for s in protocol.stages())
    c.log.info("quench: %d MD steps (%.1f ps of quench at %.3g K/s)", total, protocol.quench_ps,
               rate_K_per_s)
    with sigterm_flag() as stop_requested, c.progress(length=total, label="quench") as bar:
        result = melt_quench(atoms, calc, protocol, rng=rng, settings=settings,
                             traj=trajectory.resumable(),
                             log_file=ResumableText(log_path) if log_path else None,
                             checkpoint=checkpoint, stop_requested=stop_requested,
                             progress=progress_callback(bar), relax_fmax=fmax)
    md = result.md
    if md.status == "terminated":
        raise terminated(md, total, checkpoint)
    trajectory.finish()
    if md.status == "extrapolation":
        path = f"{output if output != '-' else 'quench'}.extrapolated.xyz"
        write_frames([md.offending], path)
        raise extrapolated_error(where, md, max_uncertainty, path)
    final = result.atoms
    final.info["quench_rate_K_per_s"] = rate_K_per_s
    write_frames([_plain(final)], output)
    if not c.quiet():
        click.echo(f"quench: {md.step} MD steps in {md.wall_s:.1f} s "
                   f"({len(final) * md.steps_now / max(md.wall_s, 1e-9):.0f} atom-steps/s), "
                   f"relaxed in {result.relax_steps} steps to fmax {result.fmax_eV_per_A:.3g} "
                   "eV/Å", err=True)
    run_analysis([final], summary_to_stderr=output == "-", **analysis)


def _plain(atoms):
    """The relaxed structure with its energy as a prediction (mlptools_energy), not a label."""
    from ase import Atoms

    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                  pbc=atoms.pbc, info=dict(atoms.info))
    if atoms.calc is not None and "energy" in atoms.calc.results:
        frame.info["mlptools_energy"] = float(atoms.calc.results["energy"])
    return frame
