"""DescriptorSet: per-instance descriptor vectors with sparse gradients, the currency of
describe/fit.

Index letters: ``r`` descriptor rows (one per instance: an atom for SOAP/ACSF, a pair for
distance_2b, a triplet for angle_3b), ``g`` gradient rows, ``c`` Cartesian, ``f`` features.

Gradients are sparse (featomic/metatensor layout): row ``g`` of ``grad_values`` holds
dX[row]/dr[atom] where ``(row, structure, atom) = grad_samples[g]``; ``atom`` is the index of the
moved atom inside its structure (periodic images fold onto their original atom). Strain gradients
dX[row]/dε (ε the symmetric strain, positions and cell scaled by (1 + ε)) are per row.

``cutoff_weight`` is GAP's per-instance covariance cutoff (1 for SOAP/ACSF, f_cut(r) for 2b/3b): the
energy model multiplies each instance's kernel by it. Its gradient uses the same ``grad_samples``.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class DescriptorSet:
    """Descriptor vectors of many structures.

    Attributes
    ----------
    kind : str
        ``"soap"``, ``"acsf"``, ``"distance_2b"``, ``"angle_3b"``.
    hypers : dict
        The hypers as ``to_dict()`` gives them (JSON-able, with a ``"type"`` key).
    features : (n_rows, n_features) float64
    structure_index : (n_rows,) int64, index of the structure each row belongs to.
    center_index : (n_rows,) int64, atom index (in its structure) of the row's central atom.
    center_species : (n_rows,) int64, atomic number of that atom.
    n_structures : int
    grad_values : (n_grad, 3, n_features) float64 or None, dX/dr in 1/Å times feature units.
    grad_samples : (n_grad, 3) int64 or None, columns (row, structure, atom).
    strain_grad : (n_rows, 3, 3, n_features) float64 or None, dX/dε (dimensionless strain).
    cutoff_weight : (n_rows,) float64 or None (None means all ones).
    cutoff_weight_grad : (n_grad, 3) float64 or None, d cutoff_weight / dr on the same samples.
    feature_names : list of str or None, one per feature (for info and debugging).
    """

    kind: str
    hypers: dict
    features: np.ndarray
    structure_index: np.ndarray
    center_index: np.ndarray
    center_species: np.ndarray
    n_structures: int
    grad_values: np.ndarray | None = None
    grad_samples: np.ndarray | None = None
    strain_grad: np.ndarray | None = None
    cutoff_weight: np.ndarray | None = None
    cutoff_weight_grad: np.ndarray | None = None
    feature_names: list | None = field(default=None, repr=False)

    @property
    def n_rows(self):
        return self.features.shape[0]

    @property
    def n_features(self):
        return self.features.shape[1]

    @property
    def has_gradients(self):
        return self.grad_values is not None

    def dense_gradient(self, row, n_atoms):
        """dX[row]/dr as a dense (n_atoms, 3, n_features) array (tests and debugging only)."""
        out = np.zeros((n_atoms, 3, self.n_features))
        sel = self.grad_samples[:, 0] == row
        np.add.at(out, self.grad_samples[sel, 2], self.grad_values[sel])
        return out

    @staticmethod
    def concatenate(sets):
        """Join sets of one kind computed on consecutive batches of structures."""
        sets = list(sets)
        first = sets[0]
        row_offset, struct_offset = 0, 0
        parts = {k: [] for k in ("features", "structure_index", "center_index", "center_species",
                                 "grad_values", "grad_samples", "strain_grad", "cutoff_weight",
                                 "cutoff_weight_grad")}
        for s in sets:
            if s.kind != first.kind or s.hypers != first.hypers:
                raise ValueError("cannot concatenate descriptor sets of different kinds or hypers")
            parts["features"].append(s.features)
            parts["structure_index"].append(s.structure_index + struct_offset)
            parts["center_index"].append(s.center_index)
            parts["center_species"].append(s.center_species)
            if s.grad_values is not None:
                samples = s.grad_samples.copy()
                samples[:, 0] += row_offset
                samples[:, 1] += struct_offset
                parts["grad_values"].append(s.grad_values)
                parts["grad_samples"].append(samples)
            for key in ("strain_grad", "cutoff_weight", "cutoff_weight_grad"):
                if getattr(s, key) is not None:
                    parts[key].append(getattr(s, key))
            row_offset += s.n_rows
            struct_offset += s.n_structures

        def join(key, width=None):
            return np.concatenate(parts[key]) if parts[key] else None

        return DescriptorSet(
            kind=first.kind, hypers=first.hypers, features=join("features"),
            structure_index=join("structure_index"), center_index=join("center_index"),
            center_species=join("center_species"), n_structures=struct_offset,
            grad_values=join("grad_values"), grad_samples=join("grad_samples"),
            strain_grad=join("strain_grad"), cutoff_weight=join("cutoff_weight"),
            cutoff_weight_grad=join("cutoff_weight_grad"), feature_names=first.feature_names,
        )
