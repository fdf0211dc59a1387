"""Commands composed through a real shell pipe, as users run them: `build-db | describe -`."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from ase.io import read

from mlptools.descriptors.hypers import SoapHypers
from mlptools.descriptors.soap import soap_power_spectrum
from mlptools.io.descriptors import read_descriptors

RECIPE = """
[label]
calc = "sw"

[[structures]]
kind = "rattle"
config_type = "rattled"
base = { prototype = "diamond", symbol = "Si", a = 5.431, cubic = true }
count = 4
sigma = 0.05

[[structures]]
kind = "vacancy"
config_type = "vacancy"
base = { prototype = "diamond", symbol = "Si", a = 5.431, cubic = true }
count = 2
rattle = 0.03
"""

SOAP = "cutoff=4 n_max=4 l_max=3 sigma=0.5"


@pytest.fixture
def shell_env():
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    env = dict(os.environ)
    # the interpreter running the tests provides `mlptools` (also from a venv not on PATH)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def test_build_db_pipes_into_describe(tmp_path, shell_env):
    (tmp_path / "r.toml").write_text(RECIPE)
    script = (f"set -o pipefail; mlptools build-db r.toml --seed 3 -o - | tee db.xyz | "
              f"mlptools describe - --soap '{SOAP}' --gradients positions -o d.h5")
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=shell_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    frames = read(tmp_path / "db.xyz", index=":")
    # 4 rattled + 2 vacancy cells + the isolated atom build-db adds for E0
    assert sorted(a.info["config_type"] for a in frames).count("IsolatedAtom") == 1
    assert len(frames) == 7
    got = read_descriptors(tmp_path / "d.h5")["soap"]
    want = soap_power_spectrum(frames, SoapHypers.from_string(SOAP), gradients=True)
    np.testing.assert_allclose(got.features, want.features, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got.grad_samples, want.grad_samples)
    np.testing.assert_allclose(got.grad_values, want.grad_values, rtol=0, atol=1e-12)


def test_failing_stage_fails_the_pipeline_and_leaves_no_output(tmp_path, shell_env):
    (tmp_path / "bad.toml").write_text("[label]\ncalc = 'nosuchcalc'\n")
    script = ("set -o pipefail; mlptools build-db bad.toml --seed 1 -o - | "
              "mlptools describe - -o d.h5")
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=shell_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "bad.toml" in proc.stderr or "nosuchcalc" in proc.stderr
    assert not (tmp_path / "d.h5").exists()
