"""Behler–Parrinello neural-network potential: one small feed-forward network per species.

Index letters: ``r`` descriptor rows (one per atom), ``s`` structures, ``n`` atoms of all
structures concatenated, ``c`` Cartesian, ``f`` features, ``g`` gradient samples, ``v`` Voigt
components (xx, yy, zz, yz, xz, xy), ``h`` hidden units.

Model
-----
Each atom i of species Z has a descriptor x_i (ACSF or SOAP, :mod:`mlptools.descriptors`), scaled
per species, u_i = (x_i − μ_Z)/s_Z, and a local energy (on top of the per-species E0 and the
baseline that every model kind shares)::

    ε_i = e_scale · NN_Z(u_i),   NN(u) = w_out · a_L + b_out,
    a_l = σ(z_l),  z_l = a_{l−1} W_l + b_l,  a_0 = u

with σ = tanh or softplus and e_scale a fixed energy unit (the RMS per-atom energy of the
training targets). With g_i = ∂E/∂u_i (back-propagation through the network) and the sparse
descriptor Jacobian J (rows (i, f), columns (j, c), J = ∂u_if/∂r_jc = (∂x_if/∂r_jc)/s_Zf)::

    F_jc = −Σ_if g_if J_if,jc                 (F = −Jᵀ g)
    dE/dε_v = Σ_if g_if ∂u_if/∂ε_v             (stress = (1/V) dE/dε, ASE sign)

Training loss: the weighted least squares of gap_fit's rows (energy rows with σ_E·√n_s, force
components with σ_F, virial components dE/dε with σ_V·√n_s; σ_E, σ_V in eV/atom, σ_F in eV/Å),
divided by the number of atoms N of the training structures, plus weight decay::

    L = (1/N) [Σ_s (ΔE_s/σ_E√n_s)² + Σ_jc (ΔF_jc/σ_F)² + Σ_sv (ΔdE/dε_sv /σ_V√n_s)²]
        + λ Σ_l ‖W_l‖²

Gradient of the loss with respect to the weights θ ("double back-propagation"). L depends on θ
through the local energies ε_i(θ) and their input gradients g_i(θ). With c_i = ∂L/∂ε_i and
q_i = ∂L/∂g_i (q = −J ρ + virial part, ρ = ∂L/∂F), dL/dθ = Σ_i c_i ∂ε_i/∂θ + Σ_i q_i·∂g_i/∂θ,
which is the gradient of Φ = Σ_i [c_i ε_i + D_i] with c, q held fixed, where D_i = g_i·q_i is
the directional derivative of ε_i along q_i. D_i is computed by forward-mode (tangent)
propagation, ȧ_0 = q_i, ż_l = ȧ_{l−1} W_l, ȧ_l = σ'(z_l) ż_l, D = e_scale · w_out·ȧ_L, and Φ is
then back-propagated through both the primal and the tangent chains::

    ∂Φ/∂w_out = e_scale Σ_i (c_i a_L + ȧ_L),  ∂Φ/∂b_out = e_scale Σ_i c_i
    ā_L = e_scale c_i w_out,  ǡ_L = e_scale w_out
    for l = L..1:
        ż̄_l = ǡ_l σ'(z_l)
        z̄_l = ā_l σ'(z_l) + ǡ_l ż_l σ''(z_l)
        ∂Φ/∂W_l = a_{l−1}ᵀ z̄_l + ȧ_{l−1}ᵀ ż̄_l,   ∂Φ/∂b_l = Σ_i z̄_l
        ā_{l−1} = z̄_l W_lᵀ,   ǡ_{l−1} = ż̄_l W_lᵀ

Optimisers: L-BFGS (scipy's L-BFGS-B, full batch) or Adam (mini-batches of structures), both with
a validation split and early stopping on the validation loss (the best weights are kept).

Model file group ``/model`` (kind "nn")::

    attrs: nn_hypers (JSON), descriptor_hypers (JSON, species resolved), energy_scale (eV),
           info (JSON training record)
    species_<Z>/params        (n_params,) float64, the flat weights [W_1, b_1, ..., w_out, b_out]
    species_<Z>/feature_mean  (F,) float64
    species_<Z>/feature_std   (F,) float64
"""

import dataclasses
import json
import logging
import math
import time
from typing import ClassVar

import numpy as np
import scipy.sparse

from mlptools import keys
from mlptools.descriptors.acsf import load_acsf_hypers
from mlptools.descriptors.hypers import AcsfHypers, SoapHypers
from mlptools.errors import ComputationError, InputError, ParameterError
from mlptools.models.base import Model, register
from mlptools.models.gap import FitCommon, _as_hypers, prepare_fit, training_species

__all__ = [
    "NNCheckpoint",
    "NNHypers",
    "NNModel",
    "Targets",
    "fit_nn",
    "select_structures",
    "train_nn",
]

logger = logging.getLogger(__name__)

#: descriptor kinds with one row per atom (the ones a per-atom network can use)
PER_ATOM_DESCRIPTORS = ("acsf", "soap")
ACTIVATIONS = ("tanh", "softplus")
OPTIMIZERS = ("lbfgs", "adam")
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


# ---------------------------------------------------------------------------------------------
# hyperparameters


def _real(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _count(x):
    return isinstance(x, int) and not isinstance(x, bool)


#: descriptors of nn fits: the ACSF "fine" preset (24 functions per species pair; on mlearn Si
#: it gave 4.9 meV/atom and 0.14 eV/Å held out against 6.5 and 0.16 with "default"), or
#: (descriptor=soap) this SOAP
DEFAULT_ACSF = load_acsf_hypers("fine")
DEFAULT_SOAP = SoapHypers(cutoff=5.0, cutoff_width=1.0, n_max=6, l_max=4, sigma=0.5,
                          normalize=False)


def acsf_from(value):
    """AcsfHypers from AcsfHypers, a dict, a preset name / JSON file, or a spec string."""
    if isinstance(value, AcsfHypers):
        return value
    if isinstance(value, dict):
        return AcsfHypers.from_dict(value)
    text = str(value)
    return AcsfHypers.from_string(text) if "=" in text else load_acsf_hypers(text)


@dataclasses.dataclass(frozen=True)
class NNHypers(FitCommon):
    """Hypers of :func:`fit_nn` (``type = "nn"``): descriptor, architecture and training.

    Attributes
    ----------
    descriptor : str. ``"acsf"`` or ``"soap"``: which of the two fields below the networks use.
    acsf : AcsfHypers (default: the ``fine`` preset; a preset name, JSON file or spec string
        on input). soap : SoapHypers (default: cutoff 5 Å, n_max 6, l_max 4, not normalised).
        Species are set from the data.
    hidden : tuple of int. Hidden layer widths (the same for every species), e.g. ``(25, 25)``.
    activation : str. ``"tanh"`` or ``"softplus"``.
    l2 : float. Weight decay λ on the weight matrices (not the biases), dimensionless.
    optimizer : str. ``"lbfgs"`` (full batch) or ``"adam"`` (mini-batches of structures).
    max_iter : int. L-BFGS iterations, or Adam epochs.
    valid_fraction : float. Fraction of the training structures held out for early stopping
        (0 = none).
    patience : int. Stop after this many iterations (epochs) without a better validation loss
        (0 = never stop early).
    learning_rate : float. Adam step size (in units of the weights).
    batch_size : int. Structures per Adam step.
    (and sigma_energy eV/atom, sigma_force eV/Å, sigma_virial eV/atom, config_type_sigma,
    baseline, e0, batch_atoms of :class:`~mlptools.models.gap.FitCommon`)
    """

    type: ClassVar[str] = "nn"

    descriptor: str = "acsf"
    acsf: AcsfHypers = DEFAULT_ACSF
    soap: SoapHypers = DEFAULT_SOAP
    hidden: tuple[int, ...] = (25, 25)
    activation: str = "tanh"
    l2: float = 1e-6
    optimizer: str = "lbfgs"
    max_iter: int = 1000
    valid_fraction: float = 0.1
    patience: int = 100
    learning_rate: float = 0.005
    batch_size: int = 8

    def __post_init__(self):
        hidden = (self.hidden,) if isinstance(self.hidden, int) else tuple(self.hidden)
        object.__setattr__(self, "hidden", hidden)
        object.__setattr__(self, "acsf", acsf_from(self.acsf))
        if isinstance(self.soap, dict):
            object.__setattr__(self, "soap", SoapHypers.from_dict(self.soap))
        elif isinstance(self.soap, str):
            object.__setattr__(self, "soap", SoapHypers.from_string(self.soap))
        for name in ("sigma_energy", "sigma_force", "sigma_virial", "l2", "valid_fraction",
                     "learning_rate"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        super().__post_init__()

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        acsf = data.pop("acsf", None)
        out = super().from_dict(data)
        if acsf is not None:
            out = dataclasses.replace(out, acsf=acsf_from(acsf))
        return out

    def to_dict(self):
        out = super().to_dict()
        out["acsf"] = self.acsf.to_dict()
        return out

    @property
    def descriptor_hypers(self):
        """The hypers of the chosen descriptor (AcsfHypers or SoapHypers)."""
        return self.acsf if self.descriptor == "acsf" else self.soap

    def validate(self):
        super().validate()
        if self.descriptor not in PER_ATOM_DESCRIPTORS:
            raise ParameterError(f"nn hyper 'descriptor' must be one of "
                                 f"{', '.join(PER_ATOM_DESCRIPTORS)}, got {self.descriptor!r}")
        if not self.hidden or not all(_count(h) and 1 <= h <= 4096 for h in self.hidden):
            raise ParameterError(f"nn hyper 'hidden' must be one or more layer widths in 1..4096, "
                                 f"got {self.hidden!r}")
        if self.activation not in ACTIVATIONS:
            raise ParameterError(f"nn hyper 'activation' must be one of {', '.join(ACTIVATIONS)}, "
                                 f"got {self.activation!r}")
        if not (_real(self.l2) and self.l2 >= 0):
            raise ParameterError(f"nn hyper 'l2' must be >= 0, got {self.l2}")
        if self.optimizer not in OPTIMIZERS:
            raise ParameterError(f"nn hyper 'optimizer' must be one of {', '.join(OPTIMIZERS)}, "
                                 f"got {self.optimizer!r}")
        for name in ("max_iter", "batch_size"):
            value = getattr(self, name)
            if not (_count(value) and value >= 1):
                raise ParameterError(f"nn hyper '{name}' must be an integer >= 1, got {value!r}")
        if not (_real(self.valid_fraction) and 0 <= self.valid_fraction < 1):
            raise ParameterError(f"nn hyper 'valid_fraction' must be in [0, 1), "
                                 f"got {self.valid_fraction}")
        if not (_count(self.patience) and self.patience >= 0):
            raise ParameterError(f"nn hyper 'patience' must be an integer >= 0, "
                                 f"got {self.patience!r}")
        if not (_real(self.learning_rate) and self.learning_rate > 0):
            raise ParameterError(f"nn hyper 'learning_rate' must be > 0, got {self.learning_rate}")


# ---------------------------------------------------------------------------------------------
# targets


@dataclasses.dataclass
class Targets:
    """Fitting targets of a list of structures (E0 and baseline removed), NaN where absent.

    Attributes
    ----------
    n_atoms : (n_structures,) int64
    energy : (n_structures,) float64, eV;  sigma_energy : (n_structures,) eV (σ_E·√n)
    forces : (n_atoms_total, 3) float64, eV/Å;  sigma_force : (n_structures,) eV/Å
    de : (n_structures, 6) float64, eV, Voigt dE/dε = V·stress;  sigma_virial : (n_structures,)
        eV (σ_V·√n)
    """

    n_atoms: np.ndarray
    energy: np.ndarray
    sigma_energy: np.ndarray
    forces: np.ndarray
    sigma_force: np.ndarray
    de: np.ndarray
    sigma_virial: np.ndarray

    @property
    def n_structures(self):
        return int(self.n_atoms.shape[0])

    @property
    def atom_offset(self):
        """(n_structures + 1,) first atom row of each structure (and the total)."""
        return np.concatenate([[0], np.cumsum(self.n_atoms)]).astype(np.int64)

    @classmethod
    def from_frame_targets(cls, frame_targets, n_atoms):
        """From per-frame records with ``energy``, ``forces``, ``de``, ``sigma`` (or None).

        ``sigma`` is (σ_E·√n, σ_F, σ_V·√n) as :func:`mlptools.models.training.frame_targets`
        gives it; a None record (weight 0, no labels) is a structure that is not fitted.
        """
        n_atoms = np.asarray(n_atoms, dtype=np.int64)
        S, N = n_atoms.shape[0], int(n_atoms.sum())
        out = cls(n_atoms=n_atoms, energy=np.full(S, np.nan), sigma_energy=np.ones(S),
                  forces=np.full((N, 3), np.nan), sigma_force=np.ones(S),
                  de=np.full((S, 6), np.nan), sigma_virial=np.ones(S))
        off = out.atom_offset
        for s, t in enumerate(frame_targets):
            if t is None:
                continue
            out.sigma_energy[s], out.sigma_force[s], out.sigma_virial[s] = t.sigma
            if t.energy is not None:
                out.energy[s] = t.energy
            if t.forces is not None:
                out.forces[off[s]:off[s + 1]] = t.forces
            if t.de is not None:
                out.de[s] = t.de
        return out

    def subset(self, index):
        off = self.atom_offset
        atoms = (np.concatenate([np.arange(off[s], off[s + 1]) for s in index]) if len(index)
                 else np.zeros(0, np.int64))
        return Targets(n_atoms=self.n_atoms[index], energy=self.energy[index],
                       sigma_energy=self.sigma_energy[index], forces=self.forces[atoms],
                       sigma_force=self.sigma_force[index], de=self.de[index],
                       sigma_virial=self.sigma_virial[index])


def select_structures(descriptors, index):
    """The descriptors of the structures ``index`` (in that order), renumbered 0..k−1.

    Parameters
    ----------
    descriptors : DescriptorSet with per-atom rows (and optionally gradients / strain gradients)
    index : (k,) int, structure indices (each at most once)

    Returns
    -------
    DescriptorSet
    """
    from mlptools.descriptors.descriptor_set import DescriptorSet

    index = np.asarray(index, dtype=np.int64)
    new_of_old = np.full(descriptors.n_structures, -1, np.int64)
    new_of_old[index] = np.arange(index.shape[0])
    rows = np.flatnonzero(new_of_old[descriptors.structure_index] >= 0)
    # keep the new structure order: sort the kept rows by new structure, stably
    rows = rows[np.argsort(new_of_old[descriptors.structure_index[rows]], kind="stable")]
    new_row = np.full(descriptors.n_rows, -1, np.int64)
    new_row[rows] = np.arange(rows.shape[0])
    out = dict(
        kind=descriptors.kind, hypers=descriptors.hypers, features=descriptors.features[rows],
        structure_index=new_of_old[descriptors.structure_index[rows]],
        center_index=descriptors.center_index[rows],
        center_species=descriptors.center_species[rows], n_structures=int(index.shape[0]),
        feature_names=descriptors.feature_names,
    )
    if descriptors.grad_values is not None:
        g = np.flatnonzero(new_row[descriptors.grad_samples[:, 0]] >= 0)
        g = g[np.argsort(new_row[descriptors.grad_samples[g, 0]], kind="stable")]
        samples = descriptors.grad_samples[g].copy()
        samples[:, 0] = new_row[samples[:, 0]]
        samples[:, 1] = new_of_old[samples[:, 1]]
        out["grad_values"] = descriptors.grad_values[g]
        out["grad_samples"] = samples
    if descriptors.strain_grad is not None:
        out["strain_grad"] = descriptors.strain_grad[rows]
    return DescriptorSet(**out)


# ---------------------------------------------------------------------------------------------
# activations and the per-species network


def _activation(name):
    """Return f(z) -> (σ(z), σ'(z), σ''(z))."""
    if name == "tanh":
        def tanh(z):
            a = np.tanh(z)
            d1 = 1.0 - a * a
            return a, d1, -2.0 * a * d1
        return tanh
    if name == "softplus":
        from scipy.special import expit

        def softplus(z):
            s = expit(z)
            return np.logaddexp(0.0, z), s, s * (1.0 - s)
        return softplus
    raise ParameterError(f"unknown activation {name!r}")


def _layer_shapes(n_features, hidden):
    widths = [n_features, *hidden, 1]
    return [(widths[k], widths[k + 1]) for k in range(len(widths) - 1)]


def _n_params(shapes):
    return sum(a * b + b for a, b in shapes)


def _unpack(theta, shapes):
    """Flat parameter vector -> list of (W (n_in, n_out), b (n_out,)) views."""
    out, k = [], 0
    for a, b in shapes:
        W = theta[k:k + a * b].reshape(a, b)
        k += a * b
        out.append((W, theta[k:k + b]))
        k += b
    return out


def _init_params(shapes, rng):
    """LeCun-normal weights (variance 1/fan-in, suited to tanh), zero biases."""
    parts = []
    for a, b in shapes:
        parts.append(rng.normal(0.0, 1.0 / math.sqrt(a), size=a * b))
        parts.append(np.zeros(b))
    return np.concatenate(parts)


def _forward(params, u, act):
    """Primal pass: output o (n,), and the cache (inputs a_{l−1}, σ', σ'') of each layer."""
    cache = []
    a = u
    for W, b in params[:-1]:
        z = a @ W + b
        a_next, d1, d2 = act(z)
        cache.append((a, d1, d2))
        a = a_next
    W, b = params[-1]
    return a @ W[:, 0] + b[0], cache, a


def _input_gradient(params, cache):
    """∂o/∂u (n, F) by back-propagation (o the raw network output)."""
    W_out = params[-1][0][:, 0]
    abar = np.broadcast_to(W_out, (cache[-1][1].shape[0], W_out.shape[0]))
    for (W, _), (_, d1, _) in zip(reversed(params[:-1]), reversed(cache), strict=True):
        abar = (abar * d1) @ W.T
    return abar


def _double_backprop(params, cache, a_last, q, c, scale):
    """Gradient w.r.t. the parameters of Φ = scale·Σ_i (c_i o_i + q_i·∂o_i/∂u_i).

    See the module docstring for the recurrences. Returns a list of (dW, db) like ``params``.
    """
    # tangent forward: ż_l = ȧ_{l−1} W_l, ȧ_l = σ'(z_l) ż_l
    adots, zdots = [q], []
    adot = q
    for (W, _), (_, d1, _) in zip(params[:-1], cache, strict=True):
        zdot = adot @ W
        zdots.append(zdot)
        adot = d1 * zdot
        adots.append(adot)
    W_out = params[-1][0][:, 0]
    grads = [None] * len(params)
    sc = scale * c
    grads[-1] = ((a_last.T @ sc + scale * adot.sum(axis=0))[:, None], np.array([sc.sum()]))
    abar = sc[:, None] * W_out[None, :]
    adotbar = np.broadcast_to(scale * W_out, abar.shape)
    for layer in range(len(params) - 2, -1, -1):
        W = params[layer][0]
        a_in, d1, d2 = cache[layer]
        zdotbar = adotbar * d1
        zbar = abar * d1 + adotbar * zdots[layer] * d2
        grads[layer] = (a_in.T @ zbar + adots[layer].T @ zdotbar, zbar.sum(axis=0))
        if layer:
            abar = zbar @ W.T
            adotbar = zdotbar @ W.T
    return grads


# ---------------------------------------------------------------------------------------------
# a block of structures prepared for repeated evaluation


class _Block:
    """Scaled features, sparse Jacobian and targets of a set of structures (built once).

    Attributes
    ----------
    rows : dict Z -> (n_z,) int, the descriptor rows of each species
    u : (n_rows, F) scaled features
    J : csr (n_rows·F, 3·n_atoms), ∂u/∂r (None without gradients);  JT its transpose (csr)
    S_rvf : (n_rows, 6, F) ∂u/∂ε in Voigt order (None without strain gradients)
    """

    def __init__(self, descriptors, species, mean, std, targets=None, weight=None,
                 forces=True, stress=True):
        ds = descriptors
        self.n_structures = ds.n_structures
        self.n_rows = ds.n_rows
        self.n_features = ds.n_features
        self.structure_of_row = ds.structure_index
        self.n_atoms = np.bincount(ds.structure_index, minlength=ds.n_structures)
        offset = np.concatenate([[0], np.cumsum(self.n_atoms)]).astype(np.int64)
        self.n_total = int(offset[-1])
        # global atom of each row (one row per atom; the structures are contiguous)
        self.atom_of_row = offset[ds.structure_index] + ds.center_index
        unknown = sorted(set(np.unique(ds.center_species).tolist()) - set(species))
        if unknown:
            from ase.data import chemical_symbols

            raise InputError(f"species {', '.join(chemical_symbols[z] for z in unknown)} not "
                             "covered by the nn model")
        self.rows = {z: np.flatnonzero(ds.center_species == z) for z in species}
        inv_std = np.empty((ds.n_rows, ds.n_features))
        self.u = np.empty((ds.n_rows, ds.n_features))
        for z, r in self.rows.items():
            inv_std[r] = 1.0 / std[z]
            self.u[r] = (ds.features[r] - mean[z]) * inv_std[r]
        self.J = self.JT = None
        if forces and ds.grad_values is not None:
            F = ds.n_features
            rows_g = ds.grad_samples[:, 0]
            atom_g = offset[ds.grad_samples[:, 1]] + ds.grad_samples[:, 2]
            vals = ds.grad_values * inv_std[rows_g][:, None, :]           # (g, 3, F)
            r_idx = rows_g[:, None, None] * F + np.arange(F)[None, None, :]
            c_idx = atom_g[:, None, None] * 3 + np.arange(3)[None, :, None]
            r_idx, c_idx = np.broadcast_arrays(r_idx, c_idx)
            self.J = scipy.sparse.csr_matrix((vals.ravel(), (r_idx.ravel(), c_idx.ravel())),
                                             shape=(ds.n_rows * F, 3 * self.n_total))
            self.JT = self.J.T.tocsr()
        self.S_rvf = None
        if stress and ds.strain_grad is not None:
            S = np.stack([ds.strain_grad[:, a, b, :] for a, b in VOIGT], axis=1)
            self.S_rvf = S * inv_std[:, None, :]
        if targets is not None:
            self._set_targets(targets, weight)

    def _set_targets(self, t, weight):
        if not np.array_equal(t.n_atoms, self.n_atoms):
            raise InputError("targets and descriptors describe different structures")
        w_s = np.ones(self.n_structures) if weight is None else np.asarray(weight, float)
        has_e = np.isfinite(t.energy)
        has_f = np.isfinite(t.forces).all(axis=1)
        has_v = np.isfinite(t.de).all(axis=1)
        structure_of_atom = np.repeat(np.arange(self.n_structures), self.n_atoms)
        has_f_s = np.bincount(structure_of_atom, weights=has_f, minlength=self.n_structures) > 0
        active = (has_e | has_v | has_f_s) & (w_s > 0)
        # weights of the squared residuals, normalised by the atoms of the fitted structures
        norm = float(np.sum(self.n_atoms[active])) or 1.0

        def inv_sq(sigma, mask):  # σ = 0 means "not fitted"
            ok = mask & active & (sigma > 0)
            return np.where(ok, w_s / np.where(ok, sigma, 1.0) ** 2, 0.0) / norm

        self.w_e = inv_sq(t.sigma_energy, has_e)
        self.e_ref = np.nan_to_num(t.energy)
        w_atom = np.repeat(inv_sq(t.sigma_force, np.ones_like(active)), self.n_atoms)
        self.w_f = np.repeat(np.where(has_f, w_atom, 0.0), 3)
        self.f_ref = np.nan_to_num(t.forces).ravel()
        self.w_v = inv_sq(t.sigma_virial, has_v)
        self.v_ref = np.nan_to_num(t.de)
        self.active = active


# ---------------------------------------------------------------------------------------------
# the model


@register("nn")
class NNModel(Model):
    """A fitted Behler–Parrinello potential (see the module docstring).

    Parameters
    ----------
    nn_hypers : NNHypers
    descriptor_hypers : dict, ``to_dict()`` of the descriptor hypers (species resolved)
    params : dict Z -> (n_params,) float64, flat weights of each species' network
    feature_mean, feature_std : dict Z -> (F,) float64, feature scaling
    energy_scale : float, eV, multiplies the network output
    info : dict, training record (iterations, losses, time, sizes)
    **common : species, e0, e0_method, baseline, hypers, training_errors (:class:`Model`)
    """

    kind = "nn"

    def __init__(self, *, nn_hypers, descriptor_hypers, params, feature_mean, feature_std,
                 energy_scale, info=None, **common):
        super().__init__(**common)
        self.nn_hypers = nn_hypers
        self.descriptor_hypers = dict(descriptor_hypers)
        self.params = {int(z): np.asarray(v, dtype=np.float64) for z, v in params.items()}
        self.feature_mean = {int(z): np.asarray(v, dtype=np.float64)
                             for z, v in feature_mean.items()}
        self.feature_std = {int(z): np.asarray(v, dtype=np.float64)
                            for z, v in feature_std.items()}
        self.energy_scale = float(energy_scale)
        self.info = dict(info or {})

    @property
    def cutoff(self):
        """Descriptor cutoff (Å), or the baseline's if larger."""
        b = self.baseline.max_cutoff(self.species) if self.baseline is not None else 0.0
        return max(float(self.descriptor_hypers["cutoff"]), b)

    @property
    def n_features(self):
        return int(self.feature_mean[self.species[0]].shape[0])

    def _shapes(self):
        return _layer_shapes(self.n_features, self.nn_hypers.hidden)

    def _theta(self):
        return np.concatenate([self.params[z] for z in self.species])

    def descriptors(self, frames, *, forces=True, stress=True):
        """Descriptors of ``frames`` (list of ase.Atoms) with this model's descriptor hypers."""
        return compute_descriptors(frames, self.descriptor_hypers, gradients=forces,
                                   strain=stress)

    def predict_descriptors(self, descriptors, *, forces=True, stress=True):
        """ML energies, forces and dE/dε of the structures of precomputed descriptors.

        Returns
        -------
        dict with ``energy`` (n_structures,) eV, ``energies`` (n_atoms_total,) eV, and when the
        descriptors carry them ``forces`` (n_atoms_total, 3) eV/Å and ``de`` (n_structures, 6)
        eV (Voigt dE/dε). E0 and the baseline are not included.
        """
        block = _Block(descriptors, self.species, self.feature_mean, self.feature_std,
                       forces=forces, stress=stress)
        return _predict(self._theta(), block, self)

    def predict_ml(self, atoms, *, forces=True, stress=True, uncertainty=False):
        """The ML part of one structure: ``energies`` (n,) eV, ``forces`` (n, 3) eV/Å,
        ``virial_de`` dE/dε (3, 3) eV; uncertainty keys NaN (one network has no spread)."""
        ds = self.descriptors([atoms], forces=forces, stress=stress)
        raw = self.predict_descriptors(ds, forces=forces, stress=stress)
        out = {"energies": raw["energies"]}
        if forces:
            out["forces"] = raw["forces"]
        if stress:
            out["virial_de"] = voigt_to_matrix(raw["de"][0])
        if uncertainty:
            n = len(atoms)
            out.update({keys.ENERGY_UNCERTAINTY: math.nan,
                        keys.ENERGIES_UNCERTAINTY: np.full(n, np.nan),
                        keys.FORCES_UNCERTAINTY: np.full(n, np.nan)})
        return out

    def to_h5(self, group):
        """Fill the ``/model`` group (layout in the module docstring)."""
        group.attrs["nn_hypers"] = self.nn_hypers.to_json()
        group.attrs["descriptor_hypers"] = json.dumps(self.descriptor_hypers, sort_keys=True)
        group.attrs["energy_scale"] = self.energy_scale
        group.attrs["info"] = json.dumps(self.info, sort_keys=True, default=str)
        for z in self.species:
            g = group.create_group(f"species_{z}")
            g.create_dataset("params", data=self.params[z])
            g.create_dataset("feature_mean", data=self.feature_mean[z])
            g.create_dataset("feature_std", data=self.feature_std[z])

    @classmethod
    def from_h5(cls, group, common):
        """Read what :meth:`to_h5` wrote; ``common`` holds species, e0, baseline, ...

        Raises
        ------
        InputError
            Missing datasets, or weights that do not match the stored architecture.
        """
        where = getattr(getattr(group, "file", None), "filename", "model file")
        species = tuple(int(z) for z in common["species"])
        try:
            model = cls(
                nn_hypers=NNHypers.from_json(_text(group.attrs["nn_hypers"])),
                descriptor_hypers=json.loads(_text(group.attrs["descriptor_hypers"])),
                params={z: group[f"species_{z}/params"][()] for z in species},
                feature_mean={z: group[f"species_{z}/feature_mean"][()] for z in species},
                feature_std={z: group[f"species_{z}/feature_std"][()] for z in species},
                energy_scale=float(group.attrs["energy_scale"]),
                info=json.loads(_text(group.attrs.get("info", "{}"))), **common)
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{where}: damaged nn model ({exc})") from None
        expect = _n_params(model._shapes())
        if any(model.params[z].shape != (expect,) for z in species):
            raise InputError(f"{where}: nn weights do not match the architecture "
                             f"hidden={model.nn_hypers.hidden}")
        return model


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def voigt_to_matrix(v):
    """Voigt (xx, yy, zz, yz, xz, xy) -> symmetric 3x3."""
    m = np.empty((3, 3))
    for k, (a, b) in enumerate(VOIGT):
        m[a, b] = m[b, a] = v[k]
    return m


def compute_descriptors(frames, descriptor_hypers, *, gradients=True, strain=True):
    """Per-atom descriptors (ACSF or SOAP) from hypers given as a ``to_dict()`` dict."""
    from mlptools.descriptors.compute import _calculators

    hypers = descriptor_from_dict(descriptor_hypers)
    return _calculators()[hypers.type](frames, hypers, gradients=gradients, strain=strain)


def descriptor_from_dict(data):
    """AcsfHypers or SoapHypers from a ``to_dict()`` dict (its ``"type"`` key)."""
    from mlptools.descriptors.hypers import AcsfHypers, SoapHypers

    classes = {"acsf": AcsfHypers, "soap": SoapHypers}
    kind = data.get("type")
    if kind not in classes:
        raise ParameterError(f"nn models need per-atom descriptors ({', '.join(classes)}), "
                             f"got {kind!r}")
    return classes[kind].from_dict(data)


# ---------------------------------------------------------------------------------------------
# evaluation: predictions, loss and its gradient


def _network_pass(theta, block, model, *, need_cache):
    """Per-species forward and input-gradient passes.

    Returns o (n_rows,) raw outputs, g (n_rows, F) = ∂E/∂u, and per-species caches.
    """
    shapes = model._shapes()
    act = _activation(model.nn_hypers.activation)
    n_per = _n_params(shapes)
    o = np.zeros(block.n_rows)
    g = np.zeros((block.n_rows, block.n_features))
    caches = {}
    for k, z in enumerate(model.species):
        rows = block.rows[z]
        if rows.size == 0:
            continue
        params = _unpack(theta[k * n_per:(k + 1) * n_per], shapes)
        o_z, cache, a_last = _forward(params, block.u[rows], act)
        o[rows] = o_z
        g[rows] = model.energy_scale * _input_gradient(params, cache)
        if need_cache:
            caches[z] = (params, cache, a_last)
    return o, g, caches


def _physical(o, g, block, model, *, forces=True):
    """Local energies (n_rows,), structure energies, forces (flat), dE/dε (s, 6) or None."""
    e_row = model.energy_scale * o
    energy = np.bincount(block.structure_of_row, weights=e_row, minlength=block.n_structures)
    f_flat = -(block.JT @ g.ravel()) if (forces and block.JT is not None) else None
    de = None
    if block.S_rvf is not None:
        t_rv = np.einsum("rvf,rf->rv", block.S_rvf, g)
        de = np.stack([np.bincount(block.structure_of_row, weights=t_rv[:, v],
                                   minlength=block.n_structures) for v in range(6)], axis=1)
    return e_row, energy, f_flat, de


def _predict(theta, block, model):
    o, g, _ = _network_pass(theta, block, model, need_cache=False)
    e_row, energy, f_flat, de = _physical(o, g, block, model)
    energies = np.zeros(block.n_total)
    energies[block.atom_of_row] = e_row
    out = {"energy": energy, "energies": energies}
    if f_flat is not None:
        out["forces"] = f_flat.reshape(-1, 3)
    if de is not None:
        out["de"] = de
    return out


def _loss(theta, block, model, *, grad=True, l2=True):
    """Loss (dimensionless, see the module docstring) and its gradient w.r.t. ``theta``.

    Returns (loss, gradient or None, dict of weighted RMS residuals: energy eV/atom, forces
    eV/Å, de eV/atom).
    """
    hyp = model.nn_hypers
    fit_f = hyp.sigma_force > 0 and block.JT is not None and block.w_f.any()
    fit_v = hyp.sigma_virial > 0 and block.S_rvf is not None and block.w_v.any()
    o, g, caches = _network_pass(theta, block, model, need_cache=grad)
    e_row, energy, f_flat, de = _physical(o, g, block, model, forces=fit_f)
    res_e = np.where(block.w_e > 0, energy - block.e_ref, 0.0)
    loss = float(np.sum(block.w_e * res_e ** 2)) if hyp.sigma_energy > 0 else 0.0
    c_s = 2.0 * block.w_e * res_e if hyp.sigma_energy > 0 else np.zeros(block.n_structures)
    q = None
    if fit_f:
        res_f = f_flat - block.f_ref
        loss += float(np.sum(block.w_f * res_f ** 2))
        if grad:
            # F = −Jᵀ g, so ∂L/∂g = −J ρ with ρ = ∂L/∂F
            q = -(block.J @ (2.0 * block.w_f * res_f)).reshape(block.n_rows, block.n_features)
    if fit_v:
        res_v = np.where(block.w_v[:, None] > 0, de - block.v_ref, 0.0)
        loss += float(np.sum(block.w_v[:, None] * res_v ** 2))
        if grad:
            d_de = 2.0 * block.w_v[:, None] * res_v                     # ∂L/∂(dE/dε)
            q_v = np.einsum("rvf,rv->rf", block.S_rvf, d_de[block.structure_of_row])
            q = q_v if q is None else q + q_v
    shapes = model._shapes()
    n_per = _n_params(shapes)
    n_species = len(model.species)
    decay = l2 and hyp.l2 > 0
    if decay:
        for k in range(n_species):
            for W, _ in _unpack(theta[k * n_per:(k + 1) * n_per], shapes):
                loss += hyp.l2 * float(np.sum(W * W))
    if not grad:
        return loss, None
    if q is None:
        q = np.zeros((block.n_rows, block.n_features))
    c_row = c_s[block.structure_of_row]
    gtheta = np.zeros_like(theta)
    for k, z in enumerate(model.species):
        if z not in caches:
            continue
        params, cache, a_last = caches[z]
        rows = block.rows[z]
        grads = _double_backprop(params, cache, a_last, q[rows], c_row[rows], model.energy_scale)
        gtheta[k * n_per:(k + 1) * n_per] = np.concatenate(
            [np.concatenate([dW.ravel(), db]) for dW, db in grads])
    if decay:
        for k in range(n_species):
            sl = slice(k * n_per, (k + 1) * n_per)
            for (dW, _), (W, _) in zip(_unpack(gtheta[sl], shapes), _unpack(theta[sl], shapes),
                                       strict=True):
                dW += 2.0 * hyp.l2 * W
    return loss, gtheta


# ---------------------------------------------------------------------------------------------
# fitting


def _feature_scaling(descriptors, species):
    """Per-species mean and standard deviation of the features (constant features: std 1)."""
    mean, std = {}, {}
    for z in species:
        x = descriptors.features[descriptors.center_species == z]
        if x.shape[0] == 0:
            mean[z], std[z] = np.zeros(descriptors.n_features), np.ones(descriptors.n_features)
            continue
        mean[z] = x.mean(axis=0)
        s = x.std(axis=0)
        std[z] = np.where(s > 1e-8 * max(1.0, float(np.abs(x).max())), s, 1.0)
    return mean, std


def _split(n, fraction, rng):
    """Random train / validation split of ``n`` structures (validation empty for fraction 0)."""
    perm = rng.permutation(n)
    n_valid = 0
    if fraction > 0 and n >= 2:
        n_valid = min(max(int(round(fraction * n)), 1), n - 1)
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


def _energy_scale(targets):
    """RMS per-atom target energy (eV) floored at 0.05 eV: the unit of the network output."""
    has = np.isfinite(targets.energy)
    if not has.any():
        return 1.0
    per_atom = targets.energy[has] / targets.n_atoms[has]
    return float(max(np.sqrt(np.mean(per_atom ** 2)), 0.05))


def train_nn(descriptors, targets, hypers=None, *, rng, common, weight=None, checkpoint=None,
             checkpoint_key="nn"):
    """Train the networks on precomputed descriptors and targets.

    Parameters
    ----------
    descriptors : DescriptorSet
        Per-atom descriptors (``acsf`` or ``soap``) of the training structures, with position
        gradients when forces are fitted and strain gradients when the virial is.
    targets : Targets
        Energies (eV), forces (eV/Å) and dE/dε (eV) with E0 and baseline removed, and their σ.
    hypers : NNHypers, dict or spec string (``"hidden=20,20 max_iter=500"``); defaults if None
    rng : numpy.random.Generator
        Initial weights, validation split and Adam batches.
    common : dict
        ``species``, ``e0``, ``e0_method``, ``baseline``, ``hypers`` of the model.
    weight : (n_structures,) float, optional
        Extra per-structure weights (bootstrap counts of a committee member); 0 drops a
        structure.
    checkpoint : NNCheckpoint, optional
        Training state saved every ``CHECKPOINT_EVERY`` iterations, when training ends and on
        :class:`~mlptools.errors.Terminated`; a state found under ``checkpoint_key`` resumes
        (a finished one is returned without training).
    checkpoint_key : str, name of this network's state (committee members differ)

    Returns
    -------
    NNModel

    Raises
    ------
    ParameterError
        Bad hypers, descriptors without per-atom rows, or missing gradients.
    InputError
        Targets and descriptors of different structures, nothing to fit, or a checkpoint
        made by another run (other data, hypers or seed).
    ComputationError
        The training diverged (non-finite loss).
    """
    hypers = as_nn_hypers(hypers)
    ds = descriptors
    if ds.kind not in PER_ATOM_DESCRIPTORS:
        raise ParameterError(f"nn models need per-atom descriptors "
                             f"({', '.join(PER_ATOM_DESCRIPTORS)}), got {ds.kind!r}")
    if targets.n_structures != ds.n_structures:
        raise InputError(f"{targets.n_structures} structures of targets but descriptors of "
                         f"{ds.n_structures}")
    fit_f = hypers.sigma_force > 0 and np.isfinite(targets.forces).any()
    fit_v = hypers.sigma_virial > 0 and np.isfinite(targets.de).any()
    if fit_f and ds.grad_values is None:
        raise ParameterError("fitting forces needs descriptor gradients, or sigma_force=0")
    if fit_v and ds.strain_grad is None:
        raise ParameterError("fitting the virial needs strain gradients, or sigma_virial=0")
    species = tuple(int(z) for z in common["species"])
    weight = np.ones(ds.n_structures) if weight is None else np.asarray(weight, dtype=np.float64)
    present = np.flatnonzero(weight > 0)
    if present.size == 0:
        raise InputError("no structure to fit")
    train_idx, valid_idx = _split(present.size, hypers.valid_fraction, rng)
    train_idx, valid_idx = present[train_idx], present[valid_idx]
    ds_train, t_train = select_structures(ds, train_idx), targets.subset(train_idx)
    mean, std = _feature_scaling(ds_train, species)
    model = NNModel(nn_hypers=hypers, descriptor_hypers=ds.hypers, params={},
                    feature_mean=mean, feature_std=std, energy_scale=_energy_scale(t_train),
                    **common)
    shapes = model._shapes()
    theta0 = np.concatenate([_init_params(shapes, rng) for _ in species])
    t0 = time.perf_counter()
    block_train = _Block(ds_train, species, mean, std, t_train, weight[train_idx],
                         forces=fit_f, stress=fit_v)
    if not block_train.active.any():
        raise InputError("no training structure has labels to fit")
    block_valid = None
    if valid_idx.size:
        block_valid = _Block(select_structures(ds, valid_idx), species, mean, std,
                             targets.subset(valid_idx), weight[valid_idx], forces=fit_f,
                             stress=fit_v)
    logger.info("nn: %d species x %d parameters; %d training, %d validation structures",
                len(species), _n_params(shapes), train_idx.size, valid_idx.size)
    saver = _Saver(checkpoint, checkpoint_key, theta0, hypers, ds)
    with _single_thread_blas():
        if saver.finished is not None:
            theta, record = saver.finished
        elif hypers.optimizer == "lbfgs":
            theta, record = _train_lbfgs(theta0, block_train, block_valid, model, saver)
        else:
            theta, record = _train_adam(theta0, ds_train, t_train, weight[train_idx],
                                        block_train, block_valid, model, rng, saver)
    n_per = _n_params(shapes)
    model.params = {z: theta[k * n_per:(k + 1) * n_per].copy() for k, z in enumerate(species)}
    record.update(train_seconds=round(time.perf_counter() - t0, 3), n_train=int(train_idx.size),
                  n_valid=int(valid_idx.size), n_params=int(n_per * len(species)))
    model.info = record
    logger.info("nn: %s stopped after %d iterations (best %d) in %.1f s", record["optimizer"],
                record["iterations"], record["best_iteration"], record["train_seconds"])
    return model


def _single_thread_blas():
    """Limit BLAS to one thread while training when threadpoolctl is available.

    The matrices are tall and thin (atoms × 25): threads gain nothing and, on a loaded machine,
    oversubscription made each step about 10× slower.
    """
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def as_nn_hypers(hypers):
    """NNHypers from NNHypers, a dict, a spec string or None (the defaults)."""
    return _as_hypers(hypers, NNHypers)


class _EarlyStopping:
    """Keeps the weights with the lowest validation loss; says when patience ran out."""

    def __init__(self, block_valid, model, patience):
        self.block = block_valid
        self.model = model
        self.patience = patience
        self.best = math.inf
        self.best_theta = None
        self.best_iter = 0

    def update(self, iteration, theta, train_loss):
        if self.block is None:
            valid = train_loss
        else:
            valid = _loss(theta, self.block, self.model, grad=False, l2=False)[0]
        if valid < self.best:
            self.best, self.best_theta, self.best_iter = valid, theta.copy(), iteration
        return self.exhausted(iteration)

    def exhausted(self, iteration):
        return self.patience > 0 and iteration - self.best_iter >= self.patience

    def state(self):
        return {"best": self.best, "best_theta": self.best_theta, "best_iter": self.best_iter}

    def restore(self, state):
        self.best = float(state["best"])
        self.best_theta = np.array(state["best_theta"], dtype=np.float64)
        self.best_iter = int(state["best_iter"])


#: iterations (Adam: epochs) between checkpoint saves
CHECKPOINT_EVERY = 25


class NNCheckpoint:
    """Training states of networks in one ``.npz`` file, rewritten atomically on each save.

    ``load(key)`` gives the saved state dict of a network (or None), ``save(key, state)``
    stores one; a state holds float arrays and scalars (``theta``, ``best_theta``,
    ``iteration``, ``best_iter``, ``best``, ``done``, a run ``fingerprint``, and Adam's moments).
    """

    def __init__(self, path):
        from pathlib import Path

        self.path = Path(path)
        self._states = {}
        if self.path.exists():
            try:
                with np.load(self.path, allow_pickle=False) as data:
                    for name in data.files:
                        key, _, field = name.partition("/")
                        value = data[name]
                        self._states.setdefault(key, {})[field] = (
                            value.item() if value.ndim == 0 else value)
            except (OSError, ValueError) as exc:
                raise InputError(f"{self.path}: not an nn checkpoint ({exc}); remove it to "
                                 "start afresh") from None

    def load(self, key):
        return self._states.get(key)

    def save(self, key, state):
        from mlptools.io.atomic import atomic_path

        self._states[key] = dict(state)
        arrays = {f"{k}/{f}": np.asarray(v) for k, st in self._states.items()
                  for f, v in st.items() if v is not None}
        with atomic_path(self.path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


class _Saver:
    """Glue between a training loop and an optional checkpoint (resume state, periodic save)."""

    def __init__(self, checkpoint, key, theta0, hypers, descriptors):
        import hashlib

        self.checkpoint, self.key = checkpoint, key
        digest = hashlib.sha256(theta0.tobytes())
        digest.update(hypers.to_json().encode())
        digest.update(str((descriptors.n_structures, descriptors.n_rows)).encode())
        self.fingerprint = digest.hexdigest()
        self.resume = checkpoint.load(key) if checkpoint is not None else None
        self.finished = None
        if self.resume is not None:
            if str(self.resume.get("fingerprint")) != self.fingerprint:
                raise InputError(f"{checkpoint.path}: checkpoint of another run (other data, "
                                 "hypers or seed); remove it to start afresh")
            logger.info("nn: resuming %s from iteration %d", key, int(self.resume["iteration"]))
            if bool(self.resume.get("done")):
                self.finished = (np.array(self.resume["best_theta"]),
                                 json.loads(str(self.resume["record"])))

    def save(self, iteration, theta, stopper, done=False, record=None, **extra):
        if self.checkpoint is None:
            return
        state = dict(fingerprint=self.fingerprint, iteration=int(iteration),
                     theta=np.asarray(theta), done=bool(done),
                     record=json.dumps(record or {}), **stopper.state(), **extra)
        self.checkpoint.save(self.key, state)


def _check_finite(loss, iteration):
    if not math.isfinite(loss):
        raise ComputationError(f"nn training diverged at iteration {iteration} (loss {loss}); "
                               "lower learning_rate or raise l2")


def _train_lbfgs(theta0, block_train, block_valid, model, saver):
    """L-BFGS-B with early stopping; a resumed run restarts the curvature memory."""
    from scipy.optimize import minimize

    from mlptools.errors import Terminated

    hyp = model.nn_hypers
    stopper = _EarlyStopping(block_valid, model, hyp.patience)
    state = {"it": 0, "x": theta0}

    def fun(theta):
        loss, grad = _loss(theta, block_train, model)
        _check_finite(loss, state["it"])
        return loss, grad

    def callback(intermediate_result):
        state["it"] += 1
        state["x"] = intermediate_result.x.copy()
        stop = stopper.update(state["it"], intermediate_result.x, intermediate_result.fun)
        if state["it"] % 50 == 0:
            logger.info("nn L-BFGS iteration %d: train loss %.4g, best validation loss %.4g "
                        "(iteration %d)", state["it"], intermediate_result.fun, stopper.best,
                        stopper.best_iter)
        if state["it"] % CHECKPOINT_EVERY == 0:
            saver.save(state["it"], state["x"], stopper)
        if stop:
            raise StopIteration

    if saver.resume is not None:
        stopper.restore(saver.resume)
        state["it"] = int(saver.resume["iteration"])
        state["x"] = np.array(saver.resume["theta"], dtype=np.float64)
    else:
        stopper.update(0, theta0, fun(theta0)[0])
    message = "resumed at the iteration limit"
    remaining = hyp.max_iter - state["it"]
    if remaining > 0 and not stopper.exhausted(state["it"]):
        try:
            res = minimize(fun, state["x"], jac=True, method="L-BFGS-B", callback=callback,
                           options={"maxiter": remaining, "maxfun": 2 * remaining + 20,
                                    "maxcor": 20, "ftol": 1e-14, "gtol": 1e-12})
        except Terminated:
            saver.save(state["it"], state["x"], stopper)
            raise
        message = str(res.message)
    theta = stopper.best_theta if stopper.best_theta is not None else state["x"]
    record = {"optimizer": "lbfgs", "iterations": state["it"],
              "best_iteration": stopper.best_iter, "valid_loss": float(stopper.best),
              "message": message}
    saver.save(state["it"], state["x"], stopper, done=True, record=record)
    return theta, record


def _train_adam(theta0, ds_train, t_train, weight, block_train, block_valid, model, rng, saver):
    """Adam on fixed mini-batches of structures, visited in a new order every epoch."""
    from mlptools.errors import Terminated

    hyp = model.nn_hypers
    n = ds_train.n_structures
    n_batches = max(1, math.ceil(n / hyp.batch_size))
    # mini-batches are fixed groups of structures (a block is expensive to build)
    perm = rng.permutation(n)
    blocks = []
    for b in range(n_batches):
        idx = np.sort(perm[b::n_batches])
        blocks.append(_Block(select_structures(ds_train, idx), model.species, model.feature_mean,
                             model.feature_std, t_train.subset(idx), weight[idx],
                             forces=block_train.J is not None,
                             stress=block_train.S_rvf is not None))
    stopper = _EarlyStopping(block_valid, model, hyp.patience)
    theta = theta0.copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = epoch = 0
    if saver.resume is not None:
        stopper.restore(saver.resume)
        theta = np.array(saver.resume["theta"], dtype=np.float64)
        m, v = np.array(saver.resume["adam_m"]), np.array(saver.resume["adam_v"])
        step, epoch = int(saver.resume["adam_step"]), int(saver.resume["iteration"])
    else:
        stopper.update(0, theta, _loss(theta, block_train, model, grad=False)[0])

    def save(done=False, record=None):
        saver.save(epoch, theta, stopper, done=done, record=record, adam_m=m, adam_v=v,
                   adam_step=step)

    try:
        while epoch < hyp.max_iter and not stopper.exhausted(epoch):
            epoch += 1
            for b in rng.permutation(n_batches):
                if not blocks[b].active.any():
                    continue
                loss, grad = _loss(theta, blocks[b], model)
                _check_finite(loss, epoch)
                step += 1
                m = beta1 * m + (1 - beta1) * grad
                v = beta2 * v + (1 - beta2) * grad * grad
                theta = theta - hyp.learning_rate * (m / (1 - beta1 ** step)) / (
                    np.sqrt(v / (1 - beta2 ** step)) + eps)
            train_loss = _loss(theta, block_train, model, grad=False)[0]
            if epoch % 10 == 0:
                logger.info("nn Adam epoch %d: train loss %.4g, best validation loss %.4g",
                            epoch, train_loss, stopper.best)
            stopper.update(epoch, theta, train_loss)
            if epoch % CHECKPOINT_EVERY == 0:
                save()
    except Terminated:
        save()
        raise
    record = {"optimizer": "adam", "iterations": epoch, "best_iteration": stopper.best_iter,
              "valid_loss": float(stopper.best)}
    save(done=True, record=record)
    return stopper.best_theta, record


# ---------------------------------------------------------------------------------------------
# fitting from labelled frames


def prepare_training(frames, hypers=None):
    """Descriptors, targets and the common model fields (species, E0, baseline) of ``frames``.

    Returns
    -------
    (DescriptorSet, Targets, common dict for :class:`NNModel`)
    """
    from mlptools.descriptors.compute import fix_species

    hypers = as_nn_hypers(hypers)
    frames = list(frames)
    species = training_species(frames)
    # prepare_fit sets the SOAP species; the ACSF ones are set here, so the stored hypers
    # carry the species of whichever descriptor the networks use
    hypers = dataclasses.replace(hypers, acsf=fix_species(hypers.acsf, species))
    hypers, common, frame_targets = prepare_fit(frames, hypers)
    descriptor = hypers.descriptor_hypers
    use_f, use_v = hypers.sigma_force > 0, hypers.sigma_virial > 0
    targets = Targets.from_frame_targets(frame_targets, [len(a) for a in frames])
    use_v = use_v and bool(np.isfinite(targets.de).any())
    t0 = time.perf_counter()
    ds = compute_descriptors(frames, descriptor.to_dict(), gradients=use_f, strain=use_v)
    logger.info("nn: %s descriptors of %d atoms (%d features) in %.1f s", descriptor.type,
                ds.n_rows, ds.n_features, time.perf_counter() - t0)
    return ds, targets, common


def fit_nn(frames, hypers=None, *, rng, checkpoint=None):
    """Fit a Behler–Parrinello network to labelled frames.

    Parameters
    ----------
    frames : sequence of ase.Atoms with labels in ``atoms.calc.results`` (energy eV, forces
        eV/Å, stress eV/Å³) and optional ``info["config_type"]``, ``info["weight"]``
    hypers : NNHypers, dict or spec string (``"hidden=20,20 acsf=compact max_iter=500"``)
    rng : numpy.random.Generator (initial weights, validation split, Adam batches)
    checkpoint : NNCheckpoint, optional (see :func:`train_nn`)

    Returns
    -------
    NNModel (``training_errors`` not yet filled; see :func:`mlptools.workflows.fit.fit_model`)

    Raises
    ------
    InputError
        σ_F > 0 and a frame without forces; no labels.
    ComputationError
        The training diverged.
    """
    hypers = as_nn_hypers(hypers)
    ds, targets, common = prepare_training(frames, hypers)
    return train_nn(ds, targets, hypers, rng=rng, common=common, checkpoint=checkpoint)
