"""GAP's optional 3-body term: a squared-exponential GP on triplets, one per species triple.

Index letters: ``p`` triplets (descriptor rows of ``angle_3b``), ``m`` sparse triplets,
``f`` the three features.

For the centre species Z and neighbour species (Z1 <= Z2), over the triplets (i; j, k) with
X = (s, q, t) = (r_ij + r_ik, (r_ij − r_ik)², r_jk) (Å, Å², Å) of ``angle_3b``::

    E_3b = Σ_p w(X_p) Σ_m α_m δ² exp(−Σ_f (X_pf − X_mf)² / 2θ_f²)

with GAP's covariance cutoff w = f(r_ij) f(r_ik). It is written through the features,
r_ij, r_ik = (s ± √q)/2, so the term is a function of X alone and its position and strain
derivatives come from the descriptor gradients (∂w/∂q at q → 0 by its limit, see ``_weight``).
Sparse triplets are chosen by farthest-point sampling in X/θ (deterministic). A triplet's
energy goes to its centre atom in ``energies``.

Model file: group ``/model/threebody_<Z>_<Z1>_<Z2>`` with attrs hypers (JSON), z, z1, z2 and
datasets ``sparse_features`` (m, 3) and ``alpha`` (m,).
"""

import dataclasses
from typing import ClassVar

import numpy as np

from mlptools.descriptors.hypers import Hypers, ThreeBodyHypers
from mlptools.errors import ParameterError
from mlptools.models.twobody import gap_cutoff, squared_exponential_contract, validate_term_hypers


@dataclasses.dataclass(frozen=True)
class ThreeBodyTermHypers(Hypers):
    """Hypers of the 3-body term (``type = "threebody"``).

    Attributes
    ----------
    cutoff : float, Å, on r_ij and r_ik
    cutoff_transition_width : float, Å
    delta : float, eV, energy scale δ
    theta : float, length scale θ of every feature (Å for s and t, Å² for q)
    n_sparse : int, sparse triplets per species triple
    max_total_sparse : int, cap on the sparse triplets of all triples together: with T triples
        in the data each gets min(n_sparse, max_total_sparse // T) (at least 2), so the term,
        on by default, stays a few hundred columns for multicomponent systems (a quaternary
        has 40 triples: 30 each instead of 200, 1200 columns instead of 8000)
    """

    type: ClassVar[str] = "threebody"

    cutoff: float = 3.7
    cutoff_transition_width: float = 0.6
    delta: float = 0.1
    theta: float = 1.0
    n_sparse: int = 200
    max_total_sparse: int = 1200

    def validate(self):
        validate_term_hypers(self)
        if not (isinstance(self.max_total_sparse, int) and self.max_total_sparse >= 2):
            raise ParameterError(f"threebody hyper 'max_total_sparse' must be an integer >= 2, "
                                 f"got {self.max_total_sparse!r}")

    def descriptor(self, z, z1, z2):
        return ThreeBodyHypers(cutoff=float(self.cutoff),
                               cutoff_transition_width=float(self.cutoff_transition_width),
                               z=int(z), z1=int(z1), z2=int(z2))


_CHUNK = 4096     # triplets per block of the fit's kernel derivatives


def _weight(X, rc, w):
    """w = f(a) f(b), a, b = (s ± d)/2, d = √q, and ∂w/∂(s, q, t) (n, 3).

    ∂w/∂q = (∂w/∂d) / 2d; ∂w/∂d = ½(f′(a) f(b) − f(a) f′(b)) vanishes at d = 0 like d, so for
    d < 1e-6 Å the limit ¼(f″ f − f′²) at a = b = s/2 is used.
    """
    s, q = X[:, 0], np.maximum(X[:, 1], 0.0)
    d = np.sqrt(q)
    fa, dfa, d2fa = gap_cutoff(0.5 * (s + d), rc, w)
    fb, dfb, _ = gap_cutoff(0.5 * (s - d), rc, w)
    wt = fa * fb
    dw = np.zeros_like(X)
    dw[:, 0] = 0.5 * (dfa * fb + fa * dfb)
    small = d < 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        dw_dq = np.where(small, 0.25 * (d2fa * fa - dfa * dfa),
                         0.5 * (dfa * fb - fa * dfb) / (2.0 * d))
    dw[:, 1] = dw_dq
    return wt, dw


class ThreeBodyTerm:
    """The 3-body term of one species triple: kernel columns for fitting, and prediction."""

    def __init__(self, hypers, z, z1, z2, sparse_features, alpha=None):
        self.hypers = hypers
        self.z = int(z)
        self.z1, self.z2 = sorted((int(z1), int(z2)))
        self.X_m = np.asarray(sparse_features, dtype=np.float64).reshape(-1, 3)
        self.alpha = None if alpha is None else np.asarray(alpha, dtype=np.float64)
        self._key = None

    @property
    def n_sparse(self):
        return self.X_m.shape[0]

    def descriptors(self, frames, *, gradients, strain):
        from mlptools.descriptors.nbody import angle_3b

        return angle_3b(frames, self.hypers.descriptor(self.z, self.z1, self.z2),
                        gradients=gradients, strain=strain)

    def kmm(self):
        """δ² k(X_m, X_m') (m, m) of the sparse triplets."""
        return self._kernel(self.X_m)

    def _kernel(self, X):
        h = self.hypers
        diff = (X[:, None, :] - self.X_m[None, :, :]) / h.theta
        return h.delta ** 2 * np.exp(-0.5 * np.einsum("pmf,pmf->pm", diff, diff))

    # the local-energy interface of training.design_rows: e_pm = w(X_p) δ² k(X_p, X_m)
    def _prepare(self, ds):
        if self._key is ds:
            return
        h = self.hypers
        X = ds.features
        wt, dw = _weight(X, h.cutoff, h.cutoff_transition_width)
        p, m = X.shape[0], self.X_m.shape[0]
        self._e = np.empty((p, m))
        self._de = np.empty((p, 3, m))
        # in chunks of triplets: the (p, m, f) temporaries would otherwise triple this
        # memory (bcc metals have ~90 triplets per atom inside 3.7 Å)
        for a in range(0, p, _CHUNK):
            sl = slice(a, a + _CHUNK)
            k = self._kernel(X[sl])
            self._e[sl] = wt[sl, None] * k
            diff = (X[sl, None, :] - self.X_m[None, :, :]) / h.theta ** 2      # (c, m, f)
            # ∂e_pm/∂X_pf = k_pm (∂w/∂X_pf − w_p (X_pf − X_mf)/θ²), stored (p, f, m)
            self._de[sl] = np.moveaxis(
                k[:, :, None] * (dw[sl, None, :] - wt[sl, None, None] * diff), 2, 1)
        self._key = ds

    def energy_cols(self, ds):
        self._prepare(ds)
        return self._e

    def grad_cols(self, ds, dX_gcf, rows_g):
        self._prepare(ds)
        return np.einsum("gcf,gfm->gcm", dX_gcf, self._de[rows_g], optimize=True)

    def predict(self, atoms, *, forces, stress):
        """Energies (n,) and, on request, forces and the virial terms of one structure."""
        from mlptools.models import training

        ds = self.descriptors([atoms], gradients=forces or stress, strain=stress)
        n = len(atoms)
        out = {"energies": np.zeros(n)}
        if ds.n_rows == 0:
            return out
        h = self.hypers
        X = ds.features
        wt, dw = _weight(X, h.cutoff, h.cutoff_transition_width)
        ka, kx = squared_exponential_contract(X, self.X_m, self.alpha, h.theta, h.delta)
        out["energies"] = np.bincount(ds.center_index, weights=wt * ka, minlength=n)
        if forces or stress:
            # Σ_m α_m ∂e_pm/∂X_pf without the (p, f, m) array of the fit:
            # = ∂w/∂X_pf Σα k − w_p (X_pf Σα k − Σ_m α_m k_pm X_mf)/θ²
            v = dw * ka[:, None] - wt[:, None] * (X * ka[:, None] - kx) / h.theta ** 2
            out.update(training.derivatives(ds, v, n, forces=forces, stress=stress))
        return out

    def to_h5(self, group):
        g = group.create_group(f"threebody_{self.z}_{self.z1}_{self.z2}")
        g.attrs["hypers"] = self.hypers.to_json()
        g.attrs["z"], g.attrs["z1"], g.attrs["z2"] = self.z, self.z1, self.z2
        g.create_dataset("sparse_features", data=self.X_m)
        g.create_dataset("alpha", data=self.alpha)

    @classmethod
    def from_h5(cls, group):
        return [cls(ThreeBodyTermHypers.from_json(g.attrs["hypers"]), int(g.attrs["z"]),
                    int(g.attrs["z1"]), int(g.attrs["z2"]), g["sparse_features"][()],
                    g["alpha"][()])
                for name, g in sorted(group.items()) if name.startswith("threebody_")]


def make_terms(hypers, frames, species):
    """One :class:`ThreeBodyTerm` per species triple with triplets in ``frames``."""
    from mlptools.models.sparsify import farthest_point_order

    found = []
    for z in species:
        for a_i, a in enumerate(species):
            for b in species[a_i:]:
                term = ThreeBodyTerm(hypers, z, a, b, np.zeros((0, 3)))
                ds = term.descriptors(frames, gradients=False, strain=False)
                if ds.n_rows:
                    found.append((term, ds))
    per_triple = max(2, min(hypers.n_sparse, hypers.max_total_sparse // max(1, len(found))))
    for term, ds in found:
        X = ds.features / hypers.theta
        # distinct triplets only (crystals repeat them), then farthest points
        X = np.unique(np.round(X, 6), axis=0)
        order = farthest_point_order(X, np.zeros((0, 3)), per_triple)
        term.X_m = X[np.sort(order)] * hypers.theta
    return [term for term, _ in found]
