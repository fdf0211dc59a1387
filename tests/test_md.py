"""MD: energy conservation (NVE), thermostat temperature (NVT), exact checkpoint/resume for every
integrator, the extrapolation guard and the blow-up checks, all with Stillinger-Weber silicon."""

import numpy as np
import pytest
from ase.build import bulk
from md_calcs import FailingSW, GrowingUncertaintySW, OnDemandUncertaintySW

from mlptools import keys
from mlptools.calculators import StillingerWeber
from mlptools.errors import ComputationError, ParameterError
from mlptools.io.resumable import ResumableText
from mlptools.workflows.md import MDSettings, Stage, max_uncertainty, run_md


@pytest.fixture
def si64(rng):
    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(2)
    atoms.rattle(0.05, rng=rng)
    return atoms


def _log(path):
    return np.loadtxt(path, ndmin=2)


def _nve(atoms, tmp_path, dt, steps):
    path = tmp_path / f"nve{dt}.log"
    settings = MDSettings(ensemble="nve", timestep_fs=dt, log_stride=1, traj_stride=0,
                          checkpoint_stride=0)
    run_md(atoms, StillingerWeber(), settings, [Stage("md", steps, 1500.0)],
           rng=np.random.default_rng(1), log_file=ResumableText(path))
    return _log(path)


def test_nve_energy_conservation_and_second_order(si64, tmp_path):
    """Velocity Verlet on the smooth SW potential: no secular drift, and the energy error
    scales as dt² (a second-order symplectic integrator): halving dt shrinks it 4×.

    Bound: |drift| < 1e-5 eV/atom/ps at 1 fs and ~870 K, i.e. < 0.01 eV/atom (≈ 0.4 kB·T) over
    a nanosecond; measured 5e-7 eV/atom/ps (2 ps), so the bound has a 20× margin for noise."""
    n = len(si64)
    d1 = _nve(si64, tmp_path, 1.0, 1000)
    d2 = _nve(si64, tmp_path, 2.0, 500)
    assert d1[:, 2].mean() > 500  # hot enough to sample anharmonic motion
    t_ps, e1 = d1[:, 1] / 1000, d1[:, 5] / n
    slope = np.polyfit(t_ps, e1, 1)[0]
    assert abs(slope) < 1e-5
    assert np.abs(e1 - e1[0]).max() < 5e-4
    ratio = (d2[:, 5] / n).std() / e1.std()
    assert 3.0 < ratio < 5.3
    # E_tot is the column E_pot + E_kin, E_cons equals it for NVE
    np.testing.assert_allclose(d1[:, 5], d1[:, 3] + d1[:, 4], atol=2e-6)
    np.testing.assert_allclose(d1[:, 6], d1[:, 5], atol=1e-9)


@pytest.mark.parametrize("thermostat", ["langevin", "nose-hoover", "bussi"])
def test_nvt_mean_temperature(si64, tmp_path, thermostat):
    """⟨T⟩ → target: 64 atoms fluctuate by sqrt(2/3N) = 10 % per sample; over ~25
    decorrelated samples (2.5 ps, tdamp 50 fs) the mean is within 3 σ ≈ 6 % of the target."""
    path = tmp_path / "nvt.log"
    settings = MDSettings(ensemble="nvt", timestep_fs=1.0, thermostat=thermostat, tdamp_fs=50.0,
                          log_stride=5, traj_stride=0, checkpoint_stride=0)
    run_md(si64, StillingerWeber(), settings, [Stage("md", 3000, 900.0)],
           rng=np.random.default_rng(7), log_file=ResumableText(path))
    d = _log(path)
    mean_t = d[d[:, 1] > 500, 2].mean()
    assert abs(mean_t - 900.0) < 0.06 * 900.0


def test_temperature_ramp_follows_target(si64, tmp_path):
    path = tmp_path / "ramp.log"
    settings = MDSettings(ensemble="nvt", timestep_fs=1.0, tdamp_fs=20.0, log_stride=10,
                          traj_stride=0, checkpoint_stride=0)
    run_md(si64, StillingerWeber(), settings, [Stage("ramp", 2000, 300.0, 1500.0)],
           rng=np.random.default_rng(2), log_file=ResumableText(path))
    d = _log(path)
    early, late = d[(d[:, 1] > 100) & (d[:, 1] < 500), 2], d[d[:, 1] > 1600, 2]
    assert early.mean() < 700 < 1100 < late.mean()


CASES = [("nve", "langevin", "isotropic"), ("nvt", "langevin", "isotropic"),
         ("nvt", "nose-hoover", "isotropic"), ("nvt", "bussi", "isotropic"),
         ("npt", "langevin", "isotropic"), ("npt", "langevin", "anisotropic")]


@pytest.mark.parametrize(("ensemble", "thermostat", "barostat"), CASES)
def test_resume_is_bitwise_identical(si64, tmp_path, ensemble, thermostat, barostat):
    """Stop mid-stage (and after a kill that left extra trajectory text), resume: the
    trajectory, log and final state equal those of an uninterrupted run, byte for byte."""
    ramp = 300.0 if ensemble == "nvt" and thermostat != "nose-hoover" else None
    stages = [Stage("a", 30, 600.0), Stage("b", 33, 600.0, ramp)]
    settings = MDSettings(ensemble=ensemble, timestep_fs=1.0, thermostat=thermostat,
                          barostat=barostat, pressure_GPa=1.0, traj_stride=7, log_stride=5,
                          checkpoint_stride=20)

    def run(tag, stop_after=None):
        calls = [0]

        def stop():
            calls[0] += 1
            return stop_after is not None and calls[0] > stop_after

        return run_md(si64, StillingerWeber(), settings, stages, rng=np.random.default_rng(1),
                      traj=ResumableText(tmp_path / f"{tag}.xyz"),
                      log_file=ResumableText(tmp_path / f"{tag}.log"),
                      checkpoint=str(tmp_path / f"{tag}.npz"), stop_requested=stop)

    full = run("full")
    part = run("part", stop_after=45)
    assert part.status == "terminated" and part.step == 45 and part.checkpoint_step == 45
    with open(tmp_path / "part.xyz", "a") as fh:
        fh.write("text written after the checkpoint by a killed run\n")
    resumed = run("part")
    assert resumed.status == "done" and resumed.resumed_from == 45 and resumed.step == 63
    for ext in ("xyz", "log"):
        assert (tmp_path / f"full.{ext}").read_bytes() == (tmp_path / f"part.{ext}").read_bytes()
    np.testing.assert_array_equal(full.atoms.positions, resumed.atoms.positions)
    np.testing.assert_array_equal(full.atoms.get_momenta(), resumed.atoms.get_momenta())
    np.testing.assert_array_equal(full.atoms.cell.array, resumed.atoms.cell.array)
    assert full.n_frames == resumed.n_frames == 10  # steps 0, 7, ..., 63


def test_resume_rejects_other_settings(si64, tmp_path):
    ckpt = str(tmp_path / "c.npz")
    settings = MDSettings(ensemble="nvt", timestep_fs=1.0, checkpoint_stride=5)
    run_md(si64, StillingerWeber(), settings, [Stage("md", 10, 300.0)],
           rng=np.random.default_rng(1), checkpoint=ckpt)
    other = MDSettings(ensemble="nvt", timestep_fs=2.0, checkpoint_stride=5)
    with pytest.raises(ParameterError, match="timestep_fs=1.0"):
        run_md(si64, StillingerWeber(), other, [Stage("md", 10, 300.0)],
               rng=np.random.default_rng(1), checkpoint=ckpt)
    with pytest.raises(ParameterError, match="another protocol"):
        run_md(si64, StillingerWeber(), settings, [Stage("md", 10, 400.0)],
               rng=np.random.default_rng(1), checkpoint=ckpt)
    # a longer run extends the finished one
    longer = run_md(si64, StillingerWeber(), settings, [Stage("md", 15, 300.0)],
                    rng=np.random.default_rng(1), checkpoint=ckpt)
    assert longer.resumed_from == 10 and longer.step == 15


@pytest.mark.parametrize("kind", ["energies", "forces"])
def test_extrapolation_guard_stops_at_threshold(si64, kind):
    calc = GrowingUncertaintySW(rate=0.001, kind=kind)
    settings = MDSettings(ensemble="nvt", timestep_fs=1.0, max_uncertainty=0.0305)
    result = run_md(si64, calc, settings, [Stage("md", 200, 300.0)], rng=np.random.default_rng(1))
    assert result.status == "extrapolation"
    # the uncertainty passes 0.0305 at the 31st calculation: step 30 (one force call per step)
    assert result.uncertainty == pytest.approx(0.031)
    assert result.step == 30
    frame = result.offending
    assert frame.info["step"] == 30 and frame.info["max_uncertainty"] == pytest.approx(0.031)
    key = keys.ENERGIES_UNCERTAINTY if kind == "energies" else keys.FORCES_UNCERTAINTY
    assert frame.arrays[key].max() == pytest.approx(0.031)
    # predictions, never reference labels: a labelling run must not mistake them for DFT
    assert frame.calc is None and keys.PREDICTION_PREFIX + keys.FORCES in frame.arrays


def test_guard_asks_for_an_uncertainty_computed_on_demand(si64):
    settings = MDSettings(ensemble="nve", timestep_fs=1.0, max_uncertainty=0.1)
    result = run_md(si64, OnDemandUncertaintySW(value=0.2), settings, [Stage("md", 5, 300.0)],
                    rng=np.random.default_rng(1))
    assert result.status == "extrapolation" and result.step == 0
    assert result.uncertainty == pytest.approx(0.2)


def test_guard_skipped_with_warning_without_uncertainty(si64, caplog):
    settings = MDSettings(ensemble="nvt", timestep_fs=1.0, max_uncertainty=1e-6)
    with caplog.at_level("WARNING", logger="mlptools"):
        result = run_md(si64, StillingerWeber(), settings, [Stage("md", 5, 300.0)],
                        rng=np.random.default_rng(1))
    assert result.status == "done"
    assert any("--max-uncertainty is ignored" in r.message for r in caplog.records)


def test_max_uncertainty_reads_the_right_key():
    assert max_uncertainty({}) is None
    assert max_uncertainty({keys.FORCES_UNCERTAINTY: np.array([0.1, 0.3])}) == (
        0.3, keys.FORCES_UNCERTAINTY)
    both = {keys.ENERGIES_UNCERTAINTY: np.array([0.01, 0.02]),
            keys.FORCES_UNCERTAINTY: np.array([5.0])}
    assert max_uncertainty(both) == (0.02, keys.ENERGIES_UNCERTAINTY)


def test_nan_energy_stops_with_the_step(si64):
    settings = MDSettings(ensemble="nve", timestep_fs=1.0)
    with pytest.raises(ComputationError, match=r"step 10: the potential energy became nan"):
        run_md(si64, FailingSW(after=10), settings, [Stage("md", 50, 300.0)],
               rng=np.random.default_rng(1))


def test_blow_up_is_caught_before_nan(si64):
    """A 20 fs time step at 3000 K: atoms overlap and fly apart; the run must stop with a
    clear message, not write NaN frames."""
    settings = MDSettings(ensemble="nvt", timestep_fs=20.0, log_stride=1)
    with pytest.raises(ComputationError, match=r"step \d+: .*(blew up|failed)"):
        run_md(si64, StillingerWeber(), settings, [Stage("md", 500, 3000.0)],
               rng=np.random.default_rng(1))


def test_bad_settings():
    with pytest.raises(ParameterError, match="unknown ensemble 'nvx'"):
        MDSettings(ensemble="nvx", timestep_fs=1.0)
    with pytest.raises(ParameterError, match="timestep must be > 0 fs"):
        MDSettings(ensemble="nve", timestep_fs=-1.0)


def test_npt_needs_periodic_cell(si64):
    atoms = si64.copy()
    atoms.pbc = False
    with pytest.raises(ParameterError, match="npt needs a structure periodic"):
        run_md(atoms, StillingerWeber(), MDSettings(ensemble="npt", timestep_fs=1.0),
               [Stage("md", 5, 300.0)], rng=np.random.default_rng(1))


def test_npt_pressure_moves_the_volume(si64, tmp_path):
    """Compressing at 20 GPa must shrink the cell (and the log's volume column shows it)."""
    path = tmp_path / "npt.log"
    settings = MDSettings(ensemble="npt", timestep_fs=1.0, pressure_GPa=20.0, pdamp_fs=100.0,
                          log_stride=10, traj_stride=0, checkpoint_stride=0)
    run_md(si64, StillingerWeber(), settings, [Stage("md", 600, 300.0)],
           rng=np.random.default_rng(1), log_file=ResumableText(path))
    d = _log(path)
    assert d[-20:, 8].mean() < 0.97 * d[0, 8]
