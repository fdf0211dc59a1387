"""The descriptor HDF5 file written by ``mlptools describe`` and read by ``mlptools fit``.

Layout (format "mlptools-descriptors", version 1)::

    /                      attrs: format, format_version, units, provenance (JSON)
    /structures/n_atoms    (n_structures,) int64, atoms per input frame, in input order
    /<kind>/               one group per descriptor kind (soap, acsf, distance_2b, angle_3b)
        attrs: hypers (JSON), n_features, feature_names (JSON)
        features           (n_rows, n_features) float64
        structure_index    (n_rows,) int64    structure (input frame) of each row
        center_index       (n_rows,) int64    central atom of each row, index within its structure
        center_species     (n_rows,) int64    atomic number of that atom
        cutoff_weight      (n_rows,) float64  GAP covariance cutoff (2b/3b only)
        gradients/values   (n_grad, 3, n_features) float64   dX[row]/dr[atom]  (1/Å × feature units)
        gradients/samples  (n_grad, 3) int64  (row, structure, atom)
        gradients/cutoff_weight  (n_grad, 3) float64 (2b/3b only)
        strain             (n_rows, 3, 3, n_features) float64    dX[row]/dε

Datasets are chunked, compressed and grown batch by batch, so a 100 000-atom database never holds
all gradients in memory at once.
"""

import json

import h5py
import numpy as np

from mlptools.descriptors.descriptor_set import DescriptorSet
from mlptools.errors import InputError
from mlptools.io import h5
from mlptools.io.atomic import atomic_path

FORMAT = "mlptools-descriptors"
FORMAT_VERSION = 1
UNITS = {"length": "Å", "gradients": "1/Å (features per Å)", "strain": "dimensionless"}

_ROW_KEYS = ("features", "structure_index", "center_index", "center_species", "cutoff_weight")


def _append(group, name, array):
    """Append ``array`` along axis 0 to a resizable dataset (created on first use)."""
    array = np.ascontiguousarray(array)
    if name not in group:
        chunk_rows = max(1, min(len(array) or 1, (1 << 20) // max(1, array[0:1].nbytes or 8)))
        group.create_dataset(
            name, data=array, maxshape=(None,) + array.shape[1:],
            chunks=(chunk_rows,) + array.shape[1:], compression="gzip", compression_opts=1,
            shuffle=True,
        )
        return
    ds = group[name]
    start = ds.shape[0]
    ds.resize(start + len(array), axis=0)
    ds[start:] = array


class DescriptorWriter:
    """Write descriptor sets batch by batch into one file, atomically.

    Use as a context manager; the file appears at ``path`` only when the block completes. Row and
    structure indices of each appended batch are offset by what was written before.
    """

    def __init__(self, path, provenance):
        self.path = path
        self.provenance = provenance
        self._atomic = None
        self._file = None
        self._rows = {}
        self._structures = 0

    def __enter__(self):
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._file = h5py.File(tmp, "w")
        h5.write_header(self._file, FORMAT, FORMAT_VERSION, UNITS, self.provenance)
        self._file.create_group("structures")
        return self

    def __exit__(self, *exc):
        self._file.close()
        return self._atomic.__exit__(*exc)

    def append(self, n_atoms, sets):
        """Add one batch: ``n_atoms`` per structure of the batch and its DescriptorSets."""
        for ds in sets:
            group = self._file.require_group(ds.kind)
            if "hypers" not in group.attrs:
                group.attrs["hypers"] = json.dumps(ds.hypers, sort_keys=True)
                group.attrs["n_features"] = ds.n_features
                group.attrs["feature_names"] = json.dumps(ds.feature_names or [])
            rows = self._rows.get(ds.kind, 0)
            _append(group, "features", ds.features)
            _append(group, "structure_index", ds.structure_index + self._structures)
            _append(group, "center_index", ds.center_index)
            _append(group, "center_species", ds.center_species)
            if ds.cutoff_weight is not None:
                _append(group, "cutoff_weight", ds.cutoff_weight)
            if ds.grad_values is not None:
                samples = ds.grad_samples.copy()
                samples[:, 0] += rows
                samples[:, 1] += self._structures
                grads = group.require_group("gradients")
                _append(grads, "values", ds.grad_values)
                _append(grads, "samples", samples)
                if ds.cutoff_weight_grad is not None:
                    _append(grads, "cutoff_weight", ds.cutoff_weight_grad)
            if ds.strain_grad is not None:
                _append(group, "strain", ds.strain_grad)
            self._rows[ds.kind] = rows + ds.n_rows
        _append(self._file["structures"], "n_atoms", np.asarray(n_atoms, dtype=np.int64))
        self._structures += len(n_atoms)


def read_descriptors(path, kinds=None):
    """Read a descriptor file into ``{kind: DescriptorSet}`` (all kinds, or those in ``kinds``)."""
    h5.check_header(path, FORMAT, (FORMAT_VERSION,))
    out = {}
    try:
        with h5py.File(path, "r") as f:
            n_structures = len(f["structures/n_atoms"]) if "structures/n_atoms" in f else 0
            for kind in f:
                if kind == "structures" or (kinds is not None and kind not in kinds):
                    continue
                g = f[kind]
                grads = g.get("gradients")
                out[kind] = DescriptorSet(
                    kind=kind,
                    hypers=json.loads(g.attrs["hypers"]),
                    features=g["features"][()],
                    structure_index=g["structure_index"][()],
                    center_index=g["center_index"][()],
                    center_species=g["center_species"][()],
                    n_structures=n_structures,
                    grad_values=grads["values"][()] if grads is not None else None,
                    grad_samples=grads["samples"][()] if grads is not None else None,
                    strain_grad=g["strain"][()] if "strain" in g else None,
                    cutoff_weight=g["cutoff_weight"][()] if "cutoff_weight" in g else None,
                    cutoff_weight_grad=(grads["cutoff_weight"][()] if grads is not None
                                        and "cutoff_weight" in grads else None),
                    feature_names=json.loads(g.attrs.get("feature_names", "[]")) or None,
                )
    except (KeyError, OSError) as exc:
        raise InputError(f"{path}: damaged descriptor file ({exc})") from None
    if kinds is not None:
        missing = set(kinds) - set(out)
        if missing:
            raise InputError(f"{path}: no {', '.join(sorted(missing))} descriptors in this file")
    return out


def read_structure_sizes(path):
    """Atoms per structure, in input order, from a descriptor file."""
    with h5py.File(path, "r") as f:
        return f["structures/n_atoms"][()]
