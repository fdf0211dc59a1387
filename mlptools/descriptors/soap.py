"""SOAP power spectrum (Bartók, Kondor, Csányi 2013) with exact position and strain gradients.

Index letters: ``n`` atoms (one row per atom), ``p`` pairs of the full neighbour list, ``g``
gradient sample rows, ``c`` Cartesian, ``f`` features, ``k`` radial-table grid nodes, ``q``
radial channels (l, n) at q = l·n_max + n, ``s`` species.

Definitions (lengths in Å). The neighbour density of species ``a`` around centre ``i`` is::

    ρ_i^a(r) = Σ_{j ∈ a, d_ij < r_c} f_c(d_ij) g(r − D_ij)  [+ w g(r) if a is the centre's species]
    g(r) = (πσ²)^(−3/4) exp(−r²/2σ²)                          (featomic's L2-normalised Gaussian)
    f_c(d) = 1 (d <= r_c − w_c),  ½(1 + cos(π(d − r_c + w_c)/w_c)) (r_c − w_c < d < r_c),  0 beyond

with D_ij = r_j + S·cell − r_i (every periodic image within the cutoff is a separate neighbour),
w = ``center_weight``, w_c = ``cutoff_width``. It is expanded as
c^a_{nlm} = ∫ d³r R_n(r) Y_lm(r̂) ρ_i^a(r) = Σ_j f_c(d_ij) I_nl(d_ij) Y_lm(D̂_ij) [+ w I_n0(0) Y_00]
with the radial integral (ĩ_l(x) = e^(−x) i_l(x), i_l the modified spherical Bessel function)::

    I_nl(d) = 4π (πσ²)^(−3/4) ∫_0^∞ r² R_n(r) exp(−(r − d)²/2σ²) ĩ_l(r d/σ²) dr.

``radial_basis="gto"``: the GTOs of featomic (and GAP/dscribe up to their width choice)
φ_n(r) = r^n exp(−r²/2σ_n²), σ_n = r_c·max(√n, 1)/n_max, n = 0..n_max − 1, Löwdin-orthonormalised
(R = S^(−1/2) φ with S_nk = ∫ r² φ_n φ_k dr on [0, ∞), computed analytically). I_nl(d) and
dI_nl/dd are computed once per hypers by Gauss–Legendre quadrature on a uniform grid in d
(spacing min(σ, r_c/n_max)/40) and interpolated by cubic Hermite splines in the kernel; the
kernel's gradients are the exact derivatives of that interpolant, and the interpolation error
is ~1e-9 relative. Y_lm are real spherical harmonics, orthonormal on the sphere (no
Condon–Shortley phase; the power spectrum does not depend on that choice).

Power spectrum and feature layout. The full power spectrum is
P^{ab}_{nn'l} = Σ_m c^a_{nlm} c^b_{n'lm} (no l-dependent prefactor). Species indices a, b follow
``hypers.species`` (sorted atomic numbers). We store each symmetric pair once::

    for a in species (index order), for b >= a:         block (a, b)
        for n in 0..n_max−1, for n' in (n if a == b else 0)..n_max−1:
            for l in 0..l_max:                           (l innermost)
                X = P^{ab}_{nn'l} · (√2 if a != b or n != n' else 1)

so that X·X' equals the dot product of the full, unfolded (a, b, n, n', l) power spectra
(every dropped (b, a) or (n', n) entry is the transpose of a kept one). ``n_features =
(l_max+1)·(S·n_max(n_max+1)/2 + S(S−1)/2·n_max²)`` for S species; ``feature_names`` spell
``P[Si,O](n=0,n'=3,l=2)``. With ``normalize`` the vector is divided by its norm (an all-zero
vector, an isolated atom with ``center_weight=0``, stays zero). The centre's own species is not
a block index: rows carry it in ``center_species``.

Species: ``hypers.species`` fixes the layout. If it is empty, the sorted species present in the
frames of *this call* are used (the resolved list is stored in the returned ``hypers``): fix the
list when descriptor files from several calls must share a layout. An atom whose species is not
in a fixed list raises ParameterError naming it.

Gradients: one sample row per (centre, distinct atom among the centre and its neighbours),
sorted by centre then atom; contributions of several periodic images of an atom (and of the
centre's own images) are summed into one row. ``strain_grad[i, a, b] = Σ_pairs D_ij,a
∂X_i/∂D_ij,b``, the derivative for r → r(1 + ε), cell → cell(1 + ε) with ε symmetric (the
sum over pairs is symmetric because X depends on the D_ij through rotation invariants only).

Relation to featomic 0.6 (``SoapPowerSpectrum(cutoff={"radius": r_c, "smoothing":
{"type": "ShiftedCosine", "width": w_c}}, density={"type": "Gaussian", "width": σ,
"center_atom_weight": w}, basis={"type": "TensorProduct", "max_angular": l_max, "radial":
{"type": "Gto", "max_radial": n_max − 1}})``; note ``max_radial`` is the largest index, so
n_max − 1): same density, cutoff and radial basis. featomic's property (l, n1, n2) of key
(center_type, neighbor_1_type, neighbor_2_type) equals (−1)^l P^{ab}_{n1 n2 l} / √(2l+1) (its
Clebsch–Gordan coupling to λ = 0), times √2 when neighbor_1_type != neighbor_2_type; it keeps
both n1 > n2 and n1 < n2 in same-species blocks. :func:`featomic_to_full` maps its output onto
our full P. tests/test_soap.py checks P against it to 1e-7 of the largest entry (observed
~8e-9: both sides spline the radial integral) and normalised kernels to 1e-8. dscribe's GTOs
use different widths (and no smooth cutoff), so it is not an exact peer.
"""

import functools
import math

import numpy as np

from mlptools.descriptors._inputs import as_frames, as_hypers, resolve_species
from mlptools.descriptors.descriptor_set import DescriptorSet
from mlptools.descriptors.hypers import SoapHypers
from mlptools.errors import ParameterError

__all__ = ["soap_power_spectrum", "soap_feature_names", "unfold_power_spectrum", "featomic_to_full"]


# ----------------------------------------------------------------------------- radial integrals


def _gto_orthonormal(hypers):
    """(σ_n, coefficient matrix C): R_n(r) = Σ_k C[n, k] r^k exp(−r²/2σ_k²)."""
    from scipy.special import gammaln

    nmax, rc = hypers.n_max, hypers.cutoff
    sig = rc * np.maximum(np.sqrt(np.arange(nmax, dtype=np.float64)), 1.0) / nmax
    n = np.arange(nmax, dtype=np.float64)
    a = 0.5 / sig[:, None] ** 2 + 0.5 / sig[None, :] ** 2
    e = (n[:, None] + n[None, :] + 3.0) / 2.0
    log_s = gammaln(e) - e * np.log(a) - math.log(2.0)
    # normalise first (conditioning), then symmetric Löwdin orthonormalisation
    log_norm = -0.5 * np.diag(log_s)
    s_tilde = np.exp(log_s + log_norm[:, None] + log_norm[None, :])
    w, v = np.linalg.eigh(s_tilde)
    if w.min() <= 1e-13:
        raise ParameterError(f"soap hyper 'n_max': the GTO basis with n_max={nmax} is numerically "
                             "linearly dependent; use a smaller n_max")
    s_inv_half = (v / np.sqrt(w)) @ v.T
    return sig, s_inv_half * np.exp(log_norm)[None, :]


@functools.lru_cache(maxsize=16)
def _tables(key):
    """(table_kxq, h, center_n) for the hypers in ``key`` (cached: depends only on the hypers).

    table_kxq[k, 0, q] = I_q(k h), table_kxq[k, 1, q] = h·I'_q(k h); center_n[n] = I_n0(0)·Y_00.
    """
    from scipy.special import ive

    rc, sigma, nmax, lmax = key
    hyp = SoapHypers(cutoff=rc, sigma=sigma, n_max=nmax, l_max=lmax, cutoff_width=0.0)
    sig_n, coef = _gto_orthonormal(hyp)
    scale = min(sigma, rc / nmax)
    h_target = scale / 40.0
    n_int = max(2, int(math.ceil(rc / h_target)))
    h = rc / n_int
    d_k = h * np.arange(n_int + 1, dtype=np.float64)
    r_int = rc + 10.0 * sigma
    n_quad = int(min(4000, math.ceil(16.0 * r_int / scale) + 100))
    x_t, w_t = np.polynomial.legendre.leggauss(n_quad)
    r_t = 0.5 * r_int * (x_t + 1.0)
    w_t = 0.5 * r_int * w_t
    # R_n(r_t) r² w
    prim = r_t[None, :] ** np.arange(nmax)[:, None] * np.exp(-0.5 * r_t[None, :] ** 2
                                                             / sig_n[:, None] ** 2)
    basis_nt = (coef @ prim) * (r_t ** 2 * w_t)[None, :]
    pref = 4.0 * math.pi * (math.pi * sigma ** 2) ** -0.75
    inv_s2 = 1.0 / sigma ** 2
    n_l = lmax + 2
    table = np.empty((n_int + 1, 2, (lmax + 1) * nmax))
    for k, d in enumerate(d_k):
        x = r_t * d * inv_s2
        gauss = np.exp(-0.5 * (r_t - d) ** 2 * inv_s2)
        il = np.empty((n_l, n_quad))                  # e^{−x} i_l(x), l = 0..l_max+1
        if d == 0.0:
            il[:] = 0.0
            il[0] = 1.0
            lover = np.zeros((n_l, n_quad))           # (l/x) ĩ_l at x = 0
            if n_l > 1:
                lover[1] = 1.0 / 3.0
        else:
            for ell in range(n_l):
                il[ell] = np.sqrt(0.5 * math.pi / x) * ive(ell + 0.5, x)
            lover = np.arange(n_l)[:, None] / x[None, :] * il
        for ell in range(lmax + 1):
            f_t = gauss * il[ell]
            # d/dd [e^{−(r²+d²)/2σ²} i_l(rd/σ²)] = e^{…}(−d/σ² i_l + r/σ² i_l'),
            # i_l' = i_{l+1} + (l/x) i_l
            df_t = gauss * (-d * inv_s2 * il[ell] + r_t * inv_s2 * (il[ell + 1] + lover[ell]))
            table[k, 0, ell * nmax:(ell + 1) * nmax] = pref * (basis_nt @ f_t)
            table[k, 1, ell * nmax:(ell + 1) * nmax] = pref * h * (basis_nt @ df_t)
    center_n = table[0, 0, :nmax] / math.sqrt(4.0 * math.pi)
    table.setflags(write=False)
    center_n.setflags(write=False)
    return table, h, center_n


def _ynorm(lmax):
    out = np.empty((lmax + 1) ** 2)
    for ell in range(lmax + 1):
        for m in range(-ell, ell + 1):
            am = abs(m)
            v = (2 * ell + 1) / (4 * math.pi) * math.factorial(ell - am) / math.factorial(ell + am)
            out[ell * ell + ell + m] = math.sqrt(v) * (math.sqrt(2.0) if m else 1.0)
    return out


# ----------------------------------------------------------------------------- layout


def _blocks(n_species, nmax, lmax):
    """(block_ss offsets, n_features)."""
    block = np.zeros((n_species, n_species), dtype=np.int64)
    off = 0
    for a in range(n_species):
        for b in range(a, n_species):
            block[a, b] = block[b, a] = off
            off += (nmax * (nmax + 1) // 2 if a == b else nmax * nmax) * (lmax + 1)
    return block, off


def _layout(n_species, nmax, lmax):
    """(a, b, n, n', l) of every feature, in feature order, as an (F, 5) int array."""
    rows = []
    for a in range(n_species):
        for b in range(a, n_species):
            for n in range(nmax):
                for n2 in range(n if a == b else 0, nmax):
                    for ell in range(lmax + 1):
                        rows.append((a, b, n, n2, ell))
    return np.array(rows, dtype=np.int64).reshape(-1, 5)


def soap_feature_names(hypers):
    """Column names in feature order for resolved hypers (non-empty ``species``)."""
    from ase.data import chemical_symbols

    sym = [chemical_symbols[z] for z in hypers.species]
    return [f"P[{sym[a]},{sym[b]}](n={n},n'={n2},l={ell})"
            for a, b, n, n2, ell in _layout(len(sym), hypers.n_max, hypers.l_max).tolist()]


def unfold_power_spectrum(features, hypers):
    """The full power spectrum P[..., a, b, n, n', l] from (unnormalised) stored features.

    Undoes the √2 factors and fills the symmetric (b, a, n', n) entries: the inverse of the
    storage convention of the module docstring. ``features`` (..., n_features).
    """
    features = np.asarray(features, dtype=np.float64)
    S, nmax, lmax = len(hypers.species), hypers.n_max, hypers.l_max
    lay = _layout(S, nmax, lmax)
    a, b, n, n2, ell = lay.T
    fac = np.where((a != b) | (n != n2), 1.0 / math.sqrt(2.0), 1.0)
    out = np.zeros(features.shape[:-1] + (S, S, nmax, nmax, lmax + 1))
    vals = features * fac
    out[..., a, b, n, n2, ell] = vals
    out[..., b, a, n2, n, ell] = vals
    return out


def featomic_to_full(tensor_map, hypers, n_rows):
    """featomic 0.6 SoapPowerSpectrum output as our full P[row, a, b, n, n', l].

    Undoes featomic's (−1)^l/√(2l+1) and (for neighbor_1_type != neighbor_2_type) √2 factors.
    ``n_rows`` is the total number of atoms; rows follow (system, atom) order.
    """
    S, nmax, lmax = len(hypers.species), hypers.n_max, hypers.l_max
    index_of = {z: k for k, z in enumerate(hypers.species)}
    out = np.zeros((n_rows, S, S, nmax, nmax, lmax + 1))
    for key, block in tensor_map.items():
        a = index_of[int(key["neighbor_1_type"])]
        b = index_of[int(key["neighbor_2_type"])]
        samples = np.asarray(block.samples.values)
        props = np.asarray(block.properties.values)
        system, atom = samples[:, 0], samples[:, 1]
        values = np.asarray(block.values)
        ell, n1, n2 = props[:, 0], props[:, 1], props[:, 2]
        fac = (-1.0) ** ell * np.sqrt(2 * ell + 1.0) / (math.sqrt(2.0) if a != b else 1.0)
        if np.any(system != 0):
            raise ValueError("featomic_to_full expects a single system")
        rows = atom[:, None]
        out[rows, a, b, n1[None], n2[None], ell[None]] = values * fac
        out[rows, b, a, n2[None], n1[None], ell[None]] = values * fac
    return out


# ----------------------------------------------------------------------------- driver


class _KernelSetup:
    """The kernel's fixed inputs for resolved hypers: tables, block offsets, species indices."""

    def __init__(self, hypers):
        self.S = S = len(hypers.species)
        nmax, lmax = hypers.n_max, hypers.l_max
        self.block_ss, self.n_features = _blocks(S, nmax, lmax)
        self.rc, self.width = float(hypers.cutoff), float(hypers.cutoff_width)
        self.table = self.h = self.center_sn = None
        if S:
            self.table, self.h, center_n = _tables((self.rc, float(hypers.sigma), nmax, lmax))
            self.center_sn = np.ascontiguousarray(
                np.broadcast_to(center_n * hypers.center_weight, (S, nmax)))
        self.ynorm = _ynorm(lmax)
        self.scaling = np.array([hypers.scaling_r0, hypers.scaling_rate,
                                 hypers.scaling_exponent], dtype=np.float64)
        self.index_of = {z: k for k, z in enumerate(hypers.species)}

    def pairs(self, atoms):
        """(spec_n, i_p, j_p, D_pc, first_n) of the full neighbour list, grouped by centre."""
        from mlptools.neighbors import neighbor_list

        spec_n = np.array([self.index_of[int(z)] for z in atoms.numbers], dtype=np.int64)
        i_p, j_p, D_pc = neighbor_list("ijD", atoms.positions, atoms.cell.array, atoms.pbc,
                                       self.rc)
        i_p = np.ascontiguousarray(i_p, dtype=np.int64)
        j_p = np.ascontiguousarray(j_p, dtype=np.int64)
        D_pc = np.ascontiguousarray(D_pc, dtype=np.float64)
        first_n = np.searchsorted(i_p, np.arange(len(atoms) + 1)).astype(np.int64)
        return spec_n, i_p, j_p, D_pc, first_n


def soap_power_spectrum(frames, hypers, *, gradients=False, strain=False, n_threads=0):
    """SOAP power spectrum of every atom, optionally with dX/dr and dX/dε.

    Parameters
    ----------
    frames : iterable of ase.Atoms (positions and cell in Å), or one ase.Atoms
    hypers : SoapHypers, dict, or spec string (``"cutoff=5 n_max=8 l_max=6 sigma=0.5"``).
        An empty ``species`` becomes the sorted species of ``frames`` (of this call only).
    gradients : bool
        Also dX/dr (1/Å), sparse: one sample row per centre and distinct atom among the centre
        and its neighbours (periodic images folded).
    strain : bool
        Also dX/dε, (n_atoms, 3, 3, n_features), ε the symmetric strain.
    n_threads : int
        OpenMP threads (0: the OpenMP default, i.e. ``OMP_NUM_THREADS`` or all cores). Results
        are bitwise identical for any value.

    Returns
    -------
    DescriptorSet
        kind ``"soap"``, one row per atom in frame order, features (n_atoms, n_features) in the
        layout of the module docstring, ``hypers`` with the species list resolved.

    Raises
    ------
    ParameterError
        Invalid hypers, or an atom whose species is not in a fixed ``species`` list.
    """
    from mlptools._ext import soap as _soap

    hypers = as_hypers(hypers, SoapHypers)
    frames = as_frames(frames)
    hypers = resolve_species(hypers, frames)
    setup = _KernelSetup(hypers)
    S, nmax, lmax = setup.S, hypers.n_max, hypers.l_max
    names = soap_feature_names(hypers)
    block_ss, n_features = setup.block_ss, setup.n_features
    rc, width = setup.rc, setup.width
    table, h, center_sn, ynorm = setup.table, setup.h, setup.center_sn, setup.ynorm

    # pass 1: neighbour lists and gradient sample rows of every frame; pass 2 fills the
    # preallocated outputs frame by frame (no concatenation copies of the gradient arrays)
    plans = []
    n_rows = n_grad = 0
    for s, atoms in enumerate(frames):
        n = len(atoms)
        if n == 0:
            continue
        numbers = atoms.numbers.astype(np.int64)
        spec_n, i_p, j_p, D_pc, first_n = setup.pairs(atoms)
        n_pairs = j_p.shape[0]
        if gradients:
            # one row per (centre, distinct atom among the centre and its neighbours), sorted by
            # centre then atom; slot_* map pairs and centres onto rows (images fold together)
            keys = np.concatenate([i_p * n + j_p, np.arange(n, dtype=np.int64) * (n + 1)])
            uniq, inverse = np.unique(keys, return_inverse=True)
            slot_p = np.ascontiguousarray(inverse[:n_pairs], dtype=np.int64)
            slot_n = np.ascontiguousarray(inverse[n_pairs:], dtype=np.int64)
            rows, atom_g = uniq // n, uniq % n
            grad_first_n = np.searchsorted(rows, np.arange(n + 1)).astype(np.int64)
        else:
            slot_p = np.zeros(n_pairs, np.int64)
            slot_n = np.zeros(n, np.int64)
            grad_first_n = np.zeros(n + 1, np.int64)
            rows = atom_g = np.zeros(0, np.int64)
        plans.append((s, n, numbers, spec_n, first_n, j_p, D_pc, slot_p, slot_n, grad_first_n,
                      rows, atom_g, n_rows, n_grad))
        n_rows += n
        n_grad += rows.shape[0]

    features = np.empty((n_rows, n_features))
    grad_values = np.empty((n_grad if gradients else 0, 3, n_features))
    strain_grad = np.empty((n_rows if strain else 0, 3, 3, n_features))
    grad_samples = np.empty((n_grad if gradients else 0, 3), np.int64)
    structure_index = np.empty(n_rows, np.int64)
    center_index = np.empty(n_rows, np.int64)
    center_species = np.empty(n_rows, np.int64)
    for (s, n, numbers, spec_n, first_n, j_p, D_pc, slot_p, slot_n, grad_first_n, rows, atom_g,
         r0, g0) in plans:
        ng = rows.shape[0]
        max_pairs = max(1, int(np.diff(first_n).max()))
        max_rows = int(np.diff(grad_first_n).max()) if gradients else 0
        _soap.soap_features(first_n, j_p, D_pc, spec_n, slot_p, slot_n, grad_first_n, table, h,
                            rc, width, setup.scaling, ynorm, center_sn, block_ss, nmax, lmax, S,
                            bool(hypers.normalize), features[r0:r0 + n], grad_values[g0:g0 + ng],
                            strain_grad[r0:r0 + n] if strain else strain_grad,
                            bool(gradients), bool(strain), max_pairs, max_rows, int(n_threads))
        structure_index[r0:r0 + n] = s
        center_index[r0:r0 + n] = np.arange(n)
        center_species[r0:r0 + n] = numbers
        if gradients:
            grad_samples[g0:g0 + ng, 0] = rows + r0
            grad_samples[g0:g0 + ng, 1] = s
            grad_samples[g0:g0 + ng, 2] = atom_g

    out = DescriptorSet(
        kind="soap", hypers=hypers.to_dict(), features=features, structure_index=structure_index,
        center_index=center_index, center_species=center_species, n_structures=len(frames),
        feature_names=names)
    if gradients:
        out.grad_samples = grad_samples
        out.grad_values = grad_values
    if strain:
        out.strain_grad = strain_grad
    return out


def soap_energy_derivatives(atoms, hypers, local_energy, *, stress=True, n_threads=0):
    """Energies and their exact position and strain derivatives for a model on SOAP, by the
    adjoint (reverse) contraction: no (pairs × 3 × features) gradient array is formed.

    The model's energy is E = Σ_i ε(X_i) over the power spectra X_i of one structure;
    ``local_energy`` gives ε and ∂ε/∂X. The chain rule runs back through the normalisation
    (∂ε/∂X_raw = (v − X̂ (X̂·v))/|X|) and the density coefficients c_{nlm} inside the kernel
    (``soap_energy_gradient``), one centre at a time.

    Parameters
    ----------
    atoms : ase.Atoms (Å)
    hypers : SoapHypers, dict or spec string (as for :func:`soap_power_spectrum`)
    local_energy : callable, features (n_atoms, n_features) -> (energies (n_atoms,) eV,
        ∂ε/∂X (n_atoms, n_features) eV), features as :func:`soap_power_spectrum` returns them
    stress : bool, also dE/dε
    n_threads : int, OpenMP threads (0: the default)

    Returns
    -------
    dict with ``features`` (n_atoms, n_features), ``energies`` (n_atoms,) eV, ``dE_dr``
    (n_atoms, 3) eV/Å and ``dE_de`` (3, 3) eV (None unless ``stress``).
    """
    from mlptools._ext import soap as _soap

    hypers = resolve_species(as_hypers(hypers, SoapHypers), as_frames(atoms))
    setup = _KernelSetup(hypers)
    n = len(atoms)
    X = np.zeros((n, setup.n_features))
    if n == 0:
        return {"features": X, "energies": np.zeros(0), "dE_dr": np.zeros((0, 3)),
                "dE_de": np.zeros((3, 3)) if stress else None}
    spec_n, i_p, j_p, D_pc, first_n = setup.pairs(atoms)
    max_pairs = max(1, int(np.diff(first_n).max()))
    args = (setup.table, setup.h, setup.rc, setup.width, setup.scaling, setup.ynorm,
            setup.center_sn, setup.block_ss, hypers.n_max, hypers.l_max, setup.S)
    # the raw spectra first (the normalisation's chain rule needs |X|)
    _soap.soap_features(first_n, j_p, D_pc, spec_n, np.zeros(len(j_p), np.int64),
                        np.zeros(n, np.int64), np.zeros(n + 1, np.int64), *args, False, X,
                        np.empty((0, 3, setup.n_features)), np.empty((0, 3, 3, setup.n_features)),
                        False, False, max_pairs, 0, int(n_threads))
    if hypers.normalize:
        norm = np.linalg.norm(X, axis=1)
        inv = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)
        Xhat = X * inv[:, None]
    else:
        Xhat = X
    energies, v = local_energy(Xhat)
    v = np.asarray(v, dtype=np.float64)
    if hypers.normalize:
        v = (v - Xhat * np.einsum("nf,nf->n", Xhat, v)[:, None]) * inv[:, None]
    H = np.zeros((len(j_p), 3))
    _soap.soap_energy_gradient(first_n, j_p, D_pc, spec_n, *args, np.ascontiguousarray(v), H,
                               max_pairs, int(n_threads))
    dE_dr = np.zeros((n, 3))
    for c in range(3):
        dE_dr[:, c] = (np.bincount(j_p, weights=H[:, c], minlength=n)
                       - np.bincount(i_p, weights=H[:, c], minlength=n))
    return {"features": Xhat, "energies": np.asarray(energies), "dE_dr": dE_dr,
            "dE_de": D_pc.T @ H if stress else None}
