"""Linear and quadratic ridge regression on the SOAP power spectrum (SNAP / qSNAP-like).

Index letters: ``n`` atoms, ``f`` SOAP features, ``d`` principal components, ``q`` quadratic
terms (d(d+1)/2 of them), ``b`` columns of one species block (f + q).

Model. Per atom i of species Z (block of weights w_Z)::

    x̃ = (x_i − μ) / s                    (standardised power spectrum; μ, s from training)
    u = Pᵀ x̃                              (d leading principal directions P, quadratic only)
    ε_i = w_Z,0 + w_Z,lin · x̃ + Σ_{a<=b} w_Z,ab u_a u_b

w_Z,0 is a per-species intercept on top of E0 (the centred features cannot carry a constant).
The power spectrum is not normalised by default (its magnitude carries the neighbour density).
∂ε/∂x_i = (w_lin + P (G u)) / s with G = W + Wᵀ (W the upper-triangular w_ab), contracted with
the SOAP gradients for forces and stress. Weights solve the ridge problem
min ‖Σ^(−1/2)(y − A w)‖² + λ‖w‖² (rows as in :mod:`mlptools.models.training`) by the same stacked
QR.

Model file group ``/model`` (kinds "linear", "quadratic")::

    attrs: hypers (JSON of the SOAP hypers), quadratic (bool)
    weights      (S, 1 + b) float64   one block per species of /species: intercept, then b
    mean         (f,) float64     μ
    scale        (f,) float64     s
    projection   (f, d) float64   P (quadratic only; d = 0 otherwise)
"""

import dataclasses
import logging
import time
from typing import ClassVar

import numpy as np

from mlptools.descriptors.hypers import SoapHypers
from mlptools.errors import ParameterError
from mlptools.models import training
from mlptools.models.base import Model, register
from mlptools.models.gap import FitCommon, _as_hypers, predict_soap_model, prepare_fit

log = logging.getLogger(__name__)

__all__ = ["LinearHypers", "LinearModel", "fit_linear"]

DEFAULT_SOAP = SoapHypers(cutoff=5.0, cutoff_width=1.0, n_max=8, l_max=6, sigma=0.5,
                          normalize=False)


@dataclasses.dataclass(frozen=True)
class LinearHypers(FitCommon):
    """Hypers of :func:`fit_linear` (``type = "linear"``).

    Attributes
    ----------
    soap : SoapHypers (species set from the data)
    ridge : float, λ on the standardised weights (dimensionless, relative to 1/σ² rows)
    n_components : int, principal components d of the quadratic terms
    (and the σ, baseline, e0, batch_atoms of :class:`~mlptools.models.gap.GapHypers`)
    """

    type: ClassVar[str] = "linear"

    soap: SoapHypers = DEFAULT_SOAP
    ridge: float = 1e-6
    n_components: int = 30

    def validate(self):
        super().validate()
        if not (self.ridge >= 0):
            raise ParameterError(f"linear hyper 'ridge' must be >= 0, got {self.ridge}")
        if not (isinstance(self.n_components, int) and self.n_components >= 1):
            raise ParameterError(f"linear hyper 'n_components' must be an integer >= 1, got "
                                 f"{self.n_components!r}")


def _triu(d):
    return np.triu_indices(d)


class _Rows:
    """Features and centre species of some rows (what ``_Features`` reads of a DescriptorSet)."""

    def __init__(self, features, center_species):
        self.features, self.center_species = features, center_species


class _Features:
    """Per-atom regression features and their derivatives (shared by fit and prediction)."""

    def __init__(self, species, mean, scale, projection):
        self.species = np.asarray(species, dtype=np.int64)
        self.mean, self.scale = mean, scale
        self.P = projection
        self.d = 0 if projection is None else projection.shape[1]
        self.iu = _triu(self.d)
        self.n_lin = mean.shape[0]
        self.block = 1 + self.n_lin + len(self.iu[0])
        self.n_cols = self.block * len(self.species)
        self._key = None

    def _prepare(self, ds):
        if self._key is ds:
            return
        self._xt = (ds.features - self.mean) / self.scale
        self._u = self._xt @ self.P if self.d else None
        self._spec = np.searchsorted(self.species, ds.center_species)
        self._key = ds

    def local(self, ds):
        """(n_rows, block) features of each row (before placement into its species block)."""
        self._prepare(ds)
        ones = np.ones((self._xt.shape[0], 1))
        if not self.d:
            return np.hstack([ones, self._xt])
        u = self._u
        return np.hstack([ones, self._xt, u[:, self.iu[0]] * u[:, self.iu[1]]])

    def energy_cols(self, ds):
        vals = self.local(ds)
        return self._place_rows(vals, self._spec)

    def _place_rows(self, vals, spec):
        S = len(self.species)
        if S == 1:
            return vals
        out = np.zeros((vals.shape[0], S, self.block) + vals.shape[1:-1])
        # vals (n, ..., block) -> out[n, spec, block, ...]
        moved = np.moveaxis(vals, -1, 1)                  # (n, block, ...)
        out[np.arange(vals.shape[0]), spec] = moved
        out = np.moveaxis(out.reshape((vals.shape[0], S * self.block) + vals.shape[1:-1]), 1, -1)
        return out

    def grad_cols(self, ds, dX_gcf, rows_g):
        self._prepare(ds)
        dxt = dX_gcf / self.scale
        if self.d:
            du = dxt @ self.P                               # (G, C, d)
            u = self._u[rows_g][:, None, :]                 # (G, 1, d)
            i, j = self.iu
            dq = du[:, :, i] * u[:, :, j] + u[:, :, i] * du[:, :, j]
            vals = np.concatenate([np.zeros(dxt.shape[:2] + (1,)), dxt, dq], axis=-1)
        else:
            vals = np.concatenate([np.zeros(dxt.shape[:2] + (1,)), dxt], axis=-1)
        return self._place_rows(vals, self._spec[rows_g])


@register("linear", "quadratic")
class LinearModel(Model):
    """A fitted linear or quadratic ridge model (see the module docstring)."""

    def __init__(self, *, soap_hypers, quadratic, weights, mean, scale, projection=None,
                 **common):
        super().__init__(**common)
        self.soap_hypers = soap_hypers if isinstance(soap_hypers, SoapHypers) else \
            SoapHypers.from_dict(soap_hypers)
        self.quadratic = bool(quadratic)
        self.kind = "quadratic" if self.quadratic else "linear"
        self.weights = np.asarray(weights, dtype=np.float64)
        self.features = _Features(self.species, np.asarray(mean), np.asarray(scale),
                                  None if projection is None or not self.quadratic
                                  else np.asarray(projection))

    @property
    def cutoff(self):
        b = self.baseline.max_cutoff(self.species) if self.baseline is not None else 0.0
        return max(float(self.soap_hypers.cutoff), b)

    def local_energy(self, X_nf, center_species):
        """Local energies (n,) eV and ∂ε/∂X (n, F) of features X (n, F)."""
        fe = self.features
        vals = fe.local(_Rows(X_nf, center_species))
        w = self.weights[fe._spec]                          # (n, block)
        v = w[:, 1:1 + fe.n_lin].copy()
        if fe.d:
            W = np.zeros((X_nf.shape[0], fe.d, fe.d))
            W[:, fe.iu[0], fe.iu[1]] = w[:, 1 + fe.n_lin:]
            G = W + np.transpose(W, (0, 2, 1))
            v += np.einsum("nab,nb->na", G, fe._u) @ fe.P.T
        return np.einsum("nb,nb->n", vals, w), v / fe.scale

    def predict_ml(self, atoms, *, forces=True, stress=True, uncertainty=False):
        out = predict_soap_model(self, atoms, forces=forces, stress=stress)
        if uncertainty:
            from mlptools import keys

            n = len(atoms)
            out.update({keys.ENERGY_UNCERTAINTY: float("nan"),
                        keys.ENERGIES_UNCERTAINTY: np.full(n, np.nan),
                        keys.FORCES_UNCERTAINTY: np.full(n, np.nan)})
        return out

    def to_h5(self, group):
        fe = self.features
        group.attrs["hypers"] = self.soap_hypers.to_json()
        group.attrs["quadratic"] = self.quadratic
        group.create_dataset("weights", data=self.weights)
        group.create_dataset("mean", data=fe.mean)
        group.create_dataset("scale", data=fe.scale)
        group.create_dataset("projection", data=fe.P if fe.d else np.zeros((fe.n_lin, 0)))

    @classmethod
    def from_h5(cls, group, common):
        return cls(soap_hypers=SoapHypers.from_json(group.attrs["hypers"]),
                   quadratic=bool(group.attrs["quadratic"]), weights=group["weights"][()],
                   mean=group["mean"][()], scale=group["scale"][()],
                   projection=group["projection"][()], **common)


def fit_linear(frames, hypers=None, *, rng=None, quadratic=False, descriptors=None):
    """Fit a linear (or, with ``quadratic``, quadratic) ridge model on SOAP to labelled frames.

    Parameters
    ----------
    frames : sequence of labelled ase.Atoms (as for :func:`mlptools.models.gap.fit_gap`)
    hypers : LinearHypers, dict or spec string
    rng : unused (deterministic); accepted for a uniform signature
    quadratic : bool, add the products of the ``n_components`` leading principal components
    descriptors : DescriptorSet, optional, precomputed SOAP (as for ``fit_gap``)

    Returns
    -------
    LinearModel

    Raises
    ------
    InputError, ComputationError (singular system: raise hyper 'ridge')
    """
    from mlptools.descriptors.soap import soap_power_spectrum

    hypers = _as_hypers(hypers, LinearHypers)
    frames = list(frames)
    hypers, common, targets = prepare_fit(frames, hypers, quadratic=bool(quadratic))
    soap, species = hypers.soap, common["species"]
    use_f, use_s = hypers.sigma_force > 0, hypers.sigma_virial > 0

    t0 = time.perf_counter()
    if descriptors is not None:
        training.check_descriptors(descriptors, frames, soap, gradients=use_f, strain=use_s)
        X = descriptors.features
    else:
        X = soap_power_spectrum(frames, soap).features
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale = np.where(scale > 1e-8 * max(scale.max(), 1e-300), scale, 1.0)
    projection = None
    if quadratic:
        Xt = (X - mean) / scale
        _, _, Vt = np.linalg.svd(Xt, full_matrices=False)
        d = min(hypers.n_components, Vt.shape[0])
        projection = np.ascontiguousarray(Vt[:d].T)
    del X
    fe = _Features(species, mean, scale, projection)
    M = fe.n_cols
    qr = training.StackedQR(M)
    if hypers.ridge > 0:
        qr.add(np.sqrt(hypers.ridge) * np.eye(M), np.zeros(M))
    for batch in training.batches(frames, hypers.batch_atoms):
        ds = training.batch_descriptors(batch, soap, descriptors, gradients=use_f, strain=use_s)
        A, b = training.design_rows(batch, targets, [(ds, fe, slice(0, M))], M)
        qr.add(A, b)
    w, _ = qr.solve("raise hyper 'ridge'")
    log.info("%s: %d rows x %d columns solved in %.1f s", "quadratic" if quadratic else "linear",
             qr.n_rows, M, time.perf_counter() - t0)
    return LinearModel(soap_hypers=soap, quadratic=quadratic, weights=w.reshape(len(species), -1),
                       mean=mean, scale=scale, projection=projection, **common)
