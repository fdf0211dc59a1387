"""``mlptools convert``: extxyz <-> HDF5 database <- any ASE format, stdout, usage errors."""

import io

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from click.testing import CliRunner

from mlptools.cli import cli
from mlptools.io import h5
from mlptools.io.extxyz import iter_extxyz, iter_frames, write_frames


@pytest.fixture
def runner():
    return CliRunner()


def _library_text(path):
    buf = io.StringIO()
    write_frames(iter_frames(path), buf)
    return buf.getvalue()


def test_xyz_to_stdout_equals_library(runner, test_data):
    result = runner.invoke(cli, ["convert", str(test_data / "cu_emt.xyz")])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == _library_text(test_data / "cu_emt.xyz")
    assert len(list(iter_extxyz(io.StringIO(result.stdout), "out"))) == 4


def test_round_trip_through_h5(runner, test_data, tmp_path):
    db = tmp_path / "cu.h5"
    result = runner.invoke(cli, ["convert", str(test_data / "cu_emt.xyz"), "-o", str(db)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    header = h5.read_header(db)
    assert header["format"] == "mlptools-structures"
    assert header["provenance"]["inputs"][0]["sha256"]
    out = tmp_path / "back.xyz"
    assert runner.invoke(cli, ["convert", str(db), "-o", str(out)]).exit_code == 0
    assert out.read_text() == _library_text(test_data / "cu_emt.xyz")
    # --to overrides the suffix
    odd = tmp_path / "db.bin"
    assert runner.invoke(cli, ["convert", str(out), "-o", str(odd), "--to", "h5"]).exit_code == 0
    assert h5.is_hdf5(odd)


def test_stdin_to_h5(runner, test_data, tmp_path):
    db = tmp_path / "s.h5"
    result = runner.invoke(cli, ["convert", "-", "-o", str(db)],
                           input=(test_data / "cu_emt.xyz").read_text())
    assert result.exit_code == 0, result.stderr
    assert h5.count_structures(db) == (4, 28)


def test_ase_formats_concatenate(runner, tmp_path):
    paths = []
    for k, (name, fmt) in enumerate([("a.cif", "cif"), ("POSCAR", "vasp"), ("c.traj", "traj"),
                                     ("d.json", "json")]):
        atoms = bulk("Cu", cubic=True, a=3.6 + 0.01 * k)
        if fmt in ("traj", "json"):
            atoms.calc = EMT()
            atoms.get_forces()
        ase.io.write(tmp_path / name, atoms, format=fmt)
        paths.append(str(tmp_path / name))
    out = tmp_path / "all.xyz"
    result = runner.invoke(cli, ["convert", *paths, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    frames = list(iter_frames(out))
    assert len(frames) == 4
    np.testing.assert_allclose([f.cell[0, 0] for f in frames], [3.6, 3.61, 3.62, 3.63])
    assert [f.calc is not None and "forces" in f.calc.results for f in frames] == \
        [False, False, True, True]


def _outcar_stub(steps):
    """A minimal OUTCAR in VASP's layout (the lines ASE's parser reads), 2 Cu atoms."""
    head = [
        " vasp.6.3.0 18Jan22 (build Feb 01 2022) complex",
        " POTCAR:    PAW_PBE Cu 22Jun2005",
        " POTCAR:    PAW_PBE Cu 22Jun2005",
        "   ions per type =               2",
        "--------------------------------------- Iteration      1(   1)  "
        "---------------------------------------",
    ]
    lines = list(head)
    for k, (x, fx, energy) in enumerate(steps):
        lines += [
            "  FORCE on cell =-STRESS in cart. coord.  units (eV):",
            "  Direction    XX          YY          ZZ          XY          YZ          ZX",
            f"  in kB      {12.5 + k:.5f}    13.00000    14.00000     0.50000     0.25000"
            "     0.12500",
            "",
            " VOLUME and BASIS-vectors are now :",
            " -----------------------------------------------------------------------------",
            "  energy-cutoff  :      520.00",
            "  volume of cell :       46.66",
            "      direct lattice vectors                 reciprocal lattice vectors",
            "     3.600000000  0.000000000  0.000000000     0.277777778  0.000000000  0.000000000",
            "     0.000000000  3.600000000  0.000000000     0.000000000  0.277777778  0.000000000",
            "     0.000000000  0.000000000  3.600000000     0.000000000  0.000000000  0.277777778",
            "",
            " POSITION                                       TOTAL-FORCE (eV/Angst)",
            " ---------------------------------------------------------------------------------",
            f"      0.00000      0.00000      0.00000        {fx:.6f}      0.000000      0.000000",
            f"      {x:.5f}      1.80000      1.80000       {-fx:.6f}      0.000000      0.000000",
            " ---------------------------------------------------------------------------------",
            "    total drift:                                0.000000      0.000000      0.000000",
            "",
            "  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)",
            "  ---------------------------------------------------",
            f"  free  energy   TOTEN  =       {energy - 0.001:.8f} eV",
            "",
            f"  energy  without entropy=      {energy + 0.001:.8f}  energy(sigma->0) =      "
            f"{energy:.8f}",
            "",
        ]
    return "\n".join(lines) + "\n"


def test_outcar(runner, tmp_path):
    """A VASP OUTCAR (ASE cannot write one, so a stub in VASP's layout) to the HDF5 db."""
    outcar = tmp_path / "OUTCAR"
    outcar.write_text(_outcar_stub([(1.8, 0.1, -7.5), (1.85, 0.05, -7.6)]))
    ref = ase.io.read(outcar, index=":")  # ASE's own reading is the oracle
    db = tmp_path / "dft.h5"
    result = runner.invoke(cli, ["convert", str(outcar), "-o", str(db)])
    assert result.exit_code == 0, result.stderr
    frames = list(iter_frames(db))
    assert len(frames) == len(ref) == 2
    for got, want in zip(frames, ref, strict=True):
        np.testing.assert_array_equal(got.positions, want.positions)
        np.testing.assert_array_equal(got.get_forces(), want.get_forces())
        np.testing.assert_array_equal(got.get_stress(), want.get_stress())
        assert got.get_potential_energy() == want.get_potential_energy()
    assert [f.get_potential_energy() for f in frames] == [-7.5, -7.6]
    # a truncated OUTCAR is one clean error
    bad = tmp_path / "cut" / "OUTCAR"
    bad.parent.mkdir()
    bad.write_text("\n".join(outcar.read_text().splitlines()[:3]) + "\n")
    result = runner.invoke(cli, ["convert", str(bad), "-o", str(tmp_path / "x.h5")])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {bad}: frame 0: cannot read as vasp-out")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "x.h5").exists()


def test_usage_errors(runner, test_data):
    result = runner.invoke(cli, ["convert", str(test_data / "cu_emt.xyz"), "--to", "h5"])
    assert result.exit_code == 2
    assert "cannot be written to stdout" in result.stderr
    result = runner.invoke(cli, ["convert", str(test_data / "cu_emt.xyz"), "--require", "charge"])
    assert result.exit_code == 2
    result = runner.invoke(cli, ["convert", str(test_data / "cu_emt.xyz"), "--min-distance", "-1"])
    assert result.exit_code == 2


def test_require(runner, test_data, tmp_path):
    out = tmp_path / "o.xyz"
    result = runner.invoke(cli, ["convert", str(test_data / "cu_emt.xyz"), "--require",
                                 "energy,stress", "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: {test_data / 'cu_emt.xyz'}: frame 3: no stress "
                                     "(required)")
    assert not out.exists()


def test_help_states_units(runner):
    result = runner.invoke(cli, ["convert", "--help"])
    assert result.exit_code == 0
    for unit in ("eV", "eV/Å", "eV/Å³", "Å"):
        assert unit in result.stdout


def test_pipe_streams_frame_by_frame(test_data):
    """`convert - -o -` writes frame 0 to stdout before stdin is closed (a real pipe)."""
    import subprocess
    import sys
    import threading

    lines = (test_data / "cu_emt.xyz").read_text().splitlines(keepends=True)
    proc = subprocess.Popen([sys.executable, "-m", "mlptools", "convert", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    got = []
    reader = threading.Thread(target=lambda: got.extend(proc.stdout.readline() for _ in range(6)))
    try:
        proc.stdin.write("".join(lines[:6]))  # exactly frame 0
        proc.stdin.flush()
        reader.start()
        reader.join(timeout=60)
        assert not reader.is_alive(), "frame 0 was not written before the input ended"
        assert got[0] == "4\n" and "config_type=bulk" in got[1]
    finally:
        proc.stdin.write("".join(lines[6:]))
        proc.stdin.close()
        rest = proc.stdout.read()
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert len(list(iter_extxyz(io.StringIO("".join(got) + rest), "out"))) == 4


def test_ase_reader_warnings_are_one_log_line(runner, tmp_path, monkeypatch):
    import warnings

    import mlptools.io.structures as structures

    real = ase.io.iread

    def noisy(*args, **kwargs):
        for atoms in real(*args, **kwargs):
            warnings.warn("something odd\nover two lines", UserWarning, stacklevel=1)
            yield atoms

    monkeypatch.setattr(ase.io, "iread", noisy)
    path = tmp_path / "a.cif"
    ase.io.write(path, bulk("Cu", cubic=True))
    result = runner.invoke(cli, ["convert", str(path), "-o", str(tmp_path / "a.xyz")])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"{path}: frame 0: something odd over two lines\n"
    assert structures.log.name == "mlptools.io.structures"
