"""``mlptools build-db`` plumbing: output equals the library call, one-line errors, --split."""

import io

import ase.io
import click
import numpy as np
import pytest
from click.testing import CliRunner

from mlptools.cli import MlptoolsGroup
from mlptools.cli.build_db import build_db
from mlptools.workflows import build_db as bd
from mlptools.workflows.recipe import load_recipe

RECIPE = """
[label]
calc = "sw"

[[structures]]
kind = "strain"
config_type = "strained"
base = { prototype = "diamond", symbol = "Si", a = 5.431, cubic = true }
count = 10

[[structures]]
kind = "rattle"
config_type = "rattled"
base = { prototype = "diamond", symbol = "Si", a = 5.431, cubic = true }
count = 10
sigma = 0.05
"""


@pytest.fixture
def cli():
    # build-db is registered in mlptools/cli/commands.py by the lead; test it in its own group
    group = MlptoolsGroup(name="mlptools", commands=[build_db])
    return group


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE)
    return path


def _frames(text):
    return ase.io.read(io.StringIO(text), index=":", format="extxyz")


def test_stdout_equals_library_call(cli, recipe):
    result = CliRunner().invoke(cli, ["build-db", str(recipe), "--seed", "4"])
    assert result.exit_code == 0, result.output
    frames = _frames(result.stdout)
    ref = bd.build_database(load_recipe(recipe), seed=4)
    assert len(frames) == len(ref.frames) == 21
    for got, want in zip(frames, ref.frames, strict=True):
        assert got.info["structure_id"] == want.info["structure_id"]
        assert got.info["config_type"] == want.info["config_type"]
        np.testing.assert_allclose(got.positions, want.positions, rtol=0, atol=1e-7)
        assert got.get_potential_energy() == pytest.approx(want.calc.results["energy"], 1e-10)
        np.testing.assert_allclose(got.get_forces(), want.calc.results["forces"], atol=1e-7)
    assert "strained" in result.stderr and "E0: Si" in result.stderr


def test_split_and_checkpoint_files(cli, recipe, tmp_path):
    out = tmp_path / "db.xyz"
    args = ["build-db", str(recipe), "--seed", "4", "--split", "test=0.2", "-o", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    train = ase.io.read(out, index=":")
    test = ase.io.read(tmp_path / "db.test.xyz", index=":")
    assert sorted(a.info["config_type"] for a in test) == ["rattled"] * 2 + ["strained"] * 2
    assert len(train) == 21 - 4
    assert (tmp_path / "db.xyz.ckpt.jsonl").exists()
    again = CliRunner().invoke(cli, args)  # resumes: nothing left to label, same files
    assert again.exit_code == 0
    assert [a.info["structure_id"] for a in ase.io.read(out, index=":")] == [
        a.info["structure_id"] for a in train]


@pytest.mark.parametrize("args, text, message", [
    (["--seed", "1"], RECIPE.replace("kind = \"rattle\"", "kind = \"ratle\""),
     "Error: {r}: structures[1]: unknown kind 'ratle'; did you mean 'rattle'?"),
    (["--seed", "1", "--calc", "dft"], RECIPE,
     "Error: unknown calculator 'dft' (known: emt, lj, sw, tersoff, xtb, xtb:gfn1, xtb:gfn2, "
     "model:FILE, or module.path:ClassName key=value ...)"),
    ([], RECIPE, "Error: {r}: no seed: give --seed or a top-level seed in the recipe"),
])
def test_errors_are_one_line(cli, tmp_path, args, text, message):
    path = tmp_path / "r.toml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["build-db", str(path), *args, "-o", str(tmp_path / "x.xyz")])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [message.format(r=path)]
    assert not (tmp_path / "x.xyz").exists()


def test_split_needs_named_output(cli, recipe):
    result = CliRunner().invoke(cli, ["build-db", str(recipe), "--seed", "1",
                                      "--split", "test=0.1"])
    assert result.exit_code == 2 and "--split needs a named -o OUTPUT" in result.stderr
    recipe.write_text("[split]\ntest = 0.1\n" + RECIPE)
    result = CliRunner().invoke(cli, ["build-db", str(recipe), "--seed", "1"])
    assert result.exit_code == 2 and "the recipe [split] needs a named -o" in result.stderr


def test_help(cli):
    result = CliRunner().invoke(cli, ["build-db", "--help"])
    assert result.exit_code == 0 and "--calc" in result.stdout and "mpirun" in result.stdout
    assert len(build_db.get_short_help_str(limit=200)) <= 45
    assert isinstance(build_db, click.Command)
