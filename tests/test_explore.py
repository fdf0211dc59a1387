"""build-db --explore: MD with an interim potential keeps the snapshots it is least certain of."""

import numpy as np
import pytest
from ase.build import bulk
from click.testing import CliRunner

from mlptools.calculators import StillingerWeber
from mlptools.cli import MlptoolsGroup
from mlptools.cli.build_db import build_db
from mlptools.errors import ParameterError
from mlptools.keys import ENERGIES_UNCERTAINTY
from mlptools.workflows import build_db as bd
from mlptools.workflows.explore import (
    EXPLORE_SCORE,
    ExploreSettings,
    explore,
    farthest_point_order,
    uncertainty_score,
)
from mlptools.workflows.recipe import load_recipe


class UncertainSW(StillingerWeber):
    """SW whose 'uncertainty' of an atom is its force magnitude / 10 (eV): known in closed form."""

    implemented_properties = StillingerWeber.implemented_properties + [ENERGIES_UNCERTAINTY]

    def calculate(self, atoms=None, properties=None, system_changes=None):
        super().calculate(atoms, properties, system_changes or [])
        self.results[ENERGIES_UNCERTAINTY] = np.linalg.norm(self.results["forces"], axis=1) / 10


class OnDemandUncertainSW(UncertainSW):
    """Like a fitted model: the uncertainty only when a caller asks for it."""

    def calculate(self, atoms=None, properties=None, system_changes=None):
        super().calculate(atoms, properties, system_changes)
        if ENERGIES_UNCERTAINTY not in (properties or ()):
            del self.results[ENERGIES_UNCERTAINTY]


def _seeds():
    frames = []
    for k, a in enumerate((5.40, 5.45)):
        atoms = bulk("Si", "diamond", a=a, cubic=True)
        atoms.info["structure_id"] = f"s{k}"
        frames.append(atoms)
    return frames


SETTINGS = ExploreSettings(temperature_K=1500, steps=40, stride=5, keep=5)


def test_uncertainty_score_prefers_per_atom_energy_then_forces_then_total():
    assert uncertainty_score({"energies_uncertainty": [0.1, 0.3], "forces_uncertainty": [9]}) == 0.3
    assert uncertainty_score({"forces_uncertainty": [0.2, 0.5], "energy_uncertainty": 7}) == 0.5
    assert uncertainty_score({"energy_uncertainty": 0.7}) == 0.7
    assert uncertainty_score({"energy": -3.0}) is None


def test_keeps_the_most_uncertain_snapshots(rng):
    result = explore(_seeds(), UncertainSW(), rng, SETTINGS)
    assert result.method == "uncertainty"
    assert len(result.scores) == 2 * 40 // 5
    assert len(result.frames) == 5
    kept = [a.info[EXPLORE_SCORE] for a in result.frames]
    # the kept ones are the five largest scores, most uncertain first
    np.testing.assert_allclose(kept, np.sort(result.scores)[::-1][:5])
    # and each stored score is what the potential says of that very frame (recomputed here)
    for atoms in result.frames:
        atoms.calc = UncertainSW()
        atoms.get_potential_energy()
        assert atoms.calc.results[ENERGIES_UNCERTAINTY].max() == pytest.approx(
            atoms.info[EXPLORE_SCORE], rel=1e-10)
    ids = [a.info["structure_id"] for a in result.frames]
    assert len(set(ids)) == 5 and all(i.split("-x")[0] in ("s0", "s1") for i in ids)


def test_asks_a_model_for_its_uncertainty():
    # a GAP computes its variance only on request: explore must request it, not fall back
    result = explore(_seeds(), OnDemandUncertainSW(), np.random.default_rng(5), SETTINGS)
    assert result.method == "uncertainty"
    reference = explore(_seeds(), UncertainSW(), np.random.default_rng(5), SETTINGS)
    np.testing.assert_allclose(np.sort(result.scores), np.sort(reference.scores), rtol=1e-8)


def test_same_seed_same_selection():
    a = explore(_seeds(), UncertainSW(), np.random.default_rng(5), SETTINGS)
    b = explore(_seeds(), UncertainSW(), np.random.default_rng(5), SETTINGS)
    for x, y in zip(a.frames, b.frames, strict=True):
        np.testing.assert_array_equal(x.positions, y.positions)


def test_without_uncertainty_farthest_point_sampling_is_used(rng):
    result = explore(_seeds(), StillingerWeber(), rng, ExploreSettings(steps=20, stride=5, keep=3))
    assert result.method == "farthest-point"
    assert len(result.frames) == 3 and np.isnan(result.scores).all()


def test_farthest_point_order_picks_the_point_farthest_from_known_first():
    known = np.array([[0.0, 0.0]])
    cand = np.array([[1.0, 0.0], [5.0, 0.0], [4.0, 0.5], [-3.0, 0.0]])
    order = farthest_point_order(cand, known, 3)
    # 5 is farthest from 0; then -3 (8 from 5, 3 from 0 -> 3) beats 1 (1) and (4, .5) (~1.1)
    assert list(order) == [1, 3, 2]


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ParameterError, match="steps >= 1"):
        ExploreSettings(steps=0)
    with pytest.raises(ParameterError, match="temperature_K > 0"):
        ExploreSettings(temperature_K=-5)


RECIPE = """
seed = 3
[label]
calc = "sw"
isolated_atoms = false

[[structures]]
kind = "rattle"
config_type = "rattled"
base = { prototype = "diamond", symbol = "Si", a = 5.431, cubic = true }
count = 2
sigma = 0.05
"""


def test_build_db_explore_labels_only_the_kept_frames_and_resumes(tmp_path, monkeypatch):
    # the interim potential is named by import path, as a user's own calculator would be
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "uncertain_sw.py").write_text(
        "import numpy as np\nfrom mlptools.calculators import StillingerWeber\n"
        "class UncertainSW(StillingerWeber):\n"
        "    def calculate(self, atoms=None, properties=None, system_changes=None):\n"
        "        super().calculate(atoms, properties, system_changes or [])\n"
        "        self.results['energies_uncertainty'] = "
        "np.linalg.norm(self.results['forces'], axis=1) / 10\n")
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE)
    out = tmp_path / "db.xyz"
    args = ["build-db", str(recipe), "-o", str(out), "--explore", "uncertain_sw:UncertainSW",
            "--explore-keep", "4", "--explore-steps", "30", "--explore-stride", "5"]
    group = MlptoolsGroup(name="mlptools", commands=[build_db])
    result = CliRunner().invoke(group, args)
    assert result.exit_code == 0, result.output
    from ase.io import read

    frames = read(out, index=":")
    assert len(frames) == 4
    for atoms in frames:  # labelled by the reference (plain SW), at the explored positions
        ref = atoms.copy()
        ref.calc = StillingerWeber()
        # (extxyz keeps positions to ~1e-8 Å, hence 1e-6 eV)
        assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-6)
        assert EXPLORE_SCORE in atoms.info
    # the rerun resumes from the checkpoint: nothing explored or labelled again
    again = bd.build_database(load_recipe(recipe), checkpoint=f"{out}.ckpt.jsonl",
                              explore=("uncertain_sw:UncertainSW",
                                       ExploreSettings(steps=30, stride=5, keep=4)))
    assert again.n_labelled_now == 0 and len(again.frames) == 4
