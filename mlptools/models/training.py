"""Shared fitting machinery: targets and their σ, the design matrix, a stable stacked QR solve.

Every kind fits weights ``w`` (M,) of a local-energy model E_ml = Σ_i Σ_m e_im w_m that is linear
in ``w`` (GAP: e_im = δ² k(x_i, x_m); linear/quadratic: e_im = feature m of atom i). The rows of
the least-squares problem are, for each frame s (targets after E0 and the baseline are removed):

=========  ===================================  ======================================
row        design                               σ of the row
=========  ===================================  ======================================
energy     Σ_{i∈s} e_im                          σ_E · √n_s      (σ_E in eV/atom)
force      −Σ_i ∂e_im/∂r_ac  (3 per atom a)      σ_F             (eV/Å)
virial     Σ_i ∂e_im/∂ε_v  (Voigt xx yy zz yz    σ_V · √n_s      (σ_V in eV/atom)
           xz xy; target V·stress = dE/dε)
=========  ===================================  ======================================

(gap_fit's "sigma per atom" convention for energies and virials.) σ are overridden per config
type (``config_type_sigma``), per frame (``info["energy_sigma"]``, ``"force_sigma"``,
``"virial_sigma"``, same units) and divided by √weight for ``info["weight"]`` (0 drops the frame).

The regularised problem min ‖Σ^(−1/2)(y − A w)‖² + ‖Γ w‖² is solved as the least-squares problem
of the stacked matrix [Σ^(−1/2)A; Γ], by Householder QR accumulated block by block
(:class:`StackedQR`: R ← qr([R; new rows]), with the target as an extra column, so the
(rows × M) matrix is never held whole). This avoids squaring the condition number as the normal
equations AᵀA would. Γ is Lᵀ (K_mm = L Lᵀ, Cholesky with jitter) for GAP, √λ·I for ridge.
"""

import dataclasses
import logging

import numpy as np

from mlptools import keys
from mlptools.errors import ComputationError, InputError, ParameterError

log = logging.getLogger(__name__)

VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


@dataclasses.dataclass
class Sigmas:
    """Default regularisation σ: energy eV/atom, force eV/Å, virial eV/atom."""

    energy: float
    force: float
    virial: float
    per_config: dict = dataclasses.field(default_factory=dict)  # name -> (σE, σF, σV)

    def of(self, atoms):
        """(σ_E, σ_F, σ_V) of one frame, before the √n scaling; None for a weight-0 frame."""
        e, f, v = self.per_config.get(str(atoms.info.get(keys.CONFIG_TYPE)),
                                      (self.energy, self.force, self.virial))
        e = float(atoms.info.get("energy_sigma", e))
        f = float(atoms.info.get("force_sigma", f))
        v = float(atoms.info.get("virial_sigma", v))
        w = float(atoms.info.get(keys.WEIGHT, 1.0))
        if w <= 0:
            return None
        return e / np.sqrt(w), f / np.sqrt(w), v / np.sqrt(w)


def parse_config_sigma(text):
    """``"Surface=0.004,0.1,0.1 Liquid=0.003,0.15,0.2"`` -> {name: (σE, σF, σV)}."""
    out = {}
    for item in (text or "").split():
        name, _, vals = item.partition("=")
        try:
            e, f, v = (float(x) for x in vals.split(","))
        except ValueError:
            raise ParameterError(f"hyper 'config_type_sigma': expected NAME=σE,σF,σV, got "
                                 f"{item!r}") from None
        out[name] = (e, f, v)
    return out


def check_sigmas(energy, force, virial):
    for name, value in (("sigma_energy", energy), ("sigma_force", force),
                        ("sigma_virial", virial)):
        if not (np.isfinite(value) and value > 0):
            raise ParameterError(f"hyper '{name}' must be > 0, got {value}")


def voigt(m):
    m = np.asarray(m)
    return np.stack([m[..., a, b] for a, b in VOIGT], axis=-1)


class StackedQR:
    """Least squares min ‖A w − b‖² accumulated row block by row block (Householder QR).

    ``add(A, b)`` buffers rows; every ``block`` rows R ← R of qr([R; rows]). The augmented
    column [A | b] carries Qᵀb along, so ``solve`` is one triangular solve.
    """

    def __init__(self, n_cols, block=None):
        self.n = int(n_cols)
        self.block = block or max(4 * self.n, 4096)
        self.R = np.zeros((0, self.n + 1))
        self._buf = []
        self._rows = 0
        self.n_rows = 0

    def add(self, A, b):
        A = np.asarray(A, dtype=np.float64)
        if A.shape[0] == 0:
            return
        self._buf.append(np.hstack([A, np.asarray(b, dtype=np.float64).reshape(-1, 1)]))
        self._rows += A.shape[0]
        self.n_rows += A.shape[0]
        if self._rows >= self.block:
            self._flush()

    def _flush(self):
        if not self._buf:
            return
        stacked = np.vstack([self.R] + self._buf)
        self._buf, self._rows = [], 0
        self.R = np.linalg.qr(stacked, mode="r")

    def merge(self, comm):
        """Combine the rows every MPI rank added: afterwards rank 0 holds the R of all of them.

        R of qr([R_0; R_1; ...]) of the ranks' own R factors is the R of the whole stacked
        system (TSQR), up to row signs, which the solution does not depend on.
        """
        self._flush()
        parts = comm.gather(self.R, root=0)
        counts = comm.gather(self.n_rows, root=0)
        if comm.Get_rank() == 0:
            self.R = np.linalg.qr(np.vstack(parts), mode="r") if len(parts) > 1 else parts[0]
            self.n_rows = int(sum(counts))

    def solve(self, what="the system"):
        """Weights (n,), and R (n, n) with RᵀR = AᵀA.

        Raises ComputationError when R is numerically singular (``what`` names the hyper to
        change in the message).
        """
        self._flush()
        R = self.R
        if R.shape[0] < self.n:
            R = np.vstack([R, np.zeros((self.n - R.shape[0] + 1, self.n + 1))])
        Rw = R[:self.n, :self.n]
        d = np.abs(np.diag(Rw))
        if d.size and (not np.all(np.isfinite(Rw)) or d.min() <= 1e-13 * d.max()):
            raise ComputationError(f"singular least-squares system: {what}")
        from scipy.linalg import solve_triangular

        w = solve_triangular(Rw, R[:self.n, self.n])
        return w, Rw


@dataclasses.dataclass
class FrameTargets:
    """Fitting targets of one frame with the E0 and baseline parts removed (None = unused)."""

    n_atoms: int
    energy: float | None
    forces: np.ndarray | None       # (n, 3) eV/Å
    de: np.ndarray | None           # (6,) eV, Voigt of V·stress = dE/dε
    sigma: tuple                    # (σ_E·√n, σ_F, σ_V·√n)


def frame_targets(frames, model, sigmas, *, use_forces=True, use_stress=True, name="train"):
    """Per-frame :class:`FrameTargets` (``model`` supplies E0 and the baseline)."""
    out = []
    for atoms in frames:
        s = sigmas.of(atoms)
        res = atoms.calc.results if atoms.calc is not None else {}
        if s is None or not res:
            out.append(None)
            continue
        n = len(atoms)
        e = res.get(keys.ENERGY)
        f = res.get(keys.FORCES) if use_forces else None
        st = res.get(keys.STRESS) if use_stress and atoms.cell.rank == 3 else None
        if e is None and f is None and st is None:
            out.append(None)
            continue
        base = (model.baseline.compute(atoms, forces=f is not None, stress=st is not None)
                if model.baseline is not None else None)
        if e is not None:
            e = float(e) - float(model.e0_per_atom(atoms.numbers).sum())
            if base is not None:
                e -= float(base["energies"].sum())
        if f is not None:
            f = np.asarray(f, dtype=np.float64) - (base["forces"] if base is not None else 0.0)
        de = None
        if st is not None:
            st = np.asarray(st, dtype=np.float64)
            de = st * abs(atoms.cell.volume)          # Voigt dE/dε
            if base is not None:
                de = de - voigt(base["virial_de"])
        out.append(FrameTargets(n, e, f, de, (s[0] * np.sqrt(n), s[1], s[2] * np.sqrt(n))))
    if not any(t is not None for t in out):
        raise InputError(f"{name}: no frame has labels to fit (energy, forces or stress)")
    return out


def check_forces_present(frames, where):
    for k, atoms in enumerate(frames):
        res = atoms.calc.results if atoms.calc is not None else {}
        if len(atoms) > 1 and res.get(keys.FORCES) is None:
            raise InputError(f"{where}: frame {k}: no forces, but a force σ is set (give forces, "
                             "or --sigma-force 0 to fit energies only)")


def batch_descriptors(batch, soap, descriptors, *, gradients, strain):
    """SOAP of one batch: sliced from precomputed ``descriptors``, or computed."""
    from mlptools.descriptors.soap import soap_power_spectrum

    if descriptors is not None:
        return subset_structures(descriptors, batch[0][0], batch[-1][0] + 1)
    return soap_power_spectrum([a for _, a in batch], soap, gradients=gradients, strain=strain)


def batches(frames, max_atoms):
    """Lists of consecutive (index, frame) with at most ``max_atoms`` atoms (or one frame)."""
    batch, count = [], 0
    for k, atoms in enumerate(frames):
        if batch and count + len(atoms) > max_atoms:
            yield batch
            batch, count = [], 0
        batch.append((k, atoms))
        count += len(atoms)
    if batch:
        yield batch


def subset_structures(ds, s0, s1):
    """The rows of structures s0 .. s1−1 of a DescriptorSet, renumbered from 0 (a batch)."""
    from mlptools.descriptors.descriptor_set import DescriptorSet

    r0, r1 = np.searchsorted(ds.structure_index, [s0, s1])
    out = DescriptorSet(kind=ds.kind, hypers=ds.hypers, features=ds.features[r0:r1],
                        structure_index=ds.structure_index[r0:r1] - s0,
                        center_index=ds.center_index[r0:r1],
                        center_species=ds.center_species[r0:r1], n_structures=s1 - s0,
                        feature_names=ds.feature_names)
    if ds.grad_values is not None:
        g0, g1 = np.searchsorted(ds.grad_samples[:, 0], [r0, r1])
        samples = ds.grad_samples[g0:g1].copy()
        samples[:, 0] -= r0
        samples[:, 1] -= s0
        out.grad_values, out.grad_samples = ds.grad_values[g0:g1], samples
    if ds.strain_grad is not None:
        out.strain_grad = ds.strain_grad[r0:r1]
    return out


def check_descriptors(ds, frames, soap, *, gradients, strain, name="descriptors"):
    """Raise InputError unless ``ds`` is the SOAP of ``frames`` with ``soap`` hypers."""
    want = soap.to_dict()
    if ds.kind != "soap" or ds.hypers != want:
        raise InputError(f"{name}: SOAP hypers {ds.hypers} differ from the fit's {want}")
    sizes = np.bincount(ds.structure_index, minlength=ds.n_structures)
    if ds.n_structures != len(frames) or any(int(n) != len(a) for n, a in zip(sizes, frames,
                                                                              strict=True)):
        raise InputError(f"{name}: {ds.n_structures} structures that do not match the "
                         f"{len(frames)} training frames (atom counts differ)")
    if gradients and ds.grad_values is None:
        raise InputError(f"{name}: no position gradients (describe --gradients), needed for "
                         "forces")
    if strain and ds.strain_grad is None:
        raise InputError(f"{name}: no strain gradients (describe --gradients "
                         "positions+strain), needed for stresses")
    if np.any(np.diff(ds.structure_index) < 0):
        raise InputError(f"{name}: rows are not in structure order")


def scatter_rows(index, n_out):
    """Sparse (n_out × len(index)) matrix S with S[index[g], g] = 1 (sums rows by ``index``)."""
    from scipy.sparse import csr_matrix

    g = len(index)
    return csr_matrix((np.ones(g), (index, np.arange(g))), shape=(n_out, g))


def design_rows(batch, targets, terms, n_cols, *, grad_chunk=4096):
    """Weighted design rows and targets of one batch of frames.

    Parameters
    ----------
    batch : list of (frame index, ase.Atoms)
    targets : list of FrameTargets (global, indexed by frame index)
    terms : list of (ds, local, cols): a DescriptorSet of the batch (with gradients and strain
        when forces / stress are used), an object with ``energy_cols(ds) -> (n_rows, m)``
        (e_im) and ``grad_cols(ds, dX_gcf, rows_g) -> (n_g, C, m)`` (Σ_f ∂e_im/∂X_f ·
        dX[g, c, f] for any C: 3 for positions, 6 for strain components), and the slice of
        the M columns the term fills.
    n_cols : int, M

    Returns
    -------
    (A, b) : (rows, M) and (rows,), each row divided by its σ.
    """
    A_parts, b_parts = [], []
    tg = [targets[k] for k, _ in batch]
    n_s = len(batch)
    e_rows = [s for s in range(n_s) if tg[s] is not None and tg[s].energy is not None]
    f_frames = [s for s in range(n_s) if tg[s] is not None and tg[s].forces is not None]
    v_frames = [s for s in range(n_s) if tg[s] is not None and tg[s].de is not None]
    n_atoms = np.array([len(a) for _, a in batch])
    offset = np.concatenate([[0], np.cumsum(n_atoms)])
    n_tot = int(offset[-1])
    A_E = np.zeros((n_s, n_cols))
    A_F = np.zeros((n_tot, 3, n_cols)) if f_frames else None
    A_V = np.zeros((n_s, 6, n_cols)) if v_frames else None
    for ds, local, cols in terms:
        m = cols.stop - cols.start
        S_struct = scatter_rows(ds.structure_index, n_s)
        A_E[:, cols] = S_struct @ local.energy_cols(ds)
        if f_frames and ds.grad_values is not None:
            samples = ds.grad_samples
            target_row = offset[samples[:, 1]] + samples[:, 2]
            part = np.zeros((n_tot, 3 * m))
            for g0 in range(0, samples.shape[0], grad_chunk):
                g1 = min(samples.shape[0], g0 + grad_chunk)
                T = local.grad_cols(ds, ds.grad_values[g0:g1], samples[g0:g1, 0])
                part -= scatter_rows(target_row[g0:g1], n_tot) @ T.reshape(g1 - g0, 3 * m)
            A_F[:, :, cols] = part.reshape(n_tot, 3, m)
        if v_frames and ds.strain_grad is not None:
            dXs = voigt(np.moveaxis(ds.strain_grad, -1, 1))          # (n_rows, F, 6)
            dXs = np.ascontiguousarray(np.moveaxis(dXs, -1, 1))       # (n_rows, 6, F)
            # in row chunks, as the forces: a bcc batch has ~90 3-body rows per atom, and one
            # (rows, 6, m) block of them was the fit's memory peak
            part = np.zeros((n_s, 6 * m))
            for r0 in range(0, ds.n_rows, grad_chunk):
                r1 = min(ds.n_rows, r0 + grad_chunk)
                T = local.grad_cols(ds, dXs[r0:r1], np.arange(r0, r1))
                part += S_struct[:, r0:r1] @ T.reshape(r1 - r0, 6 * m)
            A_V[:, :, cols] = part.reshape(n_s, 6, m)
    if e_rows:
        sig = np.array([tg[s].sigma[0] for s in e_rows])
        A_parts.append(A_E[e_rows] / sig[:, None])
        b_parts.append(np.array([tg[s].energy for s in e_rows]) / sig)
    for s in f_frames:
        A_parts.append(A_F[offset[s]:offset[s + 1]].reshape(-1, n_cols) / tg[s].sigma[1])
        b_parts.append(tg[s].forces.reshape(-1) / tg[s].sigma[1])
    for s in v_frames:
        A_parts.append(A_V[s] / tg[s].sigma[2])
        b_parts.append(tg[s].de / tg[s].sigma[2])
    if not A_parts:
        return np.zeros((0, n_cols)), np.zeros(0)
    return np.vstack(A_parts), np.concatenate(b_parts)


def contract_gradients(ds, v_nf, n_atoms, *, stress=True):
    """dE/dr (n_atoms, 3) and dE/dε (3, 3) of one structure from v = ∂E/∂X (n_rows, F).

    dE/dr_a = Σ_g dX_g · v_{row(g)},   dE/dε = Σ_i dX_i/dε · v_i.
    """
    samples = ds.grad_samples
    # plain einsum: its fused loop beats optimize=True (a batched matmul with copies) here
    per_g = np.einsum("gcf,gf->gc", ds.grad_values, v_nf[samples[:, 0]])
    dE_dr = np.zeros((n_atoms, 3))
    for c in range(3):
        dE_dr[:, c] = np.bincount(samples[:, 2], weights=per_g[:, c], minlength=n_atoms)
    dE_de = None
    if stress and ds.strain_grad is not None:
        dE_de = np.einsum("nabf,nf->ab", ds.strain_grad, v_nf)
    return dE_dr, dE_de


def derivatives(ds, v_nf, n_atoms, *, forces=True, stress=True):
    """``{"forces": −dE/dr, "virial_de": dE/dε}`` (as asked) from v = ∂E/∂X."""
    dE_dr, dE_de = contract_gradients(ds, v_nf, n_atoms, stress=stress)
    out = {}
    if forces:
        out["forces"] = -dE_dr
    if stress:
        out["virial_de"] = dE_de
    return out


def memory_estimate_gb(n_cols, batch_atoms, n_features, neighbors=40, grad_chunk=4096):
    """Rough peak memory of a fit (GB): QR blocks, one batch of gradients and its force rows."""
    qr = 8.0 * (n_cols + 1) * (max(4 * n_cols, 4096) + n_cols + 1) * 3
    grads = 8.0 * batch_atoms * neighbors * 3 * n_features * 1.2
    force_rows = 8.0 * batch_atoms * 3 * n_cols * 3 + 8.0 * grad_chunk * 3 * n_cols * 2
    return (qr + grads + force_rows) / 1e9
