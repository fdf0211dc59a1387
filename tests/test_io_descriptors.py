"""The descriptor HDF5 file: batch appends concatenate exactly, headers are checked, writes
atomic."""

import h5py
import numpy as np
import pytest

from mlptools.descriptors.descriptor_set import DescriptorSet
from mlptools.errors import InputError
from mlptools.io.descriptors import DescriptorWriter, read_descriptors, read_structure_sizes


def _random_set(rng, n_atoms_per_structure, n_features=5, kind="soap", with_cw=False):
    rows = sum(n_atoms_per_structure)
    structure_index = np.repeat(np.arange(len(n_atoms_per_structure)), n_atoms_per_structure)
    center_index = np.concatenate([np.arange(n) for n in n_atoms_per_structure])
    samples = []
    for r in range(rows):
        s = structure_index[r]
        for atom in rng.choice(n_atoms_per_structure[s], size=min(2, n_atoms_per_structure[s]),
                                   replace=False):
            samples.append((r, s, atom))
    samples = np.array(samples, dtype=np.int64)
    return DescriptorSet(
        kind=kind, hypers={"type": kind, "cutoff": 5.0},
        features=rng.normal(size=(rows, n_features)),
        structure_index=structure_index.astype(np.int64),
        center_index=center_index.astype(np.int64),
        center_species=np.full(rows, 14, dtype=np.int64), n_structures=len(n_atoms_per_structure),
        grad_values=rng.normal(size=(len(samples), 3, n_features)), grad_samples=samples,
        strain_grad=rng.normal(size=(rows, 3, 3, n_features)),
        cutoff_weight=rng.random(rows) if with_cw else None,
        cutoff_weight_grad=rng.normal(size=(len(samples), 3)) if with_cw else None,
        feature_names=[f"f{k}" for k in range(n_features)],
    )


def test_batches_concatenate_exactly(tmp_path, rng):
    sizes = [[3, 4], [2], [5, 1, 2]]
    batches = [_random_set(rng, s) for s in sizes]
    path = tmp_path / "d.h5"
    with DescriptorWriter(path, {"argv": ["test"]}) as writer:
        for s, ds in zip(sizes, batches, strict=True):
            writer.append(s, [ds])
    got = read_descriptors(path)["soap"]
    want = DescriptorSet.concatenate(batches)
    for key in ("features", "structure_index", "center_index", "center_species", "grad_values",
                "grad_samples", "strain_grad"):
        np.testing.assert_array_equal(getattr(got, key), getattr(want, key), err_msg=key)
    assert got.n_structures == 6
    assert got.feature_names == want.feature_names
    np.testing.assert_array_equal(read_structure_sizes(path), [3, 4, 2, 5, 1, 2])
    # the gradient samples still point at rows of their own structure after the offsets
    assert np.all(got.structure_index[got.grad_samples[:, 0]] == got.grad_samples[:, 1])


def test_two_kinds_with_cutoff_weights(tmp_path, rng):
    path = tmp_path / "d.h5"
    soap = _random_set(rng, [2, 3])
    pairs = _random_set(rng, [2, 3], n_features=1, kind="distance_2b", with_cw=True)
    with DescriptorWriter(path, {}) as writer:
        writer.append([2, 3], [soap, pairs])
    got = read_descriptors(path)
    assert set(got) == {"soap", "distance_2b"}
    np.testing.assert_array_equal(got["distance_2b"].cutoff_weight, pairs.cutoff_weight)
    np.testing.assert_array_equal(got["distance_2b"].cutoff_weight_grad, pairs.cutoff_weight_grad)
    with pytest.raises(InputError, match="no angle_3b descriptors"):
        read_descriptors(path, kinds=["angle_3b"])


def test_failed_write_leaves_no_file(tmp_path, rng):
    path = tmp_path / "d.h5"
    with pytest.raises(RuntimeError), DescriptorWriter(path, {}) as writer:
        writer.append([2], [_random_set(rng, [2])])
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_wrong_format_is_one_line_error(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "something-else"
        f.attrs["format_version"] = 1
    with pytest.raises(InputError, match="other.h5"):
        read_descriptors(path)
