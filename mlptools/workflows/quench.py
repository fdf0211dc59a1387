"""Melt–quench amorphous structures: randomise → melt → equilibrate → quench → anneal → relax.

Library half of ``mlptools quench``. The MD stages run through :func:`mlptools.workflows.md.run_md`
(NVT Langevin by default, whose target temperature can ramp), so a quench is checkpointed and
resumes exactly like ``md``. The final structure is relaxed at fixed cell with ASE's FIRE and
analysed with :func:`mlptools.analysis.structure.analyze_structures`.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

from mlptools.errors import ComputationError, ParameterError
from mlptools.workflows.md import MDSettings, Stage, run_md

__all__ = ["QuenchProtocol", "QuenchResult", "melt_quench", "random_box"]

log = logging.getLogger(__name__)

_G_PER_CM3_TO_AMU_PER_A3 = 1.0 / 1.66053906660


@dataclasses.dataclass(frozen=True)
class QuenchProtocol:
    """Temperatures (K), times (ps) and rate (K/s) of a melt–quench.

    The liquid is held at ``melt_K`` for ``melt_ps``, then at ``liquid_K`` (default: ``melt_K``)
    for ``equilibrate_ps``, cooled linearly at ``quench_rate_K_per_s`` down to ``anneal_K``, and
    held there for ``anneal_ps``. ``timestep_fs`` is the MD time step.
    """

    melt_K: float = 3000.0
    quench_rate_K_per_s: float = 1e13
    anneal_K: float = 500.0
    liquid_K: float | None = None
    melt_ps: float = 10.0
    equilibrate_ps: float = 10.0
    anneal_ps: float = 10.0
    timestep_fs: float = 1.0

    def __post_init__(self):
        for name in ("melt_K", "quench_rate_K_per_s", "timestep_fs"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ParameterError(f"{name} must be > 0, got {value}")
        for name in ("anneal_K", "melt_ps", "equilibrate_ps", "anneal_ps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ParameterError(f"{name} must be >= 0, got {value}")
        if self.liquid_K is not None and not self.liquid_K > 0:
            raise ParameterError(f"liquid_K must be > 0, got {self.liquid_K}")
        if self.anneal_K >= self.liquid:
            raise ParameterError(f"the anneal temperature ({self.anneal_K} K) must be below the "
                                 f"liquid's ({self.liquid} K)")

    @property
    def liquid(self):
        """Temperature (K) the quench starts from."""
        return self.melt_K if self.liquid_K is None else self.liquid_K

    def _steps(self, ps):
        return int(round(ps * 1000.0 / self.timestep_fs))

    @property
    def quench_ps(self):
        """Duration of the linear quench (ps)."""
        return (self.liquid - self.anneal_K) / self.quench_rate_K_per_s * 1e12

    def stages(self):
        """The MD stages: melt, equilibrate, quench (a ramp), anneal."""
        return [
            Stage("melt", self._steps(self.melt_ps), self.melt_K),
            Stage("equilibrate", self._steps(self.equilibrate_ps), self.liquid),
            Stage("quench", max(1, self._steps(self.quench_ps)), self.liquid, self.anneal_K),
            Stage("anneal", self._steps(self.anneal_ps), self.anneal_K),
        ]


@dataclasses.dataclass
class QuenchResult:
    """The relaxed structure (``atoms``), the MD result (``md``), relaxation steps and the final
    largest force (eV/Å)."""

    atoms: object
    md: object
    relax_steps: int = 0
    fmax_eV_per_A: float = math.nan


def random_box(symbol, n_atoms, density_g_cm3, rng, *, min_distance=None, max_attempts=2000):
    """``n_atoms`` of ``symbol`` at random in a cubic periodic box of the given mass density.

    Atoms are placed one by one, each at least ``min_distance`` Å (minimum image) from the
    others [default: 0.85 × twice the covalent radius].

    Raises
    ------
    ComputationError
        An atom could not be placed (the density is too high for ``min_distance``).
    """
    from ase import Atoms
    from ase.data import atomic_masses, atomic_numbers, covalent_radii

    if symbol not in atomic_numbers:
        raise ParameterError(f"unknown element {symbol!r}")
    if n_atoms < 1 or not density_g_cm3 > 0:
        raise ParameterError("random box needs n_atoms >= 1 and a density > 0 g/cm³")
    z = atomic_numbers[symbol]
    if min_distance is None:
        min_distance = 0.85 * 2.0 * covalent_radii[z]
    volume = n_atoms * atomic_masses[z] / (density_g_cm3 * _G_PER_CM3_TO_AMU_PER_A3)
    edge = volume ** (1.0 / 3.0)
    placed = np.zeros((0, 3))
    for k in range(int(n_atoms)):
        for _ in range(int(max_attempts)):
            point = rng.random(3) * edge
            delta = placed - point
            delta -= edge * np.round(delta / edge)
            if not len(placed) or np.min(np.einsum("nc,nc->n", delta, delta)) >= min_distance**2:
                placed = np.vstack([placed, point])
                break
        else:
            raise ComputationError(
                f"random box: could not place atom {k + 1} of {n_atoms} at {min_distance:.2f} Å "
                f"from the others at {density_g_cm3} g/cm³")
    return Atoms(numbers=[z] * int(n_atoms), positions=placed, cell=[edge] * 3, pbc=True)


def relax_positions(atoms, *, fmax=0.01, steps=2000):
    """Relax positions at fixed cell with FIRE; returns (steps taken, final max force eV/Å)."""
    from ase.optimize import FIRE

    opt = FIRE(atoms, logfile=None)
    try:
        opt.run(fmax=fmax, steps=steps)
    except Exception as exc:
        raise ComputationError(f"relaxation failed ({type(exc).__name__}: {exc})") from None
    forces = atoms.get_forces()
    return int(opt.nsteps), float(np.sqrt((forces**2).sum(axis=1)).max()) if len(atoms) else 0.0


def melt_quench(atoms, calc, protocol, *, rng, settings=None, traj=None, log_file=None,
                checkpoint=None, stop_requested=None, progress=None, relax_fmax=0.01,
                relax_steps=2000):
    """Melt, equilibrate, quench, anneal (MD) and relax ``atoms``.

    Parameters
    ----------
    atoms : ase.Atoms
        The start (e.g. :func:`random_box`), fully periodic.
    calc : ase Calculator
    protocol : QuenchProtocol
    rng : numpy.random.Generator
    settings : MDSettings, optional
        Default: NVT Langevin, ``protocol.timestep_fs``, tdamp 100 fs.
    traj, log_file, checkpoint, stop_requested, progress
        As in :func:`mlptools.workflows.md.run_md`.
    relax_fmax : float, eV/Å
        Force criterion of the final relaxation (0 skips it).

    Returns
    -------
    QuenchResult
        ``md.status`` is ``"terminated"`` (SIGTERM; nothing relaxed) or ``"done"``.
    """
    if settings is None:
        settings = MDSettings(ensemble="nvt", timestep_fs=protocol.timestep_fs,
                              thermostat="langevin", tdamp_fs=100.0)
    if settings.timestep_fs != protocol.timestep_fs:
        raise ParameterError("settings and protocol disagree on the time step")
    stages = protocol.stages()
    log.info("melt-quench: %s", ", ".join(f"{s.name} {s.steps} steps" for s in stages))
    md = run_md(atoms, calc, settings, stages, rng=rng, traj=traj, log_file=log_file,
                checkpoint=checkpoint, stop_requested=stop_requested, progress=progress)
    result = QuenchResult(atoms=md.atoms, md=md)
    if md.status != "done":
        return result
    final = md.atoms.copy()
    final.calc = calc
    if "momenta" in final.arrays:
        del final.arrays["momenta"]
    if relax_fmax > 0:
        result.relax_steps, result.fmax_eV_per_A = relax_positions(
            final, fmax=relax_fmax, steps=relax_steps)
    result.atoms = final
    return result
