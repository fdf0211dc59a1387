"""Behler–Parrinello atom-centred symmetry functions (ACSF): radial G2, angular G4 and G5.

Index letters: ``n`` atoms (one row per atom), ``p`` pairs of the full neighbour list, ``g``
gradient sample rows, ``c`` Cartesian, ``f`` features, ``k`` parameter sets.

Definitions (distances in Å, f_c(r) = ½(cos(πr/r_c) + 1) for r < r_c, 0 beyond; cos θ_ijk the
angle at i; the angular sums run over *unordered* pairs of distinct neighbours j < k, periodic
images counted as distinct neighbours)::

    G2(η, r_s)   = Σ_j exp(−η (r_ij − r_s)²) f_c(r_ij)
    G4(η, ζ, λ)  = 2^(1−ζ) Σ_{j<k} (1 + λ cos θ_ijk)^ζ exp(−η (r_ij² + r_ik² + r_jk²))
                                  f_c(r_ij) f_c(r_ik) f_c(r_jk)
    G5(η, ζ, λ)  = 2^(1−ζ) Σ_{j<k} (1 + λ cos θ_ijk)^ζ exp(−η (r_ij² + r_ik²)) f_c(r_ij) f_c(r_ik)

Per-element parameter sets: features come in blocks per neighbour species (G2) and per unordered
neighbour species pair (G4/G5), in this order (species sorted by atomic number, indices a, b)::

    [G2 of species 0: g2[0..n2)] ... [G2 of species S−1]
    [pair (0,0): g4[0..n4), g5[0..n5)] [pair (1,0): ...] [pair (1,1): ...] [pair (2,0): ...] ...

the pair (a, b) with a >= b at block a(a+1)/2 + b. ``feature_names`` spell each column, e.g.
``G2[Si](eta=0.1,r_s=0)`` and ``G4[O,Si](eta=0.005,zeta=2,lambda=-1)``. The centre's own species is
not encoded (rows carry it in ``center_species``; fit one model per centre species).

Relation to dscribe 2.1 (``dscribe.descriptors.ACSF(species, r_cut, g2_params=[[η, r_s]],
g4_params=[[η, ζ, λ]], g5_params=[[η, ζ, λ]], periodic=...)``): identical definitions — same
cosine cutoff, same 2^(1−ζ) prefactor, sum over j < k, η multiplying r_ij² + r_ik² + r_jk² in G4
(with f_c(r_jk)) and r_ij² + r_ik² in G5 — and the same block order. dscribe additionally puts a G1
column (Σ_j f_c) at the start of every species block: dropping column ``a·(1 + n2)`` of species
block ``a`` (dscribe's G3 being unused) gives our feature vector exactly. G1 itself is
G2(η=0, r_s=0).

Gradients: see ``cython_ext/acsf.pyx`` for the derivative of each term; samples of a row are the
centre and its distinct neighbour atoms (periodic images folded).
"""

import json
from pathlib import Path

import numpy as np

from mlptools.descriptors._inputs import as_frames, as_hypers, resolve_species
from mlptools.descriptors.hypers import AcsfHypers
from mlptools.descriptors.nbody import _assemble, _frame_neighbors
from mlptools.errors import InputError, ParameterError

__all__ = ["acsf", "acsf_feature_names", "load_acsf_hypers", "available_presets"]

PRESET_DIR = Path(__file__).resolve().parent / "presets"
_PRESET_PREFIX = "acsf-"


def available_presets():
    """Names of the ACSF presets shipped in ``mlptools/descriptors/presets/acsf-<name>.json``."""
    return sorted(p.stem[len(_PRESET_PREFIX):] for p in PRESET_DIR.glob(f"{_PRESET_PREFIX}*.json"))


def load_acsf_hypers(name_or_path):
    """AcsfHypers from a preset name (``"default"``, ``"compact"``) or a JSON file.

    The JSON holds ``to_dict()`` keys (``"type": "acsf"`` optional), for example
    ``{"cutoff": 6.0, "g2": [[0.05, 0.0]], "g4": [[0.005, 1, 1], [0.005, 1, -1]]}``.

    Raises
    ------
    ParameterError
        Unknown preset name (the message lists the presets), or invalid hypers.
    InputError
        A file that cannot be read or is not JSON.
    """
    text = str(name_or_path)
    preset = PRESET_DIR / f"{_PRESET_PREFIX}{text}.json"
    if preset.is_file():
        path = preset
    else:
        path = Path(text)
        if not path.is_file():
            raise ParameterError(f"unknown ACSF preset {text!r}; presets: "
                                 f"{', '.join(available_presets())} (or a .json file)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read ACSF hypers: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: ACSF hypers must be a JSON object")
    data.pop("description", None)
    return AcsfHypers.from_dict(data)


def _num(x):
    return f"{x:g}"


def acsf_feature_names(hypers):
    """Column names in feature order for resolved hypers (non-empty ``species``)."""
    from ase.data import chemical_symbols

    sym = [chemical_symbols[z] for z in hypers.species]
    names = [f"G2[{s}](eta={_num(eta)},r_s={_num(rs)})" for s in sym for eta, rs in hypers.g2]
    for a in range(len(sym)):
        for b in range(a + 1):
            pair = f"{sym[b]},{sym[a]}"
            for kind in ("g4", "g5"):
                for eta, zeta, lam in getattr(hypers, kind):
                    names.append(f"{kind.upper()}[{pair}](eta={_num(eta)},zeta={_num(zeta)},"
                                 f"lambda={_num(lam)})")
    return names


def acsf(frames, hypers, *, gradients=False, strain=False):
    """Behler–Parrinello symmetry functions G2/G4/G5 of every atom.

    Parameters
    ----------
    frames : iterable of ase.Atoms (positions and cell in Å), or one ase.Atoms
    hypers : AcsfHypers, dict, or spec string (``"cutoff=6 g2=0.1,0;0.5,0 g4=0.005,1,1"``).
        An empty ``species`` becomes the sorted species of ``frames``.
    gradients : bool
        Also dX/dr (1/Å times feature units), sparse: samples are each centre and its distinct
        neighbour atoms.
    strain : bool
        Also dX/dε, (n_atoms, 3, 3, n_features), ε the symmetric strain.

    Returns
    -------
    DescriptorSet
        kind ``"acsf"``, one row per atom in frame order, features (n_atoms, n_features) in the
        layout of the module docstring, ``hypers`` with the species list resolved.
    """
    from mlptools._ext import acsf as _acsf

    hypers = as_hypers(hypers, AcsfHypers)
    frames = as_frames(frames)
    hypers = resolve_species(hypers, frames)
    names = acsf_feature_names(hypers)
    n_features = len(names)
    n_species = len(hypers.species)
    index_of = {z: k for k, z in enumerate(hypers.species)}
    g2_k = np.ascontiguousarray(np.reshape(hypers.g2, (-1, 2)), dtype=np.float64)
    g4_k = np.ascontiguousarray(np.reshape(hypers.g4, (-1, 3)), dtype=np.float64)
    g5_k = np.ascontiguousarray(np.reshape(hypers.g5, (-1, 3)), dtype=np.float64)
    rc = float(hypers.cutoff)

    parts = []
    for s, atoms in enumerate(frames):
        n = len(atoms)
        if n == 0:
            continue
        numbers = atoms.numbers.astype(np.int64)
        spec_n = np.array([index_of[int(z)] for z in numbers], dtype=np.int64)
        first_n, j_p, D_pc, _, i_p = _frame_neighbors(atoms, rc)
        n_pairs = j_p.shape[0]
        if gradients:
            # one gradient row per (centre, distinct atom) among the centre and its neighbours,
            # sorted by centre then atom; slot_* map pairs and centres onto those rows
            keys = np.concatenate([i_p * n + j_p, np.arange(n, dtype=np.int64) * (n + 1)])
            uniq, inverse = np.unique(keys, return_inverse=True)
            slot_p = np.ascontiguousarray(inverse[:n_pairs], dtype=np.int64)
            slot_n = np.ascontiguousarray(inverse[n_pairs:], dtype=np.int64)
            grad_rows, grad_atoms = uniq // n, uniq % n
        else:
            slot_p = np.zeros(n_pairs, np.int64)
            slot_n = np.zeros(n, np.int64)
            uniq = np.zeros(0, np.int64)
            grad_rows = grad_atoms = uniq
        X_nf = np.zeros((n, n_features))
        dX_gcf = np.zeros((uniq.shape[0], 3, n_features))
        dXs = np.zeros((n if strain else 0, 3, 3, n_features))
        _acsf.acsf_features(first_n, j_p, D_pc, spec_n, slot_p, slot_n, g2_k, g4_k, g5_k, rc,
                            n_species, X_nf, dX_gcf, dXs, bool(gradients), bool(strain))
        parts.append(dict(
            structure=s, features=X_nf, center_index=np.arange(n, dtype=np.int64),
            center_species=numbers, grad_rows=grad_rows, grad_atoms=grad_atoms,
            grad_values=dX_gcf, strain_grad=dXs,
        ))
    return _assemble("acsf", hypers, parts, len(frames), gradients, strain, names)
