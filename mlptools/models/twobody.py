"""GAP's optional 2-body term: a squared-exponential GP on pair distances, one per species pair.

Index letters: ``p`` pairs (descriptor rows of ``distance_2b``), ``m`` sparse distances.

For the unordered species pair (Z1, Z2)::

    E_2b = Σ_p f(r_p) Σ_m α_m δ² exp(−(r_p − r_m)²/2θ²)

with f GAP's covariance cutoff (1 below cutoff − w, ½(cos(π(r − cutoff + w)/w) + 1) above, 0
beyond). The sparse distances r_m are a uniform grid from the shortest training distance of the
pair to the cutoff. A pair's energy is split half to each of its atoms in ``energies``.

Model file: group ``/model/twobody_<Z1>_<Z2>`` with attrs hypers (JSON), z1, z2 and datasets
``sparse_distances`` (m,) Å and ``alpha`` (m,).
"""

import dataclasses
from typing import ClassVar

import numpy as np

from mlptools.descriptors.hypers import Hypers, TwoBodyHypers
from mlptools.errors import ParameterError


@dataclasses.dataclass(frozen=True)
class TwoBodyTermHypers(Hypers):
    """Hypers of the 2-body term (``type = "twobody"``).

    Attributes
    ----------
    cutoff : float, Å
    cutoff_transition_width : float, Å
    delta : float, eV, energy scale δ
    theta : float, Å, length scale θ
    n_sparse : int, sparse distances per species pair
    """

    type: ClassVar[str] = "twobody"

    cutoff: float = 5.0
    cutoff_transition_width: float = 1.0
    delta: float = 1.0
    theta: float = 0.5
    n_sparse: int = 30

    def validate(self):
        validate_term_hypers(self)

    def descriptor(self, z1, z2):
        return TwoBodyHypers(cutoff=float(self.cutoff),
                             cutoff_transition_width=float(self.cutoff_transition_width),
                             z1=int(z1), z2=int(z2))


def validate_term_hypers(hypers):
    """Checks shared by the GP terms' hypers (cutoff, width, δ, θ > 0; n_sparse >= 2)."""
    for name in ("cutoff", "cutoff_transition_width", "delta", "theta"):
        v = getattr(hypers, name)
        if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
            raise ParameterError(f"{hypers.type} hyper '{name}' must be > 0, got {v}")
    if hypers.cutoff_transition_width > hypers.cutoff:
        raise ParameterError(f"{hypers.type} hyper 'cutoff_transition_width' must be <= cutoff")
    if not (isinstance(hypers.n_sparse, int) and hypers.n_sparse >= 2):
        raise ParameterError(f"{hypers.type} hyper 'n_sparse' must be an integer >= 2, got "
                             f"{hypers.n_sparse!r}")


def gap_cutoff(r, rc, w):
    """GAP's covariance cutoff f(r) (1 below rc − w, ½(cos(π(r − rc + w)/w) + 1) above, 0 past
    rc) and its first and second derivatives (1/Å, 1/Å²)."""
    t = np.clip((r - rc + w) / w, 0.0, 1.0)
    inside = (t > 0) & (t < 1)
    f = 0.5 * (np.cos(np.pi * t) + 1.0)
    df = np.where(inside, -0.5 * np.pi / w * np.sin(np.pi * t), 0.0)
    d2f = np.where(inside, -0.5 * (np.pi / w) ** 2 * np.cos(np.pi * t), 0.0)
    return f, df, d2f


def squared_exponential_contract(X, X_m, alpha, theta, delta):
    """Σ_m α_m δ² k(X_p, X_m) (p,) and Σ_m α_m δ² k(X_p, X_m) X_mf (p, f), compiled, with
    k = exp(−|X_p − X_m|²/2θ²): the prediction of the 2-body and 3-body terms without their
    (p, m) kernel matrix.

    ``X`` (p, f) and ``X_m`` (m, f) in the same units as θ; ``alpha`` (m,); δ in eV.
    """
    from mlptools._ext import gp_kernels

    X = np.ascontiguousarray(X, dtype=np.float64)
    X_m = np.ascontiguousarray(X_m, dtype=np.float64).reshape(-1, X.shape[1])
    ka, kx = np.empty(X.shape[0]), np.empty_like(X)
    gp_kernels.squared_exponential_contract(X, X_m, np.ascontiguousarray(alpha, dtype=np.float64),
                                            float(theta), float(delta), ka, kx)
    return ka, kx


class TwoBodyTerm:
    """The 2-body term of one species pair: kernel columns for fitting, and prediction."""

    def __init__(self, hypers, z1, z2, sparse_distances, alpha=None):
        self.hypers = hypers
        self.z1, self.z2 = sorted((int(z1), int(z2)))
        self.r_m = np.asarray(sparse_distances, dtype=np.float64)
        self.alpha = None if alpha is None else np.asarray(alpha, dtype=np.float64)
        self._key = None

    @property
    def n_sparse(self):
        return self.r_m.shape[0]

    def kmm(self):
        """δ² k(r_m, r_m') (m, m) of the sparse distances."""
        return kmm(self)

    def descriptors(self, frames, *, gradients, strain):
        from mlptools.descriptors.nbody import distance_2b

        return distance_2b(frames, self.hypers.descriptor(self.z1, self.z2), gradients=gradients,
                           strain=strain)

    # the local-energy interface of training.design_rows: e_pm = f(r_p) δ² k(r_p, r_m)
    def _prepare(self, ds):
        if self._key is ds:
            return
        h = self.hypers
        r = ds.features[:, 0]
        f, df, _ = gap_cutoff(r, h.cutoff, h.cutoff_transition_width)
        diff = r[:, None] - self.r_m[None, :]
        k = h.delta ** 2 * np.exp(-0.5 * diff ** 2 / h.theta ** 2)
        self._e = f[:, None] * k
        self._de = k * (df[:, None] - f[:, None] * diff / h.theta ** 2)
        self._key = ds

    def energy_cols(self, ds):
        self._prepare(ds)
        return self._e

    def grad_cols(self, ds, dX_gcf, rows_g):
        self._prepare(ds)
        return dX_gcf[:, :, :1] * self._de[rows_g][:, None, :]

    def predict(self, atoms, *, forces, stress):
        """(energies (n,), v (n_pairs, 1) = ∂E/∂r, ds) of one structure."""
        from mlptools.models import training

        ds = self.descriptors([atoms], gradients=True, strain=stress)
        n = len(atoms)
        out = {"energies": np.zeros(n)}
        if ds.n_rows == 0:
            return out
        h = self.hypers
        r = ds.features[:, 0]
        f, df, _ = gap_cutoff(r, h.cutoff, h.cutoff_transition_width)
        ka, kr = squared_exponential_contract(ds.features, self.r_m, self.alpha, h.theta,
                                              h.delta)
        e_p = f * ka
        s = ds.grad_samples
        per_row = np.bincount(s[:, 0], minlength=ds.n_rows)
        out["energies"] = np.bincount(s[:, 2], weights=e_p[s[:, 0]] / per_row[s[:, 0]],
                                      minlength=n)
        if forces or stress:
            # Σ_m α_m ∂e_pm/∂r_p = f′ Σα k − f (r Σα k − Σ_m α_m k r_m)/θ²
            v = (df * ka - f * (r * ka - kr[:, 0]) / h.theta ** 2)[:, None]
            out.update(training.derivatives(ds, v, n, forces=forces, stress=stress))
        return out

    def to_h5(self, group):
        g = group.create_group(f"twobody_{self.z1}_{self.z2}")
        g.attrs["hypers"] = self.hypers.to_json()
        g.attrs["z1"], g.attrs["z2"] = self.z1, self.z2
        g.create_dataset("sparse_distances", data=self.r_m)
        g.create_dataset("alpha", data=self.alpha)

    @classmethod
    def from_h5(cls, group):
        return [cls(TwoBodyTermHypers.from_json(g.attrs["hypers"]), int(g.attrs["z1"]),
                    int(g.attrs["z2"]), g["sparse_distances"][()], g["alpha"][()])
                for name, g in sorted(group.items()) if name.startswith("twobody_")]


def make_terms(hypers, frames, species):
    """One :class:`TwoBodyTerm` per species pair present within the cutoff in ``frames``."""
    terms = []
    for a_i, a in enumerate(species):
        for b in species[a_i:]:
            term = TwoBodyTerm(hypers, a, b, np.zeros(0))
            ds = term.descriptors(frames, gradients=False, strain=False)
            if ds.n_rows == 0:
                continue
            r_min = float(ds.features[:, 0].min())
            term.r_m = np.linspace(max(0.5, r_min - 0.1), hypers.cutoff, hypers.n_sparse)
            terms.append(term)
    return terms


def kmm(term):
    """δ² k(r_m, r_m') (m, m) of a term's sparse distances."""
    h = term.hypers
    d = term.r_m[:, None] - term.r_m[None, :]
    return h.delta ** 2 * np.exp(-0.5 * d ** 2 / h.theta ** 2)
