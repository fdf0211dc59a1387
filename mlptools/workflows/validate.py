"""Errors of a potential on labelled structures: predictions, RMSE/MAE tables, force details.

The RMSE/MAE table per config type (energy meV/atom, forces eV/Å, stress GPa) is
:func:`mlptools.metrics.compute_errors`, shared with ``fit``; this module adds what validation
needs on top of it: running a calculator over the frames (predictions stored under
``mlptools_*`` keys beside the untouched reference labels), per-component and relative force
errors, parity data for the plots, and the threshold checks of ``validate``.

Array suffixes: ``n`` atoms, ``c`` Cartesian, ``v`` Voigt.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from mlptools import keys
from mlptools.calculators import check_species_supported
from mlptools.errors import ComputationError, InputError, Terminated
from mlptools.metrics import OVERALL, compute_errors
from mlptools.units import EV_PER_A3_TO_GPA

__all__ = [
    "ForceDetail",
    "ValidationErrors",
    "check_thresholds",
    "force_details",
    "parity_data",
    "predict",
    "predict_frames",
    "reference_labels",
    "shift_energies",
    "validation_errors",
]

PREDICTED_ENERGY = keys.PREDICTION_PREFIX + keys.ENERGY
PREDICTED_FORCES = keys.PREDICTION_PREFIX + keys.FORCES
PREDICTED_STRESS = keys.PREDICTION_PREFIX + keys.STRESS


def reference_labels(atoms):
    """``(energy, forces, stress)`` reference labels of a frame (None where absent).

    Energy eV, forces (n_atoms, 3) eV/Å, stress Voigt-6 eV/Å³ (ASE sign), as
    :func:`mlptools.io.structures.iter_frames` leaves them in ``atoms.calc.results``.
    """
    results = atoms.calc.results if atoms.calc is not None else {}
    return (results.get(keys.ENERGY), results.get(keys.FORCES),
            results.get(keys.STRESS) if atoms.cell.rank == 3 else None)


def predict(atoms, calc, where, *, properties=("energy", "forces", "stress")):
    """A copy of ``atoms`` with ``calc``'s predictions beside its reference labels.

    The reference labels stay in ``atoms.calc.results`` (a SinglePointCalculator); predictions go
    to ``info["mlptools_energy"]`` (eV), ``arrays["mlptools_forces"]`` (eV/Å) and
    ``info["mlptools_stress"]`` (Voigt-6, eV/Å³; only for 3-D periodic cells), so writing the
    frame keeps both.

    Parameters
    ----------
    atoms : ase.Atoms
    calc : ASE calculator
    where : str
        ``"file: frame N"``, the prefix of error messages.
    properties : sequence of str
        Which of energy, forces, stress to predict.

    Raises
    ------
    InputError
        The potential has no parameters for a species of the frame.
    ComputationError
        The calculator failed on the frame.
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    check_species_supported(calc, atoms.numbers, where)
    work = atoms.copy()
    work.calc = calc
    out = atoms.copy()
    ref = atoms.calc.results if atoms.calc is not None else {}
    out.calc = SinglePointCalculator(out, **ref) if ref else None
    try:
        if "energy" in properties:
            out.info[PREDICTED_ENERGY] = float(work.get_potential_energy())
        if "forces" in properties:
            out.arrays[PREDICTED_FORCES] = np.array(work.get_forces(), dtype=np.float64)
        if "stress" in properties and atoms.cell.rank == 3 and np.all(atoms.pbc):
            out.info[PREDICTED_STRESS] = np.array(work.get_stress(voigt=True), dtype=np.float64)
    except Terminated:  # SIGTERM arrived in the calculator: not a calculator failure
        raise
    except Exception as exc:  # any calculator failure, reported with the frame
        raise ComputationError(f"{where}: {type(exc).__name__}: {exc}") from None
    return out


def shift_energies(frames):
    """Remove the mean per-atom energy offset of the predictions (in place); returns it.

    Potentials with different energy zeros (an empirical potential against DFT total energies)
    differ by a constant per atom that swamps the energy RMSE. The offset
    δ = mean over frames of (E_pred − E_ref)/n (eV/atom) is subtracted from every
    ``mlptools_energy`` (as δ·n); the references are untouched.

    Returns
    -------
    float or None
        δ in eV/atom (None when no frame has both energies).
    """
    pairs = [(a, reference_labels(a)[0], a.info.get(PREDICTED_ENERGY)) for a in frames]
    pairs = [(a, e_ref, e_pred) for a, e_ref, e_pred in pairs
             if e_ref is not None and e_pred is not None]
    if not pairs:
        return None
    offset = float(np.mean([(e_pred - e_ref) / len(a) for a, e_ref, e_pred in pairs]))
    for a, _, e_pred in pairs:
        a.info[PREDICTED_ENERGY] = e_pred - offset * len(a)
    return offset


def predict_frames(items, calc, *, comm=None):
    """:func:`predict` for a list of ``(where, atoms)``, shared between MPI ranks.

    With an mpi4py ``comm``, rank r predicts items r, r + size, ... and every rank returns the
    full list in input order. An error on any rank (species, calculator failure) is raised on
    every rank, the first in input order, so no rank is left waiting.
    """
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    mine = {}
    for i in range(rank, len(items), size):
        where, atoms = items[i]
        try:
            mine[i] = predict(atoms, calc, where)
        except (InputError, ComputationError) as exc:
            mine[i] = exc
            break
    if comm is not None:
        merged = {}
        for part in comm.allgather(mine):
            merged.update(part)
        mine = merged
    for i in sorted(mine):
        if isinstance(mine[i], Exception):
            raise mine[i]
    return [mine[i] for i in range(len(items))]


@dataclasses.dataclass(frozen=True)
class ForceDetail:
    """Force errors of one config type beyond the RMSE/MAE of :mod:`mlptools.metrics`.

    Attributes
    ----------
    config_type : str
    n_atoms : int, atoms with forces on both sides
    rmse_x, rmse_y, rmse_z : float, eV/Å, per Cartesian component
    rms_reference : float, eV/Å, RMS of the reference force components
    relative_rmse : float, %, 100 · RMSE / RMS(reference) (NaN if the reference forces are 0)
    max_error : float, eV/Å, largest |ΔF| of an atom (vector norm)
    """

    config_type: str
    n_atoms: int
    rmse_x: float
    rmse_y: float
    rmse_z: float
    rms_reference: float
    relative_rmse: float
    max_error: float

    def to_dict(self):
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in dataclasses.asdict(self).items()}


def force_details(frames):
    """:class:`ForceDetail` per config type (sorted) and ``"overall"`` last."""
    groups = {}
    for atoms in frames:
        _, f_ref, _ = reference_labels(atoms)
        f_pred = atoms.arrays.get(PREDICTED_FORCES)
        if f_ref is None or f_pred is None:
            continue
        ct = str(atoms.info.get(keys.CONFIG_TYPE, keys.DEFAULT_CONFIG_TYPE))
        groups.setdefault(ct, ([], []))
        groups[ct][0].append(np.asarray(f_pred) - np.asarray(f_ref))
        groups[ct][1].append(np.asarray(f_ref))

    def detail(name, diffs, refs):
        d_nc = np.concatenate(diffs)
        r_nc = np.concatenate(refs)
        rmse_c = np.sqrt(np.mean(d_nc**2, axis=0))
        rms_ref = float(np.sqrt(np.mean(r_nc**2)))
        rmse = float(np.sqrt(np.mean(d_nc**2)))
        rel = 100.0 * rmse / rms_ref if rms_ref > 0 else math.nan
        return ForceDetail(name, len(d_nc), *(float(x) for x in rmse_c), rms_ref, rel,
                           float(np.linalg.norm(d_nc, axis=1).max()))

    rows = [detail(ct, *groups[ct]) for ct in sorted(groups)]
    if groups:
        rows.append(detail(OVERALL, [d for g in groups.values() for d in g[0]],
                           [r for g in groups.values() for r in g[1]]))
    return rows


def parity_data(frames):
    """Reference vs predicted values per config type, for parity plots.

    Returns
    -------
    dict
        ``{"energy": {ct: (ref, pred)}, "forces": {...}, "stress": {...}}`` with energies in
        eV/atom, force components in eV/Å and stress components in GPa (1-D arrays).
    """
    out = {"energy": {}, "forces": {}, "stress": {}}
    for atoms in frames:
        ct = str(atoms.info.get(keys.CONFIG_TYPE, keys.DEFAULT_CONFIG_TYPE))
        e_ref, f_ref, s_ref = reference_labels(atoms)
        pairs = {
            "energy": (e_ref, atoms.info.get(PREDICTED_ENERGY), 1.0 / len(atoms)),
            "forces": (f_ref, atoms.arrays.get(PREDICTED_FORCES), 1.0),
            "stress": (s_ref, atoms.info.get(PREDICTED_STRESS), EV_PER_A3_TO_GPA),
        }
        for name, (ref, pred, scale) in pairs.items():
            if ref is None or pred is None:
                continue
            lists = out[name].setdefault(ct, ([], []))
            lists[0].append(np.ravel(ref) * scale)
            lists[1].append(np.ravel(pred) * scale)
    return {name: {ct: (np.concatenate(r), np.concatenate(p)) for ct, (r, p) in d.items()}
            for name, d in out.items()}


@dataclasses.dataclass
class ValidationErrors:
    """Everything ``validate`` reports about errors on labelled data.

    Attributes
    ----------
    report : mlptools.metrics.ErrorReport
        RMSE/MAE per config type and overall, with counts.
    forces : list of ForceDetail
    energy_offset : float or None
        eV/atom removed from the predictions by :func:`shift_energies` (None: not shifted).
    """

    report: object
    forces: list
    energy_offset: float | None = None

    def to_dict(self):
        return {**self.report.to_dict(), "forces": [f.to_dict() for f in self.forces],
                "energy_offset_eV_per_atom": self.energy_offset}

    def forces_text(self):
        """A fixed-width table of the per-component and relative force errors."""
        if not self.forces:
            return ""
        width = max([len("config_type")] + [len(f.config_type) for f in self.forces])
        head = (f"{'config_type':<{width}} {'atoms':>7} | {'RMSE x':>7} {'RMSE y':>7} "
                f"{'RMSE z':>7} {'max|dF|':>8} | {'RMS ref':>7} {'rel %':>6}")
        lines = [head, f"{'':<{width}} {'':>7} | {'eV/Å':>32} | {'eV/Å':>7} {'':>6}",
                 "-" * len(head)]
        for f in self.forces:
            rel = "-" if math.isnan(f.relative_rmse) else f"{f.relative_rmse:6.2f}"
            lines.append(f"{f.config_type:<{width}} {f.n_atoms:>7} | {f.rmse_x:7.4f} "
                         f"{f.rmse_y:7.4f} {f.rmse_z:7.4f} {f.max_error:8.4f} | "
                         f"{f.rms_reference:7.4f} {rel:>6}")
        return "\n".join(lines) + "\n"


def validation_errors(frames, *, shift=False):
    """Error tables of frames carrying reference labels and ``mlptools_*`` predictions.

    With ``shift``, the mean per-atom energy offset is removed first (:func:`shift_energies`,
    which modifies the frames' predicted energies).
    """
    frames = list(frames)
    offset = shift_energies(frames) if shift else None
    return ValidationErrors(report=compute_errors(frames), forces=force_details(frames),
                            energy_offset=offset)


def check_thresholds(errors=None, rows=(), *, max_energy_rmse=None, max_force_rmse=None,
                     max_stress_rmse=None, max_property_error=None, max_errors=None):
    """The failed checks, as one-line strings (empty when everything passes or nothing is set).

    Parameters
    ----------
    errors : ValidationErrors, optional
        Its ``overall`` row is checked against the RMSE limits.
    rows : list of mlptools.workflows.properties.PropertyRow
        Properties with a reference are checked against ``max_property_error``.
    max_energy_rmse : float, meV/atom
    max_force_rmse : float, eV/Å
    max_stress_rmse : float, GPa
    max_property_error : float, % (|model − reference| / |reference|), for every property
    max_errors : dict of str to float, %, per property key (overrides max_property_error);
        a key the model did not compute, or without a reference value, fails
    """
    failed = []
    if errors is not None:
        overall = errors.report.overall
        for name, limit, value, unit in (
            ("energy RMSE", max_energy_rmse, overall.energy_rmse, "meV/atom"),
            ("force RMSE", max_force_rmse, overall.forces_rmse, "eV/Å"),
            ("stress RMSE", max_stress_rmse, overall.stress_rmse, "GPa"),
        ):
            if limit is None:
                continue
            if math.isnan(value):
                failed.append(f"{name}: nothing to compare (no such labels)")
            elif value > limit:
                failed.append(f"{name} {value:.4g} {unit} > {limit:g}")
    max_errors = dict(max_errors or {})
    by_key = {row.key: row for row in rows}
    for row in rows:
        limit = max_errors.get(row.key, max_property_error)
        if limit is not None and row.error_percent is not None \
                and abs(row.error_percent) > limit:
            failed.append(f"{row.key} off by {row.error_percent:+.2f} % (> {limit:g} %)")
    for key in max_errors:
        if key not in by_key or by_key[key].error_percent is None:
            failed.append(f"{key}: not computed or no reference value to check")
    return failed
