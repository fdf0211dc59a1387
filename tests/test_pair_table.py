"""The pair-table baseline (``--baseline "table FILE"``): LAMMPS table files, the spline against
the function it tabulates, exact forces and stress, the model file keeps the table."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from gradcheck import check_pair_baseline_derivatives
from test_fit_models import sw_frames

from mlptools.errors import InputError, ParameterError
from mlptools.models import baselines
from mlptools.models.base import load_model, save_model
from mlptools.workflows.fit import fit_model

A, RHO, R_LO, R_HI = 800.0, 0.25, 0.6, 2.2       # Born–Mayer repulsion A exp(−r/ρ), eV and Å


def born_mayer(r):
    v = A * np.exp(-r / RHO)
    return v, -v / RHO


def write_table(path, keyword="Si-Si", n=300, grid="R", extra=""):
    r = np.linspace(R_LO, R_HI, n) if grid != "RSQ" else np.sqrt(
        np.linspace(R_LO ** 2, R_HI ** 2, n))
    v, dv = born_mayer(r)
    head = {"R": f"N {n} R {R_LO} {R_HI}", "RSQ": f"N {n} RSQ {R_LO} {R_HI}", "": f"N {n}"}
    rows = "\n".join(f"{k + 1} {r[k]:.12f} {v[k]:.12e} {-dv[k]:.12e}" for k in range(n))
    path.write_text(f"# Born-Mayer test table\n{extra}\n{keyword}\n{head[grid]}\n\n{rows}\n")
    return path


@pytest.mark.parametrize("grid", ["R", "RSQ", ""])
def test_spline_reproduces_the_tabulated_function(tmp_path, grid):
    table = baselines.from_string(f"table {write_table(tmp_path / 't.table', grid=grid)}")
    r = np.random.default_rng(0).uniform(R_LO, R_HI, 200)
    v, dv = table.pair_energy(r, 14, 14)
    v_ref, dv_ref = born_mayer(r)
    shift = born_mayer(np.array([R_HI]))[0][0]
    np.testing.assert_allclose(v, v_ref - shift, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dv, dv_ref, rtol=1e-3, atol=1e-5)
    # zero beyond the table, continued linearly below it
    v, dv = table.pair_energy(np.array([R_HI + 0.1, R_LO - 0.1]), 14, 14)
    v0, d0 = born_mayer(np.array([R_LO]))
    assert v[0] == dv[0] == 0.0
    assert v[1] == pytest.approx(v0[0] - shift - 0.1 * d0[0], rel=1e-4)
    assert dv[1] == pytest.approx(d0[0], rel=1e-3)
    assert table.max_cutoff([14]) == pytest.approx(R_HI)
    assert table.max_cutoff([8]) == 0.0               # pairs the file does not name: nothing


def test_forces_and_stress_are_exact_derivatives(tmp_path, rng):
    table = baselines.from_string(f"table {write_table(tmp_path / 't.table')}")
    atoms = bulk("Si", "diamond", a=5.431, cubic=True)
    atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
    atoms.positions[1] = atoms.positions[0] + [1.1, 0.4, 0.3]       # contacts inside the table
    atoms.positions[2] = atoms.positions[0] + [-0.5, 1.2, 0.2]
    res = check_pair_baseline_derivatives(table, atoms, rng, atol=1e-6)
    assert res["energies"].sum() > 1.0
    # a dimer is the pair energy itself
    dimer = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 1.3]])
    v, _ = table.pair_energy(np.array([1.3]), 14, 14)
    assert table.compute(dimer)["energies"].sum() == pytest.approx(v[0], rel=1e-12)


def test_one_section_for_every_pair_with_keyword(tmp_path):
    path = write_table(tmp_path / "t.table", keyword="REPULSION")
    with pytest.raises(ParameterError, match="section 'REPULSION' does not name two elements"):
        baselines.from_string(f"table {path}")
    table = baselines.from_string(f"table {path} keyword=REPULSION")
    v_si, _ = table.pair_energy(np.array([1.0]), 14, 14)
    v_cx, _ = table.pair_energy(np.array([1.0]), 6, 8)
    assert v_si[0] == v_cx[0] > 0
    with pytest.raises(ParameterError, match="no section 'NOPE'"):
        baselines.from_string(f"table {path} keyword=NOPE")


def test_model_file_keeps_the_table(tmp_path, rng):
    path = write_table(tmp_path / "t.table", keyword="SI_SI")
    train = sw_frames(np.random.default_rng(2), 6, repeat=(2, 1, 1))
    hypers = {"soap": {"cutoff": 4.5, "n_max": 4, "l_max": 3, "normalize": False},
              "baseline": f"table {path}"}
    model = fit_model("linear", train, hypers, rng=np.random.default_rng(0)).model
    save_model(tmp_path / "m.h5", model)
    path.unlink()                                  # the model file must not need the table
    again = load_model(tmp_path / "m.h5")
    assert again.baseline.kind == "table"
    probe = bulk("Si", "diamond", a=5.431, cubic=True)
    probe.positions[1] = probe.positions[0] + [1.0, 0.5, 0.3]
    want, got = model.predict(probe), again.predict(probe)
    assert got["energy"] == pytest.approx(want["energy"], rel=1e-12)
    np.testing.assert_allclose(got["forces"], want["forces"], rtol=1e-10, atol=1e-10)
    # the close contact is dominated by the table's repulsion
    assert again.baseline.compute(probe)["energies"].sum() > 5.0


@pytest.mark.parametrize("body, message", [
    ("Si-Si\n1 1.0 2.0 3.0\n", ":1: expected a section keyword followed by an 'N n ...' line"),
    ("Si-Si\nN 5 R 1 2\n\n1 1 1 1\n2 2 2 2\n", "section 'Si-Si' needs N >= 4 rows, has 2 of 5"),
    ("Si-Si\nN x\n", ":2: cannot read 'N x'"),
    ("Si-Si\nN 4\n\n1 1.0 1 1\n2 0.9 1 1\n3 1.2 1 1\n4 1.3 1 1\n", "positive and increasing"),
    ("Si-Si\nN 4\n\n1 1.0 1 1\n2 1.1 nan 1\n3 1.2 1 1\n4 1.3 1 1\n", "finite numbers"),
])
def test_malformed_tables_name_file_and_problem(tmp_path, body, message):
    path = tmp_path / "bad.table"
    path.write_text(body)
    with pytest.raises(InputError, match="bad.table") as err:
        baselines.from_string(f"table {path}")
    assert message in str(err.value)
    with pytest.raises(InputError, match="cannot read pair table"):
        baselines.from_string(f"table {tmp_path / 'missing.table'}")
    with pytest.raises(ParameterError, match="name the table file"):
        baselines.from_string("table")
