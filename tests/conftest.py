"""Shared fixtures: seeded generators, the shared DFT data, hypothesis profiles."""

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=50,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = Path(__file__).resolve().parent / "data"


def shared_data_dir():
    """``$MLPTOOLS_SHARED_DATA`` or ``../shared/data`` beside the repository, or None."""
    env = os.environ.get("MLPTOOLS_SHARED_DATA")
    path = Path(env) if env else ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture
def shared_data():
    """The real DFT data sets; skips (with the reason) when ../shared is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("real DFT data not found: set MLPTOOLS_SHARED_DATA or put shared/ beside "
                    "the repo")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(20261124)


@pytest.fixture
def test_data():
    return TEST_DATA


@pytest.fixture(autouse=True)
def _default_log_level():
    """Each test starts at the default verbosity: `-v` in one CliRunner call sets the level of
    the process-wide "mlptools" logger, which would otherwise leak into later tests."""
    import logging

    from mlptools.cli._common import configure_logging

    configure_logging(0)
    yield
    logging.getLogger("mlptools").setLevel(logging.WARNING)
