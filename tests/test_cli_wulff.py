"""``mlptools wulff``: CLI = library, energies from a file, plot and particle, one-line errors."""

import ase.io
import click
import pytest
from ase.calculators.emt import EMT
from click.testing import CliRunner

from mlptools.cli import MlptoolsGroup
from mlptools.cli.wulff import wulff
from mlptools.workflows import wulff as wf


@pytest.fixture
def cli():
    return MlptoolsGroup(name="mlptools", commands=[wulff])


def _table(stdout):
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            words = line.split()
            rows[words[0]] = words
    return rows


@pytest.fixture
def energies(tmp_path):
    path = tmp_path / "gamma.txt"
    path.write_text("# Au, J/m2\n100 0.60\n111 0.52\n110 0.64\n")
    return path


def test_energies_file_gives_the_library_shape_and_a_particle(cli, tmp_path, energies):
    out, png = tmp_path / "p.xyz", tmp_path / "s.png"
    result = CliRunner().invoke(cli, ["wulff", "--element", "Au", "--lattice", "fcc",
                                      "--energies", str(energies), "--size", "300",
                                      "-o", str(out), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    gammas = wf.read_surface_energies(energies, "fcc")
    shape = wf.wulff_shape(gammas, "fcc")
    rows = _table(result.stdout)
    for facet, fraction in shape.area_fractions.items():
        assert float(rows["{" + wf.facet_label(facet) + "}"][-1]) == pytest.approx(fraction,
                                                                                  abs=1e-6)
    particle = ase.io.read(out)
    crystal = wf.bulk_crystal("Au", "fcc")  # ASE's reference a without a MODEL
    assert len(particle) == len(wf.wulff_particle(shape, crystal, 300))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"shape factor A/V^(2/3) = {shape.shape_factor:.4f}" in result.stdout


def test_emt_model_computes_converged_surface_energies(cli, tmp_path):
    result = CliRunner().invoke(cli, ["wulff", "emt", "--element", "Au", "--lattice", "fcc",
                                      "--facets", "111,100", "--size", "200"])
    assert result.exit_code == 0, result.output
    calc = EMT()
    crystal, e_bulk = wf.relax_bulk(wf.bulk_crystal("Au", "fcc"), calc)
    rows = _table(result.stdout)
    for facet in ((1, 1, 1), (1, 0, 0)):
        want = wf.surface_energy(crystal, e_bulk, calc, facet)
        row = rows["{" + wf.facet_label(facet) + "}"]
        assert float(row[1]) == pytest.approx(want.gamma_J_m2, abs=1e-5)
        assert int(row[3]) == want.layers and row[6] == "yes"
    assert "relaxed with emt" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--lattice", "diamnd", "--facets", "100"],
     "Error: unknown lattice 'diamnd'; use one of fcc, bcc, sc, hcp"),
    (["--lattice", "hcp", "--facets", "0001"],
     "Error: facets {001} do not enclose a closed shape"),
    (["--lattice", "fcc", "--facets", "1x0"], "Error: facet '1x0': expected three Miller"),
])
def test_bad_options_are_one_line(cli, tmp_path, args, message):
    out = tmp_path / "p.xyz"
    element = "Ti" if "hcp" in args else "Au"
    result = CliRunner().invoke(cli, ["wulff", "emt", "--element", element, *args,
                                      "-o", str(out)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message)
    assert not out.exists()


@pytest.mark.parametrize("text, message", [
    ("100 -0.5\n111 0.5\n", "line 1: surface energy must be > 0 J/m², got -0.5"),
    ("100 0.5 junk\n", "line 1: expected 'FACET GAMMA_J_PER_M2', got '100 0.5 junk'"),
    ("", "no surface energies"),
])
def test_bad_energy_files_are_one_line_naming_the_file(cli, tmp_path, text, message):
    path, out = tmp_path / "g.txt", tmp_path / "p.xyz"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["wulff", "--element", "Au", "--lattice", "fcc",
                                      "--energies", str(path), "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"Error: {path}: {message}"]
    assert not out.exists()


def test_missing_facet_energy_and_missing_model(cli, tmp_path, energies):
    result = CliRunner().invoke(cli, ["wulff", "--element", "Au", "--lattice", "fcc",
                                      "--energies", str(energies), "--facets", "100,210"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"Error: {energies}: no surface energy for (210)"]
    result = CliRunner().invoke(cli, ["wulff", "--element", "Au", "--lattice", "fcc"])
    assert result.exit_code == 2 and "give a MODEL" in result.stderr


def test_help(cli):
    result = CliRunner().invoke(cli, ["wulff", "--help"])
    assert result.exit_code == 0
    for word in ("J/m²", "eV/Å²", "Å", "--energies", "--facets", "--plot"):
        assert word in result.stdout
    assert len(wulff.get_short_help_str(limit=200)) <= 45
    assert isinstance(wulff, click.Command)
