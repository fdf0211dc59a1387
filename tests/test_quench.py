"""Melt-quench (tiny cells, fast rates: the protocol and the analysis, not the a-Si bar) and the
``quench`` / ``analyze`` commands."""

import json

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from click.testing import CliRunner

from mlptools.analysis.structure import analyze_structures, density_g_cm3
from mlptools.calculators import StillingerWeber
from mlptools.cli import cli
from mlptools.errors import ComputationError, ParameterError
from mlptools.io.resumable import ResumableText
from mlptools.workflows.quench import QuenchProtocol, melt_quench, random_box

FAST = dict(melt_K=3000.0, quench_rate_K_per_s=2e15, anneal_K=500.0, melt_ps=0.3,
            equilibrate_ps=0.2, anneal_ps=0.2, timestep_fs=1.0)


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_random_box_density_and_separation(rng):
    atoms = random_box("Si", 64, 2.33, rng)
    assert density_g_cm3(atoms) == pytest.approx(2.33, rel=1e-12)
    d = atoms.get_all_distances(mic=True)[np.triu_indices(64, 1)]
    assert d.min() >= 0.85 * 2 * 1.11 - 1e-9  # Si covalent radius 1.11 Å
    with pytest.raises(ComputationError, match="could not place atom"):
        random_box("Si", 64, 20.0, rng)
    with pytest.raises(ParameterError, match="unknown element 'Xx'"):
        random_box("Xx", 4, 2.0, rng)


def test_protocol_stages_and_rate():
    p = QuenchProtocol(melt_K=3000, quench_rate_K_per_s=1e13, anneal_K=500, timestep_fs=1.0)
    names = [s.name for s in p.stages()]
    assert names == ["melt", "equilibrate", "quench", "anneal"]
    quench = p.stages()[2]
    # 2500 K at 1e13 K/s = 250 ps = 250000 steps of 1 fs
    assert quench.steps == 250_000 and p.quench_ps == pytest.approx(250.0)
    assert quench.target(0) == 3000 and quench.target(125_000) == 1750 and quench.target(
        250_000) == 500
    with pytest.raises(ParameterError, match="must be below"):
        QuenchProtocol(melt_K=1000, anneal_K=1200)
    with pytest.raises(ParameterError, match="quench_rate_K_per_s must be > 0"):
        QuenchProtocol(quench_rate_K_per_s=-1)


def test_melt_quench_runs_and_relaxes(rng, tmp_path):
    protocol = QuenchProtocol(**FAST)
    start = random_box("Si", 32, 2.33, rng)
    log = tmp_path / "q.log"
    result = melt_quench(start, StillingerWeber(), protocol, rng=rng,
                         log_file=ResumableText(log))
    assert result.md.status == "done"
    assert result.md.step == sum(s.steps for s in protocol.stages())
    assert result.fmax_eV_per_A < 0.01
    d = np.loadtxt(log)
    hot = d[(d[:, 1] > 100) & (d[:, 1] < 300), 2].mean()
    cold = d[d[:, 1] > d[-1, 1] - 150, 2].mean()
    assert hot > 2000 and cold < 900  # it melted, then it was cooled
    analysis = analyze_structures([result.atoms], max_ring_size=8)
    assert analysis.density_g_cm3 == pytest.approx(2.33)  # fixed-density protocol
    assert 3.5 < analysis.mean_coordination < 5.0
    assert 2.2 < analysis.rdf.first_peak_A < 2.6


def test_quench_cli_writes_structure_and_json(tmp_path):
    out, js = tmp_path / "a.xyz", tmp_path / "a.json"
    result = _invoke("quench", "sw", "--n-atoms", 32, "--melt", 3000, "--melt-time", 0.2,
                     "--equilibrate-time", 0.1, "--quench-rate", 5e15, "--anneal", 500,
                     "--anneal-time", 0.1, "--seed", 4, "-o", out, "--json", js, "--max-ring", 8)
    assert result.exit_code == 0, result.stderr
    assert "g(r) first peak" in result.stdout and "coordination" in result.stdout
    final = ase.io.read(out, format="extxyz")
    data = json.loads(js.read_text())
    lib = analyze_structures([final], max_ring_size=8).to_dict()
    assert data["coordination_fractions"] == lib["coordination_fractions"]
    assert data["rings"] == lib["rings"]
    assert data["first_peak_A"] == lib["first_peak_A"]
    assert data["density_g_cm3"] == pytest.approx(2.33, rel=1e-6)
    assert (tmp_path / "a.xyz.ckpt.npz").exists()


def test_quench_bad_input(tmp_path):
    out = tmp_path / "a.xyz"
    result = _invoke("quench", "emt", "--n-atoms", 8, "--seed", 1, "-o", out)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --element Si: species Si not covered")
    assert not out.exists()
    result = _invoke("quench", "sw", "--n-atoms", 8, "-o", out)
    assert result.exit_code == 2 and "--seed is required" in result.stderr
    result = _invoke("quench", "sw", "--seed", 1, "--melt", 400, "--anneal", 500, "-o", out)
    assert result.exit_code == 1 and "must be below" in result.stderr
    assert not out.exists()


@pytest.fixture
def diamond_file(tmp_path):
    path = tmp_path / "si.xyz"
    ase.io.write(path, bulk("Si", "diamond", a=5.431, cubic=True).repeat(2), format="extxyz")
    return path


def test_analyze_cli(diamond_file, tmp_path):
    js = tmp_path / "d.json"
    result = _invoke("analyze", diamond_file, "--json", js, "--plot", tmp_path / "d")
    assert result.exit_code == 0, result.stderr
    assert "coordination 4: 100.0 %" in result.stdout
    assert "6: 2.000" in result.stdout
    data = json.loads(js.read_text())
    assert data["fourfold_fraction"] == 1.0 and data["rings_per_atom"] == {"6": 2.0}
    for name in ("rdf", "coordination", "angles", "rings"):
        assert (tmp_path / f"d-{name}.png").read_bytes()[:4] == b"\x89PNG"
    # the same through quench --analyze-only
    again = _invoke("quench", "--analyze-only", diamond_file, "--json", "-")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["rings"] == data["rings"]


def test_analyze_cli_bad_input(tmp_path, diamond_file):
    missing = tmp_path / "nope.xyz"
    result = _invoke("analyze", missing, "--json", tmp_path / "x.json")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"Error: {missing}: no such file"]
    assert not (tmp_path / "x.json").exists()
    result = _invoke("analyze", diamond_file, "--index", "5")
    assert result.exit_code == 1 and "--index '5'" in result.stderr
    result = _invoke("analyze", diamond_file, "--cutoff", "-1")
    assert result.exit_code == 2


def test_help_of_new_commands():
    for command, unit in (("quench", "(K/s)"), ("analyze", "(Å)")):
        result = _invoke(command, "--help")
        assert result.exit_code == 0 and unit in result.stdout
