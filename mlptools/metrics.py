"""Error statistics of predicted against reference labels, per config type and overall.

The one place where RMSE/MAE tables are computed (``fit`` prints them for train and valid sets,
``validate`` reuses them). Units in every table: energy meV/atom, forces eV/Å (per Cartesian
component), stress GPa (per Voigt component, ASE sign).

API (stable)
------------
``compute_errors(reference, predicted=None, *, ...) -> ErrorReport``
    ``reference`` is an iterable of ``ase.Atoms`` carrying reference labels in
    ``atoms.calc.results`` (energy eV, forces eV/Å, stress eV/Å³, as
    :func:`mlptools.io.structures.iter_frames` leaves them), or in ``atoms.info`` /
    ``atoms.arrays`` under ``energy_key`` / ``forces_key`` / ``stress_key``.
    ``predicted`` is a parallel iterable of ``ase.Atoms`` (labels found the same way) or of dicts
    ``{"energy": eV, "forces": (n, 3) eV/Å, "stress": Voigt-6 or 3x3 eV/Å³}``; when it is None the
    predictions are read from the reference frames themselves under ``prediction_prefix + key``
    (``mlptools_energy`` in info, ``mlptools_forces`` in arrays, ``mlptools_stress`` in info), the
    keys the commands write.
``ErrorAccumulator``
    Incremental form: ``acc.add(config_type, n_atoms, energy_ref=, energy_pred=, forces_ref=,
    forces_pred=, stress_ref=, stress_pred=)`` per frame (any label may be None), then
    ``acc.report()``. Use it to stream frames without keeping them.
``ErrorReport``
    ``.rows`` list of :class:`ErrorRow` (one per config type, sorted, then the ``"overall"`` row);
    ``.overall``; ``.row(config_type)``; ``.to_dict()``, ``.to_json()``, ``.to_tsv()``,
    ``.to_text(title=None)``.

Energy errors are per atom: (E_pred − E_ref)/n_atoms for each frame, in meV/atom; a frame counts
for energy when both sides have an energy. Force errors run over every Cartesian component of
every atom of the frames having forces on both sides; stress errors over the six Voigt components
of frames having stress on both sides (a structure without a 3-D cell has no stress).
"""

import dataclasses
import json
import math

import numpy as np

from mlptools import keys
from mlptools.errors import InputError
from mlptools.units import EV_PER_A3_TO_GPA

__all__ = ["ErrorAccumulator", "ErrorReport", "ErrorRow", "compute_errors"]

OVERALL = "overall"

#: (name, unit) of the three quantities, in table order
QUANTITIES = (("energy", "meV/atom"), ("forces", "eV/Å"), ("stress", "GPa"))


@dataclasses.dataclass(frozen=True)
class ErrorRow:
    """Errors of one config type (or ``"overall"``).

    Attributes
    ----------
    config_type : str
    n_frames : int, frames in the group
    n_atoms : int, atoms in the group
    n_energy, n_forces, n_stress : int, frames / force components / stress components compared
    energy_rmse, energy_mae : float, meV/atom (NaN when nothing was compared)
    forces_rmse, forces_mae : float, eV/Å per component
    stress_rmse, stress_mae : float, GPa per Voigt component
    """

    config_type: str
    n_frames: int
    n_atoms: int
    n_energy: int
    n_forces: int
    n_stress: int
    energy_rmse: float
    energy_mae: float
    forces_rmse: float
    forces_mae: float
    stress_rmse: float
    stress_mae: float

    def to_dict(self):
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in dataclasses.asdict(self).items()}


class _Sums:
    """Running sums of squared and absolute errors of one quantity."""

    __slots__ = ("n", "sq", "ab")

    def __init__(self):
        self.n, self.sq, self.ab = 0, 0.0, 0.0

    def add(self, err):
        err = np.asarray(err, dtype=np.float64).ravel()
        self.n += err.size
        self.sq += float(err @ err)
        self.ab += float(np.abs(err).sum())

    def merge(self, other):
        self.n += other.n
        self.sq += other.sq
        self.ab += other.ab

    def rmse(self):
        return math.sqrt(self.sq / self.n) if self.n else math.nan

    def mae(self):
        return self.ab / self.n if self.n else math.nan


class _Group:
    __slots__ = ("n_frames", "n_atoms", "sums")

    def __init__(self):
        self.n_frames = self.n_atoms = 0
        self.sums = {name: _Sums() for name, _ in QUANTITIES}

    def merge(self, other):
        self.n_frames += other.n_frames
        self.n_atoms += other.n_atoms
        for name in self.sums:
            self.sums[name].merge(other.sums[name])

    def row(self, name):
        s = self.sums
        return ErrorRow(
            config_type=name, n_frames=self.n_frames, n_atoms=self.n_atoms,
            n_energy=s["energy"].n, n_forces=s["forces"].n, n_stress=s["stress"].n,
            energy_rmse=s["energy"].rmse(), energy_mae=s["energy"].mae(),
            forces_rmse=s["forces"].rmse(), forces_mae=s["forces"].mae(),
            stress_rmse=s["stress"].rmse(), stress_mae=s["stress"].mae(),
        )


def _voigt(stress):
    s = np.asarray(stress, dtype=np.float64)
    if s.shape == (6,):
        return s
    if s.size == 9:
        m = s.reshape(3, 3)
        return np.array([m[0, 0], m[1, 1], m[2, 2], m[1, 2], m[0, 2], m[0, 1]])
    raise ValueError(f"stress of shape {s.shape}, expected (6,) or (3, 3)")


class ErrorAccumulator:
    """Collect per-frame errors, then :meth:`report`."""

    def __init__(self):
        self._groups = {}

    def add(self, config_type, n_atoms, *, energy_ref=None, energy_pred=None, forces_ref=None,
            forces_pred=None, stress_ref=None, stress_pred=None):
        """Add one frame. Energies eV (total), forces (n_atoms, 3) eV/Å, stress eV/Å³ (Voigt-6
        or 3x3, ASE sign); a quantity missing on either side is skipped for this frame."""
        g = self._groups.setdefault(str(config_type), _Group())
        g.n_frames += 1
        g.n_atoms += int(n_atoms)
        if energy_ref is not None and energy_pred is not None and n_atoms:
            g.sums["energy"].add(1000.0 * (float(energy_pred) - float(energy_ref)) / n_atoms)
        if forces_ref is not None and forces_pred is not None:
            fr = np.asarray(forces_ref, dtype=np.float64)
            fp = np.asarray(forces_pred, dtype=np.float64)
            if fr.shape != fp.shape:
                raise ValueError(f"forces of shapes {fr.shape} and {fp.shape}")
            g.sums["forces"].add(fp - fr)
        if stress_ref is not None and stress_pred is not None:
            g.sums["stress"].add((_voigt(stress_pred) - _voigt(stress_ref)) * EV_PER_A3_TO_GPA)

    def report(self):
        """The :class:`ErrorReport` of everything added so far."""
        rows = [self._groups[name].row(name) for name in sorted(self._groups)]
        total = _Group()
        for g in self._groups.values():
            total.merge(g)
        rows.append(total.row(OVERALL))
        return ErrorReport(rows)


@dataclasses.dataclass
class ErrorReport:
    """RMSE/MAE per config type; the last row is ``"overall"``."""

    rows: list

    @property
    def overall(self):
        return self.rows[-1]

    def row(self, config_type):
        """The row of ``config_type`` (KeyError if absent)."""
        for r in self.rows:
            if r.config_type == config_type:
                return r
        raise KeyError(config_type)

    def to_dict(self):
        """``{"units": {...}, "rows": [row dicts]}`` (NaN as None)."""
        return {"units": dict(QUANTITIES), "rows": [r.to_dict() for r in self.rows]}

    def to_json(self, **kwargs):
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)

    _COLUMNS = ("config_type", "n_frames", "n_atoms", "energy_rmse", "energy_mae",
                "forces_rmse", "forces_mae", "stress_rmse", "stress_mae")

    def to_tsv(self, header=True):
        """Tab-separated, one line per row; NaN is written as ``nan``."""
        lines = []
        if header:
            lines.append("\t".join(self._COLUMNS[:3] + (
                "energy_rmse_meV/atom", "energy_mae_meV/atom", "forces_rmse_eV/Å",
                "forces_mae_eV/Å", "stress_rmse_GPa", "stress_mae_GPa")))
        for r in self.rows:
            d = dataclasses.asdict(r)
            lines.append("\t".join(str(d[c]) if not isinstance(d[c], float) else f"{d[c]:.6g}"
                                   for c in self._COLUMNS))
        return "\n".join(lines) + "\n"

    def to_text(self, title=None):
        """A fixed-width table for people (``-`` where nothing was compared)."""
        def num(v, fmt):
            return "-" if math.isnan(v) else format(v, fmt)

        width = max([len("config_type")] + [len(r.config_type) for r in self.rows])
        head = (f"{'config_type':<{width}} {'frames':>6} {'atoms':>7} | {'E RMSE':>8} "
                f"{'E MAE':>8} | {'F RMSE':>7} {'F MAE':>7} | {'S RMSE':>7} {'S MAE':>7}")
        units = (f"{'':<{width}} {'':>6} {'':>7} | {'meV/atom':>17} | {'eV/Å':>15} | "
                 f"{'GPa':>15}")
        lines = [title] if title else []
        lines += [head, units, "-" * len(head)]
        for r in self.rows:
            if r.config_type == OVERALL and len(self.rows) > 1:
                lines.append("-" * len(head))
            lines.append(
                f"{r.config_type:<{width}} {r.n_frames:>6} {r.n_atoms:>7} | "
                f"{num(r.energy_rmse, '8.2f')} {num(r.energy_mae, '8.2f')} | "
                f"{num(r.forces_rmse, '7.4f')} {num(r.forces_mae, '7.4f')} | "
                f"{num(r.stress_rmse, '7.3f')} {num(r.stress_mae, '7.3f')}")
        return "\n".join(lines) + "\n"


def _labels_of(item, energy_key, forces_key, stress_key):
    """(energy, forces, stress) of an ase.Atoms (calc.results, else info/arrays) or a dict."""
    if isinstance(item, dict):
        return item.get("energy"), item.get("forces"), item.get("stress")
    results = (getattr(item.calc, "results", None) or {}) if item.calc is not None else {}

    def find(key, where_else):
        value = results.get(key)
        if value is None:
            value = where_else.get(key)
        return value

    return (find(energy_key, item.info), find(forces_key, item.arrays),
            find(stress_key, item.info))


def compute_errors(reference, predicted=None, *, energy_key=keys.ENERGY, forces_key=keys.FORCES,
                   stress_key=keys.STRESS, prediction_prefix=keys.PREDICTION_PREFIX,
                   config_type_key=keys.CONFIG_TYPE):
    """RMSE and MAE of predictions against references, per config type and overall.

    Parameters
    ----------
    reference : iterable of ase.Atoms
        Reference labels (see the module docstring for where they are looked up).
    predicted : iterable of ase.Atoms or dict, optional
        Parallel to ``reference``. None: read ``prediction_prefix + key`` from the reference
        frames' info (energy, stress) and arrays (forces).
    energy_key, forces_key, stress_key : str
        Names of the reference labels (and of the predicted ones when ``predicted`` is given).
    config_type_key : str
        ``atoms.info`` key of the group (``"default"`` when absent).

    Returns
    -------
    ErrorReport

    Raises
    ------
    InputError
        The two sequences differ in length or in atom counts.
    """
    acc = ErrorAccumulator()
    ref_iter = iter(reference)
    pred_iter = None if predicted is None else iter(predicted)
    for k, atoms in enumerate(ref_iter):
        e_r, f_r, s_r = _labels_of(atoms, energy_key, forces_key, stress_key)
        if pred_iter is None:
            p = prediction_prefix
            e_p = atoms.info.get(p + energy_key)
            f_p = atoms.arrays.get(p + forces_key)
            s_p = atoms.info.get(p + stress_key)
        else:
            try:
                item = next(pred_iter)
            except StopIteration:
                raise InputError(f"predictions: {k} frames, but more reference frames") from None
            e_p, f_p, s_p = _labels_of(item, energy_key, forces_key, stress_key)
            n_pred = len(item) if not isinstance(item, dict) else (
                None if f_p is None else len(f_p))
            if n_pred is not None and n_pred != len(atoms):
                raise InputError(f"frame {k}: {len(atoms)} atoms in the reference, {n_pred} "
                                 "in the prediction")
        if atoms.cell.rank != 3:
            s_r = s_p = None
        acc.add(atoms.info.get(config_type_key, keys.DEFAULT_CONFIG_TYPE), len(atoms),
                energy_ref=e_r, energy_pred=e_p, forces_ref=f_r, forces_pred=f_p,
                stress_ref=s_r, stress_pred=s_p)
    if pred_iter is not None and next(pred_iter, None) is not None:
        raise InputError("predictions: more frames than in the reference")
    return acc.report()
