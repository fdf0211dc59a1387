"""The common HDF5 header and the structure database: exact round trips, atomic writes."""

import io

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import atoms_in_cell

from mlptools.errors import InputError
from mlptools.io import h5
from mlptools.io.extxyz import iter_extxyz, iter_frames, write_frames


def _assert_same(a, b):
    np.testing.assert_array_equal(a.numbers, b.numbers)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.cell.array, b.cell.array)
    np.testing.assert_array_equal(a.pbc, b.pbc)
    ra = a.calc.results if a.calc is not None else {}
    rb = b.calc.results if b.calc is not None else {}
    assert set(ra) == set(rb)
    for key in ra:
        np.testing.assert_array_equal(ra[key], rb[key], err_msg=key)
    assert set(a.info) == set(b.info)
    for key, value in a.info.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, b.info[key])
            assert value.dtype == b.info[key].dtype
        else:
            assert value == b.info[key] and type(value) is type(b.info[key]), key
    assert set(a.arrays) == set(b.arrays)
    for key in a.arrays:
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key])


def _mixed_frames(rng):
    """Frames without labels, with some labels, with all, non-periodic, extra info and arrays."""
    frames = []
    a = bulk("Si", "diamond", a=5.43, cubic=True)
    a.rattle(0.01, rng=rng)
    frames.append(a)  # no labels at all
    b = bulk("Cu", cubic=True).repeat((1, 1, 2))
    b.calc = SinglePointCalculator(b, energy=-12.345678901234567)
    b.info.update(config_type="energy-only", weight=0.5, step=3, converged=True,
                  tensor=rng.normal(size=(3, 3)), ids=np.arange(4), label="a b \"c\"")
    frames.append(b)
    c = molecule("H2O")
    c.calc = SinglePointCalculator(c, energy=-14.2, forces=rng.normal(size=(3, 3)))
    c.set_initial_magnetic_moments([1.0, 0.0, 0.0])
    c.set_tags([1, 2, 3])
    frames.append(c)  # no cell, no stress
    d = bulk("Ni", orthorhombic=True)
    d.calc = SinglePointCalculator(d, energy=rng.normal(), forces=rng.normal(size=(len(d), 3)),
                                   stress=rng.normal(size=6))
    d.info["config_type"] = "all"
    frames.append(d)
    e = Atoms("Si2", positions=[[0, 0, 0], [1.2, 1.3, 1.4]], cell=[[3, 0.2, 0], [0, 3, 0],
              [0.1, 0, 3]], pbc=[True, False, True])
    e.calc = SinglePointCalculator(e, forces=rng.normal(size=(2, 3)))
    frames.append(e)  # forces only
    for f in frames:
        f.info.setdefault("config_type", "default")
    return frames


def test_header_round_trip_and_checks(tmp_path):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        h5.write_header(f, "mlptools-descriptors", 2, {"length": "Å"}, {"argv": ["x"]},
                        hypers={"type": "soap", "cutoff": 5.0})
    header = h5.read_header(path)
    assert header == {"format": "mlptools-descriptors", "format_version": 2,
                      "units": {"length": "Å"}, "hypers": {"type": "soap", "cutoff": 5.0},
                      "provenance": {"argv": ["x"]}}
    assert h5.check_header(path, "mlptools-descriptors", (1, 2))["format_version"] == 2
    with pytest.raises(InputError, match=r"d.h5: format version 2 not supported "
                                         r"\(this mlptools reads 1\)"):
        h5.check_header(path, "mlptools-descriptors", (1,))
    with pytest.raises(InputError, match=r"d.h5: not an mlptools model file"):
        h5.check_header(path, "mlptools-model", (1,))
    text = tmp_path / "t.h5"
    text.write_text("hello")
    with pytest.raises(InputError, match=r"t.h5: not an HDF5 file"):
        h5.read_header(text)


def test_structures_round_trip_exact(tmp_path, rng):
    frames = _mixed_frames(rng)
    path = tmp_path / "s.h5"
    assert h5.write_structures(path, frames, provenance={"argv": ["test"]}) == len(frames)
    back = list(h5.iter_structures(path))
    assert len(back) == len(frames)
    for a, b in zip(frames, back, strict=True):
        _assert_same(a, b)
    assert h5.count_structures(path) == (len(frames), sum(len(f) for f in frames))
    header = h5.check_header(path, h5.STRUCTURES_FORMAT, (1,))
    assert header["provenance"] == {"argv": ["test"]}
    assert header["units"]["forces"] == "eV/Å"


def test_extxyz_h5_extxyz_is_identical(tmp_path, rng, test_data):
    frames = _mixed_frames(rng)
    buf = io.StringIO()
    write_frames(frames, buf)
    first = list(iter_extxyz(io.StringIO(buf.getvalue()), "mem"))
    h5.write_structures(tmp_path / "s.h5", first)
    second = io.StringIO()
    write_frames(h5.iter_structures(tmp_path / "s.h5"), second)
    assert second.getvalue() == buf.getvalue()
    # the committed test data too, through the validating reader
    cu = list(iter_frames(test_data / "cu_emt.xyz"))
    h5.write_structures(tmp_path / "cu.h5", cu)
    for a, b in zip(cu, iter_frames(tmp_path / "cu.h5"), strict=True):
        _assert_same(a, b)


def test_many_frames_span_blocks(tmp_path, rng):
    frames = []
    for k in range(1100):
        atoms = Atoms("H" * (1 + k % 3), positions=rng.normal(size=(1 + k % 3, 3)) * 3)
        if k % 2:
            atoms.calc = SinglePointCalculator(atoms, energy=float(k),
                                               forces=rng.normal(size=(len(atoms), 3)))
        atoms.info["config_type"] = f"t{k % 5}"
        frames.append(atoms)
    path = tmp_path / "many.h5"
    h5.write_structures(path, frames)
    back = list(h5.iter_structures(path, block_frames=300))
    for a, b in zip(frames, back, strict=True):
        _assert_same(a, b)
    with h5py.File(path) as f:
        ds = f["atoms/positions"]
        assert ds.compression == "gzip" and ds.chunks is not None
        np.testing.assert_array_equal(f["frames/offset"][()],
                                      np.concatenate([[0], np.cumsum(f["frames/n_atoms"])[:-1]]))


def test_writer_is_atomic(tmp_path, rng):
    path = tmp_path / "s.h5"

    def frames():
        yield from _mixed_frames(rng)
        raise InputError("bad frame")

    with pytest.raises(InputError):
        h5.write_structures(path, frames())
    assert list(tmp_path.iterdir()) == []


def test_wrong_version_and_damaged(tmp_path, test_data):
    with pytest.raises(InputError, match=r"wrong_version.h5: format version 9 not supported"):
        list(iter_frames(test_data / "bad" / "wrong_version.h5"))
    path = tmp_path / "desc.h5"
    with h5py.File(path, "w") as f:
        h5.write_header(f, "mlptools-descriptors", 1, {}, {})
    with pytest.raises(InputError, match=r"desc.h5: not an mlptools structures file"):
        list(iter_frames(path))
    broken = tmp_path / "broken.h5"
    with h5py.File(broken, "w") as f:
        h5.write_header(f, h5.STRUCTURES_FORMAT, 1, {}, {})
    with pytest.raises(InputError, match=r"broken.h5: damaged structure database"):
        list(iter_frames(broken))


def test_shared_si_round_trip(tmp_path, shared_data):
    src = shared_data / "mlearn" / "Si" / "train.xyz"
    frames = list(iter_frames(src))
    h5.write_structures(tmp_path / "si.h5", frames)
    back = list(iter_frames(tmp_path / "si.h5"))
    assert len(back) == 214
    for a, b in zip(frames, back, strict=True):
        _assert_same(a, b)
    out = tmp_path / "si.xyz"
    write_frames(back, out)
    for a, b in zip(frames, iter_frames(out), strict=True):
        _assert_same(a, b)


@settings(max_examples=25)
@given(system=atoms_in_cell(max_atoms=6, species=(1, 14, 29)),
       present=st.tuples(st.booleans(), st.booleans(), st.booleans()),
       seed=st.integers(0, 2**31 - 1))
def test_round_trip_property(tmp_path_factory, system, present, seed):
    """Any frame, any subset of labels: atoms -> h5 -> atoms is exact, extxyz text is identical."""
    positions, numbers, cell, pbc = system
    rng = np.random.default_rng(seed)
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)
    labels = {}
    if present[0]:
        labels["energy"] = float(rng.normal() * 100)
    if present[1]:
        labels["forces"] = rng.normal(size=(len(atoms), 3))
    if present[2]:
        labels["stress"] = rng.normal(size=6) * 1e-3
    if labels:
        atoms.calc = SinglePointCalculator(atoms, **labels)
    atoms.info.update(config_type=f"ct{seed % 3}", weight=float(rng.random()))
    path = tmp_path_factory.mktemp("h5") / "p.h5"
    h5.write_structures(path, [atoms])
    (back,) = h5.iter_structures(path)
    _assert_same(atoms, back)
    one, two = io.StringIO(), io.StringIO()
    write_frames([atoms], one)
    write_frames([back], two)
    assert one.getvalue() == two.getvalue()
