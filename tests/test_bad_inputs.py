"""The bad-input corpus through the CLI: exit 1, one ``Error:`` line naming the file, no output."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from mlptools.cli import cli

BAD = Path(__file__).resolve().parent / "data" / "bad"

CASES = {
    "empty.xyz": "empty input",
    "truncated.xyz": "frame 1 (line 7): truncated",
    "garbled_header.xyz": "frame 1 (line 7): garbled header",
    "nan_forces.xyz": "frame 0: forces contain NaN or inf",
    "forces_shape.xyz": "frame 0: forces have shape (4, 2), expected (4, 3)",
    "overlap.xyz": "frame 0: atoms 0 and 1 are",
    "wrong_version.h5": "format version 9 not supported (this mlptools reads 1)",
}


def _check_one_error(result, path, text):
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: {path}: ")
    assert text in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("out_name", [None, "out.h5", "out.xyz"])
def test_corpus(tmp_path, name, out_name):
    path = BAD / name
    if out_name is None:
        args = ["info", str(path)]
    else:
        args = ["convert", str(path), "-o", str(tmp_path / out_name)]
    result = CliRunner().invoke(cli, args)
    _check_one_error(result, path, CASES[name])
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file


def test_corpus_is_complete():
    assert sorted(p.name for p in BAD.iterdir()) == sorted([*CASES, "no_forces.xyz"])


def test_missing_label_when_required(tmp_path):
    path = BAD / "no_forces.xyz"
    result = CliRunner().invoke(cli, ["convert", str(path), "--require", "forces", "-o",
                                      str(tmp_path / "o.h5")])
    _check_one_error(result, path, "frame 0: no forces (required)")
    assert list(tmp_path.iterdir()) == []
    # not required: fine
    result = CliRunner().invoke(cli, ["convert", str(path), "-o", str(tmp_path / "o.h5")])
    assert result.exit_code == 0, result.stderr


def test_min_distance_zero_overrides_overlap(tmp_path):
    out = tmp_path / "o.xyz"
    result = CliRunner().invoke(cli, ["convert", str(BAD / "overlap.xyz"), "--min-distance", "0",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert out.read_text().startswith("4\n")
    result = CliRunner().invoke(cli, ["info", "--min-distance", "0", str(BAD / "overlap.xyz")])
    assert result.exit_code == 0 and "frames:        1" in result.stdout


def test_missing_file_is_usage_or_input_error(tmp_path):
    result = CliRunner().invoke(cli, ["info", str(tmp_path / "nope.xyz")])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {tmp_path / 'nope.xyz'}: no such file"


def test_debug_shows_traceback():
    result = CliRunner().invoke(cli, ["--debug", "info", str(BAD / "nan_forces.xyz")])
    assert result.exit_code != 0
    assert result.exception is not None and "NaN" in str(result.exception)
