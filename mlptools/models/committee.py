"""Committees: K models of one kind trained on bootstrap resamples with different seeds.

Index letters: ``k`` members, ``n`` atoms, ``c`` Cartesian.

The committee predicts the member mean and reports the spread as its uncertainty, in the result
keys every mlptools model fills (:mod:`mlptools.keys`), so ``md --max-uncertainty`` and
``build-db --explore`` work with any model kind::

    E = mean_k E_k                       energy_uncertainty   = α_E · std_k E_k          (eV)
    ε_i = mean_k ε_ik                    energies_uncertainty = α_E · std_k ε_ik         (eV)
    F_i = mean_k F_ik                    forces_uncertainty   = α_F · √(⅓ Σ_c var_k F_ikc) (eV/Å)

(std with the 1/K normalisation; the force spread is the RMS over the three components, the
per-component scale that GAP's ``forces_uncertainty`` also estimates). Members share the species,
E0 and baseline, so those cancel in the spread. α_E = α_F = 1 unless calibrated
(:func:`calibrate`), which sets each α so that the mean predicted variance equals the mean
squared error on held-out structures.

Model file group ``/model`` (kind "committee")::

    attrs: member_kind, n_members, energy_uncertainty_scale, force_uncertainty_scale,
           info (JSON)
    member_<k>/   the member's own ``to_h5`` group (its kind's layout)
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np

from mlptools import keys
from mlptools.errors import ComputationError, InputError, ParameterError
from mlptools.models.base import Model, register

__all__ = ["Committee", "bootstrap_weights", "calibrate", "fit_committee", "fit_nn_committee"]

logger = logging.getLogger(__name__)


@register("committee")
class Committee(Model):
    """Mean and spread of K fitted models of one kind (see the module docstring).

    Parameters
    ----------
    members : list of models (same kind, same species, E0 and baseline)
    energy_uncertainty_scale, force_uncertainty_scale : float, calibration factors α_E, α_F
    info : dict, training record
    **common : species, e0, e0_method, baseline, hypers, training_errors (shared)
    """

    kind = "committee"

    def __init__(self, *, members, energy_uncertainty_scale=1.0, force_uncertainty_scale=1.0,
                 info=None, **common):
        super().__init__(**common)
        members = list(members)
        if len(members) < 2:
            raise ParameterError(f"a committee needs at least 2 members, got {len(members)}")
        kinds = {m.kind for m in members}
        if len(kinds) != 1:
            raise ParameterError(f"committee members of different kinds: {sorted(kinds)}")
        self.members = members
        self.energy_uncertainty_scale = float(energy_uncertainty_scale)
        self.force_uncertainty_scale = float(force_uncertainty_scale)
        self.info = dict(info or {})

    @property
    def member_kind(self):
        return self.members[0].kind

    @property
    def cutoff(self):
        return max(float(m.cutoff) for m in self.members)

    def _member_predictions(self, atoms, forces, stress):
        """ML parts of every member; descriptors computed once when the members share them."""
        first = self.members[0]
        shared = (hasattr(first, "predict_descriptors")
                  and all(getattr(m, "descriptor_hypers", None) == first.descriptor_hypers
                          for m in self.members))
        if shared:
            from mlptools.models.nn import voigt_to_matrix

            ds = first.descriptors([atoms], forces=forces, stress=stress)
            out = []
            for m in self.members:
                raw = m.predict_descriptors(ds, forces=forces, stress=stress)
                res = {"energies": raw["energies"]}
                if forces:
                    res["forces"] = raw["forces"]
                if stress:
                    res["virial_de"] = voigt_to_matrix(raw["de"][0])
                out.append(res)
            return out
        return [m.predict_ml(atoms, forces=forces, stress=stress) for m in self.members]

    def predict_ml(self, atoms, *, forces=True, stress=True, uncertainty=False):
        """Member mean of the ML part; the uncertainty keys from the member spread.

        Returns
        -------
        dict with ``energies`` (n,) eV, ``forces`` (n, 3) eV/Å, ``virial_de`` (3, 3) eV, and with
        ``uncertainty`` ``energy_uncertainty`` eV, ``energies_uncertainty`` (n,) eV,
        ``forces_uncertainty`` (n,) eV/Å.
        """
        preds = self._member_predictions(atoms, forces or uncertainty, stress)
        e_kn = np.stack([p["energies"] for p in preds])
        out = {"energies": e_kn.mean(axis=0)}
        if forces or uncertainty:
            f_knc = np.stack([p["forces"] for p in preds])
            if forces:
                out["forces"] = f_knc.mean(axis=0)
        if stress:
            out["virial_de"] = np.mean([p["virial_de"] for p in preds], axis=0)
        if uncertainty:
            a_e, a_f = self.energy_uncertainty_scale, self.force_uncertainty_scale
            out[keys.ENERGY_UNCERTAINTY] = a_e * float(e_kn.sum(axis=1).std())
            out[keys.ENERGIES_UNCERTAINTY] = a_e * e_kn.std(axis=0)
            out[keys.FORCES_UNCERTAINTY] = a_f * np.sqrt(f_knc.var(axis=0).mean(axis=1))
        return out

    def to_h5(self, group):
        """Fill the ``/model`` group: one sub-group per member in its kind's layout."""
        group.attrs["member_kind"] = self.member_kind
        group.attrs["n_members"] = len(self.members)
        group.attrs["energy_uncertainty_scale"] = self.energy_uncertainty_scale
        group.attrs["force_uncertainty_scale"] = self.force_uncertainty_scale
        group.attrs["info"] = json.dumps(self.info, sort_keys=True, default=str)
        for k, m in enumerate(self.members):
            m.to_h5(group.create_group(f"member_{k}"))

    @classmethod
    def from_h5(cls, group, common):
        """Read what :meth:`to_h5` wrote (members through the registry of model kinds)."""
        from mlptools.models.base import MODEL_KINDS

        where = getattr(getattr(group, "file", None), "filename", "model file")
        kinds = {k: v for k, v in MODEL_KINDS.items() if k != cls.kind}
        try:
            member_kind = _text(group.attrs["member_kind"])
            n = int(group.attrs["n_members"])
            if member_kind not in kinds:
                raise InputError(f"{where}: committee of unknown member kind {member_kind!r}")
            members = [kinds[member_kind].from_h5(group[f"member_{k}"], dict(common))
                       for k in range(n)]
            return cls(members=members,
                       energy_uncertainty_scale=float(group.attrs["energy_uncertainty_scale"]),
                       force_uncertainty_scale=float(group.attrs["force_uncertainty_scale"]),
                       info=json.loads(_text(group.attrs.get("info", "{}"))), **common)
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{where}: damaged committee model ({exc})") from None


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def bootstrap_weights(n_structures, rng):
    """Bootstrap counts: how often each of ``n_structures`` is drawn in n draws with replacement."""
    return np.bincount(rng.integers(0, n_structures, size=n_structures),
                       minlength=n_structures).astype(np.float64)


def fit_nn_committee(frames, hypers=None, *, n_members, rng, bootstrap=True, checkpoint=None):
    """Fit ``n_members`` Behler–Parrinello networks on bootstrap resamples of ``frames``.

    The descriptors, targets, E0 and baseline are computed once and shared; each member gets
    its own generator (initial weights, validation split) and, with ``bootstrap``, its own
    resample of the structures (as per-structure counts).

    Parameters
    ----------
    frames : sequence of labelled ase.Atoms
    hypers : NNHypers, dict or spec string
    n_members : int >= 2
    rng : numpy.random.Generator
    bootstrap : bool, resample the structures for each member (else all, different seeds only)
    checkpoint : mlptools.models.nn.NNCheckpoint, optional; members are saved as
        ``member_<k>``, so a rerun skips the finished ones and resumes the current one

    Returns
    -------
    Committee
    """
    from mlptools.models import nn

    _check_members(n_members)
    hypers = nn.as_nn_hypers(hypers)
    ds, targets, common = nn.prepare_training(frames, hypers)
    members = []
    for k, member_rng in enumerate(rng.spawn(n_members)):
        weight = bootstrap_weights(ds.n_structures, member_rng) if bootstrap else None
        logger.info("committee: nn member %d of %d", k + 1, n_members)
        members.append(nn.train_nn(ds, targets, hypers, rng=member_rng, common=common,
                                   weight=weight, checkpoint=checkpoint,
                                   checkpoint_key=f"member_{k}"))
    info = {"bootstrap": bool(bootstrap),
            "member_train_seconds": [m.info.get("train_seconds") for m in members]}
    return Committee(members=members, info=info, **common)


def fit_committee(fit_member, frames, hypers, *, n_members, rng, bootstrap=True):
    """A committee of any kind: ``fit_member(frames, hypers, rng=...)`` on bootstrap resamples.

    A resample is given as per-frame weights (``info["weight"]`` times the bootstrap count,
    0 drops a frame), so every member still sees all frames when it fits the baseline; E0 is
    fixed from all frames first and given to every member. The members share both, so they
    cancel in the spread.

    Parameters
    ----------
    fit_member : callable, e.g. :func:`mlptools.models.linear.fit_linear`
    frames : sequence of labelled ase.Atoms
    hypers : the kind's hypers dataclass (a :class:`~mlptools.models.gap.FitCommon`)
    n_members : int >= 2
    rng : numpy.random.Generator
    bootstrap : bool, resample the frames with replacement (else all frames, seeds differ)
    """
    import dataclasses

    from ase.data import chemical_symbols

    from mlptools.models.base import fit_e0, parse_e0
    from mlptools.models.gap import training_species

    _check_members(n_members)
    frames = list(frames)
    species = training_species(frames)
    e0, e0_method = fit_e0(frames, species, parse_e0(hypers.e0))
    hypers = dataclasses.replace(hypers, e0=",".join(f"{chemical_symbols[z]}={e0[z]!r}"
                                                     for z in species))
    members = []
    for k, member_rng in enumerate(rng.spawn(n_members)):
        subset = frames
        if bootstrap:
            counts = bootstrap_weights(len(frames), member_rng)
            subset = [_reweighted(atoms, c) for atoms, c in zip(frames, counts, strict=True)]
        logger.info("committee: %s member %d of %d", hypers.type, k + 1, n_members)
        members.append(fit_member(subset, hypers, rng=member_rng))
    first = members[0]
    for m in members[1:]:
        if m.species != first.species or m.e0 != first.e0:
            raise ComputationError("committee members disagree on species or E0")
    common = {key: getattr(first, key) for key in ("species", "e0", "baseline", "hypers")}
    common["e0_method"] = e0_method
    return Committee(members=members, info={"bootstrap": bool(bootstrap)}, **common)


def _reweighted(atoms, count):
    """A copy of ``atoms`` (same labels) whose fitting weight is multiplied by ``count``."""
    new = atoms.copy()
    new.calc = atoms.calc
    new.info[keys.WEIGHT] = float(atoms.info.get(keys.WEIGHT, 1.0)) * float(count)
    return new


def _check_members(n_members):
    if not (isinstance(n_members, int) and not isinstance(n_members, bool) and n_members >= 2):
        raise ParameterError(f"a committee needs at least 2 members, got {n_members!r}")


def calibrate(committee, frames):
    """Scale the committee spread to the errors on labelled held-out ``frames`` (in place).

    α_E² = mean((ΔE)²) / mean(σ_E²) over the frames with an energy, α_F² the same over the
    force components (σ_F per component). A set without the label leaves its α unchanged.

    Returns
    -------
    (α_E, α_F)
    """
    committee.energy_uncertainty_scale = committee.force_uncertainty_scale = 1.0
    num_e = den_e = num_f = den_f = 0.0
    for atoms in frames:
        res = atoms.calc.results if atoms.calc is not None else {}
        p = committee.predict(atoms, uncertainty=True, stress=False)
        if res.get(keys.ENERGY) is not None:
            num_e += (float(res[keys.ENERGY]) - p["energy"]) ** 2
            den_e += p[keys.ENERGY_UNCERTAINTY] ** 2
        if res.get(keys.FORCES) is not None:
            num_f += float(np.sum((np.asarray(res[keys.FORCES]) - p["forces"]) ** 2)) / 3.0
            den_f += float(np.sum(p[keys.FORCES_UNCERTAINTY] ** 2))
    a_e = math.sqrt(num_e / den_e) if den_e > 0 and num_e > 0 else 1.0
    a_f = math.sqrt(num_f / den_f) if den_f > 0 and num_f > 0 else 1.0
    committee.energy_uncertainty_scale, committee.force_uncertainty_scale = a_e, a_f
    return a_e, a_f
