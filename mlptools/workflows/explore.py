"""Self-steering database growth: explore with an interim potential, keep what it does not know.

Library half of ``mlptools build-db --explore MODEL``. From each generated structure a short
Langevin MD run with the interim potential (a fitted model, or any calculator) collects candidate
snapshots every ``stride`` steps. Candidates are ranked by the potential's own predicted
uncertainty — the largest per-atom energy uncertainty (``energies_uncertainty``, eV), else the
largest force uncertainty (``forces_uncertainty``, eV/Å), else the total-energy uncertainty —
and the ``keep`` most uncertain are returned for labelling with the reference calculator: the
iterative scheme of GAP's active learning. A potential that reports no uncertainty gets
farthest-point sampling in descriptor space instead (structure-averaged SOAP; distances from the
generated structures and from the frames already picked), so the selection still covers what the
database lacks.

A trajectory that blows up (NaN positions, an exception in the potential) ends that structure's
exploration with a warning; the candidates collected before it are kept.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from mlptools.errors import ComputationError, ParameterError
from mlptools.keys import ENERGIES_UNCERTAINTY, ENERGY_UNCERTAINTY, FORCES_UNCERTAINTY
from mlptools.models.sparsify import farthest_point_order
from mlptools.workflows import structures as st

__all__ = ["ExploreSettings", "ExploreResult", "explore", "uncertainty_score"]

log = logging.getLogger(__name__)

EXPLORE_SCORE = "explore_score"  # info key of a kept frame: its uncertainty (eV or eV/Å)
EXPLORE_SOURCE = "explore_source"  # info key: structure id of the structure it was grown from


@dataclasses.dataclass(frozen=True)
class ExploreSettings:
    """How to explore with the interim potential.

    Attributes
    ----------
    temperature_K : float, K, Langevin thermostat target
    steps : int, MD steps from each generated structure
    stride : int, steps between candidate snapshots
    keep : int, candidates kept in total (the most uncertain)
    timestep_fs : float, fs
    friction : float, 1/fs, Langevin friction
    """

    temperature_K: float = 1000.0
    steps: int = 200
    stride: int = 10
    keep: int = 50
    timestep_fs: float = 1.0
    friction: float = 0.02

    def __post_init__(self):
        if not (self.temperature_K > 0 and self.timestep_fs > 0 and self.friction >= 0):
            raise ParameterError("explore needs temperature_K > 0, timestep_fs > 0, friction >= 0")
        if self.steps < 1 or self.stride < 1 or self.keep < 1:
            raise ParameterError("explore needs steps >= 1, stride >= 1 and keep >= 1")

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ExploreResult:
    """Frames kept for labelling, and what was seen.

    Attributes
    ----------
    frames : list of ase.Atoms, unlabelled, most uncertain first
    scores : (n_candidates,) float64, score of every candidate (NaN when the potential reports
        no uncertainty and farthest-point sampling chose)
    method : str, ``"uncertainty"`` or ``"farthest-point"``
    n_failed : int, trajectories that ended early
    """

    frames: list
    scores: np.ndarray
    method: str
    n_failed: int = 0


def uncertainty_score(results):
    """The exploration score of one structure from a calculator's ``results``, or None.

    The largest per-atom energy uncertainty (eV) when present, else the largest per-atom force
    uncertainty (eV/Å), else the total-energy uncertainty (eV).
    """
    for key in (ENERGIES_UNCERTAINTY, FORCES_UNCERTAINTY):
        value = results.get(key)
        if value is not None and np.size(value):
            return float(np.max(value))
    value = results.get(ENERGY_UNCERTAINTY)
    return None if value is None else float(value)


def _trajectory_candidates(atoms, calc, rng, settings):
    """Snapshots (and their scores) of one Langevin run; raises ComputationError on blow-up."""
    from ase import units
    from ase.md.langevin import Langevin

    work = st._clean(atoms)
    work.calc = calc
    st._thermalize(work, settings.temperature_K, rng)
    dyn = Langevin(work, settings.timestep_fs * units.fs, temperature_K=settings.temperature_K,
                   friction=settings.friction / units.fs, fixcm=False, rng=rng)
    snaps, scores = [], []
    done = 0
    try:
        while done < settings.steps:
            n = min(settings.stride, settings.steps - done)
            dyn.run(n)
            done += n
            st._check_finite(work, "explore md")
            _predict(work, calc)  # results of this exact configuration
            scores.append(uncertainty_score(calc.results))
            snaps.append(st._strip_velocities(st._clean(work)))
    except ComputationError as exc:
        return snaps, scores, str(exc)
    except Exception as exc:  # the potential failed on a configuration it was driven into
        return snaps, scores, f"{type(exc).__name__}: {exc}"
    return snaps, scores, None


def _predict(atoms, calc):
    """Energy and, where the calculator has one, its per-atom uncertainty.

    A fitted model computes its variance only when asked for an uncertainty key (it costs more
    than the energy), so a plain energy call would leave no score and fall back to farthest-point
    sampling.
    """
    if ENERGIES_UNCERTAINTY in getattr(calc, "implemented_properties", ()):
        calc.get_property(ENERGIES_UNCERTAINTY, atoms)
    else:
        atoms.get_potential_energy()


def _mean_descriptors(frames):
    """Structure-averaged SOAP vectors (n_frames, n_features): a cheap fingerprint for sampling."""
    from mlptools.descriptors.hypers import SoapHypers
    from mlptools.descriptors.soap import soap_power_spectrum

    species = tuple(sorted({int(z) for a in frames for z in a.numbers}))
    hypers = SoapHypers.from_dict({"cutoff": 4.5, "n_max": 4, "l_max": 3, "sigma": 0.5,
                                   "species": list(species)})
    ds = soap_power_spectrum(frames, hypers)
    sums = np.zeros((len(frames), ds.n_features))
    np.add.at(sums, ds.structure_index, ds.features)
    return sums / np.bincount(ds.structure_index, minlength=len(frames))[:, None]


def explore(frames, calc, rng, settings=None, *, id_key="structure_id"):
    """Run the interim potential from every structure and keep the most uncertain snapshots.

    Parameters
    ----------
    frames : list of ase.Atoms, the generated structures (periodic or not); not modified
    calc : ase Calculator, the interim potential (shared; runs one structure at a time)
    rng : numpy.random.Generator, velocities and the Langevin noise
    settings : ExploreSettings
    id_key : str, info key of a structure's id; kept frames get ``<id>-x<k>``

    Returns
    -------
    ExploreResult
    """
    settings = settings or ExploreSettings()
    if not frames:
        return ExploreResult(frames=[], scores=np.zeros(0), method="uncertainty")
    candidates, scores, n_failed = [], [], 0
    for atoms in frames:
        snaps, snap_scores, failure = _trajectory_candidates(atoms, calc, rng, settings)
        source = atoms.info.get(id_key, "")
        for k, snap in enumerate(snaps):
            snap.info[EXPLORE_SOURCE] = source
            snap.info[id_key] = f"{source}-x{k}"
            candidates.append(snap)
        scores.extend(snap_scores)
        if failure is not None:
            n_failed += 1
            log.warning("explore: trajectory from %s ended after %d snapshots: %s",
                        source or atoms.get_chemical_formula(), len(snaps), failure)
    if not candidates:
        raise ComputationError("explore: every trajectory failed before its first snapshot; "
                               "lower --explore-temperature or check the potential")
    if all(s is not None for s in scores):
        score_arr = np.asarray(scores, dtype=np.float64)
        # stable: equal scores keep trajectory order, so the result is reproducible
        order = np.argsort(-score_arr, kind="stable")[: settings.keep]
        method = "uncertainty"
        for k in order:
            candidates[k].info[EXPLORE_SCORE] = float(score_arr[k])
    else:
        log.warning("explore: the potential reports no uncertainty; choosing by farthest-point "
                    "sampling in descriptor space")
        score_arr = np.full(len(candidates), np.nan)
        x = _mean_descriptors(list(frames) + candidates)
        order = farthest_point_order(x[len(frames):], x[: len(frames)], settings.keep)
        method = "farthest-point"
    return ExploreResult(frames=[candidates[k] for k in order], scores=score_arr, method=method,
                         n_failed=n_failed)
