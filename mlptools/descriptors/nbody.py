"""GAP's ``distance_2b`` and ``angle_3b`` descriptors with position and strain gradients.

Index letters: ``n`` atoms, ``p`` pairs of the full neighbour list, ``t`` instances (rows),
``g`` gradient sample rows, ``c`` Cartesian, ``f`` features.

distance_2b
    One instance per unordered pair within the cutoff: from the full list (i, j, S) keep i < j, or
    i == j (an atom and its own periodic image) with S > 0 lexicographically, so that every
    physical pair appears once. Feature r_ij (Å); ``center_index`` i. The per-structure instance
    multiset is extensive (a 2×2×2 supercell has 8 times each instance).
angle_3b
    One instance per centre i and unordered pair of distinct neighbour entries j < k (periodic
    images are distinct entries), both within the cutoff. Features, as GAP:
    (r_ij + r_ik [Å], (r_ij − r_ik)² [Å²], r_jk [Å]); ``center_index`` i.

Cutoff weight (GAP ``coordination_function``, width w = ``cutoff_transition_width``):
    f(r) = 1 (r <= r_c − w);  ½(cos(π(r − r_c + w)/w) + 1) (r_c − w < r < r_c);  0 (r >= r_c)
``cutoff_weight`` is f(r_ij) for 2b and f(r_ij) f(r_ik) for 3b.

Gradients (sparse, see :class:`~mlptools.descriptors.descriptor_set.DescriptorSet`): the samples of
an instance are its distinct atoms (centre, j, k; periodic images folded onto their atom). With
D = r_j + S·cell − r_i and g = ∂X/∂D: dX/dr_j = g, dX/dr_i = −g, and the strain derivative is
dX/dε_ab = Σ_D D_a g_b. For 2b, g = D/r; for 3b with u = D/r and D_jk = D_ik − D_ij:
    ∂(r_ij + r_ik)/∂D_ij = u_ij,  ∂(r_ij − r_ik)²/∂D_ij = 2(r_ij − r_ik) u_ij,  ∂r_jk/∂D_ij = −u_jk
and symmetrically for D_ik (with −2(r_ij − r_ik) u_ik and +u_jk).
"""

import numpy as np

from mlptools.descriptors._inputs import as_frames, as_hypers
from mlptools.descriptors.descriptor_set import DescriptorSet
from mlptools.descriptors.hypers import ThreeBodyHypers, TwoBodyHypers
from mlptools.neighbors import neighbor_list

__all__ = ["distance_2b", "angle_3b"]

THREE_BODY_FEATURES = ["r_ij+r_ik", "(r_ij-r_ik)^2", "r_jk"]


def _frame_neighbors(atoms, cutoff):
    """(first_n, j_p, D_pc, S_pc, i_p) of the full neighbour list of one ase.Atoms."""
    n = len(atoms)
    i_p, j_p, D_pc, S_pc = neighbor_list(
        "ijDS", atoms.positions, atoms.cell.array, atoms.pbc, cutoff
    )
    i_p = np.ascontiguousarray(i_p, dtype=np.int64)
    first_n = np.searchsorted(i_p, np.arange(n + 1)).astype(np.int64)
    return (first_n, np.ascontiguousarray(j_p, dtype=np.int64),
            np.ascontiguousarray(D_pc, dtype=np.float64), np.asarray(S_pc, dtype=np.int64), i_p)


def _empty_set(kind, hypers, n_features, n_structures, gradients, strain, names):
    return DescriptorSet(
        kind=kind, hypers=hypers.to_dict(), features=np.zeros((0, n_features)),
        structure_index=np.zeros(0, np.int64), center_index=np.zeros(0, np.int64),
        center_species=np.zeros(0, np.int64), n_structures=n_structures,
        grad_values=np.zeros((0, 3, n_features)) if gradients else None,
        grad_samples=np.zeros((0, 3), np.int64) if gradients else None,
        strain_grad=np.zeros((0, 3, 3, n_features)) if strain else None,
        cutoff_weight=None if kind == "acsf" else np.zeros(0),
        cutoff_weight_grad=np.zeros((0, 3)) if gradients and kind != "acsf" else None,
        feature_names=names,
    )


def _assemble(kind, hypers, parts, n_structures, gradients, strain, names):
    """Join per-frame dicts into one DescriptorSet, shifting rows in grad_samples."""
    n_features = len(names)
    parts = [p for p in parts if p["features"].shape[0]]
    if not parts:
        return _empty_set(kind, hypers, n_features, n_structures, gradients, strain, names)
    row0 = np.cumsum([0] + [p["features"].shape[0] for p in parts])
    out = dict(
        features=np.concatenate([p["features"] for p in parts]),
        structure_index=np.concatenate(
            [np.full(p["features"].shape[0], p["structure"], np.int64) for p in parts]),
        center_index=np.concatenate([p["center_index"] for p in parts]),
        center_species=np.concatenate([p["center_species"] for p in parts]),
        cutoff_weight=(np.concatenate([p["cutoff_weight"] for p in parts])
                       if "cutoff_weight" in parts[0] else None),
    )
    if gradients:
        samples = []
        for p, r0 in zip(parts, row0, strict=False):
            s = np.empty((p["grad_rows"].shape[0], 3), np.int64)
            s[:, 0] = p["grad_rows"] + r0
            s[:, 1] = p["structure"]
            s[:, 2] = p["grad_atoms"]
            samples.append(s)
        out["grad_samples"] = np.concatenate(samples)
        out["grad_values"] = np.concatenate([p["grad_values"] for p in parts])
        if "cutoff_weight_grad" in parts[0]:
            out["cutoff_weight_grad"] = np.concatenate([p["cutoff_weight_grad"] for p in parts])
    if strain:
        out["strain_grad"] = np.concatenate([p["strain_grad"] for p in parts])
    return DescriptorSet(kind=kind, hypers=hypers.to_dict(), n_structures=n_structures,
                         feature_names=names, **out)


def _species_match(numbers, z):
    return np.ones(len(numbers), np.int64) if z == 0 else (numbers == z).astype(np.int64)


def distance_2b(frames, hypers, *, gradients=False, strain=False):
    """GAP ``distance_2b``: the distance of every pair within the cutoff, with GAP's cutoff weight.

    Parameters
    ----------
    frames : iterable of ase.Atoms (positions and cell in Å), or one ase.Atoms
    hypers : TwoBodyHypers, dict or spec string (``"cutoff=5 cutoff_transition_width=0.5"``)
    gradients : bool
        Also dX/dr (dimensionless, Å/Å) and d cutoff_weight/dr (1/Å), sparse.
    strain : bool
        Also dX/dε (n_rows, 3, 3, 1) in Å: dr/dε_ab = D_a D_b / r.

    Returns
    -------
    DescriptorSet
        kind ``"distance_2b"``, one row per unordered pair (see the module docstring), features
        (n_rows, 1) r in Å, ``cutoff_weight`` f(r).
    """
    from mlptools._ext import nbody as _nbody

    hypers = as_hypers(hypers, TwoBodyHypers)
    frames = as_frames(frames)
    rc, w = float(hypers.cutoff), float(hypers.cutoff_transition_width)
    parts = []
    for s, atoms in enumerate(frames):
        if len(atoms) == 0:
            continue
        numbers = atoms.numbers.astype(np.int64)
        first_n, j_p, D_pc, S_pc, i_p = _frame_neighbors(atoms, rc)
        S_positive = (S_pc[:, 0] > 0) | ((S_pc[:, 0] == 0) & (
            (S_pc[:, 1] > 0) | ((S_pc[:, 1] == 0) & (S_pc[:, 2] > 0))))
        keep = (i_p < j_p) | ((i_p == j_p) & S_positive)
        a1 = _species_match(numbers, hypers.z1).astype(bool)
        a2 = _species_match(numbers, hypers.z2).astype(bool)
        keep &= (a1[i_p] & a2[j_p]) | (a2[i_p] & a1[j_p])
        i_t = np.ascontiguousarray(i_p[keep])
        j_t = np.ascontiguousarray(j_p[keep])
        D_tc = np.ascontiguousarray(D_pc[keep])
        n_inst = i_t.shape[0]
        n_samp = np.where(i_t == j_t, 1, 2).astype(np.int64)
        first_t = np.concatenate([[0], np.cumsum(n_samp)]).astype(np.int64)
        n_grad = int(first_t[-1]) if gradients else 0
        X_tf = np.zeros((n_inst, 1))
        w_t = np.zeros(n_inst)
        samples_gk = np.zeros((n_grad, 2), np.int64)
        dX_gcf = np.zeros((n_grad, 3, 1))
        dw_gc = np.zeros((n_grad, 3))
        dXs = np.zeros((n_inst if strain else 0, 3, 3, 1))
        _nbody.distance_2b_instances(i_t, j_t, D_tc, first_t, rc, w, X_tf, w_t, samples_gk,
                                     dX_gcf, dw_gc, dXs, bool(gradients), bool(strain))
        parts.append(dict(
            structure=s, features=X_tf, center_index=i_t, center_species=numbers[i_t],
            cutoff_weight=w_t, grad_rows=samples_gk[:, 0], grad_atoms=samples_gk[:, 1],
            grad_values=dX_gcf, cutoff_weight_grad=dw_gc, strain_grad=dXs,
        ))
    return _assemble("distance_2b", hypers, parts, len(frames), gradients, strain, ["r"])


def angle_3b(frames, hypers, *, gradients=False, strain=False):
    """GAP ``angle_3b``: (r_ij + r_ik, (r_ij − r_ik)², r_jk) for every triplet (i; j < k).

    Parameters
    ----------
    frames : iterable of ase.Atoms (Å), or one ase.Atoms
    hypers : ThreeBodyHypers, dict or spec string (``"cutoff=3.5"``)
    gradients : bool
        Also dX/dr (units of X per Å) and d cutoff_weight/dr (1/Å), sparse.
    strain : bool
        Also dX/dε, (n_rows, 3, 3, 3).

    Returns
    -------
    DescriptorSet
        kind ``"angle_3b"``, rows grouped by centre (in atom order), then by neighbour-list
        entries (j, k) with j < k; features (n_rows, 3); ``cutoff_weight`` f(r_ij) f(r_ik).
    """
    from mlptools._ext import nbody as _nbody

    hypers = as_hypers(hypers, ThreeBodyHypers)
    frames = as_frames(frames)
    rc, w = float(hypers.cutoff), float(hypers.cutoff_transition_width)
    parts = []
    for s, atoms in enumerate(frames):
        n = len(atoms)
        if n == 0:
            continue
        numbers = atoms.numbers.astype(np.int64)
        first_n, j_p, D_pc, _, _ = _frame_neighbors(atoms, rc)
        r_p = np.ascontiguousarray(np.linalg.norm(D_pc, axis=1))
        centre_n = _species_match(numbers, hypers.z)
        is1_n = _species_match(numbers, hypers.z1)
        is2_n = _species_match(numbers, hypers.z2)
        count_n = np.zeros(n, np.int64)
        nsamp_n = np.zeros(n, np.int64)
        _nbody.angle_3b_count(first_n, j_p, r_p, centre_n, is1_n, is2_n, rc, count_n, nsamp_n)
        row0_n = np.concatenate([[0], np.cumsum(count_n)]).astype(np.int64)
        samp0_n = np.concatenate([[0], np.cumsum(nsamp_n)]).astype(np.int64)
        n_inst = int(row0_n[-1])
        n_grad = int(samp0_n[-1]) if gradients else 0
        X_tf = np.zeros((n_inst, 3))
        w_t = np.zeros(n_inst)
        jk_tk = np.zeros((n_inst, 2), np.int64)
        samples_gk = np.zeros((n_grad, 2), np.int64)
        dX_gcf = np.zeros((n_grad, 3, 3))
        dw_gc = np.zeros((n_grad, 3))
        dXs = np.zeros((n_inst if strain else 0, 3, 3, 3))
        _nbody.angle_3b_fill(first_n, j_p, D_pc, r_p, centre_n, is1_n, is2_n,
                             np.ascontiguousarray(row0_n[:-1]), np.ascontiguousarray(samp0_n[:-1]),
                             rc, w, X_tf, w_t, jk_tk, samples_gk, dX_gcf, dw_gc, dXs,
                             bool(gradients), bool(strain))
        centre_t = np.repeat(np.arange(n, dtype=np.int64), count_n)
        parts.append(dict(
            structure=s, features=X_tf, center_index=centre_t, center_species=numbers[centre_t],
            cutoff_weight=w_t, grad_rows=samples_gk[:, 0], grad_atoms=samples_gk[:, 1],
            grad_values=dX_gcf, cutoff_weight_grad=dw_gc, strain_grad=dXs,
        ))
    return _assemble("angle_3b", hypers, parts, len(frames), gradients, strain,
                     list(THREE_BODY_FEATURES))
