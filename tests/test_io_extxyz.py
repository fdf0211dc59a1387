"""Extended XYZ reading (streaming, validation, label normalisation) and atomic writing."""

import io
import sys

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from mlptools.errors import InputError
from mlptools.io.extxyz import iter_extxyz, iter_frames, write_frames
from mlptools.io.structures import iter_frames as structures_iter_frames


def _labelled(atoms, stress=True, config_type="bulk"):
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if stress:
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    if config_type:
        atoms.info["config_type"] = config_type
    return atoms


def _text(frames):
    buf = io.StringIO()
    write_frames(frames, buf)
    return buf.getvalue()


def test_reads_test_data(test_data):
    frames = list(iter_frames(test_data / "cu_emt.xyz"))
    assert [len(a) for a in frames] == [4, 4, 7, 13]
    assert [a.info["config_type"] for a in frames] == ["bulk", "bulk", "vacancy", "cluster"]
    for a in frames:
        assert set(a.calc.results) >= {"energy", "forces"}
        assert a.calc.results["forces"].shape == (len(a), 3)
    assert "stress" not in frames[3].calc.results
    assert frames[0].calc.results["stress"].shape == (6,)
    # the same as ASE reads it
    ref = ase.io.read(test_data / "cu_emt.xyz", index=":", format="extxyz")
    for a, b in zip(frames, ref, strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())
        assert a.get_potential_energy() == b.get_potential_energy()


def test_extxyz_and_structures_iter_frames_agree(test_data):
    a = list(iter_frames(test_data / "cu_emt.xyz"))
    b = list(structures_iter_frames([test_data / "cu_emt.xyz"]))
    assert len(a) == len(b) == 4


def test_write_read_round_trip_is_exact(test_data):
    frames = list(iter_frames(test_data / "cu_emt.xyz"))
    text = _text(frames)
    again = list(iter_extxyz(io.StringIO(text), "mem"))
    assert _text(iter_frames_from_text(text)) == text
    for a, b in zip(frames, again, strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)
        for key, value in a.calc.results.items():
            np.testing.assert_array_equal(value, b.calc.results[key], err_msg=key)
        assert a.info == b.info


def iter_frames_from_text(text):
    return list(iter_extxyz(io.StringIO(text), "mem"))


def test_written_keys_are_the_standard_ones(tmp_path):
    atoms = _labelled(bulk("Cu", cubic=True))
    path = tmp_path / "x.xyz"
    assert write_frames([atoms], path) == 1
    header = path.read_text().splitlines()[1]
    for token in ("energy=", "stress=", "forces:R:3", "config_type=bulk"):
        assert token in header
    back = ase.io.read(path, format="extxyz")  # what GAP/MACE loaders do
    np.testing.assert_allclose(back.get_stress(), atoms.get_stress(), rtol=0, atol=1e-15)


def test_stdin_streams_and_is_named(monkeypatch, test_data):
    monkeypatch.setattr(sys, "stdin", io.StringIO((test_data / "cu_emt.xyz").read_text()))
    assert len(list(iter_frames("-"))) == 4
    monkeypatch.setattr(sys, "stdin", io.StringIO("3\n\nCu 0 0 0\n"))
    with pytest.raises(InputError, match=r"^<stdin>: frame 0 \(line 1\): truncated"):
        list(iter_frames("-"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(InputError, match=r"^<stdin>: empty input"):
        list(iter_frames(None))


def test_frames_come_before_the_stream_ends(test_data):
    """A frame is yielded as soon as it is complete (a pipeline never waits for EOF)."""
    text = (test_data / "cu_emt.xyz").read_text().splitlines(keepends=True)

    def stream():
        yield from text[:6]  # exactly the first frame
        raise AssertionError("read past the first frame too early")

    frames = iter_extxyz(stream(), "pipe")
    first = next(frames)
    assert len(first) == 4


def test_virial_only_gives_stress(tmp_path):
    atoms = bulk("Cu", cubic=True)
    virial = np.array([[1.0, 0.1, 0.2], [0.1, 2.0, 0.3], [0.2, 0.3, 3.0]])
    atoms.info["virial"] = virial
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0)
    path = tmp_path / "v.xyz"
    write_frames([atoms], path)
    (got,) = iter_frames(path)
    v = atoms.get_volume()
    np.testing.assert_allclose(got.calc.results["stress"],
                               -np.array([1.0, 2.0, 3.0, 0.3, 0.2, 0.1]) / v, rtol=1e-15)
    assert got.info["config_type"] == "default"


def test_several_sources_and_compressed(tmp_path, test_data):
    import gzip

    gz = tmp_path / "cu.xyz.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write((test_data / "cu_emt.xyz").read_text())
    frames = list(iter_frames([test_data / "cu_emt.xyz", gz]))
    assert len(frames) == 8


@pytest.mark.parametrize("name, fmt", [("x.cif", "cif"), ("POSCAR", "vasp"), ("x.traj", "traj"),
                                       ("x.json", "json")])
def test_ase_formats(tmp_path, name, fmt):
    atoms = _labelled(bulk("Cu", cubic=True).repeat((1, 1, 2)), config_type=None)
    path = tmp_path / name
    ase.io.write(path, atoms, format=fmt)
    (got,) = iter_frames(path)
    np.testing.assert_allclose(got.get_scaled_positions(wrap=True),
                               atoms.get_scaled_positions(wrap=True), atol=1e-6)
    assert got.info["config_type"] == "default"
    if fmt in ("traj", "json"):
        np.testing.assert_allclose(got.calc.results["forces"], atoms.get_forces())
        assert got.calc.results["energy"] == pytest.approx(atoms.get_potential_energy())


@pytest.mark.parametrize(
    "text, match",
    [
        ("x\nfoo\nCu 0 0 0\n", r"frame 0 \(line 1\): garbled header: expected the number of atoms"),
        ("2\n\nCu 0 0 0\n", r"frame 0 \(line 1\): truncated: expected 2 atom lines, got 1"),
        ("1\n", r"frame 0 \(line 1\): truncated: expected a comment line"),
        ("1\n\nCu 0 zero 0\n", r"frame 0 \(line 1\): cannot parse extxyz"),
        ("1\n\nCu 0 0\n", r"frame 0 \(line 1\): cannot parse extxyz"),
        ("1\n\nCu 0 nan 0\n", r"frame 0: positions contain NaN or inf"),
        ("1\nenergy=inf\nCu 0 0 0\n", r"frame 0: energy contains NaN or inf"),
        ("1\nProperties=species:S:1:pos:R:3:forces:R:2\nCu 0 0 0 1 1\n",
         r"frame 0: forces have shape \(1, 2\), expected \(1, 3\)"),
        ("1\n\nCu 0 0 0\n1\n\nCu 0 0 0\n2\n\nCu 0 0 0\nCu 0 0 0.4\n",
         r"frame 2: atoms 0 and 1 are 0.400 Å apart \(< 0.5 Å"),
        ("1\n\nCu 0 0 0\n0\n\n", r"frame 1: no atoms"),
    ],
)
def test_errors_name_file_and_frame(tmp_path, text, match):
    path = tmp_path / "bad.xyz"
    path.write_text(text)
    with pytest.raises(InputError, match=rf"^{path}: {match}"):
        list(iter_frames(path))


def test_binary_and_missing_files(tmp_path):
    path = tmp_path / "bin.xyz"
    path.write_bytes(b"\xff\xfe\x00garbage\n")
    with pytest.raises(InputError, match="not a text file"):
        list(iter_frames(path))
    with pytest.raises(InputError, match=r"nope.xyz: no such file"):
        list(iter_frames(tmp_path / "nope.xyz"))
    odd = tmp_path / "notes.unknownformat"
    odd.write_text("hello\n")
    with pytest.raises(InputError, match="unknown structure format"):
        list(iter_frames(odd))


def test_min_distance_override_and_periodic_images(tmp_path):
    path = tmp_path / "o.xyz"
    path.write_text("2\n\nCu 0 0 0\nCu 0 0 0.3\n")
    with pytest.raises(InputError, match="0.300 Å apart"):
        list(iter_frames(path))
    assert len(list(iter_frames(path, min_distance=0))) == 1
    assert len(list(iter_frames(path, min_distance=0.2))) == 1
    assert len(list(iter_frames(path, check=False))) == 1
    # a periodic image counts too
    path.write_text('1\nLattice="0.3 0 0 0 5 0 0 0 5" pbc="T T T"\nCu 0 0 0\n')
    with pytest.raises(InputError, match="an atom and its periodic image are 0.300 Å apart"):
        list(iter_frames(path))


def test_require(tmp_path, test_data):
    assert len(list(iter_frames(test_data / "cu_emt.xyz", require=("energy", "forces")))) == 4
    with pytest.raises(InputError, match=r"cu_emt.xyz: frame 3: no stress \(required\)"):
        list(iter_frames(test_data / "cu_emt.xyz", require=("stress",)))
    with pytest.raises(InputError, match=r"no_forces.xyz: frame 0: no forces"):
        list(iter_frames(test_data / "bad" / "no_forces.xyz", require=["forces"], check=False))


def test_write_is_atomic(tmp_path, test_data):
    path = tmp_path / "out.xyz"
    path.write_text("old\n")

    def frames():
        yield from iter_frames(test_data / "cu_emt.xyz")
        raise InputError("later frame is bad")

    with pytest.raises(InputError):
        write_frames(frames(), path)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.xyz"]


def test_vec_cell_lines(tmp_path):
    path = tmp_path / "vec.xyz"
    path.write_text("1\nplain\nCu 0 0 0\nVEC1 3 0 0\nVEC2 0 3 0\nVEC3 0 0 3\n"
                    "1\nplain\nCu 0 0 0\n")
    a, b = iter_frames(path)
    np.testing.assert_array_equal(a.cell.array, 3 * np.eye(3))
    assert a.pbc.all() and not b.pbc.any()


def test_check_false_skips_checks_but_not_require(tmp_path):
    from mlptools.errors import ParameterError

    path = tmp_path / "n.xyz"
    path.write_text("1\nenergy=nan\nCu 0 nan 0\n")
    (atoms,) = iter_frames(path, check=False)
    assert np.isnan(atoms.positions[0, 1])
    with pytest.raises(InputError, match="frame 0: no forces"):
        list(iter_frames(path, check=False, require=["forces"]))
    with pytest.raises(ParameterError, match="unknown label 'charge'"):
        list(iter_frames(path, check=False, require=["charge"]))
