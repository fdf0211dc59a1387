"""man/ is generated from the click commands; a stale page fails here (run `make man`)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _generate(outdir):
    epoch = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip() or "0"
    env = dict(os.environ, SOURCE_DATE_EPOCH=epoch)
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_man.py"), str(outdir)], env=env,
                   check=True, capture_output=True)


def test_man_pages_are_current(tmp_path):
    _generate(tmp_path)
    fresh = {p.name: p.read_text() for p in tmp_path.glob("*.1")}
    committed = {p.name: p.read_text() for p in (ROOT / "man").glob("*.1")}
    assert sorted(fresh) == sorted(committed), "man/ is stale: run `make man`"
    # the date line depends on the last commit; compare everything else
    for name, text in fresh.items():
        body = text.split("\n", 1)[1]
        assert body == committed[name].split("\n", 1)[1], f"man/{name} is stale: run `make man`"


def test_every_command_has_a_page(tmp_path):
    from mlptools.cli import cli

    _generate(tmp_path)
    names = {p.name for p in tmp_path.glob("*.1")}
    assert "mlptools.1" in names
    for cmd in cli.commands:
        assert f"mlptools-{cmd}.1" in names


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff not installed")
def test_pages_lint_clean(tmp_path):
    _generate(tmp_path)
    for page in tmp_path.glob("*.1"):
        out = subprocess.run(["groff", "-man", "-ww", "-z", str(page)], capture_output=True,
                             text=True)
        assert out.stderr == "", f"{page.name}: {out.stderr}"
