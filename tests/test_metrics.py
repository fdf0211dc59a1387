"""mlptools.metrics: RMSE/MAE tables against errors computed directly with NumPy."""

import json
import math

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from mlptools import metrics
from mlptools.errors import InputError
from mlptools.units import EV_PER_A3_TO_GPA


def _frames(rng, n_frames=6):
    ref, pred = [], []
    for k in range(n_frames):
        atoms = bulk("Si", cubic=True) * (1, 1, 1 + k % 2)
        atoms.info["config_type"] = "bulk" if k % 3 else "surface"
        n = len(atoms)
        e, f, s = rng.normal() * n, rng.normal(size=(n, 3)), rng.normal(size=6) * 0.01
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
        ref.append(atoms)
        p = atoms.copy()
        p.calc = SinglePointCalculator(p, energy=e + rng.normal() * 0.01 * n,
                                       forces=f + rng.normal(size=(n, 3)) * 0.1,
                                       stress=s + rng.normal(size=6) * 1e-3)
        pred.append(p)
    return ref, pred


def _direct(ref, pred, select):
    de, df, ds = [], [], []
    for a, b in zip(ref, pred, strict=True):
        if not select(a):
            continue
        n = len(a)
        de.append(1000 * (b.get_potential_energy() - a.get_potential_energy()) / n)
        df.append((b.get_forces() - a.get_forces()).ravel())
        ds.append((b.get_stress() - a.get_stress()) * EV_PER_A3_TO_GPA)
    de, df, ds = np.array(de), np.concatenate(df), np.concatenate(ds)
    return {"energy_rmse": np.sqrt(np.mean(de ** 2)), "energy_mae": np.mean(np.abs(de)),
            "forces_rmse": np.sqrt(np.mean(df ** 2)), "forces_mae": np.mean(np.abs(df)),
            "stress_rmse": np.sqrt(np.mean(ds ** 2)), "stress_mae": np.mean(np.abs(ds)),
            "n_energy": de.size, "n_forces": df.size, "n_stress": ds.size}


def test_errors_match_numpy_per_group_and_overall(rng):
    ref, pred = _frames(rng)
    report = metrics.compute_errors(ref, pred)
    assert [r.config_type for r in report.rows] == ["bulk", "surface", "overall"]
    for name, select in (("bulk", lambda a: a.info["config_type"] == "bulk"),
                         ("surface", lambda a: a.info["config_type"] == "surface"),
                         ("overall", lambda a: True)):
        row = report.row(name)
        for key, value in _direct(ref, pred, select).items():
            assert getattr(row, key) == pytest.approx(value, rel=1e-12), (name, key)
    assert report.overall.n_frames == len(ref)
    assert report.overall.n_atoms == sum(len(a) for a in ref)


def test_predictions_from_prefixed_keys_and_dicts(rng):
    ref, pred = _frames(rng, 4)
    expected = metrics.compute_errors(ref, pred).to_dict()
    for a, b in zip(ref, pred, strict=True):
        a.info["mlptools_energy"] = b.get_potential_energy()
        a.arrays["mlptools_forces"] = b.get_forces()
        a.info["mlptools_stress"] = b.get_stress()
    assert metrics.compute_errors(ref).to_dict() == expected
    dicts = [{"energy": b.get_potential_energy(), "forces": b.get_forces(),
              "stress": b.get_stress(voigt=False)} for b in pred]
    got = metrics.compute_errors(ref, dicts).overall
    assert got.stress_rmse == pytest.approx(expected["rows"][-1]["stress_rmse"], rel=1e-12)


def test_missing_labels_are_skipped_and_nan(rng):
    ref, pred = _frames(rng, 3)
    for p in pred:
        p.calc = SinglePointCalculator(p, energy=p.get_potential_energy())
    row = metrics.compute_errors(ref, pred).overall
    assert row.n_energy == 3 and row.n_forces == 0 and math.isnan(row.forces_rmse)
    data = json.loads(metrics.compute_errors(ref, pred).to_json())
    assert data["rows"][-1]["forces_rmse"] is None
    assert data["units"]["energy"] == "meV/atom"


def test_text_and_tsv_tables(rng):
    ref, pred = _frames(rng)
    report = metrics.compute_errors(ref, pred)
    text = report.to_text(title="train")
    assert text.splitlines()[0] == "train"
    assert "meV/atom" in text and "overall" in text
    tsv = report.to_tsv().splitlines()
    assert len(tsv) == 1 + len(report.rows)
    fields = tsv[-1].split("\t")
    assert fields[0] == "overall"
    assert float(fields[3]) == pytest.approx(report.overall.energy_rmse, rel=1e-5)


def test_length_and_atom_count_mismatch(rng):
    ref, pred = _frames(rng, 3)
    with pytest.raises(InputError, match="more reference frames"):
        metrics.compute_errors(ref, pred[:2])
    with pytest.raises(InputError, match="more frames than"):
        metrics.compute_errors(ref[:2], pred)
    pred[1] = pred[1][:-1]
    pred[1].calc = SinglePointCalculator(pred[1], energy=0.0)
    with pytest.raises(InputError, match="frame 1: 16 atoms in the reference, 15"):
        metrics.compute_errors(ref, pred)


def test_no_stress_without_a_cell(rng):
    ref, pred = _frames(rng, 2)
    for a in ref + pred:
        a.pbc = False
        a.cell = np.zeros((3, 3))
    assert metrics.compute_errors(ref, pred).overall.n_stress == 0
