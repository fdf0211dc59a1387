"""Physical properties of a crystal for one calculator, and their comparison with a reference.

The engineering properties a potential is judged on (the table of Bartók et al., *Phys. Rev. X* 8,
041048 (2018), "GAP-18" for silicon): equilibrium lattice constant and energy, the E–V curve and
bulk modulus (Birch–Murnaghan), elastic constants by finite strains with relaxed internal
coordinates, the relaxed vacancy formation energy, relaxed low-index surface energies and phonon
frequencies at Γ and the zone boundary by finite displacements.

Every function takes an ``ase.Atoms`` and an ASE calculator and returns plain numbers. Units:
energies eV (per atom where named so), lengths Å, volumes Å³/atom, moduli and elastic constants
GPa, surface energies J/m², frequencies THz. Array suffixes: ``n`` atoms, ``c`` Cartesian, ``v``
Voigt, ``q`` wave vectors, ``b`` bands, ``s`` structures.

:func:`compute_properties` runs the requested set; :func:`compare_properties` puts a model and a
reference side by side with the signed and relative error.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import re

import numpy as np
from ase import units as _ase_units

from mlptools.errors import ComputationError, InputError, ParameterError, Terminated
from mlptools.units import EV_PER_A2_TO_J_PER_M2, EV_PER_A3_TO_GPA

__all__ = [
    "PROPERTIES",
    "CrystalProperties",
    "PropertyComparison",
    "PropertyRow",
    "PropertySettings",
    "birch_murnaghan",
    "compare_properties",
    "compute_properties",
    "elastic_constants",
    "equation_of_state",
    "equilibrium",
    "force_constants",
    "fit_birch_murnaghan",
    "phonon_frequencies",
    "properties_table",
    "parse_properties",
    "property_info",
    "reference_from_dict",
    "relax_structure",
    "slab_terminations",
    "starting_structure",
    "surface_energy",
    "vacancy_formation_energy",
    "validate_properties",
]

log = logging.getLogger(__name__)

#: property groups understood by :func:`compute_properties`, in the order they are computed
PROPERTIES = ("eos", "elastic", "vacancy", "surface", "phonon")

#: low-index facets of :func:`surface_energy` when none are given
DEFAULT_FACETS = ((1, 0, 0), (1, 1, 0), (1, 1, 1))

#: ν in THz of ω = 1 sqrt(eV / (Å² amu)) (ν = ω / 2π)
THZ_PER_SQRT_EV_A2_AMU = math.sqrt(_ase_units._e / (1e-20 * _ase_units._amu)) / (2 * math.pi) / 1e12


# ---------------------------------------------------------------------------------------------
# quantity names and units
# ---------------------------------------------------------------------------------------------

_FIXED = {
    "a": ("lattice constant a", "Å"),
    "b": ("lattice constant b", "Å"),
    "c": ("lattice constant c", "Å"),
    "E0": ("energy per atom", "eV/atom"),
    "V0": ("volume per atom", "Å³/atom"),
    "B": ("bulk modulus (Birch–Murnaghan)", "GPa"),
    "B'": ("dB/dP (Birch–Murnaghan)", ""),
    "E_vac": ("vacancy formation energy (relaxed)", "eV"),
}
_PATTERNS = (
    (re.compile(r"^C([1-6])([1-6])$"), lambda m: (f"elastic constant C{m[1]}{m[2]}", "GPa")),
    (re.compile(r"^C([1-6])([1-6])_0$"),
     lambda m: (f"elastic constant C{m[1]}{m[2]}, clamped ions", "GPa")),
    (re.compile(r"^gamma_(-?\d)(-?\d)(-?\d)$"),
     lambda m: (f"surface energy ({m[1]}{m[2]}{m[3]}) (relaxed)", "J/m²")),
    (re.compile(r"^nu_([A-Z][a-z0-9]*)_(\d+)$"),
     lambda m: (f"phonon ν({'Γ' if m[1] == 'G' else m[1]}) band {m[2]}", "THz")),
)


def property_info(key):
    """``(label, unit)`` of a property key, e.g. ``"C44"`` → ("elastic constant C44", "GPa").

    Raises
    ------
    ParameterError
        Unknown key (with the closest known one).
    """
    if key in _FIXED:
        return _FIXED[key]
    for pattern, info in _PATTERNS:
        m = pattern.match(key)
        if m:
            return info(m)
    examples = [*_FIXED, "C11", "C12", "C44", "C44_0", "gamma_111", "nu_X_1"]
    close = difflib.get_close_matches(key, examples, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ParameterError(f"unknown property {key!r}{hint} (known: {', '.join(examples)}, ...)")


# ---------------------------------------------------------------------------------------------
# relaxation helpers
# ---------------------------------------------------------------------------------------------


def _with_calc(atoms, calc):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms


def _relax_positions(atoms, fmax, steps=1000, rattle=0.0, seed=0, indices=None):
    """LBFGS on the positions at fixed cell (in place); returns whether it converged.

    ``rattle`` (Å) first displaces every atom by a Gaussian of that width from a generator
    seeded with ``seed`` (only the atoms ``indices`` when given): a vacancy or a bare surface of
    a perfect crystal is a stationary point by symmetry (zero forces), which the relaxation could
    not otherwise leave.
    """
    from ase.optimize import LBFGS

    if rattle > 0:
        rng = np.random.default_rng(seed)
        chosen = np.arange(len(atoms)) if indices is None else np.asarray(indices)
        positions = atoms.positions.copy()
        positions[chosen] += rng.normal(0.0, rattle, (len(chosen), 3))
        atoms.positions = positions
    forces = atoms.get_forces()
    if len(atoms) == 0 or np.max(np.linalg.norm(forces, axis=1)) < fmax:
        return True
    opt = LBFGS(atoms, logfile=None)
    return bool(opt.run(fmax=fmax, steps=steps))


def _relax_lowest(atoms, fmax, rattle, seed, indices=None):
    """Relax from ``atoms`` as is and after a seeded rattle; keep the lower-energy result.

    Returns ``(atoms, converged)``; ``atoms`` (with its calculator) is not modified.
    """
    best = None
    for amplitude in (0.0, rattle) if rattle > 0 else (0.0,):
        trial = atoms.copy()
        trial.calc = atoms.calc
        converged = _relax_positions(trial, fmax, rattle=amplitude, seed=seed, indices=indices)
        energy = trial.get_potential_energy()
        if best is None or energy < best[0]:
            best = (energy, trial, converged)
    return best[1], best[2]


def _relax_shape(atoms, fmax, steps=1000):
    """Relax positions and cell shape at constant volume (in place); returns convergence."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import LBFGS

    opt = LBFGS(FrechetCellFilter(atoms, constant_volume=True), logfile=None)
    return bool(opt.run(fmax=fmax, steps=steps))


def relax_structure(atoms, calc, *, fmax=1e-4, steps=1000):
    """Relax positions and cell to zero stress (ASE's FrechetCellFilter + BFGS).

    Parameters
    ----------
    atoms : ase.Atoms, periodic in 3-D
    calc : ASE calculator
    fmax : float, eV/Å; stress is converged to fmax/volume-scaled by the filter

    Returns
    -------
    ase.Atoms
        A relaxed copy, with ``calc`` attached.

    Raises
    ------
    ComputationError
        The relaxation did not converge in ``steps`` steps.
    """
    from ase.filters import FrechetCellFilter
    from ase.optimize import LBFGS

    atoms = _with_calc(atoms, calc)
    _check_periodic(atoms)
    opt = LBFGS(FrechetCellFilter(atoms), logfile=None)
    if not opt.run(fmax=fmax, steps=steps):
        stress = np.abs(atoms.get_stress()).max() * EV_PER_A3_TO_GPA
        raise ComputationError(f"cell relaxation did not converge in {steps} steps "
                               f"(|stress| = {stress:.3g} GPa)")
    return atoms


def _check_periodic(atoms):
    if not np.all(atoms.pbc) or atoms.cell.rank != 3:
        raise InputError("the crystal must be periodic in 3-D (pbc = T T T and a full cell)")


def starting_structure(element=None, lattice=None, *, a=None, structure=None):
    """The conventional cell a property calculation starts from, and its primitive cell.

    Parameters
    ----------
    element, lattice : str
        e.g. ``"Si", "diamond"`` or ``"Cu", "fcc"`` (lattices of ``ase.build.bulk``; the cubic
        conventional cell where one exists).
    a : float, Å, optional
        Starting lattice constant (ASE's reference value when omitted).
    structure : ase.Atoms, optional
        Instead of element/lattice: a periodic cell used as is (also as the phonon cell).

    Returns
    -------
    (ase.Atoms, ase.Atoms)
        ``(conventional, primitive)``; the primitive cell is expressed so that it can be rescaled
        with the conventional one (same lattice constant).
    """
    from mlptools.workflows.structures import prototype

    if structure is not None:
        structure = structure.copy()
        structure.calc = None
        _check_periodic(structure)
        return structure, structure.copy()
    if element is None or lattice is None:
        raise ParameterError("give an element and a lattice (e.g. Si diamond), or a structure")
    cubic = lattice in ("sc", "fcc", "bcc", "diamond", "zincblende", "rocksalt",
                        "cesiumchloride", "fluorite")
    conventional = prototype(element, lattice, a=a, cubic=cubic)
    primitive = prototype(element, lattice, a=a)
    return conventional, primitive


def _is_cubic(atoms, tol=1e-6):
    cell = atoms.cell.array
    lengths = np.linalg.norm(cell, axis=1)
    return bool(np.allclose(cell, np.diag(np.diag(cell)), atol=tol * lengths.max())
                and np.ptp(lengths) < tol * lengths.max())


# ---------------------------------------------------------------------------------------------
# equation of state
# ---------------------------------------------------------------------------------------------


def birch_murnaghan(volume, e0, v0, b0, bp):
    """Third-order Birch–Murnaghan energy E(V).

    E(V) = E0 + 9 V0 B0 / 16 · {[η − 1]³ B0' + [η − 1]² (6 − 4 η)},  η = (V0/V)^(2/3)

    Units follow the arguments (eV, Å³ and eV/Å³ for B0).
    """
    eta = (v0 / np.asarray(volume, dtype=np.float64)) ** (2.0 / 3.0)
    return e0 + 9.0 * v0 * b0 / 16.0 * ((eta - 1) ** 3 * bp + (eta - 1) ** 2 * (6 - 4 * eta))


def fit_birch_murnaghan(volumes, energies):
    """Least-squares Birch–Murnaghan fit.

    Parameters
    ----------
    volumes, energies : (n,) float, Å³ and eV (any consistent per-atom or per-cell basis), n ≥ 5

    Returns
    -------
    dict
        ``E0`` (eV), ``V0`` (Å³), ``B`` (GPa), ``B'``, ``rms`` (eV) of the residual.

    Raises
    ------
    ComputationError
        Too few points, or no minimum inside the scanned range.
    """
    from scipy.optimize import least_squares

    v = np.asarray(volumes, dtype=np.float64)
    e = np.asarray(energies, dtype=np.float64)
    if v.size < 5:
        raise ComputationError(f"Birch–Murnaghan fit needs at least 5 volumes, got {v.size}")
    c2, c1, c0 = np.polyfit(v, e, 2)
    if c2 <= 0:
        raise ComputationError("E(V) is not convex over the scanned volumes: no minimum to fit")
    v0 = -c1 / (2 * c2)
    if not v.min() <= v0 <= v.max():
        raise ComputationError(f"E(V) minimum near V = {v0:.3f} Å³ lies outside the scan "
                               f"[{v.min():.3f}, {v.max():.3f}] Å³")
    start = np.array([c0 + c1 * v0 + c2 * v0**2, v0, 2 * c2 * v0, 4.0])
    scale = np.abs(start) + 1e-3
    fit = least_squares(lambda x: birch_murnaghan(v, *(x * scale)) - e, start / scale,
                        xtol=1e-14, ftol=1e-14, gtol=1e-14)
    e0, v0, b0, bp = fit.x * scale
    residual = birch_murnaghan(v, e0, v0, b0, bp) - e
    return {"E0": float(e0), "V0": float(v0), "B": float(b0 * EV_PER_A3_TO_GPA),
            "B'": float(bp), "rms": float(np.sqrt(np.mean(residual**2)))}


def equation_of_state(atoms, calc, *, strain=0.05, points=11, fmax=1e-4):
    """E–V curve by isotropic scaling of a relaxed cell and its Birch–Murnaghan fit.

    The positions are relaxed at each volume when the scaled structure has forces (not needed
    for diamond or fcc, where symmetry fixes them). A cubic cell keeps its shape; any other cell
    also relaxes its shape at constant volume (c/a of hcp), so that B is the relaxed modulus.

    Parameters
    ----------
    atoms : ase.Atoms, relaxed (zero stress)
    calc : ASE calculator
    strain : float
        Volumes span V0 (1 ± strain).
    points : int

    Returns
    -------
    dict
        ``volumes`` and ``energies`` per atom (Å³, eV), and the fit (:func:`fit_birch_murnaghan`,
        per atom).
    """
    n = len(atoms)
    base = atoms.cell.array.copy()
    volumes, energies = [], []
    cubic = _is_cubic(atoms, tol=1e-4)
    for f in np.linspace(1 - strain, 1 + strain, int(points)):
        scaled = _with_calc(atoms, calc)
        scaled.set_cell(base * f ** (1 / 3), scale_atoms=True)
        if cubic:
            _relax_positions(scaled, fmax)
        else:
            _relax_shape(scaled, fmax)
        volumes.append(scaled.get_volume() / n)
        energies.append(scaled.get_potential_energy() / n)
    fit = fit_birch_murnaghan(volumes, energies)
    return {"volumes": volumes, "energies": energies, **fit}


# ---------------------------------------------------------------------------------------------
# elastic constants
# ---------------------------------------------------------------------------------------------

_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def _voigt_strain(j, delta):
    """Symmetric strain tensor for Voigt component j (engineering shear strain for j ≥ 3)."""
    eps = np.zeros((3, 3))
    a, b = _VOIGT[j]
    if a == b:
        eps[a, a] = delta
    else:
        eps[a, b] = eps[b, a] = delta / 2
    return eps


def elastic_constants(atoms, calc, *, delta=2e-3, fmax=1e-5):
    """Full 6×6 elastic stiffness by central finite strains, relaxed and clamped ions.

    Each of the six Voigt strains ±δ is applied to the relaxed cell (positions strained
    affinely); the stress is taken before (clamped-ion C⁰) and after relaxing the positions
    (relaxed C). C_ij = ∂σ_i/∂e_j with ASE's stress sign (positive = tensile), e_j with
    engineering shear strains. Internal relaxation matters for diamond: C44 of Si drops to about
    half of C44⁰.

    Parameters
    ----------
    atoms : ase.Atoms, relaxed to zero stress (the conventional cell for cubic crystals)
    calc : ASE calculator with stress
    delta : float
        Strain magnitude.
    fmax : float, eV/Å
        Force convergence of the internal relaxation.

    Returns
    -------
    dict
        ``C`` and ``C_0``: (6, 6) lists in GPa; ``converged`` (bool).
    """
    base = atoms.cell.array.copy()
    relaxed = np.zeros((6, 6))
    clamped = np.zeros((6, 6))
    converged = True
    for j in range(6):
        stress_relaxed, stress_clamped = [], []
        for sign in (+1, -1):
            strained = _with_calc(atoms, calc)
            strained.set_cell(base @ (np.eye(3) + _voigt_strain(j, sign * delta)),
                              scale_atoms=True)
            stress_clamped.append(strained.get_stress(voigt=True))
            converged &= _relax_positions(strained, fmax)
            stress_relaxed.append(strained.get_stress(voigt=True))
        relaxed[:, j] = (stress_relaxed[0] - stress_relaxed[1]) / (2 * delta)
        clamped[:, j] = (stress_clamped[0] - stress_clamped[1]) / (2 * delta)
    # C is symmetric in exact arithmetic; average away the finite-difference asymmetry
    relaxed = 0.5 * (relaxed + relaxed.T) * EV_PER_A3_TO_GPA
    clamped = 0.5 * (clamped + clamped.T) * EV_PER_A3_TO_GPA
    return {"C": relaxed.tolist(), "C_0": clamped.tolist(), "converged": bool(converged)}


def _elastic_values(result, cubic):
    c = np.asarray(result["C"])
    c0 = np.asarray(result["C_0"])
    if cubic:
        return {"C11": float(np.mean(np.diag(c)[:3])),
                "C12": float(np.mean([c[0, 1], c[0, 2], c[1, 2]])),
                "C44": float(np.mean(np.diag(c)[3:])),
                "C44_0": float(np.mean(np.diag(c0)[3:]))}
    return {f"C{i + 1}{j + 1}": float(c[i, j]) for i in range(6) for j in range(i, 6)
            if abs(c[i, j]) > 0.05}


# ---------------------------------------------------------------------------------------------
# point defects and surfaces
# ---------------------------------------------------------------------------------------------


def _repeats(atoms, min_length):
    """Repetitions so that every perpendicular width of the supercell is ≥ min_length Å."""
    cell = atoms.cell.array
    volume = abs(np.linalg.det(cell))
    widths = [volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3]))
              for i in range(3)]
    return tuple(max(1, math.ceil(min_length / w - 1e-9)) for w in widths)


def vacancy_formation_energy(atoms, calc, *, min_length=10.0, fmax=1e-3, rattle=0.05, seed=0):
    """Relaxed vacancy formation energy at constant volume.

    E_f = E(N−1, relaxed) − (N−1)/N · E(N), in a supercell of the relaxed cell whose widths are
    at least ``min_length`` Å (64 atoms for Si, 108 for Cu with the default); atom 0 is removed.
    The relaxation is run twice, from the symmetric geometry and with the neighbours of the
    vacancy (within 1.2 nearest-neighbour distances of the site) rattled by ``rattle`` Å
    (seeded), and the lower energy is kept: the symmetric geometry has zero forces by symmetry
    and may be a saddle point.

    Returns
    -------
    dict
        ``E_vac`` (eV), ``E_vac_unrelaxed`` (eV), ``atoms`` (N of the perfect supercell),
        ``repeat``, ``converged``.
    """
    repeat = _repeats(atoms, min_length)
    bulk = _with_calc(atoms.repeat(repeat), calc)
    n = len(bulk)
    e_bulk = bulk.get_potential_energy()
    distances = bulk.get_distances(0, range(1, n), mic=True)
    shell = np.flatnonzero(distances < 1.2 * distances.min())  # indices after deleting atom 0
    defect = bulk.copy()
    del defect[0]
    defect.calc = calc
    e_unrelaxed = defect.get_potential_energy()
    defect, converged = _relax_lowest(defect, fmax, rattle, seed, indices=shell)
    e_relaxed = defect.get_potential_energy()
    ref = (n - 1) / n * e_bulk
    return {"E_vac": float(e_relaxed - ref), "E_vac_unrelaxed": float(e_unrelaxed - ref),
            "atoms": n, "repeat": list(repeat), "converged": bool(converged)}


def _oriented_cell(atoms, miller, min_thickness):
    """A periodic cell with a1, a2 in the (hkl) plane and enough layers for min_thickness Å.

    ``ase.build.surface`` replaces the out-of-plane lattice vector by its projection on the
    normal, which is not a lattice vector for e.g. diamond (111) (atoms then overlap across the
    periodic boundary); the true vector is recovered from a two-layer build instead.
    """
    from ase import Atoms
    from ase.build import surface

    one = surface(atoms, miller, 1)
    two = surface(atoms, miller, 2)
    a1, a2 = one.cell.array[:2]
    a3 = two.positions[len(one)] - two.positions[0]
    normal = np.cross(a1, a2)
    normal /= np.linalg.norm(normal)
    if a3 @ normal < 0:
        a3 = -a3
    unit = Atoms(one.numbers, positions=one.positions, cell=[a1, a2, a3], pbc=True)
    period = abs(float(a3 @ normal))
    layers = max(1, math.ceil(min_thickness / period - 1e-9))
    return unit.repeat((1, 1, layers)), normal


def _slab(oriented, normal, cut, vacuum):
    """Cut the periodic oriented cell at fractional height ``cut`` along a3 and open a gap."""
    from ase import Atoms

    frac = oriented.get_scaled_positions(wrap=True)
    frac[:, 2] = (frac[:, 2] - cut) % 1.0
    cell = oriented.cell.array
    positions = frac @ cell
    thickness = abs(float(cell[2] @ normal))
    new_cell = np.array([cell[0], cell[1], normal * (thickness + vacuum)])
    return Atoms(oriented.numbers, positions=positions, cell=new_cell, pbc=True)


def slab_terminations(atoms, miller, *, min_thickness=10.0, vacuum=12.0, bond_factor=1.2):
    """Every distinct slab of a facet, one per plane at which the (hkl) stacking can be cut.

    Calculator-free, so structure generators can use it too: each candidate carries the number
    of bonds (pairs closer than ``bond_factor`` × the nearest-neighbour distance) the cut
    breaks, which is the number of dangling bonds on each of the two faces; the fewest is the
    usual low-energy termination (diamond (111): 1 bond per surface atom between the widely
    spaced planes, not 3 between the close ones, which is what ``ase.build.surface`` gives).

    Parameters
    ----------
    atoms : ase.Atoms, bulk (conventional cell for the usual Miller indices)
    miller : (3,) int
    min_thickness, vacuum : float, Å

    Returns
    -------
    list of dict
        ``slab`` (Atoms, periodic with ``vacuum`` Å of gap), ``cut`` (fractional height),
        ``broken_bonds`` (dangling bonds per face), ``thickness`` (Å), ``area`` (Å², of one
        face); sorted by ``broken_bonds``.
    """
    from mlptools.neighbors import neighbor_list

    oriented, normal = _oriented_cell(atoms, tuple(int(i) for i in miller), min_thickness)
    heights = np.sort(oriented.get_scaled_positions(wrap=True)[:, 2])
    gaps = np.diff(np.concatenate([heights, [heights[0] + 1.0]]))
    # a cut midway in every gap between distinct planes (planes closer than 0.01 Å are one)
    spacing = abs(float(oriented.cell[2] @ normal))
    cuts = [(heights[i] + gaps[i] / 2) % 1.0 for i in range(len(heights))
            if gaps[i] * spacing > 0.01]
    area = float(np.linalg.norm(np.cross(oriented.cell[0], oriented.cell[1])))

    def bonds(a, cutoff):
        i, _ = neighbor_list("ij", a.positions, a.cell.array, a.pbc, cutoff)
        return len(i) // 2

    (d_p,) = neighbor_list("d", oriented.positions, oriented.cell.array, oriented.pbc, 4.0)
    if not len(d_p):
        raise ParameterError("no neighbours within 4 Å: cannot tell bonds from the structure")
    cutoff = bond_factor * float(d_p.min())
    n_bulk = bonds(oriented, cutoff)
    out = []
    for cut in cuts:
        slab = _slab(oriented, normal, cut, vacuum)
        out.append({"slab": slab, "cut": float(cut),
                    "broken_bonds": n_bulk - bonds(slab, cutoff),
                    "thickness": spacing, "area": area})
    return sorted(out, key=lambda c: c["broken_bonds"])


def surface_energy(atoms, calc, miller, *, min_thickness=10.0, vacuum=12.0, fmax=1e-3,
                   rattle=0.02, seed=0):
    """Relaxed surface energy of one facet, γ = (E_slab − N ε_bulk) / 2A.

    The slab is cut from the relaxed crystal; of the distinct planes at which the (hkl) stacking
    can be cut, the one with the lowest unrelaxed energy is taken (for diamond (111): between the
    widely spaced planes, one bond broken per surface atom). The in-plane cell is the one
    ``ase.build.surface`` gives for the conventional cell (2 atoms per layer for diamond (100),
    4 for (111)); no reconstruction is searched for beyond what a local relaxation in that cell
    finds (Si(100) 2×1 dimers need an activated path). Positions are relaxed at fixed cell,
    from the cut and after a seeded rattle of ``rattle`` Å, keeping the lower energy.

    Parameters
    ----------
    atoms : ase.Atoms, relaxed bulk (conventional cell, so Miller indices are the usual ones)
    miller : (3,) int
    min_thickness, vacuum : float, Å

    Returns
    -------
    dict
        ``gamma`` and ``gamma_unrelaxed`` (J/m²), ``atoms``, ``thickness`` (Å), ``area`` (Å², of
        one face), ``converged``.
    """
    e_bulk = _with_calc(atoms, calc).get_potential_energy() / len(atoms)
    candidates = slab_terminations(atoms, miller, min_thickness=min_thickness, vacuum=vacuum)
    spacing = candidates[0]["thickness"]
    area = candidates[0]["area"]
    best = None
    failures = []
    for candidate in candidates:
        slab = candidate["slab"]
        slab.calc = calc
        try:
            energy = slab.get_potential_energy()
        except Terminated:
            raise
        except Exception as exc:  # e.g. ASE's Tersoff on an atom left with one neighbour
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        if best is None or energy < best[0] - 1e-9:
            best = (energy, slab)
    if best is None:
        raise ComputationError(f"({''.join(map(str, miller))}) slab: the calculator failed on "
                               f"every termination ({failures[0]})")
    e_unrelaxed, slab = best
    slab, converged = _relax_lowest(slab, fmax, rattle, seed)
    n = len(slab)

    def gamma(e):
        return float((e - n * e_bulk) / (2 * area) * EV_PER_A2_TO_J_PER_M2)

    return {"gamma": gamma(slab.get_potential_energy()), "gamma_unrelaxed": gamma(e_unrelaxed),
            "atoms": n, "thickness": spacing, "area": float(area), "converged": bool(converged)}


# ---------------------------------------------------------------------------------------------
# phonons
# ---------------------------------------------------------------------------------------------


def force_constants(primitive, calc, *, supercell=4, delta=0.01):
    """Real-space force constants of ``primitive`` by central finite displacements.

    Each atom of the primitive cell (at the origin cell of an n×n×n supercell) is displaced by
    ±δ along x, y, z: Φ(0a,c; j,d) = −[F_jd(+δ) − F_jd(−δ)] / 2δ, in eV/Å². The acoustic sum rule
    Σ_j Φ(0a,c; j,d) = 0 is imposed on the self term.

    Returns
    -------
    dict
        ``phi`` (n_a, 3, N, 3), the ``supercell`` Atoms (``repeat`` ordering of ASE) and ``n``.
    """
    n_a = len(primitive)
    sc = _with_calc(primitive.repeat((supercell,) * 3), calc)
    base = sc.positions.copy()
    phi = np.zeros((n_a, 3, len(sc), 3))
    for a in range(n_a):
        for c in range(3):
            forces = []
            for sign in (+1, -1):
                positions = base.copy()
                positions[a, c] += sign * delta
                sc.positions = positions
                forces.append(sc.get_forces().copy())
            phi[a, c] = -(forces[0] - forces[1]) / (2 * delta)
    sc.positions = base
    for a in range(n_a):
        phi[a, :, a, :] -= phi[a].sum(axis=1)
    return {"phi": phi, "supercell": sc, "n": supercell}


def _image_translations(primitive, fc):
    """Lattice translations of the shortest periodic images of every pair (a, j).

    Returns ``T`` (n_a, N, 27, 3) in primitive lattice units, weights ``w`` (n_a, N, 27), 1/k for
    the k images tied at the shortest distance (0 for the others), and ``b_j`` (N,) the
    primitive atom each supercell atom is a copy of.
    """
    n = fc["n"]
    n_a = len(primitive)
    cell = primitive.cell.array
    shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    # supercell atom j = (m, b): ASE's repeat loops m0, m1, m2 outermost-first
    m = np.array([(i, j, k) for i in range(n) for j in range(n) for k in range(n)])
    m_j = np.repeat(m, n_a, axis=0)
    b_j = np.tile(np.arange(n_a), n**3)
    t_jsc = m_j[:, None, :] + n * shifts[None, :, :]
    vec_ajsc = (t_jsc @ cell)[None] + (primitive.positions[b_j][None, :, None, :]
                                       - primitive.positions[:, None, None, :])
    d_ajs = np.linalg.norm(vec_ajsc, axis=-1)
    tied = d_ajs < d_ajs.min(axis=2, keepdims=True) + 1e-6
    w_ajs = tied / tied.sum(axis=2, keepdims=True)
    return np.broadcast_to(t_jsc, (n_a, *t_jsc.shape)), w_ajs, b_j


def _dynamical_matrices(primitive, fc, q_qf):
    """D(q) for wave vectors in fractional reciprocal coordinates, (n_q, 3 n_a, 3 n_a).

    D_ac,bd(q) = Σ_{j ∈ b} Σ_images w Φ(0a,c; j,d) exp(2πi q·T) / sqrt(m_a m_b), the images of j
    being its copies nearest to atom a (the usual minimum-image interpolation; exact at wave
    vectors commensurate with the supercell).
    """
    n_a = len(primitive)
    masses = primitive.get_masses()
    t_ajsc, w_ajs, b_j = _image_translations(primitive, fc)
    q_qc = np.atleast_2d(np.asarray(q_qf, dtype=np.float64))
    phase_qaj = np.einsum("ajs,qajs->qaj", w_ajs,
                          np.exp(2j * np.pi * np.einsum("ajsc,qc->qajs", t_ajsc, q_qc)))
    onehot_jb = np.zeros((len(b_j), n_a))
    onehot_jb[np.arange(len(b_j)), b_j] = 1.0
    d = np.einsum("qaj,acjd,jb->qacbd", phase_qaj, fc["phi"], onehot_jb)
    d /= np.sqrt(np.outer(masses, masses))[None, :, None, :, None]
    d = d.reshape(len(q_qc), 3 * n_a, 3 * n_a)
    return 0.5 * (d + np.conj(np.swapaxes(d, 1, 2)))


def _frequencies(primitive, fc, q_qf):
    """Sorted phonon frequencies (THz), (n_q, 3 n_a); imaginary modes as negative values."""
    eig = np.linalg.eigvalsh(_dynamical_matrices(primitive, fc, q_qf))
    return np.sign(eig) * np.sqrt(np.abs(eig)) * THZ_PER_SQRT_EV_A2_AMU


def phonon_frequencies(primitive, calc, *, supercell=4, delta=0.01, points=None,
                       band_points=120, dos_grid=10):
    """Phonons by finite displacements: frequencies at special points, bands and DOS.

    Parameters
    ----------
    primitive : ase.Atoms, relaxed primitive cell
    calc : ASE calculator
    supercell : int
        n of the n×n×n supercell (even n makes the zone-boundary points X and L exact).
    points : sequence of str, optional
        Special-point labels to tabulate (ASE's names: G, X, L, ...). Default: G, X and L where
        the lattice has them, else every special point of the standard path.
    band_points : int
        Points along ASE's standard band path, for the plot.
    dos_grid : int
        k×k×k Γ-centred grid for the density of states.

    Returns
    -------
    dict
        ``points`` {label: (3 n_a,) THz}, ``path`` (labels, x, special x), ``bands``
        (n_k, 3 n_a) THz, ``dos`` (frequencies, density).
    """
    fc = force_constants(primitive, calc, supercell=supercell, delta=delta)
    path = primitive.cell.bandpath(npoints=band_points)
    special = path.special_points
    if points is None:
        points = [p for p in ("G", "X", "L") if p in special] or sorted(special)
    missing = [p for p in points if p not in special]
    if missing:
        raise ParameterError(f"phonon points {', '.join(missing)} not special points of this "
                             f"lattice (it has {', '.join(sorted(special))})")
    at_points = _frequencies(primitive, fc, [special[p] for p in points])
    bands = _frequencies(primitive, fc, path.kpts)
    x, xs, labels = path.get_linear_kpoint_axis()
    grid = (np.indices((dos_grid,) * 3).reshape(3, -1).T + 0.5) / dos_grid
    nu = _frequencies(primitive, fc, grid).ravel()
    width = 0.025 * max(float(nu.max()), 1e-6)
    axis = np.linspace(min(0.0, float(nu.min())) - 3 * width, float(nu.max()) + 3 * width, 300)
    dos = np.exp(-0.5 * ((axis[:, None] - nu[None, :]) / width) ** 2).sum(axis=1)
    dos /= np.trapezoid(dos, axis)
    return {"points": {p: at_points[i].tolist() for i, p in enumerate(points)},
            "path": {"x": x.tolist(), "special_x": xs.tolist(), "labels": list(labels)},
            "bands": bands.tolist(), "dos": {"frequency": axis.tolist(), "density": dos.tolist()},
            "supercell": supercell}


def _phonon_values(result, groups):
    """Table entries ``nu_<point>_<first band>``: one per degenerate group of bands.

    ``groups`` maps each point to lists of band indices (from the first side computed, so model
    and reference rows line up); acoustic modes at Γ are skipped.
    """
    values = {}
    for point, bands in groups.items():
        nu = np.asarray(result["points"][point])
        for group in bands:
            values[f"nu_{point}_{group[0] + 1}"] = float(np.mean(nu[group]))
    return values


def _degenerate_groups(result, tol=0.02):
    groups = {}
    for point, nu in result["points"].items():
        nu = np.asarray(nu)
        bands, current = [], [0]
        for i in range(1, len(nu)):
            if abs(nu[i] - nu[current[-1]]) < tol:
                current.append(i)
            else:
                bands.append(current)
                current = [i]
        bands.append(current)
        if point == "G":
            bands = [g for g in bands if abs(np.mean(nu[g])) > 0.05]
        groups[point] = bands
    return groups


# ---------------------------------------------------------------------------------------------
# all of it
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CrystalProperties:
    """Properties of one crystal for one calculator.

    Attributes
    ----------
    values : dict of str to float
        Table entries (keys of :func:`property_info`, in its units).
    details : dict
        Per property group: E–V points, the 6×6 C matrices, supercell sizes, phonon bands and
        DOS, convergence flags (JSON-able).
    name : str
        Which calculator ("model", "reference", or a spec).
    """

    values: dict
    details: dict
    name: str = ""


def parse_properties(properties):
    if isinstance(properties, str):
        properties = [p.strip() for p in properties.split(",") if p.strip()]
    out = []
    for p in properties:
        if p == "all":
            out.extend(PROPERTIES)
            continue
        if p not in PROPERTIES:
            close = difflib.get_close_matches(p, PROPERTIES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ParameterError(f"unknown property {p!r}{hint} (known: {', '.join(PROPERTIES)}, "
                                 "all)")
        out.append(p)
    return tuple(p for p in PROPERTIES if p in out)


@dataclasses.dataclass
class PropertySettings:
    """Sizes and tolerances of the property calculations (Å, eV/Å, dimensionless strains)."""

    fmax: float = 1e-4
    eos_strain: float = 0.05
    eos_points: int = 11
    elastic_delta: float = 2e-3
    vacancy_min_length: float = 10.0
    facets: tuple = DEFAULT_FACETS
    slab_thickness: float = 10.0
    slab_vacuum: float = 12.0
    phonon_supercell: int = 4
    phonon_points: tuple | None = None
    seed: int = 0


def _tasks(properties, settings):
    """Independent units of work after the equilibrium: (group, argument)."""
    tasks = []
    for p in properties:
        if p == "surface":
            tasks.extend(("surface", tuple(f)) for f in settings.facets)
        elif p != "eos":
            tasks.append((p, None))
    return tasks


def _run_task(task, relaxed, primitive, calc, settings, name):
    log.info("%s: %s", name, _task_label(task))
    try:
        return _run_task_unchecked(task, relaxed, primitive, calc, settings)
    except (ComputationError, ParameterError) as exc:
        raise type(exc)(f"{name}: {_task_label(task)}: {exc}") from None
    except Terminated:  # SIGTERM arrived in the calculator: not a calculator failure
        raise
    except Exception as exc:  # any calculator failure, named with the property
        raise ComputationError(f"{name}: {_task_label(task)}: {type(exc).__name__}: "
                               f"{exc}") from None


def _task_label(task):
    kind, arg = task
    return f"surface ({''.join(map(str, arg))})" if kind == "surface" else kind


def _run_task_unchecked(task, relaxed, primitive, calc, settings):
    kind, arg = task
    if kind == "elastic":
        return elastic_constants(relaxed, calc, delta=settings.elastic_delta,
                                 fmax=min(settings.fmax, 1e-5))
    if kind == "vacancy":
        return vacancy_formation_energy(relaxed, calc, min_length=settings.vacancy_min_length,
                                        fmax=settings.fmax * 10, seed=settings.seed)
    if kind == "surface":
        return surface_energy(relaxed, calc, arg, min_thickness=settings.slab_thickness,
                              vacuum=settings.slab_vacuum, fmax=settings.fmax * 10,
                              seed=settings.seed)
    if kind == "phonon":
        return phonon_frequencies(primitive, calc, supercell=settings.phonon_supercell,
                                  points=settings.phonon_points)
    raise AssertionError(kind)


def equilibrium(conventional, primitive, calc, settings):
    """The relaxed conventional cell and the primitive cell rescaled to it (calc attached).

    The primitive cell is relaxed only through the conventional one: for the cubic lattices the
    two share a lattice constant; a structure given as a file is its own primitive cell.
    """
    relaxed = relax_structure(conventional, calc, fmax=settings.fmax)
    if primitive is conventional or len(primitive) == len(conventional):
        prim = relaxed.copy()
    else:
        # same lattice, rescaled by the relaxed lattice constant (cubic: one scale factor)
        scale = (relaxed.get_volume() / conventional.get_volume()) ** (1 / 3)
        prim = primitive.copy()
        prim.set_cell(primitive.cell.array * scale, scale_atoms=True)
    prim.calc = calc
    return relaxed, prim


def compute_properties(calc, conventional, primitive=None, properties=PROPERTIES, *,
                       settings=None, name="", comm=None, phonon_groups=None):
    """All requested properties of one crystal for one calculator.

    Parameters
    ----------
    calc : ASE calculator
    conventional, primitive : ase.Atoms
        From :func:`starting_structure` (primitive defaults to the conventional cell).
    properties : str or sequence of str
        Groups of :data:`PROPERTIES` ("eos,elastic,..." or "all"); the equilibrium lattice
        constant and energy are always computed.
    settings : PropertySettings, optional
    comm : mpi4py communicator, optional
        When given, the independent calculations (elastic, vacancy, each facet, phonons) are
        shared round-robin between the ranks; every rank returns the full result.
    phonon_groups : dict, optional
        Degenerate band groups to tabulate (to line a reference up with a model); default: from
        this calculation.

    Returns
    -------
    CrystalProperties
    """
    properties = parse_properties(properties)
    settings = settings or PropertySettings()
    primitive = conventional if primitive is None else primitive
    log.info("%s: equilibrium structure", name or "calculator")
    relaxed, prim = equilibrium(conventional, primitive, calc, settings)
    n = len(relaxed)
    lengths = relaxed.cell.lengths()
    values = {"a": float(lengths[0])}
    for key, length in (("b", lengths[1]), ("c", lengths[2])):
        if abs(length - lengths[0]) > 1e-4 * lengths[0]:
            values[key] = float(length)
    values["E0"] = float(relaxed.get_potential_energy() / n)
    values["V0"] = float(relaxed.get_volume() / n)
    details = {"structure": {"symbols": str(relaxed.symbols), "cell": relaxed.cell.array.tolist(),
                             "atoms": n}}
    if "eos" in properties:
        eos = equation_of_state(relaxed, calc, strain=settings.eos_strain,
                                points=settings.eos_points, fmax=settings.fmax)
        values.update({"B": eos["B"], "B'": eos["B'"]})
        details["eos"] = eos
    tasks = _tasks(properties, settings)
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    mine = {i: _run_task(t, relaxed, prim, calc, settings, name or "calculator")
            for i, t in enumerate(tasks) if i % size == rank}
    if comm is not None:
        merged = {}
        for part in comm.allgather(mine):
            merged.update(part)
        mine = merged
    cubic = _is_cubic(relaxed, tol=1e-4)
    for i, (kind, arg) in enumerate(tasks):
        result = mine[i]
        if kind == "elastic":
            values.update(_elastic_values(result, cubic))
            details["elastic"] = result
        elif kind == "vacancy":
            values["E_vac"] = result["E_vac"]
            details["vacancy"] = result
        elif kind == "surface":
            label = "".join(str(i) for i in arg)
            values[f"gamma_{label}"] = result["gamma"]
            details.setdefault("surface", {})[label] = result
        elif kind == "phonon":
            groups = phonon_groups or _degenerate_groups(result)
            values.update(_phonon_values(result, groups))
            details["phonon"] = {**result, "groups": groups}
    for group in ("elastic", "vacancy"):
        if group in details and not details[group]["converged"]:
            log.warning("%s: %s relaxation did not converge", name or "calculator", group)
    return CrystalProperties(values=values, details=details, name=name)


# ---------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PropertyRow:
    """One line of the comparison table; ``error = model − reference`` (None without one)."""

    key: str
    label: str
    unit: str
    model: float
    reference: float | None
    error: float | None
    error_percent: float | None

    def to_dict(self):
        return dataclasses.asdict(self)


def reference_from_dict(data, source="<reference>"):
    """Published values from a JSON-like dict ``{"a": 5.431, "C11": 151.4, ...}``.

    Keys are those of :func:`property_info` (units as there); a ``"source"`` or any key
    starting with ``_`` is kept as a note.

    Raises
    ------
    InputError
        A key that is not a property, or a value that is not a finite number.
    """
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a JSON object of property: value")
    values, notes = {}, {}
    for key, value in data.items():
        if key == "source" or key.startswith("_"):
            notes[key] = value
            continue
        try:
            property_info(key)
        except ParameterError as exc:
            raise InputError(f"{source}: {exc}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise InputError(f"{source}: {key}: expected a number, got {value!r}")
        values[key] = float(value)
    return CrystalProperties(values=values, details={"notes": notes}, name=source)


def compare_properties(model, reference=None):
    """Rows of model vs reference with the signed error (model − reference) and its %.

    Every model value gets a row (reference None where the reference lacks it); reference keys
    the model did not compute are ignored.
    """
    rows = []
    ref = reference.values if reference is not None else {}
    for key, value in model.values.items():
        label, unit = property_info(key)
        r = ref.get(key)
        err = None if r is None else value - r
        pct = None if r is None or abs(r) < 1e-12 else 100.0 * err / abs(r)
        rows.append(PropertyRow(key, label, unit, float(value), r, err, pct))
    return rows


@dataclasses.dataclass
class PropertyComparison:
    """A model's properties next to a reference's (calculated or published).

    Attributes
    ----------
    model : CrystalProperties
    reference : CrystalProperties or None
    rows : list of PropertyRow
    settings : PropertySettings
    """

    model: CrystalProperties
    reference: CrystalProperties | None
    rows: list
    settings: PropertySettings

    def to_dict(self):
        return {
            "rows": [r.to_dict() for r in self.rows],
            "settings": dataclasses.asdict(self.settings),
            "model": {"name": self.model.name, "values": self.model.values,
                      "details": self.model.details},
            "reference": None if self.reference is None else {
                "name": self.reference.name, "values": self.reference.values,
                "details": self.reference.details},
        }


def validate_properties(model_calc, conventional, primitive=None, properties=PROPERTIES, *,
                        reference=None, settings=None, comm=None, model_name="model",
                        reference_name="reference"):
    """Compute the properties for a model and a reference and compare them.

    Parameters
    ----------
    model_calc : ASE calculator
    conventional, primitive : ase.Atoms, from :func:`starting_structure`
    properties : str or sequence of str, groups of :data:`PROPERTIES`
    reference : ASE calculator, CrystalProperties (published values) or None
    settings : PropertySettings, optional
    comm : mpi4py communicator, optional (see :func:`compute_properties`)

    Returns
    -------
    PropertyComparison
    """
    settings = settings or PropertySettings()
    model = compute_properties(model_calc, conventional, primitive, properties,
                               settings=settings, name=model_name, comm=comm)
    groups = model.details.get("phonon", {}).get("groups")
    if reference is None or isinstance(reference, CrystalProperties):
        ref = reference
    else:
        ref = compute_properties(reference, conventional, primitive, properties,
                                 settings=settings, name=reference_name, comm=comm,
                                 phonon_groups=groups)
    return PropertyComparison(model=model, reference=ref, rows=compare_properties(model, ref),
                              settings=settings)


def _fmt(value, unit):
    if value is None:
        return "-"
    digits = {"Å": 4, "eV/atom": 4, "Å³/atom": 3, "eV": 3, "J/m²": 3, "THz": 2}.get(unit, 1)
    return f"{value:.{digits}f}"


def properties_table(rows, *, markdown=False, model_name="model", reference_name="reference"):
    """The comparison as a fixed-width (or markdown) table: model, reference, error, error %."""
    head = ("property", "unit", model_name, reference_name, "error", "error %")
    body = []
    for r in rows:
        err = None if r.error is None else f"{r.error:+.{len(_fmt(1.0, r.unit)) - 2}f}"
        pct = "-" if r.error_percent is None else f"{r.error_percent:+.2f}"
        body.append((r.label, r.unit, _fmt(r.model, r.unit), _fmt(r.reference, r.unit),
                     err or "-", pct))
    if all(r.reference is None for r in rows):  # no reference: the model's column only
        head, body = head[:3], [row[:3] for row in body]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines) + "\n"
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*head), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    lines += [fmt.format(*row) for row in body]
    return "\n".join(lines) + "\n"
