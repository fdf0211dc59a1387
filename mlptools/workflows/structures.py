"""Structure generators, the ingredients of a ``build-db`` recipe.

Every function takes and returns ``ase.Atoms`` (lists of them), takes its randomness from an
``rng: numpy.random.Generator`` argument, and tags each frame with ``atoms.info["config_type"]``
when given ``config_type``. Lengths in Å, temperatures in K, times in fs. Returned frames carry no
calculator.
"""

from __future__ import annotations

import numpy as np

from mlptools.errors import ComputationError, ParameterError
from mlptools.keys import CONFIG_TYPE

__all__ = [
    "PROTOTYPES",
    "interstitials",
    "md_snapshots",
    "melt_quench",
    "prototype",
    "random_strains",
    "random_structures",
    "rattle",
    "supercell",
    "surfaces",
    "tag",
    "vacancies",
    "volume_scan",
]

#: lattice names understood by :func:`prototype` (ase.build.bulk's, plus beta-sn and graphite)
PROTOTYPES = (
    "sc", "fcc", "bcc", "hcp", "diamond", "zincblende", "rocksalt", "cesiumchloride", "fluorite",
    "wurtzite", "beta-sn", "graphite",
)

# β-Sn (A5, tI4, I4_1/amd) lattice parameters a (Å), c/a; Si and Ge are the high-pressure phases.
_BETA_SN = {"Si": (4.686, 0.5517), "Ge": (4.884, 0.551), "Sn": (5.831, 0.5456)}


def tag(frames, config_type):
    """Set ``info["config_type"]`` on every frame (in place) and return the list."""
    for atoms in frames:
        atoms.info[CONFIG_TYPE] = config_type
    return frames


def _clean(atoms):
    """A copy without calculator, constraints or non-scalar info (ASE's spacegroup objects)."""
    atoms = atoms.copy()
    atoms.calc = None
    atoms.constraints = []
    for key in list(atoms.info):
        if not isinstance(atoms.info[key], (str, int, float, bool, np.integer, np.floating)):
            del atoms.info[key]
    return atoms


def prototype(symbol, lattice, *, a=None, c=None, covera=None, cubic=False, orthorhombic=False):
    """A crystal prototype (primitive cell unless ``cubic``/``orthorhombic``).

    Parameters
    ----------
    symbol : str
        One element, or a formula for the binary lattices (``"NaCl"``, ``"GaN"``).
    lattice : str
        One of :data:`PROTOTYPES`.
    a, c : float, Å, optional
        Lattice parameters (ASE's reference values when omitted, where it has them).
    covera : float, optional
        c/a for hcp, wurtzite and β-Sn.
    """
    from ase.build import bulk

    lattice = lattice.lower().replace("_", "-")
    if lattice not in PROTOTYPES:
        raise ParameterError(f"unknown prototype {lattice!r}; use one of {', '.join(PROTOTYPES)}")
    try:
        if lattice == "beta-sn":
            atoms = _beta_sn(symbol, a, c, covera)
        elif lattice == "graphite":
            atoms = _graphite(symbol, a or 2.464, c or 6.711)
        else:
            kw = {"a": a, "c": c, "covera": covera, "cubic": cubic, "orthorhombic": orthorhombic}
            atoms = bulk(symbol, lattice, **{k: v for k, v in kw.items() if v})
    except (ValueError, KeyError, RuntimeError, NotImplementedError) as exc:
        raise ParameterError(f"prototype {lattice} {symbol}: {exc}") from None
    return _clean(atoms)


def _beta_sn(symbol, a, c, covera):
    from ase.spacegroup import crystal

    default = _BETA_SN.get(symbol)
    if a is None:
        if default is None:
            raise ValueError("give a (and c or covera): no reference β-Sn lattice parameters")
        a = default[0]
    if c is None:
        c = a * (covera or (default[1] if default else 0.55))
    # Wyckoff 4a of I4_1/amd (origin choice 1): (0, 0, 0), (0, 1/2, 1/4) + body centring,
    # 4 atoms in the conventional tetragonal cell (which we keep: it is orthogonal).
    return crystal(symbol, [(0, 0, 0)], spacegroup=141, cellpar=[a, a, c, 90, 90, 90])


def _graphite(symbol, a, c):
    from ase.spacegroup import crystal

    return crystal([symbol, symbol], [(0, 0, 0.25), (1 / 3, 2 / 3, 0.25)], spacegroup=194,
                   cellpar=[a, a, c, 90, 90, 120])


def supercell(atoms, repeat):
    """``atoms`` repeated ``repeat`` = (n1, n2, n3) times (or one int for all three)."""
    repeat = (int(repeat),) * 3 if np.isscalar(repeat) else tuple(int(r) for r in repeat)
    if len(repeat) != 3 or min(repeat) < 1:
        raise ParameterError(f"supercell must be 3 positive integers, got {repeat}")
    return _clean(atoms.repeat(repeat))


def volume_scan(atoms, count, *, volume_range=(0.85, 1.15)):
    """``count`` isotropically scaled copies, volumes evenly from V0·min to V0·max (E–V curve)."""
    lo, hi = _range(volume_range, "volume_range", positive=True)
    frames = []
    for f in np.linspace(lo, hi, int(count)):
        new = _clean(atoms)
        new.set_cell(atoms.cell * f ** (1 / 3), scale_atoms=True)
        frames.append(new)
    return frames


def random_strains(atoms, count, rng, *, max_strain=0.03):
    """``count`` copies under random symmetric strains, each component uniform in ±max_strain."""
    if not 0 <= max_strain < 0.5:
        raise ParameterError(f"max_strain must be in [0, 0.5), got {max_strain}")
    frames = []
    for _ in range(int(count)):
        e = rng.uniform(-max_strain, max_strain, size=(3, 3))
        e = 0.5 * (e + e.T)
        new = _clean(atoms)
        new.set_cell(atoms.cell.array @ (np.eye(3) + e), scale_atoms=True)
        frames.append(new)
    return frames


def rattle(atoms, rng, *, sigma=0.05):
    """A copy with every position displaced by a Gaussian of standard deviation ``sigma`` Å."""
    if sigma < 0:
        raise ParameterError(f"rattle sigma must be >= 0 Å, got {sigma}")
    new = _clean(atoms)
    new.positions += rng.normal(0.0, sigma, size=new.positions.shape)
    return new


def vacancies(atoms, count, rng, *, n_vacancies=1):
    """``count`` copies, each with ``n_vacancies`` randomly chosen atoms removed."""
    if not 1 <= n_vacancies < len(atoms):
        raise ParameterError(f"n_vacancies must be in [1, {len(atoms) - 1}], got {n_vacancies}")
    frames = []
    for _ in range(int(count)):
        gone = rng.choice(len(atoms), size=n_vacancies, replace=False)
        new = _clean(atoms)
        del new[sorted(gone.tolist())]
        frames.append(new)
    return frames


def _min_image_distances(atoms, point):
    from ase.geometry import get_distances

    _, d = get_distances(point[None, :], atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    return d[0]


def interstitials(atoms, count, rng, *, symbol=None, n_trials=200):
    """``count`` copies with one extra atom at the most open of ``n_trials`` random points.

    The new atom (``symbol``, default the first species) goes where its nearest neighbour is
    farthest away, which finds the open (tetrahedral/hexagonal) sites of a crystal.
    """
    symbol = symbol or atoms.get_chemical_symbols()[0]
    frames = []
    for _ in range(int(count)):
        frac = rng.random((int(n_trials), 3))
        points = frac @ atoms.cell.array
        best = max(points, key=lambda x: _min_image_distances(atoms, x).min())
        new = _clean(atoms)
        from ase import Atom

        new.append(Atom(symbol, best))
        frames.append(new)
    return frames


def surfaces(atoms, miller, *, layers=4, vacuum=10.0, repeat=(1, 1, 1)):
    """Slabs cut from ``atoms`` (use a conventional cell) for each Miller index in ``miller``.

    Of the planes at which the (hkl) stacking can be cut, the one breaking the fewest bonds is
    taken (:func:`mlptools.workflows.properties.slab_terminations`): for diamond (111) that is
    one dangling bond per surface atom, the real low-energy surface, where ``ase.build.surface``
    cuts between the close planes and leaves three.

    Parameters
    ----------
    miller : list of (h, k, l)
    layers : int
        Number of repeat units of the (hkl) stacking (as ``ase.build.surface`` counts them).
    vacuum : float, Å
        Vacuum on each side along the surface normal; the slab stays periodic (pbc all True).
    repeat : (3,) int
        In-plane (and normal) repetition of the slab cell.
    """
    from mlptools.workflows.properties import _oriented_cell, slab_terminations

    frames = []
    for hkl in miller:
        hkl = tuple(int(x) for x in hkl)
        if len(hkl) != 3 or hkl == (0, 0, 0):
            raise ParameterError(f"Miller index must be 3 integers, not all zero; got {hkl}")
        unit, normal = _oriented_cell(atoms, hkl, 0.0)
        period = abs(float(unit.cell[2] @ normal))
        best = slab_terminations(atoms, hkl, min_thickness=int(layers) * period * (1 - 1e-9),
                                 vacuum=2.0 * float(vacuum))[0]
        slab = _with_vacuum(best["slab"], normal, float(vacuum)).repeat(
            tuple(int(r) for r in repeat))
        slab.info["miller"] = "".join(str(x) for x in hkl)
        frames.append(_clean(slab))
    return frames


def _with_vacuum(slab, normal, vacuum):
    """The slab shifted to start ``vacuum`` Å above the cell bottom, with ``vacuum`` Å above it."""
    height = slab.positions @ normal
    slab.positions += normal * (vacuum - height.min())
    cell = slab.cell.array.copy()
    cell[2] = normal * (height.max() - height.min() + 2.0 * vacuum)
    slab.set_cell(cell, scale_atoms=False)
    return slab


def random_structures(symbols, count, rng, *, volume_per_atom=(15.0, 25.0), min_distance=2.0,
                      max_attempts=1000):
    """AIRSS-style random sensible structures.

    Each has a random cell (lengths in ratio ≤ 2, angles 60–120°) scaled to a volume per atom
    drawn uniformly from ``volume_per_atom`` (Å³), and atoms placed one by one at random
    positions at least ``min_distance`` Å (minimum image) from those already placed.

    Parameters
    ----------
    symbols : str or list of str
        The atoms of one structure: a formula (``"Si8"``) or a list of symbols.

    Raises
    ------
    ComputationError
        An atom could not be placed in ``max_attempts`` tries (volume too small for the
        separation).
    """
    from ase import Atoms

    template = Atoms(symbols)
    n = len(template)
    vlo, vhi = _range(volume_per_atom, "volume_per_atom", positive=True)
    frames = []
    for _ in range(int(count)):
        for _cell_try in range(20):
            lengths = rng.uniform(1.0, 2.0, size=3)
            angles = rng.uniform(60.0, 120.0, size=3)
            from ase.geometry import cellpar_to_cell

            cell = cellpar_to_cell(np.concatenate([lengths, angles]))
            vol = abs(np.linalg.det(cell))
            if vol > 0.3 * np.prod(lengths):  # reject very flat cells
                break
        target = rng.uniform(vlo, vhi) * n
        cell *= (target / vol) ** (1 / 3)
        atoms = Atoms(template.numbers[:0], cell=cell, pbc=True)
        for number in template.numbers:
            for _attempt in range(int(max_attempts)):
                point = rng.random(3) @ cell
                if len(atoms) == 0 or _min_image_distances(atoms, point).min() >= min_distance:
                    atoms += Atoms(numbers=[number], positions=[point])
                    break
            else:
                raise ComputationError(
                    f"random structure {template.get_chemical_formula()}: could not place atom "
                    f"{len(atoms) + 1} at {min_distance} Å from the others in {max_attempts} tries;"
                    " raise volume_per_atom or lower min_distance"
                )
        frames.append(atoms)
    return frames


def md_snapshots(atoms, calc, count, rng, *, temperature_K, stride=20, equilibration=200,
                 timestep_fs=1.0, friction=0.02):
    """Snapshots of Langevin MD: liquid or hot-solid configurations.

    Runs ``equilibration`` steps, then keeps a snapshot every ``stride`` steps until there are
    ``count``. Velocities start from Maxwell–Boltzmann at ``temperature_K``.

    Parameters
    ----------
    calc : ase Calculator
        The reference calculator, or an interim ML potential.
    friction : float, 1/fs
    """
    from ase import units
    from ase.md.langevin import Langevin

    if temperature_K <= 0 or stride < 1 or equilibration < 0 or timestep_fs <= 0:
        raise ParameterError("md needs temperature_K > 0, stride >= 1, equilibration >= 0 and "
                             "timestep_fs > 0")
    work = _clean(atoms)
    work.calc = calc
    _thermalize(work, temperature_K, rng)
    dyn = Langevin(work, timestep_fs * units.fs, temperature_K=temperature_K,
                   friction=friction / units.fs, fixcm=False, rng=rng)
    frames = []
    try:
        dyn.run(int(equilibration))
        for _ in range(int(count)):
            dyn.run(int(stride))
            _check_finite(work, "md")
            snap = _clean(work)
            frames.append(_strip_velocities(snap))
    except (ParameterError, ComputationError):
        raise
    except Exception as exc:
        raise ComputationError(f"md at {temperature_K} K: {type(exc).__name__}: {exc}") from None
    return frames


def melt_quench(atoms, calc, count, rng, *, melt_K=3000.0, quench_K=300.0, melt_steps=1000,
                quench_steps=2000, anneal_steps=200, timestep_fs=1.0, friction=0.02):
    """Amorphous snapshots by melt–quench Langevin MD.

    Melt at ``melt_K`` for ``melt_steps``, cool linearly to ``quench_K`` over ``quench_steps``,
    then keep ``count`` snapshots, ``anneal_steps`` apart, at ``quench_K``.
    """
    from ase import units
    from ase.md.langevin import Langevin

    if min(melt_K, quench_K) <= 0 or quench_steps < 1 or anneal_steps < 1:
        raise ParameterError("melt_quench needs temperatures > 0 K, quench_steps >= 1 and "
                             "anneal_steps >= 1")
    work = _clean(atoms)
    work.calc = calc
    _thermalize(work, melt_K, rng)
    dyn = Langevin(work, timestep_fs * units.fs, temperature_K=melt_K,
                   friction=friction / units.fs, fixcm=False, rng=rng)
    frames = []
    try:
        dyn.run(int(melt_steps))
        chunk = max(1, int(quench_steps) // 50)
        done = 0
        while done < quench_steps:
            steps = min(chunk, int(quench_steps) - done)
            done += steps
            dyn.set_temperature(temperature_K=melt_K + (quench_K - melt_K) * done / quench_steps)
            dyn.run(steps)
        for _ in range(int(count)):
            dyn.run(int(anneal_steps))
            _check_finite(work, "melt_quench")
            frames.append(_strip_velocities(_clean(work)))
    except (ParameterError, ComputationError):
        raise
    except Exception as exc:
        raise ComputationError(f"melt_quench: {type(exc).__name__}: {exc}") from None
    return frames


def _thermalize(atoms, temperature_K, rng):
    """Maxwell-Boltzmann momenta from ``rng`` (never broadcast: this may run on one MPI rank)."""
    from ase.parallel import DummyMPI

    try:
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # ASE < 3.29
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng, comm=DummyMPI())


def _strip_velocities(atoms):
    if "momenta" in atoms.arrays:
        del atoms.arrays["momenta"]
    return atoms


def _check_finite(atoms, what):
    if not np.all(np.isfinite(atoms.positions)):
        raise ComputationError(f"{what}: positions became NaN/inf (timestep too large?)")


def _range(value, name, positive=False):
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be [min, max], got {value!r}") from None
    if lo > hi or (positive and lo <= 0):
        raise ParameterError(f"{name} must be [min, max] with {'0 < ' if positive else ''}"
                             f"min <= max, got {value!r}")
    return lo, hi
