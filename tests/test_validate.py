"""Error part of validate: predictions beside references, hand-computed error metrics."""

import math

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from threadcomm import run_ranks

from mlptools.calculators import make_calculator
from mlptools.errors import ComputationError, InputError
from mlptools.workflows import validate as val
from mlptools.workflows.properties import PropertyRow

ENERGY_SHIFT = 0.003  # eV/atom
FORCE_SHIFT = np.array([0.1, -0.2, 0.0])  # eV/Å, on every atom
STRESS_SHIFT = np.array([1e-3, 0, 0, 0, 0, -2e-3])  # eV/Å³


class ShiftedEMT(Calculator):
    """EMT plus known offsets: the errors against EMT labels are known exactly."""

    implemented_properties = ["energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        ref = self.atoms.copy()
        ref.calc = EMT()
        self.results = {
            "energy": ref.get_potential_energy() + ENERGY_SHIFT * len(ref),
            "forces": ref.get_forces() + FORCE_SHIFT,
        }
        if ref.pbc.all():
            self.results["stress"] = ref.get_stress() + STRESS_SHIFT


def _labelled(atoms, config_type, rng):
    atoms = atoms.copy()
    atoms.rattle(0.05, rng=rng)
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info["config_type"] = config_type
    return atoms


@pytest.fixture
def frames(rng):
    from ase.cluster import Icosahedron

    cluster = Icosahedron("Cu", 2)
    cluster.center(vacuum=5.0)
    return [_labelled(bulk("Cu", "fcc", 3.61, cubic=True), "bulk", rng),
            _labelled(bulk("Cu", "fcc", 3.65, cubic=True) * (2, 1, 1), "bulk", rng),
            _labelled(cluster, "cluster", rng)]


def test_predictions_sit_beside_untouched_references(frames):
    ref_forces = frames[0].calc.results["forces"].copy()
    out = val.predict(frames[0], ShiftedEMT(), "x.xyz: frame 0")
    assert out.calc.results["forces"] == pytest.approx(ref_forces)
    assert out.arrays["mlptools_forces"] == pytest.approx(ref_forces + FORCE_SHIFT)
    assert out.info["mlptools_energy"] == pytest.approx(
        frames[0].calc.results["energy"] + ENERGY_SHIFT * len(out))
    assert out.info["mlptools_stress"].shape == (6,)
    out.calc.results["forces"][0, 0] += 1.0  # the input frame keeps its own labels
    assert frames[0].calc.results["forces"] == pytest.approx(ref_forces)
    no_cell = val.predict(frames[2], ShiftedEMT(), "x.xyz: frame 2")
    assert "mlptools_stress" not in no_cell.info


def test_errors_equal_hand_computed_values(frames):
    predicted = [val.predict(a, ShiftedEMT(), f"f: frame {i}") for i, a in enumerate(frames)]
    errors = val.validation_errors(predicted)
    overall = errors.report.overall
    assert overall.n_frames == 3 and overall.n_atoms == 4 + 8 + 13
    assert overall.energy_rmse == pytest.approx(1000 * ENERGY_SHIFT, rel=1e-9)
    assert overall.energy_mae == pytest.approx(1000 * ENERGY_SHIFT, rel=1e-9)
    # every atom has the same force error (0.1, -0.2, 0): RMSE over components sqrt(0.05/3)
    assert overall.forces_rmse == pytest.approx(math.sqrt(0.05 / 3), rel=1e-9)
    assert overall.forces_mae == pytest.approx(0.1, rel=1e-9)
    assert overall.n_forces == 3 * 25
    # stress only for the two periodic frames: Voigt errors (1e-3, 0, 0, 0, 0, -2e-3) eV/Å³
    gpa = 160.21766208
    assert overall.n_stress == 12
    assert overall.stress_rmse == pytest.approx(math.sqrt(5e-6 / 6) * gpa, rel=1e-6)
    assert errors.report.row("cluster").n_stress == 0
    detail = {d.config_type: d for d in errors.forces}
    assert detail["overall"].rmse_x == pytest.approx(0.1)
    assert detail["overall"].rmse_y == pytest.approx(0.2)
    assert detail["overall"].rmse_z == pytest.approx(0.0, abs=1e-12)
    assert detail["overall"].max_error == pytest.approx(math.sqrt(0.05))
    f_ref = np.concatenate([a.calc.results["forces"] for a in frames])
    rel = 100 * math.sqrt(0.05 / 3) / np.sqrt(np.mean(f_ref**2))
    assert detail["overall"].relative_rmse == pytest.approx(rel)
    assert detail["cluster"].n_atoms == 13
    assert "RMSE x" in errors.forces_text()


def test_a_calculator_against_its_own_labels_has_zero_error(frames):
    predicted = [val.predict(a, EMT(), f"f: frame {i}") for i, a in enumerate(frames)]
    overall = val.validation_errors(predicted).report.overall
    assert overall.energy_rmse == pytest.approx(0.0, abs=1e-9)
    assert overall.forces_rmse == pytest.approx(0.0, abs=1e-12)
    assert overall.stress_rmse == pytest.approx(0.0, abs=1e-9)


def test_parity_data_units(frames):
    predicted = [val.predict(a, ShiftedEMT(), "f") for a in frames]
    data = val.parity_data(predicted)
    ref, pred = data["energy"]["bulk"]
    assert pred - ref == pytest.approx([ENERGY_SHIFT] * 2)
    assert len(data["forces"]["cluster"][0]) == 39
    assert set(data["stress"]) == {"bulk"}
    ref, pred = data["stress"]["bulk"]
    assert (pred - ref)[0] == pytest.approx(1e-3 * 160.21766208, rel=1e-6)


def test_model_for_other_species(frames):
    with pytest.raises(InputError, match=r"^cu.xyz: frame 0: species Cu not covered by the "
                                         r"potential \(it has Si\)$"):
        val.predict(frames[0], make_calculator("sw"), "cu.xyz: frame 0")


def test_calculator_failure_names_the_frame(frames):
    class Broken(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=None, system_changes=all_changes):
            raise RuntimeError("SCF did not converge")

    with pytest.raises(ComputationError, match="^f.xyz: frame 1: RuntimeError: SCF did not"):
        val.predict(frames[1], Broken(), "f.xyz: frame 1")


def test_thresholds(frames):
    predicted = [val.predict(a, ShiftedEMT(), "f") for a in frames]
    errors = val.validation_errors(predicted)
    assert val.check_thresholds(errors, max_energy_rmse=3.1, max_force_rmse=0.2) == []
    failed = val.check_thresholds(errors, max_energy_rmse=2.0, max_force_rmse=0.1,
                                  max_stress_rmse=1.0)
    assert failed == ["energy RMSE 3 meV/atom > 2", "force RMSE 0.1291 eV/Å > 0.1"]
    rows = [PropertyRow("C44", "elastic constant C44", "GPa", 60.0, 56.4, 3.6, 6.38),
            PropertyRow("a", "lattice constant a", "Å", 5.43, 5.431, -0.001, -0.018)]
    assert val.check_thresholds(rows=rows, max_property_error=5) == [
        "C44 off by +6.38 % (> 5 %)"]


def test_shift_energies_removes_a_constant_offset(frames):
    predicted = [val.predict(a, ShiftedEMT(), "f") for a in frames]
    errors = val.validation_errors(predicted, shift=True)
    assert errors.energy_offset == pytest.approx(ENERGY_SHIFT)
    assert errors.report.overall.energy_rmse == pytest.approx(0.0, abs=1e-9)
    assert errors.report.overall.forces_rmse == pytest.approx(math.sqrt(0.05 / 3))
    assert predicted[0].calc.results["energy"] == frames[0].calc.results["energy"]
    assert errors.to_dict()["energy_offset_eV_per_atom"] == pytest.approx(ENERGY_SHIFT)


def test_per_property_thresholds():
    rows = [PropertyRow("C44", "elastic constant C44", "GPa", 60.0, 56.4, 3.6, 6.38),
            PropertyRow("a", "lattice constant a", "Å", 5.44, 5.431, 0.009, 0.166),
            PropertyRow("B", "bulk modulus", "GPa", 99.0, None, None, None)]
    assert val.check_thresholds(rows=rows, max_errors={"a": 0.5, "C44": 10}) == []
    assert val.check_thresholds(rows=rows, max_property_error=10, max_errors={"a": 0.1}) == [
        "a off by +0.17 % (> 0.1 %)"]
    assert val.check_thresholds(rows=rows, max_errors={"B": 5, "E_vac": 5}) == [
        "B: not computed or no reference value to check",
        "E_vac: not computed or no reference value to check"]


def test_predictions_shared_between_ranks_keep_the_order(frames):
    items = [(f"f: frame {i}", a) for i, a in enumerate(frames)]
    serial = val.predict_frames(items, ShiftedEMT())
    for result in run_ranks(2, lambda comm: val.predict_frames(items, ShiftedEMT(), comm=comm)):
        assert [a.info["mlptools_energy"] for a in result] == [
            a.info["mlptools_energy"] for a in serial]


def test_an_error_on_one_rank_is_raised_on_all(frames):
    items = [(f"f: frame {i}", a) for i, a in enumerate(frames)]
    # SW does not cover Cu: each rank fails on its first frame, all raise frame 0 (none hangs)
    with pytest.raises(InputError, match="^f: frame 0: species Cu"):
        run_ranks(2, lambda comm: val.predict_frames(items, make_calculator("sw"), comm=comm))
