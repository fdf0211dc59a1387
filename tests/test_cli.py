"""The command group: version, help, exit codes and one-line errors."""

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

import mlptools
from mlptools.cli import cli
from mlptools.errors import CheckFailed, InputError


@pytest.fixture
def runner():
    return CliRunner()


def test_version(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert mlptools.__version__ in result.stdout


def test_help_names_units(runner):
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for unit in ("eV", "Å", "GPa", "fs", "K"):
        assert unit in result.stdout


def test_every_command_has_help(runner):
    for name in cli.commands:
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, (name, result.stderr)
        assert "Usage:" in result.stdout


def test_unknown_command_is_usage_error(runner):
    result = runner.invoke(cli, ["no-such-command"])
    assert result.exit_code == 2


def _with_probe(exc):
    @click.command("probe-error")
    def probe():
        raise exc

    cli.add_command(probe)
    return probe


@pytest.mark.parametrize(
    "exc, code, text",
    [
        (InputError("x.xyz: frame 3: forces missing"), 1, "Error: x.xyz: frame 3: forces missing"),
        (CheckFailed("energy RMSE 9 meV/atom > 5"), 3, "Error: energy RMSE 9 meV/atom > 5"),
        (ZeroDivisionError("boom"), 70, "internal error"),
    ],
)
def test_errors_are_one_line_with_exit_code(runner, exc, code, text):
    _with_probe(exc)
    try:
        result = runner.invoke(cli, ["probe-error"])
        assert result.exit_code == code
        assert text in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
    finally:
        cli.commands.pop("probe-error")


def test_debug_reraises(runner):
    _with_probe(InputError("bad"))
    try:
        result = runner.invoke(cli, ["--debug", "probe-error"])
        assert isinstance(result.exception, InputError)
    finally:
        cli.commands.pop("probe-error")


def test_python_dash_m_runs():
    out = subprocess.run([sys.executable, "-m", "mlptools", "--version"], capture_output=True,
                         text=True, check=True)
    assert mlptools.__version__ in out.stdout
