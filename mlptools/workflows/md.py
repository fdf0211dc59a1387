"""Molecular dynamics with ASE integrators: NVE, NVT, NPT; checkpoints, guards, a thermo log.

Library half of ``mlptools md`` (and of the MD stages of ``mlptools quench``). A run is a list of
:class:`Stage` s (one for ``md``; melt, equilibrate, quench, anneal for ``quench``) integrated
with one ASE dynamics object per stage:

=========  =========================================================================
nve        ``ase.md.verlet.VelocityVerlet``
nvt        ``ase.md.langevin.Langevin`` (default), ``ase.md.nose_hoover_chain.NoseHooverChainNVT``
           or ``ase.md.bussi.Bussi`` (stochastic velocity rescaling)
npt        ``ase.md.nose_hoover_chain.IsotropicMTKNPT`` (isotropic) or ``MTKNPT`` (full cell),
           Martyna–Tobias–Klein barostat with Nosé–Hoover chains
=========  =========================================================================

Checkpoints hold the complete integrator state: positions, momenta, cell, every numeric
attribute of the dynamics object and of its thermostat/barostat (chain variables), the state of
the random generator, and the sizes of the trajectory and log files. A resumed run therefore
continues bit for bit where the checkpoint was taken, and its trajectory and log are identical to
those of an uninterrupted run.

Guards, checked as the run goes:

- extrapolation: when the calculator reports an uncertainty (``energies_uncertainty`` (n_atoms,)
  eV, else ``forces_uncertainty`` (n_atoms,) eV/Å, in ``calc.results``) above
  ``max_uncertainty``, the run stops and returns the offending frame;
- blow-up: a NaN/inf energy, an atom moving more than ``max_step_A`` in one step, the potential
  energy changing by more than ``max_energy_change_eV`` per atom, or (thermostatted runs) the
  temperature passing 5× the hottest target all stop the run with a ComputationError.

Array suffixes: ``n`` atoms, ``c`` Cartesian.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import os
import time

import numpy as np
from ase import units

from mlptools import keys
from mlptools.errors import ComputationError, InputError, ParameterError

__all__ = [
    "ENSEMBLES",
    "LOG_COLUMNS",
    "MDResult",
    "MDSettings",
    "Stage",
    "final_frame",
    "max_uncertainty",
    "run_md",
    "thermalize",
]

log = logging.getLogger(__name__)

ENSEMBLES = ("nve", "nvt", "npt")
THERMOSTATS = ("langevin", "nose-hoover", "bussi")
BAROSTATS = ("isotropic", "anisotropic")
CHECKPOINT_FORMAT = "mlptools-md-checkpoint"
CHECKPOINT_VERSION = 1

#: columns of the thermo log (whitespace table, one header line starting with '#')
LOG_COLUMNS = ("step", "time_fs", "T_K", "E_pot_eV", "E_kin_eV", "E_tot_eV", "E_cons_eV",
               "P_GPa", "volume_A3", "max_uncertainty")

# attributes of the dynamics objects that are not integrator state (or cannot be saved)
_NOT_STATE = {"atoms", "masses", "observers", "nsteps", "max_steps", "comm", "rng", "dt",
              "trajectory", "logfile", "loginterval"}


@dataclasses.dataclass(frozen=True)
class Stage:
    """A stretch of MD at a constant or linearly ramped target temperature.

    Parameters
    ----------
    name : str
        Shown in the log (``melt``, ``quench``, ...).
    steps : int
        Number of time steps (≥ 0).
    temperature_K : float or None
        Target temperature at the start (thermostatted ensembles).
    final_temperature_K : float or None
        Target at the end of the stage; the target moves linearly in between (None: constant).
    """

    name: str
    steps: int
    temperature_K: float | None = None
    final_temperature_K: float | None = None

    def target(self, k):
        """Target temperature (K) after ``k`` of the stage's steps."""
        if self.final_temperature_K is None or self.steps == 0 or self.temperature_K is None:
            return self.temperature_K
        return self.temperature_K + (self.final_temperature_K - self.temperature_K) * k / self.steps


@dataclasses.dataclass(frozen=True)
class MDSettings:
    """How to integrate; the same settings are required to resume from a checkpoint.

    Parameters
    ----------
    ensemble : {"nve", "nvt", "npt"}
    timestep_fs : float
        Time step (fs), > 0.
    thermostat : {"langevin", "nose-hoover", "bussi"}
        NVT thermostat (NPT always uses the MTK Nosé–Hoover chains).
    barostat : {"isotropic", "anisotropic"}
        NPT cell fluctuations: volume only, or the full cell.
    pressure_GPa : float
        NPT target pressure (GPa).
    tdamp_fs, pdamp_fs : float
        Thermostat and barostat time constants (fs); the Langevin friction is 1/tdamp.
    traj_stride, log_stride, checkpoint_stride : int
        Write a trajectory frame / a log line / a checkpoint every so many steps (0: never).
    max_uncertainty : float or None
        Extrapolation guard threshold: eV for per-atom energy uncertainties, eV/Å when the
        calculator reports only force uncertainties. None disables the guard.
    max_step_A : float
        Largest displacement of an atom in one step (Å) before the run is declared blown up.
    max_energy_change_eV : float
        Largest change of potential energy per atom (eV) from the start of the run.
    """

    ensemble: str
    timestep_fs: float
    thermostat: str = "langevin"
    barostat: str = "isotropic"
    pressure_GPa: float = 0.0
    tdamp_fs: float | None = None
    pdamp_fs: float | None = None
    traj_stride: int = 100
    log_stride: int = 10
    checkpoint_stride: int = 1000
    max_uncertainty: float | None = None
    max_step_A: float = 0.5
    max_energy_change_eV: float = 5.0

    def __post_init__(self):
        if self.ensemble not in ENSEMBLES:
            raise ParameterError(f"unknown ensemble {self.ensemble!r}; use one of "
                                 f"{', '.join(ENSEMBLES)}")
        if self.thermostat not in THERMOSTATS:
            raise ParameterError(f"unknown thermostat {self.thermostat!r}; use one of "
                                 f"{', '.join(THERMOSTATS)}")
        if self.barostat not in BAROSTATS:
            raise ParameterError(f"unknown barostat {self.barostat!r}; use one of "
                                 f"{', '.join(BAROSTATS)}")
        if not (math.isfinite(self.timestep_fs) and self.timestep_fs > 0):
            raise ParameterError(f"timestep must be > 0 fs, got {self.timestep_fs}")
        for name in ("tdamp_fs", "pdamp_fs"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ParameterError(f"{name} must be > 0 fs, got {value}")
        for name in ("traj_stride", "log_stride", "checkpoint_stride"):
            if getattr(self, name) < 0:
                raise ParameterError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_uncertainty is not None and not self.max_uncertainty > 0:
            raise ParameterError(f"max_uncertainty must be > 0, got {self.max_uncertainty}")

    @property
    def tdamp(self):
        """Thermostat time constant (fs): default 100 time steps."""
        return self.tdamp_fs if self.tdamp_fs is not None else 100.0 * self.timestep_fs

    @property
    def pdamp(self):
        """Barostat time constant (fs): default 1000 time steps."""
        return self.pdamp_fs if self.pdamp_fs is not None else 1000.0 * self.timestep_fs

    def to_dict(self):
        """JSON-able dict (stored in checkpoints)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class MDResult:
    """What a run ended with.

    Attributes
    ----------
    atoms : ase.Atoms
        The final (or stopping) configuration, with momenta; calculator attached.
    step : int
        Steps done in total (over all stages, including those of earlier, resumed runs).
    status : {"done", "terminated", "extrapolation"}
    offending : ase.Atoms or None
        For ``"extrapolation"``: the frame whose uncertainty passed the threshold, with
        ``info["max_uncertainty"]``, ``info["step"]``, predictions under ``mlptools_*`` keys and
        the per-atom uncertainties as arrays.
    uncertainty : float or None
        The uncertainty measure at the end (or at the stop).
    resumed_from : int or None
        The step the run resumed from, if it did.
    checkpoint_step : int or None
        Step of the last checkpoint written.
    n_frames : int
        Trajectory frames in the file.
    wall_s : float
        Wall time of this invocation (s), and ``steps_now`` the steps integrated in it.
    """

    atoms: object
    step: int
    status: str
    offending: object = None
    uncertainty: float | None = None
    resumed_from: int | None = None
    checkpoint_step: int | None = None
    n_frames: int = 0
    wall_s: float = 0.0
    steps_now: int = 0


# ---------------------------------------------------------------------------------------------
# uncertainty
# ---------------------------------------------------------------------------------------------


def max_uncertainty(results):
    """The guard's measure: max per-atom energy std (eV), else max force std (eV/Å), else None.

    Parameters
    ----------
    results : dict
        ``calc.results``.

    Returns
    -------
    (float, str) or None
        The value and the key it came from.
    """
    for key in (keys.ENERGIES_UNCERTAINTY, keys.FORCES_UNCERTAINTY):
        value = results.get(key)
        if value is not None:
            value = np.asarray(value, dtype=float)
            return (float(np.max(value)) if value.size else 0.0), key
    return None


# ---------------------------------------------------------------------------------------------
# set-up
# ---------------------------------------------------------------------------------------------


def thermalize(atoms, temperature_K, rng):
    """Maxwell–Boltzmann momenta at ``temperature_K`` from ``rng``, zero total momentum."""
    from ase.md.velocitydistribution import Stationary
    from ase.parallel import DummyMPI

    try:
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # ASE < 3.29
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng, comm=DummyMPI())
    Stationary(atoms)


def _make_dynamics(atoms, settings, temperature_K, rng):
    dt = settings.timestep_fs * units.fs
    if settings.ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, dt)
    if temperature_K is None or not temperature_K > 0:
        raise ParameterError(f"{settings.ensemble} needs a temperature > 0 K")
    if settings.ensemble == "nvt":
        if settings.thermostat == "langevin":
            from ase.md.langevin import Langevin

            return Langevin(atoms, dt, temperature_K=temperature_K,
                            friction=1.0 / (settings.tdamp * units.fs), fixcm=False, rng=rng)
        if settings.thermostat == "bussi":
            from ase.md.bussi import Bussi

            return Bussi(atoms, dt, temperature_K=temperature_K,
                         taut=settings.tdamp * units.fs, rng=rng)
        from ase.md.nose_hoover_chain import NoseHooverChainNVT

        return NoseHooverChainNVT(atoms, dt, temperature_K=temperature_K,
                                  tdamp=settings.tdamp * units.fs)
    if not atoms.pbc.all():
        raise ParameterError("npt needs a structure periodic in all three directions")
    from ase.md import nose_hoover_chain as nhc

    cls = nhc.IsotropicMTKNPT if settings.barostat == "isotropic" else nhc.MTKNPT
    return cls(atoms, dt, temperature_K=temperature_K,
               pressure_au=settings.pressure_GPa * units.GPa,
               tdamp=settings.tdamp * units.fs, pdamp=settings.pdamp * units.fs)


def _set_target(dyn, settings, temperature_K):
    """Move the thermostat target (ramps); only the stochastic thermostats support it."""
    if settings.ensemble == "nvt" and settings.thermostat == "langevin":
        dyn.set_temperature(temperature_K=temperature_K)
        return
    if settings.ensemble == "nvt" and settings.thermostat == "bussi":
        # ase.md.bussi.Bussi has no set_temperature; these two attributes are its target
        dyn.temp = temperature_K * units.kB
        dyn.target_kinetic_energy = 0.5 * dyn.temp * dyn.ndof
        return
    raise ParameterError("a temperature ramp needs --ensemble nvt with the langevin or bussi "
                         "thermostat")


def _state_owners(dyn):
    owners = {"dyn": dyn}
    for name in ("_thermostat", "_barostat"):
        if getattr(dyn, name, None) is not None:
            owners[name.lstrip("_")] = getattr(dyn, name)
    return owners


def _dynamics_state(dyn):
    """Every numeric attribute of the integrator and its thermostat/barostat, as arrays."""
    state = {}
    for owner_name, owner in _state_owners(dyn).items():
        for attr, value in vars(owner).items():
            if attr in _NOT_STATE or isinstance(value, bool):
                continue
            if isinstance(value, np.ndarray) and value.dtype.kind in "fiu":
                state[f"{owner_name}.{attr}"] = value
            elif isinstance(value, (int, float, np.integer, np.floating)):
                state[f"{owner_name}.{attr}"] = np.asarray(value)
    return state


def _restore_dynamics_state(dyn, state):
    owners = _state_owners(dyn)
    for key, value in state.items():
        owner_name, attr = key.split(".", 1)
        owner = owners.get(owner_name)
        if owner is None:
            raise InputError(f"checkpoint holds {key!r}, which this integrator does not have")
        old = vars(owner).get(attr)
        if old is None:  # set during a step (Langevin's velocities), not by the constructor
            setattr(owner, attr, value.item() if value.ndim == 0 else np.array(value))
        elif isinstance(old, np.ndarray):
            setattr(owner, attr, np.array(value, dtype=old.dtype))
        else:
            setattr(owner, attr, type(old)(value.item()))


# ---------------------------------------------------------------------------------------------
# checkpoint
# ---------------------------------------------------------------------------------------------


def _write_checkpoint(path, meta, atoms, dyn):
    from mlptools.io.atomic import atomic_open

    arrays = {"positions": atoms.positions, "momenta": atoms.get_momenta(),
              "cell": atoms.cell.array, "numbers": atoms.numbers, "pbc": atoms.pbc}
    arrays.update({f"state:{k}": v for k, v in _dynamics_state(dyn).items()})
    with atomic_open(path, "wb") as fh:
        np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)


def _read_checkpoint(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in data.files if k != "meta"}
    except Exception as exc:  # numpy raises several types for a damaged file
        raise InputError(f"{path}: not a readable MD checkpoint ({type(exc).__name__}: "
                         f"{exc})") from None
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != CHECKPOINT_VERSION:
        raise InputError(f"{path}: not an mlptools MD checkpoint (version {CHECKPOINT_VERSION})")
    return meta, arrays


def _check_compatible(path, meta, settings, stages, atoms):
    saved = meta["settings"]
    for key, value in settings.to_dict().items():
        if saved.get(key) != value:
            raise ParameterError(f"{path}: checkpoint was written with {key}={saved.get(key)!r}, "
                                 f"not {value!r}; use the same options, or delete the checkpoint")
    saved_stages = meta["stages"]
    for k, (old, new) in enumerate(zip(saved_stages, stages, strict=False)):
        new = dataclasses.asdict(new)
        # a run may be extended (more steps in its last stage) unless that stage is a ramp,
        # whose slope would change
        last = k == len(stages) - 1 == len(saved_stages) - 1 and (
            new["final_temperature_K"] is None
            or new["final_temperature_K"] == new["temperature_K"])
        diff = [f for f in new if old.get(f) != new[f] and not (last and f == "steps")]
        if diff:
            raise ParameterError(f"{path}: checkpoint was written with another protocol "
                                 f"({stages[k].name}: {diff[0]}); use the same options, or delete "
                                 "the checkpoint")
    if len(saved_stages) != len(stages):
        raise ParameterError(f"{path}: checkpoint was written with {len(saved_stages)} stages, "
                             f"not {len(stages)}; delete it to start afresh")
    if meta["n_atoms"] != len(atoms) or meta["numbers_sha"] != _numbers_digest(atoms):
        raise ParameterError(f"{path}: checkpoint is for another structure ({meta['n_atoms']} "
                             "atoms); delete it to start afresh")


def _numbers_digest(atoms):
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(atoms.numbers, dtype=np.int64)).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------


def _pressure_GPa(atoms):
    """Instantaneous pressure incl. the kinetic term (GPa), NaN without a stress."""
    calc = atoms.calc
    if calc is None or "stress" not in calc.results or not atoms.pbc.all():
        return math.nan
    stress = atoms.get_stress(voigt=True, include_ideal_gas=True)
    return float(-stress[:3].mean() / units.GPa)


def _log_header():
    return "#" + " ".join(f"{c:>14s}" if k else f"{c:>9s}" for k, c in enumerate(LOG_COLUMNS))


def _log_line(step, time_fs, temperature, e_pot, e_kin, e_cons, pressure, volume, unc):
    values = (time_fs, temperature, e_pot, e_kin, e_pot + e_kin, e_cons, pressure, volume, unc)
    return f" {step:9d} " + " ".join(f"{v:14.6f}" if abs(v) < 1e7 or not math.isfinite(v)
                                     else f"{v:14.6e}" for v in values)


def _snapshot(atoms, step, time_fs, uncertainty=None):
    """A plain copy for the trajectory: predictions under mlptools_* keys, never as labels."""
    from ase import Atoms

    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                  pbc=atoms.pbc, momenta=atoms.get_momenta())
    results = atoms.calc.results
    frame.info["step"] = int(step)
    frame.info["time_fs"] = float(time_fs)
    frame.info["temperature_K"] = float(atoms.get_temperature())
    if keys.ENERGY in results:
        frame.info[keys.PREDICTION_PREFIX + keys.ENERGY] = float(results[keys.ENERGY])
    if keys.FORCES in results:
        frame.arrays[keys.PREDICTION_PREFIX + keys.FORCES] = np.array(results[keys.FORCES])
    if uncertainty is not None:
        frame.info["max_uncertainty"] = float(uncertainty)
        for key in (keys.ENERGIES_UNCERTAINTY, keys.FORCES_UNCERTAINTY):
            if results.get(key) is not None:
                frame.arrays[key] = np.array(results[key], dtype=float)
        if results.get(keys.ENERGY_UNCERTAINTY) is not None:
            frame.info[keys.ENERGY_UNCERTAINTY] = float(results[keys.ENERGY_UNCERTAINTY])
    return frame


def final_frame(atoms, step, timestep_fs):
    """The end of a run as a frame to write: positions, cell, momenta, ``info["step"]`` and
    predictions under ``mlptools_*`` keys (never as reference labels)."""
    return _snapshot(atoms, step, step * timestep_fs)


def _write_frame(traj, frame):
    import ase.io

    ase.io.write(traj.stream, frame, format="extxyz")


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


class _Guard:
    """The per-step checks; cheap ones every step, the rest on log steps."""

    def __init__(self, atoms, settings, stages, calc):
        self.settings = settings
        self.n = max(len(atoms), 1)
        self.e_pot0 = None
        targets = [t for s in stages for t in (s.temperature_K, s.final_temperature_K)
                   if t is not None]
        self.t_limit = 5.0 * max(targets + [300.0, float(atoms.get_temperature())])
        self.request = None  # an uncertainty property to ask the calculator for explicitly
        self.enabled = settings.max_uncertainty is not None
        self.warned_forces = False
        self.calc = calc

    def setup(self, atoms):
        """Decide, once the first forces are known, where the uncertainty comes from."""
        self.e_pot0 = float(atoms.get_potential_energy())
        if not self.enabled:
            return
        if max_uncertainty(self.calc.results) is not None:
            return
        implemented = getattr(self.calc, "implemented_properties", ())
        for key in (keys.ENERGIES_UNCERTAINTY, keys.FORCES_UNCERTAINTY):
            if key in implemented:
                self.request = key
                return
        log.warning("%s reports no uncertainty (%s or %s): --max-uncertainty is ignored",
                    type(self.calc).__name__, keys.ENERGIES_UNCERTAINTY, keys.FORCES_UNCERTAINTY)
        self.enabled = False

    def uncertainty(self, atoms):
        if not self.enabled:
            return None
        if self.request is not None and self.request not in self.calc.results:
            self.calc.get_property(self.request, atoms)
        found = max_uncertainty(self.calc.results)
        if found is None:
            return None
        value, key = found
        if key == keys.FORCES_UNCERTAINTY and not self.warned_forces:
            self.warned_forces = True
            log.warning("the calculator reports force uncertainties only: --max-uncertainty "
                        "is compared with the largest per-atom force std (eV/Å)")
        return value

    def every_step(self, step, e_pot):
        if not math.isfinite(e_pot):
            raise ComputationError(f"step {step}: the potential energy became {e_pot} (the run "
                                   "blew up: timestep too large or the potential failed)")

    def on_log(self, step, atoms, e_pot, previous_positions):
        s = self.settings
        if previous_positions is not None:
            moved = np.sqrt(((atoms.positions - previous_positions) ** 2).sum(axis=1))
            k = int(np.argmax(moved))
            if moved[k] > s.max_step_A:
                raise ComputationError(
                    f"step {step}: atom {k} moved {moved[k]:.2f} Å in one step (more than "
                    f"{s.max_step_A} Å): lost atom, the run blew up (timestep too large?)")
        change = abs(e_pot - self.e_pot0) / self.n
        if change > s.max_energy_change_eV:
            raise ComputationError(
                f"step {step}: potential energy changed by {change:.3g} eV/atom since the start "
                f"(more than {s.max_energy_change_eV}): the run blew up")
        temperature = atoms.get_temperature()
        if s.ensemble != "nve" and temperature > self.t_limit:
            raise ComputationError(f"step {step}: temperature {temperature:.0f} K is more than 5× "
                                   "the target: the run blew up (timestep too large?)")


def run_md(atoms, calc, settings, stages, *, rng, traj=None, log_file=None, checkpoint=None,
           stop_requested=None, progress=None):
    """Run molecular dynamics through ``stages``, resuming from ``checkpoint`` if it exists.

    Parameters
    ----------
    atoms : ase.Atoms
        Start structure (not modified). Momenta are used when present, else drawn from
        Maxwell–Boltzmann at the first stage's temperature (at rest without one).
    calc : ase Calculator
    settings : MDSettings
    stages : list of Stage
    rng : numpy.random.Generator
        Initial velocities and stochastic thermostats; its state is checkpointed.
    traj, log_file : mlptools.io.resumable.ResumableText or None
        Trajectory (extxyz, every ``settings.traj_stride`` steps, from step 0) and thermo log.
    checkpoint : str or None
        Checkpoint path (``.npz``): read to resume when it exists, written every
        ``checkpoint_stride`` steps, on a stop and at the end.
    stop_requested : callable or None
        Checked every step; when it returns True the run checkpoints and returns
        ``status="terminated"``.
    progress : callable or None
        ``progress(step, total)`` called on log steps.

    Returns
    -------
    MDResult

    Raises
    ------
    ParameterError
        Inconsistent settings, or a checkpoint written by another run.
    ComputationError
        The calculator failed or the run blew up (NaN, lost atom, energy or temperature
        runaway); the message names the step.
    """
    stages = list(stages)
    if not stages:
        raise ParameterError("no MD stages to run")
    for stage in stages:
        if stage.steps < 0:
            raise ParameterError(f"stage {stage.name}: steps must be >= 0, got {stage.steps}")
        for t in (stage.temperature_K, stage.final_temperature_K):
            if t is not None and not (math.isfinite(t) and t >= 0):
                raise ParameterError(f"stage {stage.name}: temperature must be >= 0 K, got {t}")
    total = sum(s.steps for s in stages)
    stop_requested = stop_requested or (lambda: False)
    started = time.monotonic()

    work = atoms.copy()
    work.calc = calc
    meta = None
    if checkpoint is not None and os.path.exists(checkpoint):
        meta, arrays = _read_checkpoint(checkpoint)
        _check_compatible(checkpoint, meta, settings, stages, work)
        work.set_cell(arrays["cell"])
        work.set_pbc(arrays["pbc"])
        work.set_positions(arrays["positions"], apply_constraint=False)
        work.set_momenta(arrays["momenta"], apply_constraint=False)
        rng.bit_generator.state = meta["rng_state"]
        log.info("resuming from %s at step %d", checkpoint, meta["step"])
    elif not work.has("momenta") or not np.any(work.get_momenta()):
        t0 = stages[0].temperature_K
        if t0:
            thermalize(work, t0, rng)
        else:
            work.set_momenta(np.zeros((len(work), 3)))

    step = meta["step"] if meta else 0
    n_frames = meta["n_frames"] if meta else 0
    if traj is not None:
        traj.resume_at(meta["traj_bytes"]) if meta else traj.start()
    if log_file is not None:
        if meta:
            log_file.resume_at(meta["log_bytes"])
        else:
            log_file.start()
            log_file.stream.write(_log_header() + "\n")
    result = MDResult(atoms=work, step=step, status="done", resumed_from=step if meta else None,
                      n_frames=n_frames)
    guard = _Guard(work, settings, stages, calc)
    dt_fs = settings.timestep_fs
    last_ckpt = [meta["step"] if meta else None]
    dyn = None

    def save():
        if checkpoint is None:
            return
        for f in (traj, log_file):
            if f is not None:
                f.flush()
        k_stage, _ = _locate(stages, step)
        _write_checkpoint(checkpoint, {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": step,
            "stage": k_stage, "settings": settings.to_dict(),
            "stages": [dataclasses.asdict(s) for s in stages], "n_atoms": len(work),
            "numbers_sha": _numbers_digest(work), "rng_state": rng.bit_generator.state,
            "e_pot0": guard.e_pot0, "n_frames": n_frames,
            "traj_bytes": traj.size() if traj is not None else 0,
            "log_bytes": log_file.size() if log_file is not None else 0,
        }, work, dyn)
        last_ckpt[0] = step

    def thermo(e_pot):
        e_kin = float(work.get_kinetic_energy())
        try:
            e_cons = float(dyn.get_conserved_energy())
        except (AttributeError, NotImplementedError):
            e_cons = e_pot + e_kin
        return e_kin, e_cons

    def record(e_pot, unc, previous_positions):
        nonlocal n_frames
        if settings.log_stride and step % settings.log_stride == 0 or step == total:
            guard.on_log(step, work, e_pot, previous_positions)
            if log_file is not None:
                e_kin, e_cons = thermo(e_pot)
                volume = work.get_volume() if work.cell.rank == 3 else math.nan
                log_file.stream.write(_log_line(
                    step, step * dt_fs, work.get_temperature(), e_pot, e_kin, e_cons,
                    _pressure_GPa(work), volume, math.nan if unc is None else unc) + "\n")
            if progress is not None:
                progress(step, total)
        if traj is not None and settings.traj_stride and step % settings.traj_stride == 0:
            _write_frame(traj, _snapshot(work, step, step * dt_fs))
            n_frames += 1

    try:
        k_stage, k_in = _locate(stages, step)
        first = True
        while True:
            stage = stages[k_stage]
            dyn = _make_dynamics(work, settings, stage.target(k_in), rng)
            if first:
                if meta:
                    _restore_dynamics_state(dyn, {k.split(":", 1)[1]: v for k, v in arrays.items()
                                                  if k.startswith("state:")})
                e_pot = _energy(work, step)
                guard.setup(work)
                if meta is not None:  # the blow-up check compares with the very first step
                    guard.e_pot0 = meta["e_pot0"]
                unc = guard.uncertainty(work)
                if meta is None:
                    record(e_pot, unc, None)
                first = False
                if unc is not None and unc > settings.max_uncertainty:
                    return _stop_extrapolation(result, work, step, dt_fs, unc)
            ramp = stage.final_temperature_K is not None and stage.final_temperature_K != \
                stage.temperature_K
            takes_forces = "forces" in inspect.signature(dyn.step).parameters
            forces = None
            while k_in < stage.steps:
                if stop_requested():
                    save()
                    result.status = "terminated"
                    return _finish(result, work, step, n_frames, last_ckpt, started, meta)
                if ramp:
                    _set_target(dyn, settings, stage.target(k_in + 1))
                previous = work.positions.copy()
                try:
                    # handing the last forces back saves ASE's compare_atoms on every step
                    forces = dyn.step(forces) if takes_forces else dyn.step()
                except ComputationError:
                    raise
                except Exception as exc:  # the calculator failing mid-run
                    raise ComputationError(f"step {step + 1}: the calculator failed "
                                           f"({type(exc).__name__}: {exc})") from None
                step += 1
                k_in += 1
                # every integrator ends its step with a force call at the new positions, so
                # the energy is in calc.results already (no second check of the atoms)
                e_pot = calc.results.get("energy")
                e_pot = _energy(work, step) if e_pot is None else float(e_pot)
                guard.every_step(step, e_pot)
                unc = guard.uncertainty(work)
                record(e_pot, unc, previous)
                if unc is not None and unc > settings.max_uncertainty:
                    return _stop_extrapolation(
                        _finish(result, work, step, n_frames, last_ckpt, started, meta),
                        work, step, dt_fs, unc)
                if settings.checkpoint_stride and step % settings.checkpoint_stride == 0:
                    save()
            if k_stage == len(stages) - 1:
                break
            k_stage, k_in = k_stage + 1, 0
        if last_ckpt[0] != step:
            save()
        result.uncertainty = guard.uncertainty(work)
        return _finish(result, work, step, n_frames, last_ckpt, started, meta)
    finally:
        for f in (traj, log_file):
            if f is not None:
                f.close()


def _energy(atoms, step):
    try:
        return float(atoms.get_potential_energy())
    except ComputationError:
        raise
    except Exception as exc:
        raise ComputationError(f"step {step}: the calculator failed ({type(exc).__name__}: "
                               f"{exc})") from None


def _locate(stages, step):
    """(stage index, steps done within it) of a global step."""
    for k, stage in enumerate(stages):
        if step < stage.steps or k == len(stages) - 1:
            return k, step
        step -= stage.steps
    raise AssertionError("unreachable")


def _finish(result, atoms, step, n_frames, last_ckpt, started, meta):
    result.atoms = atoms
    result.step = step
    result.n_frames = n_frames
    result.checkpoint_step = last_ckpt[0]
    result.wall_s = time.monotonic() - started
    result.steps_now = step - (meta["step"] if meta else 0)
    return result


def _stop_extrapolation(result, atoms, step, dt_fs, unc):
    result.status = "extrapolation"
    result.step = step
    result.uncertainty = unc
    frame = _snapshot(atoms, step, step * dt_fs, uncertainty=unc)
    frame.info[keys.CONFIG_TYPE] = "md_extrapolation"
    result.offending = frame
    return result
