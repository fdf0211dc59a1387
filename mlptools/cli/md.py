"""``mlptools md``: molecular dynamics with a fitted model or an embedded calculator."""

import contextlib
import os
import signal

import click

from mlptools.cli import _common as c


def model_argument(f):
    """MODEL: a model file or a calculator spec (shared with quench)."""
    return click.argument("model", metavar="MODEL")(f)


def load_model(model):
    """The calculator MODEL names (a model file, else a spec such as sw, emt, xtb)."""
    from mlptools.calculators import calculator_from_argument

    return calculator_from_argument(model)


def read_structure(path, index):
    """Frame ``index`` of a structure file ('-' = stdin)."""
    from mlptools.errors import InputError
    from mlptools.io.structures import iter_frames

    frames = list(iter_frames([path]))
    try:
        return frames[index], index % len(frames)
    except IndexError:
        raise InputError(f"{path}: has {len(frames)} frames, no frame {index}") from None


@contextlib.contextmanager
def sigterm_flag():
    """Yield a function that tells whether SIGTERM arrived (the run then stops cleanly)."""
    stop = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    try:
        yield lambda: bool(stop)
    finally:
        signal.signal(signal.SIGTERM, previous)


def terminated(result, total, checkpoint):
    """The Terminated error (exit 143) for a run stopped by SIGTERM."""
    from mlptools.errors import Terminated

    where = (f"checkpoint {checkpoint} is up to date: rerun the same command to resume"
             if checkpoint else "no checkpoint (name an output or --checkpoint to resume later)")
    return Terminated(f"stopped by SIGTERM at step {result.step} of {total}; {where}")


def extrapolated_error(where, result, threshold, path):
    """The CheckFailed error (exit 3) of the extrapolation guard."""
    from mlptools.errors import CheckFailed

    return CheckFailed(f"{where}: step {result.step}: model uncertainty {result.uncertainty:.4g} "
                       f"passed --max-uncertainty {threshold:g}; stopped, frame written to "
                       f"{path} for labelling")


class Trajectory:
    """The --traj file: extxyz streamed as the run goes; a .h5/.hdf5 name gets an HDF5 database.

    Frames are always streamed to extxyz (cut back to the checkpoint on resume). For an HDF5
    name the stream goes to ``TRAJ.part.xyz`` beside it and :meth:`finish` writes the structure
    database from it (atomically) once the run has ended. The part file stays, like the
    checkpoint, so a stopped run resumes and a finished one can be extended; delete both when
    the run is final.
    """

    def __init__(self, path):
        self.path = path
        self.hdf5 = bool(path) and str(path).lower().endswith((".h5", ".hdf5"))
        self.stream_path = f"{path}.part.xyz" if self.hdf5 else path

    def resumable(self):
        from mlptools.io.resumable import ResumableText

        return ResumableText(self.stream_path) if self.path else None

    def finish(self):
        """Write the HDF5 trajectory from the stream (no-op for extxyz)."""
        if not self.hdf5 or not os.path.exists(self.stream_path):
            return
        from ase.io import iread

        from mlptools.io.h5 import write_structures

        write_structures(self.path, iread(self.stream_path, index=":", format="extxyz"),
                         provenance=c.provenance([self.stream_path]))


def progress_callback(bar):
    """progress(step, total) for run_md, moving a click progress bar."""
    def progress(step, total):
        bar.length = total
        bar.update(step - bar.pos)

    return progress


@click.command(short_help="Molecular dynamics (NVE, NVT, NPT).")
@model_argument
@click.argument("structure", type=click.Path(allow_dash=True, dir_okay=False))
@click.option("--ensemble", type=click.Choice(["nve", "nvt", "npt"]), required=True,
              help="nve: velocity Verlet; nvt: see --thermostat; npt: MTK barostat with "
                   "Nosé-Hoover chains.")
@click.option("--temperature", "temperature_K", type=click.FloatRange(0), default=None,
              help="Target temperature (K); also the temperature of the initial Maxwell-Boltzmann "
                   "velocities when the structure has none.")
@click.option("--pressure", "pressure_GPa", type=float, default=0.0, show_default=True,
              help="NPT target pressure (GPa).")
@click.option("--timestep", "timestep_fs", type=click.FloatRange(0, min_open=True), required=True,
              help="Time step (fs).")
@click.option("--steps", type=click.IntRange(0), required=True, help="Number of time steps.")
@click.option("--thermostat", type=click.Choice(["langevin", "nose-hoover", "bussi"]),
              default="langevin", show_default=True, help="NVT thermostat.")
@click.option("--barostat", type=click.Choice(["isotropic", "anisotropic"]), default="isotropic",
              show_default=True, help="NPT cell fluctuations: volume only, or the full cell.")
@click.option("--tdamp", "tdamp_fs", type=float, default=None,
              help="Thermostat time constant (fs) [default: 100 time steps]; Langevin friction "
                   "= 1/tdamp.")
@click.option("--pdamp", "pdamp_fs", type=float, default=None,
              help="Barostat time constant (fs) [default: 1000 time steps].")
@click.option("--traj", type=click.Path(dir_okay=False), default=None,
              help="Trajectory (extxyz, Å; predictions as mlptools_energy eV, mlptools_forces "
                   "eV/Å), a frame every --stride steps from step 0; a .h5 name writes an "
                   "HDF5 structure database at the end (streamed to TRAJ.part.xyz meanwhile).")
@click.option("--stride", type=click.IntRange(1), default=100, show_default=True,
              help="Steps between trajectory frames.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), default=None,
              help="Thermo log: a whitespace table (step, time fs, T K, E_pot/E_kin/E_tot/E_cons "
                   "eV, P GPa, volume Å³, max uncertainty).")
@click.option("--log-stride", type=click.IntRange(1), default=None,
              help="Steps between log lines [default: --stride, at most 10].")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint (.npz) to resume from and write [default: TRAJ.ckpt.npz, or "
                   "LOG/OUTPUT.ckpt.npz; none if no output is named].")
@click.option("--checkpoint-every", type=click.IntRange(1), default=1000, show_default=True,
              help="Steps between checkpoints (also written on SIGTERM and at the end).")
@click.option("--max-uncertainty", type=float, default=None,
              help="Extrapolation guard: stop when the model's largest per-atom energy "
                   "uncertainty (eV) passes this (its force uncertainty, eV/Å, if it reports "
                   "only that), write the frame and exit 3.")
@click.option("--extrapolated", type=click.Path(dir_okay=False), default=None,
              help="Where the guard writes the offending frame [default: TRAJ/LOG.extrapolated"
                   ".xyz, or md.extrapolated.xyz].")
@click.option("--frame", "frame_index", type=int, default=-1, show_default=True,
              help="Frame of STRUCTURE to start from (-1: the last).")
@click.option("-o", "--output", type=click.Path(allow_dash=True, dir_okay=False), default=None,
              help="Write the final structure (extxyz, with momenta) here ('-' = stdout).")
@c.seed_option(required=False)
@c.verbosity_options
def md(model, structure, ensemble, temperature_K, pressure_GPa, timestep_fs, steps, thermostat,
       barostat, tdamp_fs, pdamp_fs, traj, stride, log_path, log_stride, checkpoint,
       checkpoint_every, max_uncertainty, extrapolated, frame_index, output, seed):
    """Run molecular dynamics on a structure with MODEL (a model file, or sw, emt, ...).

    MODEL is a fitted model file or a calculator spec (sw, emt, tersoff, xtb,
    module.path:Class key=value ...). Velocities are taken from the structure when it has
    momenta, else drawn at --temperature (needs --seed). The run is checkpointed every
    --checkpoint-every steps: after a crash or a kill, the same command continues from the
    checkpoint and the trajectory and log come out identical to an uninterrupted run's.
    Rerunning with a larger --steps extends a finished run. SIGTERM stops at the next step
    after writing the checkpoint (exit 143).

    With --max-uncertainty the run stops as soon as the model's uncertainty passes the
    threshold, writes that frame for labelling and exits 3 (a calculator without
    uncertainties skips the guard with a warning). A NaN energy, an atom moving more than
    0.5 Å in a step or an energy runaway stops the run with an error (exit 1).

    \b
    Examples:
      mlptools md sw si64.xyz --ensemble nvt --temperature 1000 --timestep 1 --steps 10000 \\
          --seed 1 --traj md.xyz --stride 100 --log md.log
      mlptools md model.h5 a-si.xyz --ensemble npt --temperature 300 --pressure 0 \\
          --timestep 2 --steps 50000 --seed 1 --max-uncertainty 0.05 --traj npt.xyz
    """
    from mlptools.calculators import check_species_supported
    from mlptools.io.extxyz import write_frames
    from mlptools.io.resumable import ResumableText
    from mlptools.workflows.md import MDSettings, Stage, final_frame, run_md

    settings = MDSettings(
        ensemble=ensemble, timestep_fs=timestep_fs, thermostat=thermostat, barostat=barostat,
        pressure_GPa=pressure_GPa, tdamp_fs=tdamp_fs, pdamp_fs=pdamp_fs,
        traj_stride=stride if traj else 0, log_stride=log_stride or min(stride, 10),
        checkpoint_stride=checkpoint_every, max_uncertainty=max_uncertainty)
    trajectory = Trajectory(traj)
    if ensemble != "nve" and temperature_K is None:
        raise click.UsageError(f"--ensemble {ensemble} needs --temperature")
    atoms, index = read_structure(structure, frame_index)
    check_species_supported(calc := load_model(model), atoms.numbers,
                            f"{structure}: frame {index}")
    stochastic = (ensemble == "nvt" and thermostat != "nose-hoover") or (
        temperature_K and not (atoms.has("momenta") and atoms.get_momenta().any()))
    if stochastic and seed is None:
        raise click.UsageError("--seed is required (random initial velocities or a stochastic "
                               "thermostat)")
    named = traj or log_path or (output if output not in (None, "-") else None)
    if checkpoint is None and named:
        checkpoint = f"{named}.ckpt.npz"
    if extrapolated is None:
        extrapolated = f"{os.path.splitext(traj or log_path or 'md')[0]}.extrapolated.xyz"

    with sigterm_flag() as stop_requested, c.progress(length=steps, label="md") as bar:
        result = run_md(
            atoms, calc, settings, [Stage("md", steps, temperature_K)],
            rng=c.make_rng(seed), traj=trajectory.resumable(),
            log_file=ResumableText(log_path) if log_path else None, checkpoint=checkpoint,
            stop_requested=stop_requested, progress=progress_callback(bar))
    if result.status == "terminated":
        raise terminated(result, steps, checkpoint)
    trajectory.finish()
    if result.status == "extrapolation":
        write_frames([result.offending], extrapolated)
        raise extrapolated_error(structure, result, max_uncertainty, extrapolated)
    if output is not None:
        write_frames([final_frame(result.atoms, result.step, timestep_fs)], output)
    if not c.quiet():
        rate = len(atoms) * result.steps_now / result.wall_s if result.wall_s > 0 else 0.0
        resumed = f" (resumed at step {result.resumed_from})" if result.resumed_from else ""
        files = ", ".join(f"{k} {v}" for k, v in (("trajectory", traj), ("log", log_path),
                                                  ("checkpoint", checkpoint)) if v)
        click.echo(f"md: {result.step} steps of {timestep_fs:g} fs ({ensemble}){resumed}, "
                   f"{result.steps_now} now in {result.wall_s:.1f} s = {rate:.0f} atom-steps/s"
                   + (f"; {files}" if files else ""), err=True)
