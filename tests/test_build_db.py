"""build-db library: structure generators, recipes, labelling, checkpoint/resume, split, summary."""

import json

import numpy as np
import pytest
from ase.build import bulk

from mlptools.calculators import make_calculator
from mlptools.errors import InputError, ParameterError
from mlptools.workflows import build_db as bd
from mlptools.workflows import structures as st
from mlptools.workflows.recipe import load_recipe, parse_recipe

SMALL = """
seed = 3
[label]
calc = "sw"

[[structures]]
kind = "volume_scan"
config_type = "diamond_ev"
base = { prototype = "diamond", symbol = "Si", a = 5.431 }
count = 4
rattle = 0.01

[[structures]]
kind = "strain"
config_type = "strained"
base = { prototype = "diamond", symbol = "Si", a = 5.431, cubic = true }
count = 3

[[structures]]
kind = "vacancy"
config_type = "vacancy"
base = { prototype = "diamond", symbol = "Si", a = 5.431, cubic = true }
count = 2
rattle = 0.05

[[structures]]
kind = "random"
config_type = "random"
symbols = "Si4"
count = 2
"""


def write_recipe(tmp_path, text, name="r.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def positions_of(frames):
    return [(a.info["structure_id"], a.numbers.tolist(), a.positions.tolist(),
             a.cell.array.tolist()) for a in frames]


# --- structure generators -------------------------------------------------------------------


def test_beta_sn_prototype():
    from ase.neighborlist import neighbor_list

    atoms = st.prototype("Si", "beta-sn")
    assert len(atoms) == 4
    assert atoms.cell.cellpar()[:3] == pytest.approx([4.686, 4.686, 4.686 * 0.5517])
    d = np.sort(neighbor_list("d", atoms, 2.7))
    # 4 neighbours at 2.43 Å and 2 at c = 2.585 Å per atom
    assert np.allclose(d[:16], 2.431, atol=2e-3) and np.allclose(d[16:], 2.585, atol=2e-3)


@pytest.mark.parametrize("symbol, lattice, kw, n", [
    ("Si", "diamond", {}, 2), ("Cu", "fcc", {}, 1), ("Fe", "bcc", {}, 1), ("Mg", "hcp", {}, 2),
    ("C", "graphite", {}, 4), ("NaCl", "rocksalt", {"a": 5.64}, 2),
    ("GaN", "wurtzite", {"a": 3.19, "c": 5.19}, 4), ("Po", "sc", {"a": 3.35}, 1),
])
def test_prototypes(symbol, lattice, kw, n):
    atoms = st.prototype(symbol, lattice, **kw)
    assert len(atoms) == n and atoms.calc is None and atoms.pbc.all()


def test_unknown_prototype():
    with pytest.raises(ParameterError, match="unknown prototype 'diamnd'"):
        st.prototype("Si", "diamnd")


def test_volume_scan_and_strain(rng):
    base = st.prototype("Si", "diamond", a=5.431)
    v0 = base.get_volume()
    scan = st.volume_scan(base, 5, volume_range=(0.9, 1.1))
    assert [a.get_volume() / v0 for a in scan] == pytest.approx(np.linspace(0.9, 1.1, 5))
    for atoms in st.random_strains(base, 4, rng, max_strain=0.02):
        eps = np.linalg.solve(base.cell.array, atoms.cell.array) - np.eye(3)
        assert np.allclose(eps, eps.T) and np.abs(eps).max() <= 0.02


def test_defects_and_surfaces(rng):
    base = st.supercell(st.prototype("Si", "diamond", a=5.431, cubic=True), 2)
    assert all(len(a) == 62 for a in st.vacancies(base, 3, rng, n_vacancies=2))
    inter = st.interstitials(base, 1, rng)[0]
    assert len(inter) == 65
    d = inter.get_distances(64, range(64), mic=True)
    assert d.min() > 2.0  # an open site, not on top of an atom
    slabs = st.surfaces(st.prototype("Si", "diamond", a=5.431, cubic=True),
                        [(1, 0, 0), (1, 1, 1)], layers=4, vacuum=7.0)
    assert [s.info["miller"] for s in slabs] == ["100", "111"]
    for slab in slabs:
        z = slab.positions[:, 2]
        assert slab.cell[2, 2] - (z.max() - z.min()) == pytest.approx(14.0, abs=1e-6)
    # the cut breaks the fewest bonds: unrelaxed SW energies are bond counts, so γ is exact,
    # γ(100) = |E0|/a², γ(111) = |E0|/(√3 a²) with E0 = −2ε per atom (ase.build.surface's
    # (111) cut between the close planes would give 3× that)
    from mlptools.calculators import StillingerWeber

    a, e0 = 5.431, -2 * 2.1683
    for slab, want in zip(slabs, (-e0 / a**2, -e0 / (np.sqrt(3) * a**2)), strict=True):
        slab.calc = StillingerWeber()
        area = np.linalg.norm(np.cross(slab.cell[0], slab.cell[1]))
        gamma = (slab.get_potential_energy() - len(slab) * e0) / (2 * area)
        assert gamma == pytest.approx(want, rel=1e-3)


def test_random_structures_respect_min_distance(rng):
    frames = st.random_structures("Si6", 5, rng, volume_per_atom=(18, 22), min_distance=2.2)
    for atoms in frames:
        assert 18 * 6 - 1e-6 <= atoms.get_volume() <= 22 * 6 + 1e-6
        d = atoms.get_all_distances(mic=True)[np.triu_indices(6, 1)]
        assert d.min() >= 2.2


def test_random_structures_impossible_packing(rng):
    with pytest.raises(Exception, match="could not place atom"):
        st.random_structures("Si8", 1, rng, volume_per_atom=(2, 2), min_distance=3.0,
                             max_attempts=50)


def test_md_and_melt_quench_snapshots(rng):
    base = st.prototype("Si", "diamond", a=5.431, cubic=True)
    snaps = st.md_snapshots(base, make_calculator("sw"), 3, rng, temperature_K=2000,
                            equilibration=10, stride=5)
    assert len(snaps) == 3 and all(s.calc is None for s in snaps)
    assert not np.allclose(snaps[0].positions, snaps[1].positions)
    amorph = st.melt_quench(base, make_calculator("sw"), 2, rng, melt_steps=10,
                            quench_steps=10, anneal_steps=5)
    assert len(amorph) == 2


# --- recipes ----------------------------------------------------------------------------------


def test_recipe_defaults(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, SMALL))
    assert recipe.seed == 3 and recipe.calc == "sw" and recipe.isolated_atoms
    assert [e.kind for e in recipe.entries] == ["volume_scan", "strain", "vacancy", "random"]
    assert recipe.entries[0].params["volume_range"] == [0.85, 1.15]


@pytest.mark.parametrize("text, message", [
    ('sed = 1\n[[structures]]\nkind="random"\nconfig_type="r"\nsymbols="Si"',
     r"r.toml: unknown top-level key 'sed'; did you mean 'seed'\?"),
    ('[[structures]]\nkind="volum_scan"\nconfig_type="x"',
     r"r.toml: structures\[0\]: unknown kind 'volum_scan'; did you mean 'volume_scan'\?"),
    ('[[structures]]\nkind="md"\nconfig_type="l"\ntemprature_K=3\nbase={prototype="sc",symbol="Si"}',
     r"structures\[0\] \(kind 'md'\): unknown key 'temprature_K'; did you mean 'temperature_K'\?"),
    ('[[structures]]\nkind="md"\nconfig_type="l"\nbase={prototype="sc",symbol="Si"}',
     r"structures\[0\] \(kind 'md'\): missing required key 'temperature_K'"),
    ('[[structures]]\nkind="strain"\nbase={prototype="sc",symbol="Si"}',
     r"missing required key 'config_type'"),
    ('[[structures]]\nkind="strain"\nconfig_type="s"\nbase={prototyp="sc",symbol="Si"}',
     r"structures\[0\] \(kind 'strain'\): base: unknown key 'prototyp'; did you mean 'prototype'"),
    ('[[structures]]\nkind="strain"\nconfig_type="s"\ncount="3"\nbase={prototype="sc",symbol="Si"}',
     r"count must be int, got '3'"),
    ('[[structures]]\nkind="volume_scan"\nconfig_type="s"\nvolume_range=[1.1, 0.9]\n'
     'base={prototype="sc",symbol="Si"}', r"volume_range must be \[min, max\]"),
    ('[label]\ncalc="sw"\n', r"no \[\[structures\]\] tables"),
    ('[split]\ntest=1.5\n[[structures]]\nkind="random"\nconfig_type="r"\nsymbols="Si"',
     r"\[split\]: test must be a fraction"),
    ('[label]\ncal="sw"\n[[structures]]\nkind="random"\nconfig_type="r"\nsymbols="Si"',
     r"\[label\]: unknown key 'cal'; did you mean 'calc'"),
])
def test_bad_recipes_give_one_line(tmp_path, text, message):
    with pytest.raises(ParameterError, match=message) as info:
        load_recipe(write_recipe(tmp_path, text))
    assert "\n" not in str(info.value)


def test_unreadable_recipes(tmp_path):
    with pytest.raises(InputError, match=r"r.toml: invalid TOML"):
        load_recipe(write_recipe(tmp_path, "[[structures]\n"))
    with pytest.raises(InputError, match=r"nope.toml: cannot read recipe"):
        load_recipe(tmp_path / "nope.toml")


def test_yaml_recipe(tmp_path):
    path = write_recipe(tmp_path, "seed: 1\nstructures:\n  - {kind: random, config_type: r, "
                        "symbols: Si2}\n", name="r.yaml")
    try:
        import yaml  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="YAML recipes need PyYAML"):
            load_recipe(path)
    else:
        assert load_recipe(path).entries[0].kind == "random"


def test_same_recipe_and_seed_give_identical_structures(tmp_path):
    text = SMALL + """
[[structures]]
kind = "md"
config_type = "liquid"
base = { prototype = "diamond", symbol = "Si", a = 5.431, cubic = true }
count = 2
temperature_K = 2000.0
equilibration = 5
stride = 3
"""
    recipe = load_recipe(write_recipe(tmp_path, text))
    a = bd.generate_structures(recipe, seed=1)
    b = bd.generate_structures(load_recipe(write_recipe(tmp_path, text, "r2.toml")), seed=1)
    assert positions_of(a) == positions_of(b)
    assert len(a) == 4 + 3 + 2 + 2 + 2
    assert {x.info["config_type"] for x in a} == {"diamond_ev", "strained", "vacancy", "random",
                                                   "liquid"}
    c = bd.generate_structures(recipe, seed=2)
    assert positions_of(a) != positions_of(c)
    assert len({x.info["structure_id"] for x in a + c}) == 2 * len(a)


def test_editing_one_entry_leaves_the_others_alone(tmp_path):
    first = bd.generate_structures(load_recipe(write_recipe(tmp_path, SMALL)), seed=5)
    edited = SMALL.replace("count = 3", "count = 4")
    second = bd.generate_structures(load_recipe(write_recipe(tmp_path, edited)), seed=5)
    untouched = [x for x in positions_of(first) if x not in positions_of(second)]
    assert len(untouched) == 3  # only the strained entry changed


# --- labelling, dedup, split, summary -------------------------------------------------------


def test_build_labels_like_the_calculator(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, SMALL))
    result = bd.build_database(recipe)
    assert not result.stopped and not result.failures
    assert len(result.frames) == 11 + 1  # + the isolated Si atom
    e0_frame = result.frames[-1]
    assert e0_frame.info["config_type"] == "IsolatedAtom" and not e0_frame.pbc.any()
    assert result.e0 == {"Si": 0.0}
    for frame in result.frames[:-1]:
        ref = frame.copy()
        ref.calc = make_calculator("sw")
        assert frame.calc.results["energy"] == ref.get_potential_energy()
        np.testing.assert_array_equal(frame.calc.results["forces"], ref.get_forces())
        np.testing.assert_array_equal(frame.calc.results["stress"], ref.get_stress())
    assert result.summary.counts == {"diamond_ev": 4, "strained": 3, "vacancy": 2, "random": 2}
    assert result.summary.n_frames == 11
    text = "\n".join(result.summary.lines())
    assert "diamond_ev" in text and "E0: Si" in text


class FlakyCalculator:
    """Fails on every structure with fewer than 7 atoms (a failing DFT run)."""

    def __init__(self):
        self.inner = make_calculator("sw")

    def __call__(self):
        return self


def flaky_make_calc(spec):
    from mlptools.calculators import StillingerWeber

    class Flaky(StillingerWeber):
        def calculate(self, atoms=None, properties=None, system_changes=None):
            if len(atoms) < 7 and atoms.pbc.all():
                raise RuntimeError("SCF did not converge\nin 100 steps")
            super().calculate(atoms, properties, system_changes)

    return Flaky()


def test_failed_calculations_are_recorded_and_skipped(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, SMALL))
    ckpt = tmp_path / "ck.jsonl"
    result = bd.build_database(recipe, checkpoint=ckpt, make_calc=flaky_make_calc)
    failed_types = sorted(ct for _, ct, _ in result.failures)
    assert failed_types == ["diamond_ev"] * 4 + ["random"] * 2
    assert all(err == "RuntimeError: SCF did not converge in 100 steps"
               for _, _, err in result.failures)
    assert len(result.frames) == 3 + 2 + 1
    # failures are done too: a rerun labels nothing
    again = bd.build_database(recipe, checkpoint=ckpt, make_calc=flaky_make_calc)
    assert again.n_labelled_now == 0 and len(again.failures) == 6


def test_stop_and_resume(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, SMALL))
    ckpt = tmp_path / "ck.jsonl"
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 5

    first = bd.build_database(recipe, checkpoint=ckpt, stop_requested=stop)
    assert first.stopped and first.n_labelled_now == 5
    second = bd.build_database(recipe, checkpoint=ckpt)
    assert not second.stopped and second.n_labelled_now == 12 - 5
    ids = [r["id"] for r in map(json.loads, ckpt.read_text().splitlines())
           if r["type"] == "result"]
    assert len(ids) == len(set(ids)) == 12
    fresh = bd.build_database(recipe)
    assert positions_of(second.frames) == positions_of(fresh.frames)


def test_torn_checkpoint_line_is_ignored(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, SMALL))
    ckpt = tmp_path / "ck.jsonl"
    bd.build_database(recipe, checkpoint=ckpt)
    lines = ckpt.read_bytes().splitlines(keepends=True)
    ckpt.write_bytes(b"".join(lines[:-3]) + lines[-3][: len(lines[-3]) // 2])  # kill -9 mid-write
    result = bd.build_database(recipe, checkpoint=ckpt)
    assert result.n_labelled_now == 3 and len(result.frames) == 12
    assert all(line.startswith(b"{") for line in ckpt.read_bytes().splitlines())


def test_checkpoint_of_another_calculator_is_refused(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, SMALL))
    ckpt = tmp_path / "ck.jsonl"
    bd.build_database(recipe, checkpoint=ckpt)
    with pytest.raises(ParameterError, match="labelled with calculator 'sw', not 'lj'"):
        bd.build_database(recipe, checkpoint=ckpt, calc="lj")


def test_no_calculator_and_unknown_calculator(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, SMALL.replace('calc = "sw"', "")))
    with pytest.raises(ParameterError, match="no calculator: give --calc or \\[label\\] calc"):
        bd.build_database(recipe)
    with pytest.raises(ParameterError, match="unknown calculator 'vasp'"):
        bd.build_database(recipe, calc="vasp")


def test_no_seed(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, SMALL.replace("seed = 3", "")))
    with pytest.raises(ParameterError, match="no seed"):
        bd.build_database(recipe)


def test_deduplicate(rng):
    base = st.prototype("Si", "diamond", a=5.431, cubic=True)
    frames = [base.copy(), base.copy(), st.rattle(base, rng, sigma=1e-4),
              st.rattle(base, rng, sigma=0.05)]
    for k, f in enumerate(frames):
        f.info["structure_id"] = str(k)
    rotated = base.copy()
    rotated.rotate(30, "z", rotate_cell=True)
    rotated.info["structure_id"] = "rot"
    kept, dropped = bd.deduplicate(frames + [rotated], tolerance=1e-3)
    assert dropped == ["1", "2", "rot"]
    assert [f.info["structure_id"] for f in kept] == ["0", "3"]
    assert bd.deduplicate(frames, tolerance=0)[1] == []


def test_split_by_config_type(rng):
    frames = []
    for ct, n in (("a", 20), ("b", 10), ("IsolatedAtom", 1)):
        for k in range(n):
            atoms = bulk("Si")
            atoms.info.update(config_type=ct, k=k)
            frames.append(atoms)
    sets = bd.split_by_config_type(frames, {"test": 0.1, "valid": 0.2}, rng)
    count = {name: {ct: sum(f.info["config_type"] == ct for f in fs) for ct in "ab"}
             for name, fs in sets.items()}
    assert count == {"train": {"a": 14, "b": 7}, "test": {"a": 2, "b": 1},
                     "valid": {"a": 4, "b": 2}}
    assert sets["train"][-1].info["config_type"] == "IsolatedAtom"
    again = bd.split_by_config_type(frames, {"test": 0.1, "valid": 0.2},
                                    np.random.default_rng(20261124))
    assert [f.info["k"] for f in again["test"]] == [f.info["k"] for f in bd.split_by_config_type(
        frames, {"test": 0.1, "valid": 0.2}, np.random.default_rng(20261124))["test"]]
    with pytest.raises(ParameterError, match="add up to < 1"):
        bd.split_by_config_type(frames, {"test": 0.6, "valid": 0.5}, rng)


# --- import of existing labelled data ---------------------------------------------------------


def _labelled_file(path, n=3, scale=1.0, drop_forces=False):
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", 3.6 + 0.01 * k, cubic=True)
        atoms.calc = make_calculator("emt")
        e, f = atoms.get_potential_energy(), atoms.get_forces() + 0.1 * scale
        atoms.calc = SinglePointCalculator(atoms, energy=e, **({} if drop_forces else
                                                               {"forces": f * scale}))
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")


def test_import_existing_data(tmp_path):
    _labelled_file(tmp_path / "dft-1.xyz")
    _labelled_file(tmp_path / "dft-2.xyz", n=2)
    text = ('seed = 0\n[[structures]]\nkind = "import"\nconfig_type = "dft"\n'
            'files = ["dft-*.xyz"]\n')
    result = bd.build_database(load_recipe(write_recipe(tmp_path, text)))
    assert len(result.frames) == 5 and result.e0 == {}
    assert result.frames[3].info["source"] == "dft-2.xyz:0"
    np.testing.assert_allclose(result.frames[0].calc.results["forces"], 0.1)


@pytest.mark.parametrize("kw, message", [
    ({"drop_forces": True}, r"dft-1.xyz: frame 0: no forces"),
    ({"scale": 1e4}, r"dft-1.xyz: frame 0: a force of 1e\+07 eV/Å exceeds max_force .*units"),
])
def test_import_checks_labels_and_units(tmp_path, kw, message):
    _labelled_file(tmp_path / "dft-1.xyz", **kw)
    text = ('seed = 0\n[[structures]]\nkind = "import"\nconfig_type = "dft"\n'
            'files = "dft-1.xyz"\n')
    with pytest.raises(InputError, match=message):
        bd.build_database(load_recipe(write_recipe(tmp_path, text)))


def test_import_no_match(tmp_path):
    text = 'seed = 0\n[[structures]]\nkind = "import"\nconfig_type = "d"\nfiles = ["x*.xyz"]\n'
    with pytest.raises(InputError, match=r"structures\[0\] \(d\): x\*.xyz: no file matches"):
        bd.build_database(load_recipe(write_recipe(tmp_path, text)))


def test_base_from_file(tmp_path):
    import ase.io

    ase.io.write(tmp_path / "cell.cif", bulk("Si", "diamond", 5.431, cubic=True))
    text = ('seed = 0\n[label]\ncalc = "sw"\nisolated_atoms = false\n[[structures]]\n'
            'kind = "rattle"\nconfig_type = "user"\ncount = 2\n'
            'base = { file = "cell.cif", supercell = [1, 1, 2] }\n')
    result = bd.build_database(load_recipe(write_recipe(tmp_path, text)))
    assert [len(a) for a in result.frames] == [16, 16]


def test_parse_recipe_dict():
    recipe = parse_recipe({"seed": 1, "structures": [
        {"kind": "random", "config_type": "r", "symbols": "Si2"}]})
    assert recipe.source == "recipe" and recipe.entries[0].count == 1


def test_small_xtb_database(tmp_path):
    pytest.importorskip("tblite.ase", reason="tblite not installed (pip install tblite)")
    text = ('seed = 0\n[label]\ncalc = "xtb:gfn1 electronic_temperature=1000"\n'
            '[[structures]]\nkind = "strain"\nconfig_type = "diamond"\ncount = 2\n'
            'base = { prototype = "diamond", symbol = "Si", a = 5.431, cubic = true }\n')
    result = bd.build_database(load_recipe(write_recipe(tmp_path, text)))
    assert not result.failures and len(result.frames) == 3
    assert result.e0["Si"] < -40  # a real tight-binding atom energy, eV
    for frame in result.frames[:2]:
        assert frame.calc.results["energy"] / len(frame) < result.e0["Si"]  # bound solid
        assert frame.calc.results["stress"].shape == (6,)


def test_edited_recipe_reuses_the_labels_of_unchanged_entries(tmp_path):
    ckpt = tmp_path / "ck.jsonl"
    bd.build_database(load_recipe(write_recipe(tmp_path, SMALL)), checkpoint=ckpt)
    edited = load_recipe(write_recipe(tmp_path, SMALL.replace("count = 3", "count = 4")))
    result = bd.build_database(edited, checkpoint=ckpt)
    assert result.n_labelled_now == 4  # only the edited (strained) entry
    assert len(result.frames) == 13


def test_identical_tables_get_their_own_structures(tmp_path):
    table = ('[[structures]]\nkind = "rattle"\nconfig_type = "r"\ncount = 2\n'
             'base = { prototype = "diamond", symbol = "Si", a = 5.431 }\n')
    recipe = load_recipe(write_recipe(tmp_path, "seed = 1\n" + table + table))
    frames = bd.generate_structures(recipe, seed=1)
    assert len({f.info["structure_id"] for f in frames}) == 4
    assert not np.allclose(frames[0].positions, frames[2].positions)


def test_build_drops_duplicates_by_default(tmp_path):
    text = ('seed = 1\n[label]\ncalc = "sw"\nisolated_atoms = false\n[[structures]]\n'
            'kind = "vacancy"\nconfig_type = "v"\ncount = 5\n'
            'base = { prototype = "diamond", symbol = "Si", a = 5.431, cubic = true }\n')
    result = bd.build_database(load_recipe(write_recipe(tmp_path, text)))
    # every vacancy of a perfect cell is the same structure
    assert len(result.frames) == 1 and len(result.duplicates) == 4
    assert result.summary.n_duplicates == 4
    off = load_recipe(write_recipe(tmp_path, text + "[dedup]\ntolerance = 0\n", "off.toml"))
    assert len(bd.build_database(off).frames) == 5
