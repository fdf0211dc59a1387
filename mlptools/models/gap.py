"""GAP: sparse Gaussian-process regression of local energies on SOAP (Bartók et al. 2010, 2015).

Index letters: ``n`` atoms (descriptor rows), ``m`` sparse points, ``f`` features, ``g`` gradient
rows, ``c`` Cartesian.

Model. With x_i the normalised SOAP power spectrum of atom i and species Z_i::

    E_ml = Σ_i ε_i,   ε_i = Σ_m α_m δ² k(x_i, x_m) [Z_i = Z_m],   k(a, b) = (a·b)^ζ

(the kernel between different centre species is zero, as in gap_fit with one descriptor per
species). Forces and stress are exact derivatives: ∂ε_i/∂x_i = δ² ζ Σ_m α_m (x_i·x_m)^(ζ−1) x_m
is carried back through the SOAP density coefficients by the adjoint contraction
(:func:`~mlptools.descriptors.soap.soap_energy_derivatives`) when predicting, and contracted with
the full SOAP gradients dx_i/dr_a, dx_i/dε (:func:`training.contract_gradients`) when fitting and
for the uncertainty. By default the 2-body and 3-body terms (:mod:`twobody`, :mod:`threebody`)
add their own sums; the defaults (δ 0.3 eV, radial scaling r0 3 Å) come from held-out validation
on the mlearn Si and Mo training sets (``tools/cv_gap_defaults.py``).

Fit. Sparse points are chosen per species by CUR leverage sampling or farthest-point sampling
(:mod:`mlptools.models.sparsify`), in proportion to the species' atom counts. α solves

    min_α ‖Σ^(−1/2)(y − K_nm α)‖² + αᵀ K_mm α

over total energies, forces and virials (σ per row, :mod:`mlptools.models.training`), by
Householder QR of the stacked matrix [Σ^(−1/2)K_nm; Lᵀ], K_mm + jitter·δ²·I = L Lᵀ (Cholesky).
With R from that QR (RᵀR = K_mm + K_mn Σ⁻¹ K_nm) the predicted (DTC) variance of a local energy
is::

    var ε(x) = δ² k(x, x) − k_xᵀ K_mm⁻¹ k_x + k_xᵀ (RᵀR)⁻¹ k_x = δ² k(x, x) − ‖Wᵀ k_x‖²

with k_x = δ² k(x, x_m) and W W ᵀ = K_mm⁻¹ − (RᵀR)⁻¹ (positive semi-definite; W keeps its
eigenvectors above 1e-12 of the largest eigenvalue). ``energy_uncertainty`` = √Σ_i var ε_i
(covariances between atoms neglected). ``forces_uncertainty`` is a cheap estimate:
c_F √(mean of var ε over atom a and every centre whose environment contains a), with c_F
calibrated on the training set so that its mean square equals the mean square force error
there.

Model file group ``/model`` (kind "gap")::

    attrs: zeta, delta, hypers (JSON of the SOAP hypers), force_uncertainty_scale
    sparse_features  (M, F) float64     x_m
    sparse_species   (M,) int64         Z_m
    alpha            (M,) float64       weights of δ² k (dimensionless: ε is δ² k α in eV)
    variance_basis   (M, r) float64     W (eV⁻¹)
    twobody_<Z1>_<Z2>/                  the 2-body term of each species pair, if any
                                        (:mod:`mlptools.models.twobody`)

The total energy adds E_2b of :mod:`mlptools.models.twobody` (on by default) to E_ml; both sets
of weights are solved together in the one stacked QR (prior rows blockdiag(L_soapᵀ, L_2bᵀ)).
"""

import dataclasses
import logging
import time
from typing import ClassVar

import numpy as np

from mlptools import keys
from mlptools.descriptors.hypers import Hypers, SoapHypers
from mlptools.errors import ComputationError, ParameterError
from mlptools.models import training, twobody
from mlptools.models.base import Model, register
from mlptools.models.sparsify import METHODS

log = logging.getLogger(__name__)

__all__ = ["GapHypers", "GapModel", "fit_gap"]

#: SOAP defaults of GAP fits (l_max 6 keeps 252 features per species). Cutoff 5.5 Å, radial
# scaling r0 = 3 Å, m = 4 and δ = 0.3 eV (below) with the 3-body term: chosen by a held-out 20 %
# of the mlearn Si and Mo training sets together (tools/cv_gap_defaults.py); 5.5 Å beat 5 Å
# (GAP-18's) on both elements, 6 Å gained little more at ~30 % more neighbours
DEFAULT_SOAP = SoapHypers(cutoff=5.5, cutoff_width=1.0, n_max=8, l_max=6, sigma=0.5,
                          scaling_r0=3.0, scaling_rate=1.0, scaling_exponent=4)


@dataclasses.dataclass(frozen=True)
class FitCommon(Hypers):
    """Hypers every kind shares (σ in eV/atom, eV/Å, eV/atom; see :mod:`training`)."""

    type: ClassVar[str] = "fit"

    sigma_energy: float = 0.002
    sigma_force: float = 0.05
    sigma_virial: float = 0.05
    config_type_sigma: str = ""
    baseline: str = "zbl"
    e0: str = ""
    batch_atoms: int = 1000

    def sigmas(self):
        return training.Sigmas(self.sigma_energy, self.sigma_force, self.sigma_virial,
                               training.parse_config_sigma(self.config_type_sigma))

    def validate(self):
        for name in ("sigma_energy", "sigma_force", "sigma_virial"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
                raise ParameterError(f"hyper '{name}' must be >= 0 (0: do not fit it), got {v}")
        if self.sigma_energy == 0 and self.sigma_force == 0:
            raise ParameterError("hypers 'sigma_energy' and 'sigma_force' are both 0: nothing to "
                                 "fit")
        if not (isinstance(self.batch_atoms, int) and self.batch_atoms >= 1):
            raise ParameterError(f"hyper 'batch_atoms' must be an integer >= 1, got "
                                 f"{self.batch_atoms!r}")
        training.parse_config_sigma(self.config_type_sigma)

    @classmethod
    def from_dict(cls, data):
        from mlptools.models.threebody import ThreeBodyTermHypers
        from mlptools.models.twobody import TwoBodyTermHypers

        data = dict(data)
        nested = {}
        for key, sub in (("soap", SoapHypers), ("twobody", TwoBodyTermHypers),
                         ("threebody", ThreeBodyTermHypers)):
            value = data.pop(key, None)
            if key in cls.field_names() and (value is False or value == "none"):
                nested[key] = None           # "twobody": "none" switches the term off
            elif value is not None and key in cls.field_names():
                default = cls.__dataclass_fields__[key].default
                if key == "soap" and isinstance(value, (dict, str)):
                    # partial SOAP hypers sit on this kind's defaults (as --soap does)
                    value = (soap_from_spec(value, default) if isinstance(value, str)
                             else sub.from_dict({**default.to_dict(), **value}))
                elif isinstance(value, dict):
                    value = sub.from_dict(value)
                elif isinstance(value, str):
                    value = sub.from_string(value)
                nested[key] = value
            elif value is not None:
                data[key] = value           # reported as an unknown key below
        out = super().from_dict(data)
        return dataclasses.replace(out, **nested) if nested else out

    def to_dict(self):
        out = super().to_dict()
        for key in ("soap", "twobody", "threebody"):
            if out.get(key) is not None:
                out[key] = getattr(self, key).to_dict()
            elif key in out:
                out[key] = "none"
        return out


@dataclasses.dataclass(frozen=True)
class GapHypers(FitCommon):
    """Hypers of :func:`fit_gap` (``type = "gap"``).

    Attributes
    ----------
    soap : SoapHypers (normalised power spectrum; species are set from the data)
    zeta : int, kernel power ζ (gap_fit's customary 4; sharper kernels, ζ 8–12, won held-out
      splits of the training sets but not the independent test sets,
      benchmarks/results/cv-gap-defaults.txt)
    delta : float, eV, energy scale δ of the kernel
    n_sparse : int, sparse points (over all species)
    sparse_method : "cur" or "fps"
    jitter : float, added to the diagonal of K_mm (relative to δ²)
    twobody : TwoBodyTermHypers or None, the 2-body term (:mod:`mlptools.models.twobody`), on by
      default (cutoff 5 Å, δ 1 eV, θ 0.5 Å, 30 sparse distances per pair: on the mlearn
      subsets it lowered the test energy MAE from 4.6 to 2.7 meV/atom for Si and 4.3 to 2.4
      for Mo); ``"none"`` switches it off
    threebody : ThreeBodyTermHypers or None, the 3-body term on angle_3b triplets
      (:mod:`mlptools.models.threebody`), on by default (cutoff 3.7 Å, δ 0.1 eV, θ 1, 200 sparse
      triplets per species triple, 1200 over all triples); ``"none"`` switches it off
    sigma_energy, sigma_force, sigma_virial : float, eV/atom, eV/Å, eV/atom (0: not fitted)
    config_type_sigma : str, ``"Surface=0.004,0.1,0.1 ..."`` per config type overrides
    baseline : str, ``"zbl"`` (with optional ``inner=`` ``outer=``) or ``"none"``
    e0 : str, ``"Si=-0.16,..."`` (eV); empty: isolated-atom frames, else fitted
    batch_atoms : int, atoms whose gradients are held at once (bounds memory)
    """

    type: ClassVar[str] = "gap"

    soap: SoapHypers = DEFAULT_SOAP
    zeta: int = 4
    delta: float = 0.3
    n_sparse: int = 2000
    sparse_method: str = "cur"
    jitter: float = 1e-8
    twobody: object = dataclasses.field(default_factory=lambda: _default_twobody())
    threebody: object = dataclasses.field(default_factory=lambda: _default_threebody())

    def validate(self):
        super().validate()
        if not (isinstance(self.zeta, int) and self.zeta >= 1):
            raise ParameterError(f"gap hyper 'zeta' must be an integer >= 1, got {self.zeta!r}")
        if not (self.delta > 0):
            raise ParameterError(f"gap hyper 'delta' must be > 0 eV, got {self.delta}")
        if not (isinstance(self.n_sparse, int) and self.n_sparse >= 1):
            raise ParameterError(f"gap hyper 'n_sparse' must be an integer >= 1, got "
                                 f"{self.n_sparse!r}")
        if self.sparse_method not in METHODS:
            raise ParameterError(f"gap hyper 'sparse_method' must be one of "
                                 f"{', '.join(METHODS)}, got {self.sparse_method!r}")
        if not (self.jitter >= 0):
            raise ParameterError(f"gap hyper 'jitter' must be >= 0, got {self.jitter}")
        if not self.soap.normalize:
            raise ParameterError("gap: the soap hypers must have normalize=true (dot-product "
                                 "kernel)")


def _int_power(x, n):
    """x**n for an integer n >= 0 by repeated squaring (much faster than np.power; x unchanged)."""
    if n == 0:
        return np.ones_like(x)
    out, base = None, x
    while True:
        if n & 1:
            out = base.copy() if out is None else np.multiply(out, base, out=out)
        n >>= 1
        if not n:
            return out
        base = base * base


def _default_twobody():
    from mlptools.models.twobody import TwoBodyTermHypers

    return TwoBodyTermHypers()


def _default_threebody():
    from mlptools.models.threebody import ThreeBodyTermHypers

    return ThreeBodyTermHypers()


class _SoapKernel:
    """δ² (x·x_m)^ζ [Z = Z_m] and its feature derivative, one batch of rows at a time."""

    def __init__(self, Xs_mf, zs_m, zeta, delta):
        self.Xs, self.zs, self.zeta, self.d2 = Xs_mf, zs_m, int(zeta), float(delta) ** 2
        self.one_species = len(np.unique(zs_m)) <= 1
        self._key = None

    def _prepare(self, ds):
        if self._key is ds:
            return
        dot = ds.features @ self.Xs.T
        kp = _int_power(dot, self.zeta - 1)
        if not self.one_species:
            kp *= ds.center_species[:, None] == self.zs[None, :]
        self._k = self.d2 * kp * dot
        self._dk = self.d2 * self.zeta * kp
        self._key = ds

    def energy_cols(self, ds):
        self._prepare(ds)
        return self._k

    def grad_cols(self, ds, dX_gcf, rows_g):
        self._prepare(ds)
        G, C, F = dX_gcf.shape
        T = (dX_gcf.reshape(G * C, F) @ self.Xs.T).reshape(G, C, -1)
        T *= self._dk[rows_g][:, None, :]
        return T


@register("gap")
class GapModel(Model):
    """A fitted GAP (see the module docstring for the model and its file group)."""

    kind = "gap"

    def __init__(self, *, soap_hypers, zeta, delta, sparse_features, sparse_species, alpha,
                 variance_basis=None, force_uncertainty_scale=1.0, twobody_terms=(), **common):
        super().__init__(**common)
        self.twobody_terms = list(twobody_terms)
        self.soap_hypers = soap_hypers if isinstance(soap_hypers, SoapHypers) else \
            SoapHypers.from_dict(soap_hypers)
        self.zeta, self.delta = int(zeta), float(delta)
        self.sparse_features = np.ascontiguousarray(sparse_features, dtype=np.float64)
        self.sparse_species = np.asarray(sparse_species, dtype=np.int64)
        self.alpha = np.asarray(alpha, dtype=np.float64)
        self.variance_basis = variance_basis
        self.force_uncertainty_scale = float(force_uncertainty_scale)

    @property
    def cutoff(self):
        b = self.baseline.max_cutoff(self.species) if self.baseline is not None else 0.0
        return max([float(self.soap_hypers.cutoff), b] +
                   [t.hypers.cutoff for t in self.twobody_terms])

    @property
    def n_sparse(self):
        return self.alpha.shape[0]

    def descriptors(self, atoms, *, forces=True, stress=True):
        from mlptools.descriptors.soap import soap_power_spectrum

        return soap_power_spectrum([atoms], self.soap_hypers, gradients=forces, strain=stress)

    def _dot_and_power(self, X_nf, center_species):
        """x·x_m (n, m) and (x·x_m)^(ζ−1) [Z = Z_m] (n, m)."""
        dot = X_nf @ self.sparse_features.T
        kp = _int_power(dot, self.zeta - 1)
        if len(self.species) > 1:
            kp *= np.asarray(center_species)[:, None] == self.sparse_species[None, :]
        return dot, kp

    def local_energy(self, X_nf, center_species, parts=None):
        """Local energies (n,) eV and ∂ε/∂X (n, F) of features X (n, F): ε = δ² Σ_s α_s k_s
        (``parts``: :meth:`_dot_and_power` of X when the caller has it)."""
        dot, kp = parts or self._dot_and_power(X_nf, center_species)
        ka = kp * self.alpha[None, :]
        d2 = self.delta ** 2
        return d2 * (ka * dot).sum(axis=1), (d2 * self.zeta) * (ka @ self.sparse_features)

    def predict_ml(self, atoms, *, forces=True, stress=True, uncertainty=False):
        if uncertainty:
            # the force uncertainty needs each centre's neighbourhood: the full gradient path
            ds = self.descriptors(atoms, forces=True, stress=stress)
            dot, kp = self._dot_and_power(ds.features, ds.center_species)
            out = {}
            out["energies"], v = self.local_energy(ds.features, ds.center_species, (dot, kp))
            out.update(training.derivatives(ds, v, len(atoms), forces=forces, stress=stress))
            out.update(self._uncertainty(ds, self.delta ** 2 * kp * dot, len(atoms)))
        else:
            out = predict_soap_model(self, atoms, forces=forces, stress=stress)
        for term in self.twobody_terms:
            part = term.predict(atoms, forces=forces, stress=stress)
            out["energies"] = out["energies"] + part["energies"]
            for key in ("forces", "virial_de"):
                if key in part:
                    out[key] = out[key] + part[key]
        return out

    def local_variance(self, X_nf, kx_nm):
        """Predicted variance (eV²) of each local energy from features and k_x = δ² k(x, x_m)."""
        prior = self.delta ** 2 * np.einsum("nf,nf->n", X_nf, X_nf) ** self.zeta
        if self.variance_basis is None:
            return prior
        proj = kx_nm @ self.variance_basis
        return np.maximum(prior - np.einsum("nr,nr->n", proj, proj), 0.0)

    def _uncertainty(self, ds, kx, n_atoms):
        var = self.local_variance(ds.features, kx)
        out = {keys.ENERGIES_UNCERTAINTY: np.sqrt(var),
               keys.ENERGY_UNCERTAINTY: float(np.sqrt(var.sum()))}
        out[keys.FORCES_UNCERTAINTY] = self.force_uncertainty_scale * np.sqrt(
            _neighbourhood_mean(ds, var, n_atoms))
        return out

    def to_h5(self, group):
        group.attrs["zeta"] = self.zeta
        group.attrs["delta"] = self.delta
        group.attrs["hypers"] = self.soap_hypers.to_json()
        group.attrs["force_uncertainty_scale"] = self.force_uncertainty_scale
        group.create_dataset("sparse_features", data=self.sparse_features)
        group.create_dataset("sparse_species", data=self.sparse_species)
        group.create_dataset("alpha", data=self.alpha)
        if self.variance_basis is not None:
            group.create_dataset("variance_basis", data=self.variance_basis)
        for term in self.twobody_terms:
            term.to_h5(group)

    @classmethod
    def from_h5(cls, group, common):
        from mlptools.models.threebody import ThreeBodyTerm
        from mlptools.models.twobody import TwoBodyTerm

        vb = group["variance_basis"][()] if "variance_basis" in group else None
        return cls(soap_hypers=SoapHypers.from_json(group.attrs["hypers"]),
                   zeta=int(group.attrs["zeta"]), delta=float(group.attrs["delta"]),
                   sparse_features=group["sparse_features"][()],
                   sparse_species=group["sparse_species"][()], alpha=group["alpha"][()],
                   variance_basis=vb,
                   force_uncertainty_scale=float(group.attrs["force_uncertainty_scale"]),
                   twobody_terms=TwoBodyTerm.from_h5(group) + ThreeBodyTerm.from_h5(group),
                   **common)


def _neighbourhood_mean(ds, values_n, n_atoms):
    """Mean of ``values`` over the centres whose environment contains each atom (itself too)."""
    s = ds.grad_samples
    total = np.bincount(s[:, 2], weights=values_n[s[:, 0]], minlength=n_atoms)
    count = np.bincount(s[:, 2], minlength=n_atoms)
    return total / np.maximum(count, 1)


def _split_sparse(counts, n_sparse):
    """Sparse points per species ∝ atom counts, at least 1 each, at most the count."""
    total = sum(counts.values())
    out = {z: max(1, min(c, int(round(n_sparse * c / total)))) for z, c in counts.items()}
    return out


def _variance_basis(L, R):
    """W with W Wᵀ = K_mm⁻¹ − [(RᵀR)⁻¹]_mm (eigenvalues below 1e-12 of the largest dropped).

    ``L`` is the Cholesky factor of the SOAP K_mm; ``R`` may have further (2-body) columns
    after the SOAP ones: the SOAP block of (RᵀR)⁻¹ is the marginal posterior covariance.
    """
    from scipy.linalg import solve_triangular

    M = L.shape[0]
    Linv = solve_triangular(L, np.eye(M), lower=True)
    Rinv = solve_triangular(R, np.eye(R.shape[0]), lower=False)[:M]
    V = Linv.T @ Linv - Rinv @ Rinv.T
    V = 0.5 * (V + V.T)
    lam, U = np.linalg.eigh(V)
    keep = lam > 1e-12 * max(lam.max(), 1e-300)
    return np.ascontiguousarray(U[:, keep] * np.sqrt(lam[keep]))


def predict_soap_model(model, atoms, *, forces=True, stress=True):
    """``energies`` (n,) eV and, as asked, ``forces`` (n, 3) eV/Å and ``virial_de`` (3, 3) eV of
    a model with ``soap_hypers`` and ``local_energy(X, center_species)``; derivatives by the
    adjoint contraction (:func:`~mlptools.descriptors.soap.soap_energy_derivatives`)."""
    from mlptools.descriptors.soap import soap_energy_derivatives, soap_power_spectrum

    numbers = atoms.numbers
    if not (forces or stress):
        X = soap_power_spectrum([atoms], model.soap_hypers).features
        return {"energies": model.local_energy(X, numbers)[0]}
    res = soap_energy_derivatives(atoms, model.soap_hypers,
                                  lambda X: model.local_energy(X, numbers), stress=stress)
    out = {"energies": res["energies"]}
    if forces:
        out["forces"] = -res["dE_dr"]
    if stress:
        out["virial_de"] = res["dE_de"]
    return out


def soap_from_spec(spec, default):
    """SoapHypers from ``"key=value ..."`` on top of ``default`` (not of SoapHypers' defaults)."""
    from mlptools.descriptors.hypers import parse_key_values

    data = default.to_dict()
    data.update(parse_key_values(spec, "soap hypers"))
    return SoapHypers.from_dict(data)


def make_common(frames, hypers, species):
    """E0 and baseline shared by all kinds: (kwargs for Model.__init__)."""
    from mlptools.models import baselines
    from mlptools.models.base import fit_e0, parse_e0

    e0, method = fit_e0(frames, species, parse_e0(hypers.e0))
    baseline = baselines.from_string(hypers.baseline)
    if baseline is not None:
        baseline.fit_to(frames, species)
    return dict(species=species, e0=e0, e0_method=method, baseline=baseline,
                hypers=hypers.to_dict())


def prepare_fit(frames, hypers, **extra_hypers):
    """What every kind does first: species, E0, baseline and the targets of each frame.

    Returns (hypers with the SOAP species set, common Model kwargs, FrameTargets list).
    """
    species = training_species(frames)
    hypers = dataclasses.replace(hypers, soap=dataclasses.replace(hypers.soap, species=species))
    common = make_common(frames, hypers, species)
    common["hypers"].update(extra_hypers)
    use_f, use_s = hypers.sigma_force > 0, hypers.sigma_virial > 0
    if use_f:
        training.check_forces_present(frames, "train")
    targets = training.frame_targets(frames, Model(**common), hypers.sigmas(), use_forces=use_f,
                                     use_stress=use_s)
    if hypers.sigma_energy == 0:
        for t in targets:
            if t is not None:
                t.energy = None
    return hypers, common, targets


def training_species(frames):
    species = tuple(sorted({int(z) for a in frames for z in a.numbers}))
    if not species:
        raise ParameterError("no atoms in the training frames")
    return species


def fit_gap(frames, hypers=None, *, rng, descriptors=None, comm=None):
    """Fit a GAP to the labelled ``frames``.

    Parameters
    ----------
    frames : sequence of ase.Atoms with labels in ``atoms.calc.results`` (energy eV, forces eV/Å,
        stress eV/Å³) and optional ``info["config_type"]``, ``info["weight"]``
    hypers : GapHypers, dict or spec string (defaults: :class:`GapHypers`)
    rng : numpy.random.Generator (sparse point choice)
    descriptors : DescriptorSet, optional
        Precomputed SOAP of ``frames`` (``mlptools describe``, same hypers, with position and,
        when stresses are fitted, strain gradients) used instead of computing it.
    comm : mpi4py communicator, optional
        Every rank passes the same frames, hypers and seed (so all choose the same sparse
        points); the batches of design rows (SOAP with gradients, kernel columns) are built
        round-robin on the ranks, their R factors merged on rank 0 (:meth:`StackedQR.merge`),
        and the solution broadcast: every rank returns the same model as a serial fit.

    Returns
    -------
    GapModel (``training_errors`` not yet filled; see :func:`mlptools.workflows.fit.fit_model`)

    Raises
    ------
    InputError
        σ_F > 0 and a frame without forces; no labels.
    ComputationError
        K_mm not positive definite or a singular system (the message names the hyper to change).
    """
    from scipy.linalg import cholesky

    from mlptools.descriptors.soap import soap_power_spectrum
    from mlptools.models.sparsify import select_rows

    hypers = _as_hypers(hypers, GapHypers)
    frames = list(frames)
    hypers, common, targets = prepare_fit(frames, hypers)
    soap, species = hypers.soap, common["species"]
    use_f, use_s = hypers.sigma_force > 0, hypers.sigma_virial > 0

    t0 = time.perf_counter()
    if descriptors is not None:
        training.check_descriptors(descriptors, frames, soap, gradients=use_f, strain=use_s)
        ds_all = descriptors
    else:
        ds_all = soap_power_spectrum(frames, soap)
    X, Z = ds_all.features, ds_all.center_species
    counts = {z: int(np.count_nonzero(Z == z)) for z in species}
    chosen = []
    for z, n_z in _split_sparse(counts, hypers.n_sparse).items():
        rows = np.flatnonzero(Z == z)
        chosen.append(rows[select_rows(X[rows], n_z, hypers.sparse_method, rng=rng,
                                       zeta=hypers.zeta)])
    chosen = np.concatenate(chosen)
    Xs, zs = np.ascontiguousarray(X[chosen]), Z[chosen]
    M = len(chosen)
    del ds_all, X
    log.info("gap: %d sparse points (%s) from %d atoms in %.1f s", M, hypers.sparse_method,
             len(Z), time.perf_counter() - t0)

    d2 = hypers.delta ** 2
    K_mm = d2 * (Xs @ Xs.T) ** hypers.zeta * (zs[:, None] == zs[None, :])
    K_mm[np.diag_indices(M)] += hypers.jitter * d2
    try:
        L = cholesky(K_mm, lower=True)
    except np.linalg.LinAlgError:
        raise ComputationError("gap: K_mm of the sparse points is not positive definite; "
                               "increase hyper 'jitter' or lower 'n_sparse'") from None

    kernel = _SoapKernel(Xs, zs, hypers.zeta, hypers.delta)
    pair_terms = [] if hypers.twobody is None else twobody.make_terms(hypers.twobody, frames,
                                                                      species)
    if hypers.threebody is not None:
        from mlptools.models import threebody

        pair_terms += threebody.make_terms(hypers.threebody, frames, species)
    slices, n_cols = [slice(0, M)], M
    for term in pair_terms:
        slices.append(slice(n_cols, n_cols + term.n_sparse))
        n_cols += term.n_sparse
    qr = training.StackedQR(n_cols)
    prior = np.zeros((n_cols, n_cols))
    prior[:M, :M] = L.T
    for term, cols in zip(pair_terms, slices[1:], strict=True):
        k = term.kmm()
        k[np.diag_indices_from(k)] += hypers.jitter * term.hypers.delta ** 2 + 1e-10
        prior[cols, cols] = cholesky(k, lower=True).T
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    if rank == 0:
        qr.add(prior, np.zeros(n_cols))
    for k, batch in enumerate(training.batches(frames, hypers.batch_atoms)):
        if k % size != rank:
            continue
        t1 = time.perf_counter()
        sub = [a for _, a in batch]
        terms = [(training.batch_descriptors(batch, soap, descriptors, gradients=use_f,
                                             strain=use_s), kernel, slices[0])]
        for term, cols in zip(pair_terms, slices[1:], strict=True):
            terms.append((term.descriptors(sub, gradients=use_f, strain=use_s), term, cols))
        A, b = training.design_rows(batch, targets, terms, n_cols)
        qr.add(A, b)
        log.debug("gap: batch of %d frames, %d rows in %.2f s", len(batch), len(b),
                  time.perf_counter() - t1)
    w, R = _solve(qr, comm)
    if not np.all(np.isfinite(w)):
        raise ComputationError("gap: the weights are not finite; raise hyper 'jitter'")
    log.info("gap: solved %d rows x %d in %.1f s", qr.n_rows, n_cols, time.perf_counter() - t0)
    for term, cols in zip(pair_terms, slices[1:], strict=True):
        term.alpha = w[cols]
    model = GapModel(soap_hypers=soap, zeta=hypers.zeta, delta=hypers.delta,
                     sparse_features=Xs, sparse_species=zs, alpha=w[:M],
                     variance_basis=_variance_basis(L, R), twobody_terms=pair_terms, **common)
    return model


def _as_hypers(hypers, cls):
    """``cls`` from None (the defaults), an instance, a dict or a spec string."""
    from mlptools.descriptors._inputs import as_hypers as parse

    return cls() if hypers is None else parse(hypers, cls)


def _solve(qr, comm):
    """Weights and R of the stacked system; with ``comm``, solved on rank 0 and broadcast."""
    what = "lower hyper 'n_sparse' or raise 'jitter' / the sigmas"
    if comm is None:
        return qr.solve(what)
    qr.merge(comm)
    result = None
    if comm.Get_rank() == 0:
        try:
            result = qr.solve(what)
        except ComputationError as exc:
            result = exc
    result = comm.bcast(result, root=0)
    if isinstance(result, ComputationError):
        raise result
    return result


def calibrate_force_uncertainty(model, frames, predictions):
    """Set ``model.force_uncertainty_scale`` so that mean(σ_F²) = mean(|ΔF|²)/3 on ``frames``.

    ``predictions``: dicts of :meth:`Model.predict` with ``uncertainty=True`` (unscaled).
    """
    num = den = 0.0
    for atoms, p in zip(frames, predictions, strict=True):
        res = atoms.calc.results if atoms.calc is not None else {}
        if res.get(keys.FORCES) is None or p.get(keys.FORCES_UNCERTAINTY) is None:
            continue
        err = np.asarray(res[keys.FORCES]) - p["forces"]
        num += float(np.sum(err ** 2)) / 3.0
        den += float(np.sum((p[keys.FORCES_UNCERTAINTY] / model.force_uncertainty_scale) ** 2))
    if den > 0 and num > 0:
        model.force_uncertainty_scale = float(np.sqrt(num / den))

