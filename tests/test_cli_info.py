"""``mlptools info``: structure summaries (text and JSON), HDF5 headers, stdin."""

import json
import subprocess
import sys

import h5py
import pytest
from click.testing import CliRunner

from mlptools.cli import cli
from mlptools.io import h5
from mlptools.io.extxyz import iter_frames
from mlptools.io.structures import summarize


@pytest.fixture
def runner():
    return CliRunner()


def test_text_summary(runner, test_data):
    result = runner.invoke(cli, ["info", str(test_data / "cu_emt.xyz")])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "frames:        4" in out
    assert "atoms:         28 (4-13 per frame)" in out
    assert "species:       Cu 28" in out
    assert "config types:  bulk 2, cluster 1, vacancy 1" in out
    assert "labels:        energy 4/4, forces 4/4, stress 3/4" in out
    assert "eV/atom" in out and "eV/Å" in out
    assert result.stderr == ""


def test_json_equals_library(runner, test_data):
    result = runner.invoke(cli, ["info", "--format", "json", str(test_data / "cu_emt.xyz")])
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)
    want = summarize(iter_frames(test_data / "cu_emt.xyz"))
    assert {k: got[k] for k in want} == json.loads(json.dumps(want))
    assert got["labels"] == {"energy": 4, "forces": 4, "stress": 3}
    assert got["kind"] == "structures"


def test_stdin(runner, test_data):
    text = (test_data / "cu_emt.xyz").read_text()
    result = runner.invoke(cli, ["info", "-", "--format", "json"], input=text)
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["file"] == "<stdin>" and got["frames"] == 4
    # no argument reads stdin too
    result = runner.invoke(cli, ["info"], input=text)
    assert "frames:        4" in result.stdout


def test_pipe_subprocess(test_data):
    cmd = f"set -o pipefail; cat {test_data / 'cu_emt.xyz'} | {sys.executable} -m mlptools info -"
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True)
    assert "frames:        4" in out.stdout
    assert out.stderr == ""


def test_structure_database(runner, test_data, tmp_path):
    path = tmp_path / "cu.h5"
    h5.write_structures(path, iter_frames(test_data / "cu_emt.xyz"), provenance={"argv": ["t"]})
    result = runner.invoke(cli, ["info", str(path), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["frames"] == 4 and got["atoms"] == 28
    assert got["header"]["format"] == "mlptools-structures"
    assert got["header"]["provenance"] == {"argv": ["t"]}
    text = runner.invoke(cli, ["info", str(path)]).stdout
    assert "mlptools-structures (version 1)" in text


def test_descriptor_like_file(runner, tmp_path):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        h5.write_header(f, "mlptools-descriptors", 1, {"gradients": "1/Å"}, {"argv": ["x"]},
                        hypers={"type": "soap", "cutoff": 5.0})
        f.create_dataset("soap/features", data=[[1.0, 2.0], [3.0, 4.0]])
        f["soap"].attrs["hypers"] = '{"type": "soap", "n_max": 8}'
    result = runner.invoke(cli, ["info", str(path)])
    assert result.exit_code == 0, result.stderr
    assert "kind:          mlptools-descriptors" in result.stdout
    assert '"cutoff": 5.0' in result.stdout
    assert "soap/features" in result.stdout and "(2, 2)" in result.stdout
    got = json.loads(runner.invoke(cli, ["info", str(path), "--format", "json"]).stdout)
    assert got["kind"] == "mlptools-descriptors" and got["format_version"] == 1
    assert got["hypers"] == {"type": "soap", "cutoff": 5.0}
    assert got["datasets"]["soap/features"]["shape"] == [2, 2]
    assert got["group_hypers"] == {"soap": {"type": "soap", "n_max": 8}}
    assert 'hypers soap:   {"n_max": 8, "type": "soap"}' in result.stdout


def test_help_states_units(runner):
    result = runner.invoke(cli, ["info", "--help"])
    assert result.exit_code == 0
    for unit in ("eV/atom", "eV/Å", "Å"):
        assert unit in result.stdout


def test_mlearn_si(runner, shared_data, tmp_path):
    src = shared_data / "mlearn" / "Si" / "train.xyz"
    result = runner.invoke(cli, ["info", "--format", "json", str(src)])
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["frames"] == 214 and got["atoms"] == 13233
    assert got["species"] == {"Si": 13233}
    assert got["config_types"] == {"AIMD-NVT": 90, "Elastic": 55, "Surface": 12, "Vacancy": 57}
    assert got["labels"] == {"energy": 214, "forces": 214, "stress": 214}
    lo, hi = got["energy_per_atom_eV"]
    assert round(lo, 3) == -5.425 and round(hi, 3) == -4.567  # the data's README
    assert round(got["max_abs_force_eV_per_A"], 2) == 9.47
    # through the HDF5 database, the same summary
    db = tmp_path / "si.h5"
    assert runner.invoke(cli, ["convert", str(src), "-o", str(db)]).exit_code == 0
    again = json.loads(runner.invoke(cli, ["info", "--format", "json", str(db)]).stdout)
    for key in ("frames", "atoms", "species", "config_types", "labels", "energy_per_atom_eV",
                "max_abs_force_eV_per_A", "volume_A3"):
        assert again[key] == got[key], key
