"""GAP distance_2b / angle_3b: instances, cutoff weights, exact gradients, invariances, errors."""

import itertools

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list as ase_neighbor_list
from gradcheck import numerical_position_gradient, numerical_strain_gradient
from hypothesis import given
from hypothesis import strategies as st
from strategies import cells, pbcs

from mlptools.descriptors.hypers import AcsfHypers, ThreeBodyHypers, TwoBodyHypers
from mlptools.descriptors.nbody import angle_3b, distance_2b
from mlptools.errors import ParameterError

TWO = TwoBodyHypers(cutoff=3.7, cutoff_transition_width=0.8)
THREE = ThreeBodyHypers(cutoff=3.2, cutoff_transition_width=0.7)

CONFIGS = {
    "periodic": (True, True, True),
    "mixed": (False, True, True),
    "cluster": (False, False, False),
}


def random_atoms(rng, n=6, pbc=(True, True, True), length=4.2, min_distance=1.0,
                 species=(8, 14)):
    cell = length * (np.eye(3) + 0.15 * rng.uniform(-1, 1, (3, 3)))
    positions = []
    while len(positions) < n:
        trial = rng.random(3) @ cell
        atoms = Atoms("H" * (len(positions) + 1), positions=positions + [trial], cell=cell, pbc=pbc)
        if not positions or np.all(atoms.get_distances(len(positions), range(len(positions)),
                                                        mic=any(pbc)) >= min_distance):
            positions.append(trial)
    numbers = rng.choice(species, size=n)
    numbers[:2] = species[:2]
    return Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)


def gap_cutoff(r, rc, w):
    return np.where(r <= rc - w, 1.0,
                    np.where(r >= rc, 0.0, 0.5 * (np.cos(np.pi * (r - rc + w) / w) + 1.0)))


def dense_gradient(ds, n_atoms, values=None):
    """(n_atoms, 3, n_rows, ...) from the sparse gradients of a one-structure set."""
    values = ds.grad_values if values is None else values
    out = np.zeros((n_atoms, 3, ds.n_rows) + values.shape[2:])
    for (row, _, atom), value in zip(ds.grad_samples, values, strict=True):
        out[atom, :, row] += value
    return out


def instance_multiset(ds, decimals=7):
    """Rows (species, features, weight) sorted, rounded: an order-free view of the instances.

    For distance_2b the centre is the lower atom index of the pair, which a permutation or a
    supercell may swap, so the species column is left out there.
    """
    species = [] if ds.kind == "distance_2b" else [ds.center_species]
    table = np.column_stack(species + [ds.features, ds.cutoff_weight])
    table = np.round(table, decimals) + 0.0
    return table[np.lexsort(table.T[::-1])]


# --------------------------------------------------------------------------------- distance_2b


def test_distance_2b_cluster_matches_brute_force():
    atoms = random_atoms(np.random.default_rng(1), n=7, pbc=(False,) * 3)
    ds = distance_2b([atoms], TWO)
    d = atoms.get_all_distances()
    pairs = [(i, j) for i, j in itertools.combinations(range(7), 2) if d[i, j] < TWO.cutoff]
    assert ds.n_rows == len(pairs) > 3
    assert ds.kind == "distance_2b" and ds.feature_names == ["r"]
    np.testing.assert_array_equal(ds.center_index, [i for i, _ in pairs])
    np.testing.assert_array_equal(ds.center_species, atoms.numbers[[i for i, _ in pairs]])
    np.testing.assert_allclose(ds.features[:, 0], [d[i, j] for i, j in pairs], rtol=1e-14)
    np.testing.assert_allclose(ds.cutoff_weight, gap_cutoff(ds.features[:, 0], 3.7, 0.8),
                               atol=1e-14)
    assert 0 < ds.cutoff_weight.min() < 1 and ds.cutoff_weight.max() == 1.0


@pytest.mark.parametrize("config", list(CONFIGS))
def test_distance_2b_counts_every_pair_once(config):
    # a small cell: many periodic images, including images of an atom itself
    atoms = random_atoms(np.random.default_rng(2), n=4, length=2.8, pbc=CONFIGS[config])
    ds = distance_2b(atoms, TWO)
    i, j, d = ase_neighbor_list("ijd", atoms, TWO.cutoff)
    assert 2 * ds.n_rows == len(d)
    np.testing.assert_allclose(np.sort(ds.features[:, 0]), np.sort(d)[::2], rtol=1e-12)
    if config == "periodic":
        assert np.any(i == j)


def test_distance_2b_species_filter():
    atoms = random_atoms(np.random.default_rng(3), n=8, pbc=(True,) * 3)
    all_pairs = distance_2b(atoms, TWO)
    parts = [distance_2b(atoms, TwoBodyHypers(cutoff=3.7, cutoff_transition_width=0.8,
                                              z1=a, z2=b)) for a, b in ((8, 8), (8, 14), (14, 14))]
    assert sum(p.n_rows for p in parts) == all_pairs.n_rows
    swapped = distance_2b(atoms, TwoBodyHypers(cutoff=3.7, cutoff_transition_width=0.8,
                                               z1=14, z2=8))
    np.testing.assert_array_equal(swapped.features, parts[1].features)
    z = atoms.numbers
    for p, want in zip(parts, ({8}, {8, 14}, {14}), strict=True):
        assert set(p.center_species) <= want
    assert set(distance_2b(atoms, TwoBodyHypers(cutoff=3.7, z1=14)).center_species) <= set(z)


def test_distance_2b_smooth_to_zero_at_cutoff():
    rc = TWO.cutoff
    weights = [distance_2b(Atoms("Si2", positions=[[0, 0, 0], [rc - eps, 0, 0]]), TWO,
                           gradients=True) for eps in (1e-2, 1e-3)]
    w = [x.cutoff_weight[0] for x in weights]
    assert w[0] < 1e-3 and w[1] < 1e-5 and w[1] < w[0] / 50          # quadratic approach
    assert np.abs(weights[1].cutoff_weight_grad).max() < 1e-2
    assert distance_2b(Atoms("Si2", positions=[[0, 0, 0], [rc, 0, 0]]), TWO).n_rows == 0
    empty = distance_2b(Atoms("Si2", positions=[[0, 0, 0], [rc + 1, 0, 0]]), TWO,
                        gradients=True, strain=True)
    assert empty.n_rows == 0 and empty.grad_values.shape == (0, 3, 1)
    assert empty.strain_grad.shape == (0, 3, 3, 1) and empty.cutoff_weight.shape == (0,)


def test_angle_3b_weight_smooth_to_zero_at_cutoff():
    rc = THREE.cutoff

    def trimer(r):
        return Atoms("Si3", positions=[[0, 0, 0], [1.0, 1.2, 0], [r, 0, 0]])

    w = [angle_3b(trimer(rc - eps), THREE, gradients=True) for eps in (1e-2, 1e-3)]
    centre0 = [x.cutoff_weight[x.center_index == 0][0] for x in w]
    assert centre0[0] < 1e-3 and centre0[1] < 1e-5 and centre0[1] < centre0[0] / 50
    # f'(r_c − ε) ≈ (π/w)² ε / 2: linear in ε
    assert np.abs(w[1].cutoff_weight_grad[w[1].grad_samples[:, 0] == 0]).max() < 2e-2
    assert 0 not in angle_3b(trimer(rc + 1e-9), THREE).center_index


# ------------------------------------------------------------------------------------ angle_3b


def _angle_3b_reference(atoms, hypers):
    """Loops over the full neighbour list: (centre, j, k, features, weight) per triplet."""
    from mlptools.neighbors import neighbor_list

    i, j, D = neighbor_list("ijD", atoms.positions, atoms.cell.array, atoms.pbc, hypers.cutoff)
    z = atoms.numbers

    def ok(zz, want):
        return want == 0 or zz == want

    rows = []
    for c in range(len(atoms)):
        if not ok(z[c], hypers.z):
            continue
        idx = np.flatnonzero(i == c)
        for p, q in itertools.combinations(idx, 2):
            if not ((ok(z[j[p]], hypers.z1) and ok(z[j[q]], hypers.z2))
                    or (ok(z[j[p]], hypers.z2) and ok(z[j[q]], hypers.z1))):
                continue
            rij, rik = np.linalg.norm(D[p]), np.linalg.norm(D[q])
            rjk = np.linalg.norm(D[q] - D[p])
            w = gap_cutoff(rij, hypers.cutoff, hypers.cutoff_transition_width) * gap_cutoff(
                rik, hypers.cutoff, hypers.cutoff_transition_width)
            rows.append((c, rij + rik, (rij - rik) ** 2, rjk, w))
    return np.array(rows).reshape(-1, 5)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("filters", [(0, 0, 0), (14, 8, 8), (8, 14, 8), (0, 14, 0)])
def test_angle_3b_matches_reference(config, filters):
    atoms = random_atoms(np.random.default_rng(4), n=7, pbc=CONFIGS[config])
    z, z1, z2 = filters
    hypers = ThreeBodyHypers(cutoff=3.2, cutoff_transition_width=0.7, z=z, z1=z1, z2=z2)
    ds = angle_3b([atoms], hypers)
    ref = _angle_3b_reference(atoms, hypers)
    assert ds.n_rows == len(ref)
    if filters == (0, 0, 0):
        assert ds.n_rows > 10
    np.testing.assert_array_equal(ds.center_index, ref[:, 0].astype(int))
    np.testing.assert_array_equal(ds.center_species, atoms.numbers[ds.center_index])
    np.testing.assert_allclose(ds.features, ref[:, 1:4], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(ds.cutoff_weight, ref[:, 4], atol=1e-14)
    assert ds.feature_names == ["r_ij+r_ik", "(r_ij-r_ik)^2", "r_jk"]


def test_angle_3b_filters_partition_the_triplets():
    atoms = random_atoms(np.random.default_rng(5), n=8, pbc=(True,) * 3)
    total = angle_3b(atoms, THREE).n_rows
    parts = 0
    for z in (8, 14):
        for z1, z2 in ((8, 8), (8, 14), (14, 14)):
            parts += angle_3b(atoms, ThreeBodyHypers(cutoff=3.2, cutoff_transition_width=0.7,
                                                     z=z, z1=z1, z2=z2)).n_rows
    assert parts == total > 0


# ------------------------------------------------------------------------------------ gradients


def _check_position_gradients(func, hypers, atoms):
    ds = func([atoms], hypers, gradients=True)

    def both(positions):
        moved = atoms.copy()
        moved.positions = positions
        out = func([moved], hypers)
        assert out.n_rows == ds.n_rows
        return np.column_stack([out.features, out.cutoff_weight])

    numeric = numerical_position_gradient(both, atoms.positions, h=1e-5)
    analytic_x = dense_gradient(ds, len(atoms))
    analytic_w = dense_gradient(ds, len(atoms), ds.cutoff_weight_grad[:, :, None])
    analytic = np.concatenate([analytic_x, analytic_w], axis=-1)
    assert np.abs(analytic_w).max() > 1e-2 and np.abs(analytic_x).max() > 0.5
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=2e-8)
    # samples are distinct atoms within each row
    keys = ds.grad_samples[:, 0] * len(atoms) + ds.grad_samples[:, 2]
    assert len(np.unique(keys)) == len(keys)
    assert np.all(np.diff(ds.grad_samples[:, 0]) >= 0)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("seed", [10, 11])
def test_distance_2b_position_gradients(config, seed):
    atoms = random_atoms(np.random.default_rng(seed), n=5, length=3.0, pbc=CONFIGS[config])
    _check_position_gradients(distance_2b, TWO, atoms)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("seed", [10, 11])
def test_angle_3b_position_gradients(config, seed):
    atoms = random_atoms(np.random.default_rng(seed), n=5, length=3.0, pbc=CONFIGS[config])
    _check_position_gradients(angle_3b, THREE, atoms)


@pytest.mark.parametrize("func, hypers", [(distance_2b, TWO), (angle_3b, THREE)])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_strain_gradients(func, hypers, config):
    atoms = random_atoms(np.random.default_rng(12), n=5, length=3.0, pbc=CONFIGS[config])
    ds = func(atoms, hypers, strain=True)
    assert ds.grad_values is None

    def features(positions, cell):
        return func(Atoms(numbers=atoms.numbers, positions=positions, cell=cell, pbc=atoms.pbc),
                    hypers).features

    numeric = numerical_strain_gradient(features, atoms.positions, atoms.cell.array, h=1e-5)
    analytic = np.moveaxis(ds.strain_grad, 0, 2)
    assert np.abs(analytic).max() > 0.5
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    full = func(atoms, hypers, gradients=True, strain=True)
    np.testing.assert_array_equal(full.strain_grad, ds.strain_grad)


# ---------------------------------------------------------------------------------- invariances


@st.composite
def structures(draw):
    cell = draw(cells(min_length=3.0, max_length=6.0))
    pbc = draw(pbcs())
    n = draw(st.integers(2, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    positions = rng.random((n, 3)) @ cell
    keep = [0]
    for k in range(1, n):
        if np.all(np.linalg.norm(positions[keep] - positions[k], axis=1) >= 0.9):
            keep.append(k)
    numbers = rng.choice([8, 14], size=len(keep))
    return Atoms(numbers=numbers, positions=positions[keep], cell=cell, pbc=pbc), rng


@given(structures())
def test_invariant_under_rotation_translation_permutation_images(data):
    atoms, rng = data
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = q * np.sign(np.diag(r))
    rotated = Atoms(numbers=atoms.numbers, positions=atoms.positions @ rot.T + rng.normal(size=3),
                    cell=atoms.cell.array @ rot.T, pbc=atoms.pbc)
    permuted = atoms[rng.permutation(len(atoms))]
    shifts = rng.integers(-2, 3, (len(atoms), 3)) * atoms.pbc
    imaged = Atoms(numbers=atoms.numbers, positions=atoms.positions + shifts @ atoms.cell.array,
                   cell=atoms.cell, pbc=atoms.pbc)
    for func, hypers in ((distance_2b, TWO), (angle_3b, THREE)):
        ref = instance_multiset(func(atoms, hypers))
        for other in (rotated, permuted, imaged):
            got = instance_multiset(func(other, hypers))
            assert got.shape == ref.shape
            np.testing.assert_allclose(got, ref, atol=2e-7)


@pytest.mark.parametrize("func, hypers", [(distance_2b, TWO), (angle_3b, THREE)])
def test_supercell_scales_instances_by_eight(func, hypers):
    atoms = random_atoms(np.random.default_rng(40), n=4, length=3.3)
    atoms.wrap()
    small = func(atoms, hypers)
    big = func(atoms.repeat((2, 2, 2)), hypers)
    assert big.n_rows == 8 * small.n_rows > 0
    np.testing.assert_allclose(instance_multiset(big), np.repeat(instance_multiset(small), 8, 0),
                               atol=2e-7)
    np.testing.assert_allclose(big.cutoff_weight.sum(), 8 * small.cutoff_weight.sum(), rtol=1e-12)


def test_multiple_structures_and_hypers_forms():
    a = random_atoms(np.random.default_rng(50), n=4, pbc=(False,) * 3)
    b = random_atoms(np.random.default_rng(51), n=5, pbc=(True,) * 3)
    both = angle_3b([a, b], THREE.to_dict(), gradients=True)
    sa = angle_3b(a, THREE, gradients=True)
    sb = angle_3b(b, "cutoff=3.2 cutoff_transition_width=0.7", gradients=True)
    assert both.n_structures == 2 and both.n_rows == sa.n_rows + sb.n_rows
    np.testing.assert_array_equal(both.features, np.concatenate([sa.features, sb.features]))
    np.testing.assert_array_equal(both.structure_index[sa.n_rows:], 1)
    np.testing.assert_array_equal(both.grad_samples[len(sa.grad_samples):, 0],
                                  sb.grad_samples[:, 0] + sa.n_rows)
    assert both.hypers == THREE.to_dict()


# --------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("cls, kwargs, match", [
    (TwoBodyHypers, dict(cutoff=0.0), r"distance_2b hyper 'cutoff' must be > 0 Å"),
    (TwoBodyHypers, dict(cutoff=float("nan")), r"distance_2b hyper 'cutoff' must be > 0 Å"),
    (TwoBodyHypers, dict(cutoff=3.0, cutoff_transition_width=4.0),
     r"distance_2b hyper 'cutoff_transition_width' must be in \(0, cutoff=3.0\]"),
    (TwoBodyHypers, dict(cutoff_transition_width=0.0), r"'cutoff_transition_width' must be in"),
    (TwoBodyHypers, dict(z1=-1), r"distance_2b hyper 'z1' must be an atomic number"),
    (ThreeBodyHypers, dict(cutoff=-1.0), r"angle_3b hyper 'cutoff' must be > 0 Å"),
    (ThreeBodyHypers, dict(z=200), r"angle_3b hyper 'z' must be an atomic number"),
])
def test_bad_hypers(cls, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        cls(**kwargs)


def test_bad_hypers_from_strings_and_dicts():
    with pytest.raises(ParameterError,
                       match=r"unknown distance_2b hyper 'cutof'; did you mean 'cutoff'"):
        TwoBodyHypers.from_string("cutof=4")
    assert ThreeBodyHypers.from_string("z=Si z1=O z2=14") == ThreeBodyHypers(z=14, z1=8, z2=14)
    with pytest.raises(ParameterError, match=r"hyper 'z1': cannot read 'Xx' as int"):
        ThreeBodyHypers.from_string("z1=Xx")
    with pytest.raises(ParameterError, match="hypers of type 'acsf' given where 'angle_3b'"):
        angle_3b(Atoms("Si"), AcsfHypers())
    with pytest.raises(ParameterError, match="hypers of type 'angle_3b' given where 'distance_2b'"):
        TwoBodyHypers.from_dict(ThreeBodyHypers().to_dict())
    with pytest.raises(ParameterError, match="frame 1: expected ase.Atoms"):
        distance_2b([Atoms("Si"), "x"], TWO)


_THREADS_SCRIPT = """
import hashlib, sys
import numpy as np
from ase.build import bulk
from mlptools.descriptors.acsf import acsf
from mlptools.descriptors.nbody import angle_3b, distance_2b
atoms = bulk("Si", cubic=True) * (2, 2, 2)
atoms.numbers[::5] = 8
atoms.rattle(0.1, seed=7)
h = hashlib.sha256()
for ds in (acsf(atoms, {"cutoff": 4.5}, gradients=True, strain=True),
           distance_2b(atoms, "cutoff=4", gradients=True, strain=True),
           angle_3b(atoms, "cutoff=3.5", gradients=True, strain=True)):
    for x in (ds.features, ds.grad_values, ds.grad_samples, ds.strain_grad, ds.cutoff_weight):
        if x is not None:
            h.update(np.ascontiguousarray(x).tobytes())
sys.stdout.write(h.hexdigest())
"""


def test_results_do_not_depend_on_thread_count():
    import os
    import subprocess
    import sys

    digests = []
    for threads in ("1", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], env=env, check=True,
                             capture_output=True, text=True)
        digests.append(out.stdout)
    assert len(digests[0]) == 64 and digests[0] == digests[1]
