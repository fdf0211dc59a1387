"""Ab initio random structure search (AIRSS) driven by a potential: build, relax, rank.

Library half of ``mlptools airss-search``. The steps follow Pickard & Needs (J. Phys.: Condens.
Matter 23, 053201 (2011)) and their ``buildcell``/``ca -r`` tools:

1. :func:`random_structure` makes a random "sensible" structure: a random cell of a target volume
   (a random factor within ``volume_range`` of the per-atom volume times the number of atoms),
   atoms at least ``minsep`` Å apart (minimum image), optionally with random space-group
   symmetry (a space group with ``symmetry`` = (lo, hi) operations, atoms in general positions
   of it), or a cluster (atoms in a sphere of that volume, in a non-periodic box), or a slab
   (atoms in a layer of that volume, periodic in the plane, 10 Å of vacuum along z).
2. :func:`relax_structure` relaxes positions and cell under a hydrostatic pressure (FIRE on
   ASE's ``UnitCellFilter`` with ``scalar_pressure``) to ``fmax`` eV/Å on atoms and on the cell
   degrees of freedom (virial/N, eV), within ``max_steps``; failures are kept with a reason.
3. :func:`rank_structures` sorts by enthalpy per atom H/N = (E + pV)/N and merges repeats:
   two relaxed structures are the same when their enthalpies agree within ``energy_tol`` eV/atom,
   the cosine of their per-structure mean SOAP power spectra (normalised) is at least
   ``similarity``, and their space groups (spglib, when installed) agree.

:func:`run_search` drives many independent relaxations. Structure ``index`` of a search with
seed ``seed`` draws from its own stream ``default_rng([seed, index])``, so the result does not
depend on the number of processes or on restarts. Every finished relaxation (or failure) is
appended to a JSON-lines checkpoint, keyed ``"seed:index"``: a rerun (after a kill, or with a
larger ``n_structures`` or another seed) only adds what is missing, and ranks everything the
checkpoint holds. Work runs serially, over a multiprocessing pool (``n_jobs``), or over MPI
ranks (``comm``), always with one writer.

Index letters: ``n`` atoms, ``c`` Cartesian, ``o`` symmetry operations, ``s`` structures,
``f`` features.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time

import numpy as np

from mlptools.errors import ComputationError, ParameterError

__all__ = [
    "RankedStructure",
    "SearchResult",
    "SearchSettings",
    "default_minsep",
    "default_volume_per_atom",
    "parse_composition",
    "random_structure",
    "rank_structures",
    "relax_structure",
    "run_search",
    "search_one",
    "spacegroup_symbol",
    "summary_lines",
]

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
#: SOAP used for de-duplication: cheap, and sensitive to the first few neighbour shells
DEDUP_SOAP = {"cutoff": 5.0, "cutoff_width": 1.0, "n_max": 6, "l_max": 4, "sigma": 0.5}
#: a relaxed structure whose volume leaves this range of factors of the target is discarded
_VOLUME_LIMITS = (0.25, 4.0)
#: atoms closer than this (Å) after relaxation: the potential collapsed (a failure)
_COLLAPSE_DISTANCE = 0.5
_CELL_FILTERS = {"unit": "UnitCellFilter", "frechet": "FrechetCellFilter"}
#: vacuum (Å) above a random slab; the cell's z vector is kept fixed in the relaxation
SLAB_VACUUM = 10.0
#: strain components (Voigt xx yy zz yz xz xy) a slab relaxes: the in-plane ones
_SLAB_MASK = (1, 1, 0, 0, 0, 1)


class _Stopped(Exception):
    """A stop request arrived in the middle of a relaxation."""


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """What structures are made and how they are relaxed (the identity of a search).

    Attributes
    ----------
    composition : str
        One formula unit, e.g. ``"Si8"`` or ``"Cu4"`` or ``"SiO2"``.
    nform : (int, int)
        Range of the number of formula units per structure (drawn uniformly).
    volume_per_atom : float, Å³
        Target volume per atom (see :func:`default_volume_per_atom`).
    volume_range : (float, float)
        The cell volume is the target times a factor drawn uniformly from this range.
    minsep : float, Å
        Minimum separation of atoms in the random structures.
    symmetry : (int, int) or None
        Range of the number of symmetry operations of the random space group (conventional
        cell, centring included); None: no symmetry (P1).
    cluster : bool
        Random clusters (non-periodic; positions relaxed only) instead of crystals.
    slab : bool
        Random slabs (a layer with vacuum along z; positions and the in-plane cell relaxed).
    pressure_GPa : float, GPa
        Hydrostatic pressure of the cell relaxation and of the enthalpy.
    fmax : float, eV/Å
        Force tolerance (also applied to the cell forces of the cell filter, virial/N in eV).
    max_steps : int
        Step limit of one relaxation; a relaxation that does not converge is a failure.
    cell_filter : str
        ``"unit"`` (ASE's UnitCellFilter) or ``"frechet"`` (FrechetCellFilter: the same minima,
        about 4× slower per step for small cells because of its matrix logarithm).
    """

    composition: str
    nform: tuple = (1, 1)
    volume_per_atom: float = 20.0
    volume_range: tuple = (0.8, 1.2)
    minsep: float = 1.5
    symmetry: tuple | None = None
    cluster: bool = False
    slab: bool = False
    pressure_GPa: float = 0.0
    fmax: float = 0.01
    max_steps: int = 1000
    cell_filter: str = "unit"

    def __post_init__(self):
        parse_composition(self.composition)
        lo, hi = self.nform
        if not (int(lo) == lo and int(hi) == hi and 1 <= lo <= hi):
            raise ParameterError(f"nform must be integers 1 <= lo <= hi, got {self.nform}")
        if not (self.volume_per_atom > 0 and math.isfinite(self.volume_per_atom)):
            raise ParameterError(f"volume per atom must be > 0 Å³, got {self.volume_per_atom}")
        vlo, vhi = self.volume_range
        if not 0 < vlo <= vhi:
            raise ParameterError(f"volume range must be factors 0 < lo <= hi, got "
                                 f"{self.volume_range}")
        if not self.minsep > 0:
            raise ParameterError(f"minsep must be > 0 Å, got {self.minsep}")
        if self.symmetry is not None:
            slo, shi = self.symmetry
            if not (int(slo) == slo and int(shi) == shi and 1 <= slo <= shi):
                raise ParameterError(f"symmetry must be integers 1 <= lo <= hi operations, got "
                                     f"{self.symmetry}")
            if self.cluster or self.slab:
                raise ParameterError("symmetry is for crystals, not clusters or slabs")
        if self.cluster and self.slab:
            raise ParameterError("a structure is a cluster or a slab, not both")
        if self.slab and self.pressure_GPa != 0:
            raise ParameterError("a slab is relaxed at zero pressure (its cell is mostly vacuum)")
        if not self.fmax > 0:
            raise ParameterError(f"fmax must be > 0 eV/Å, got {self.fmax}")
        if not (int(self.max_steps) == self.max_steps and self.max_steps >= 1):
            raise ParameterError(f"max_steps must be a positive integer, got {self.max_steps}")
        if self.cell_filter not in _CELL_FILTERS:
            raise ParameterError(f"cell filter must be one of {', '.join(_CELL_FILTERS)}, "
                                 f"got {self.cell_filter!r}")

    def to_dict(self):
        """JSON-able dict (lists for the ranges)."""
        out = dataclasses.asdict(self)
        for key in ("nform", "volume_range", "symmetry"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out


# ---------------------------------------------------------------------------------------------
# composition and defaults
# ---------------------------------------------------------------------------------------------


def parse_composition(text):
    """The symbols of one formula unit: ``"SiO2"`` → ``["Si", "O", "O"]`` (ASE's formula rules)."""
    from ase.data import atomic_numbers
    from ase.symbols import string2symbols

    try:
        symbols = string2symbols(str(text))
    except (ValueError, KeyError) as exc:
        raise ParameterError(f"composition {text!r}: not a chemical formula ({exc})") from None
    unknown = [s for s in symbols if s not in atomic_numbers or s == "X"]
    if unknown:
        raise ParameterError(f"composition {text!r}: unknown element {unknown[0]!r}")
    if not symbols:
        raise ParameterError(f"composition {text!r}: no atoms")
    return symbols


def default_volume_per_atom(symbols):
    """Mean volume per atom (Å³) of the elements' ASE reference crystals.

    Elements ASE has no crystal for count as close-packed spheres of their covalent radius
    (volume (4/3)πr³/0.74). Si: 20.0, Cu: 11.8, Au: 17.0 Å³.
    """
    from ase.build import bulk
    from ase.data import atomic_numbers, covalent_radii

    volumes = []
    for symbol in symbols:
        try:
            ref = bulk(symbol)
            volumes.append(ref.get_volume() / len(ref))
        except (ValueError, KeyError, RuntimeError, TypeError, NotImplementedError):
            r = covalent_radii[atomic_numbers[symbol]]
            volumes.append(4.0 / 3.0 * math.pi * r**3 / 0.74)
    return float(np.mean(volumes))


def default_minsep(symbols):
    """0.8 × the smallest sum of covalent radii of two species present (Å); Si: 1.78 Å."""
    from ase.data import atomic_numbers, covalent_radii

    radii = [covalent_radii[atomic_numbers[s]] for s in set(symbols)]
    return 0.8 * 2.0 * min(radii)


# ---------------------------------------------------------------------------------------------
# random structures
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _space_group_table():
    """[(number, rotations (o, 3, 3), translations (o, 3))] for the 230 groups (ASE setting 1)."""
    from ase.spacegroup import Spacegroup

    table = []
    for number in range(1, 231):
        rot, trans = Spacegroup(number).get_op()
        table.append((number, np.asarray(rot, float), np.asarray(trans, float)))
    return table


def _lattice_system(number):
    for last, name in ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"),
                       (142, "tetragonal"), (194, "hexagonal"), (230, "cubic")):
        if number <= last:
            return name
    raise ValueError(number)


def _random_cellpar(system, rng):
    """Cell lengths (relative, 1–2) and angles (°) of a random cell of a lattice system."""
    a, b, c = rng.uniform(1.0, 2.0, size=3)
    alpha = beta = gamma = 90.0
    if system == "triclinic":
        alpha, beta, gamma = rng.uniform(60.0, 120.0, size=3)
    elif system == "monoclinic":  # unique axis b (ASE's setting 1)
        beta = rng.uniform(60.0, 120.0)
    elif system == "tetragonal":
        b = a
    elif system == "hexagonal":  # trigonal groups too: ASE uses hexagonal axes
        b, gamma = a, 120.0
    elif system == "cubic":
        b = c = a
    return np.array([a, b, c, alpha, beta, gamma])


_SHIFTS = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)],
                   dtype=float)


def _min_image_distance(frac_a, frac_b, cell):
    """Smallest distance (Å) between any point of frac_a (a, 3) and of frac_b (b, 3).

    Minimum image over the 27 neighbouring cells of the rounded separation, enough for the
    cells made here (lengths within a factor 2, angles 60–120°).
    """
    if len(frac_a) == 0 or len(frac_b) == 0:
        return np.inf
    d = frac_a[:, None, :] - frac_b[None, :, :]
    d -= np.round(d)
    cart = (d[:, :, None, :] + _SHIFTS[None, None]) @ cell
    return float(np.sqrt(np.min(np.einsum("abkc,abkc->abk", cart, cart))))


def _orbit(point, rot_occ, trans_oc):
    """Images of a fractional point under the operations, wrapped into [0, 1)."""
    return (rot_occ @ point + trans_oc) % 1.0


def _eligible_groups(symmetry, counts):
    """Groups with lo..hi operations whose operation count divides every species count."""
    if symmetry is None:
        return [_space_group_table()[0]]
    lo, hi = symmetry
    return [g for g in _space_group_table()
            if lo <= len(g[1]) <= hi and all(c % len(g[1]) == 0 for c in counts)]


def random_structure(settings, rng, *, max_tries=50, max_attempts=200):
    """One random sensible structure (see the module docstring).

    Parameters
    ----------
    settings : SearchSettings
    rng : numpy.random.Generator
    max_tries : int
        New cells (and groups) tried before giving up.
    max_attempts : int
        Random positions tried per atom (per orbit with symmetry) in one cell.

    Returns
    -------
    ase.Atoms
        ``info["generator"]``: how it was made (``"P2 (3)"``, ``"P1 (1)"``, ``"cluster"``),
        ``info["nform"]``: formula units.

    Raises
    ------
    ComputationError
        No structure could be placed (volume too small for the separation).
    """
    from ase import Atoms
    from ase.data import atomic_numbers
    from ase.geometry import cellpar_to_cell

    unit = parse_composition(settings.composition)
    nform = int(rng.integers(settings.nform[0], settings.nform[1] + 1))
    symbols = unit * nform
    n = len(symbols)
    species, counts = np.unique([atomic_numbers[s] for s in symbols], return_counts=True)
    volume = n * settings.volume_per_atom * rng.uniform(*settings.volume_range)
    if settings.cluster:
        return _random_cluster(symbols, volume, settings.minsep, rng, max_tries * max_attempts,
                               nform)
    if settings.slab:
        return _random_slab(symbols, volume, settings.minsep, rng, max_tries, max_attempts,
                            nform)
    groups = _eligible_groups(settings.symmetry, counts)
    if not groups:
        log.debug("no space group with %s operations fits %s; using P1", settings.symmetry,
                  dict(zip(species.tolist(), counts.tolist(), strict=True)))
        groups = [_space_group_table()[0]]
    for _ in range(max_tries):
        number, rot_occ, trans_oc = groups[int(rng.integers(len(groups)))]
        cellpar = _random_cellpar(_lattice_system(number), rng)
        cell = cellpar_to_cell(cellpar)
        cell_volume = abs(np.linalg.det(cell))
        if cell_volume < 0.3 * np.prod(cellpar[:3]):  # very flat triclinic cells
            continue
        cell *= (volume / cell_volume) ** (1.0 / 3.0)
        placed = _place_orbits(species, counts, rot_occ, trans_oc, cell, settings.minsep, rng,
                               max_attempts)
        if placed is None:
            continue
        numbers, frac = placed
        atoms = Atoms(numbers=numbers, scaled_positions=frac, cell=cell, pbc=True)
        from ase.spacegroup import Spacegroup

        atoms.info["generator"] = f"{Spacegroup(number).symbol.replace(' ', '')} ({number})"
        atoms.info["nform"] = nform
        return atoms
    raise ComputationError(
        f"could not place {n} atoms {settings.minsep} Å apart in a cell of {volume:.1f} Å³ "
        f"in {max_tries} tries; raise the volume or lower minsep")


def _place_orbits(species, counts, rot_occ, trans_oc, cell, minsep, rng, max_attempts):
    """Fill the cell with whole general-position orbits; None when an orbit does not fit."""
    k = len(rot_occ)
    numbers, frac = [], np.zeros((0, 3))
    for z, count in zip(species, counts, strict=True):
        for _ in range(int(count) // k):
            for _attempt in range(max_attempts):
                orbit = _orbit(rng.random(3), rot_occ, trans_oc)
                # images of the point closer than minsep to each other (or to their periodic
                # copies): a special position, or too small a cell
                if _pairwise_min(orbit, cell) < minsep:
                    continue
                if _min_image_distance(orbit, frac, cell) >= minsep:
                    frac = np.vstack([frac, orbit])
                    numbers += [int(z)] * k
                    break
            else:
                return None
    return np.array(numbers), frac


def _pairwise_min(frac, cell):
    """Smallest distance between two distinct points of frac (their own images included)."""
    d = frac[:, None, :] - frac[None, :, :]
    d -= np.round(d)
    cart = (d[:, :, None, :] + _SHIFTS[None, None]) @ cell
    r2 = np.einsum("abkc,abkc->abk", cart, cart)
    zero = 13  # index of the (0, 0, 0) shift in _SHIFTS
    r2[np.arange(len(frac)), np.arange(len(frac)), zero] = np.inf
    return float(np.sqrt(r2.min()))


def _random_slab(symbols, volume, minsep, rng, max_tries, max_attempts, nform,
                 vacuum=SLAB_VACUUM):
    """Atoms in a random layer cell of ``volume`` (c ⟂ the plane), then vacuum along z."""
    from ase import Atoms
    from ase.geometry import cellpar_to_cell

    for _ in range(max_tries):
        a, b, c = rng.uniform(1.0, 2.0, size=3)
        layer = cellpar_to_cell([a, b, c, 90.0, 90.0, rng.uniform(60.0, 120.0)])
        layer *= (volume / abs(np.linalg.det(layer))) ** (1.0 / 3.0)
        height = layer[2, 2]
        cell = layer.copy()
        cell[2] = [0.0, 0.0, height + vacuum]
        frac = np.zeros((0, 3))
        for _atom in symbols:
            for _attempt in range(max_attempts):
                x = rng.random(3) * [1.0, 1.0, height / (height + vacuum)]
                if _min_image_distance(x[None], frac, cell) >= minsep:
                    frac = np.vstack([frac, x])
                    break
            else:
                break
        if len(frac) == len(symbols):
            atoms = Atoms(symbols, scaled_positions=frac, cell=cell, pbc=True)
            atoms.info["generator"] = "slab"
            atoms.info["nform"] = nform
            return atoms
    raise ComputationError(f"could not place {len(symbols)} atoms {minsep} Å apart in a layer "
                           f"of {volume:.1f} Å³ in {max_tries} tries; raise the volume or "
                           "lower minsep")


def _random_cluster(symbols, volume, minsep, rng, max_attempts, nform, vacuum=10.0):
    from ase import Atoms

    radius = (3.0 * volume / (4.0 * math.pi)) ** (1.0 / 3.0)
    positions = np.zeros((0, 3))
    for _ in symbols:
        for _attempt in range(max_attempts):
            x = rng.uniform(-radius, radius, size=3)
            if x @ x > radius**2:
                continue
            if len(positions) == 0 or np.min(np.linalg.norm(positions - x, axis=1)) >= minsep:
                positions = np.vstack([positions, x])
                break
        else:
            raise ComputationError(f"could not place {len(symbols)} atoms {minsep} Å apart in a "
                                   f"sphere of {volume:.1f} Å³; raise the volume or lower minsep")
    box = 2.0 * radius + 2.0 * vacuum
    atoms = Atoms(symbols, positions=positions + box / 2.0, cell=[box] * 3, pbc=False)
    atoms.info["generator"] = "cluster"
    atoms.info["nform"] = nform
    return atoms


# ---------------------------------------------------------------------------------------------
# relaxation
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Relaxation:
    """Outcome of :func:`relax_structure` (energies in eV, volume Å³)."""

    atoms: object  # ase.Atoms, the last configuration (no calculator)
    converged: bool
    steps: int
    energy: float
    enthalpy: float
    volume: float
    fmax: float  # eV/Å, largest residual force (incl. the cell's) at the end
    reason: str = ""  # why it failed ("" when converged)


def relax_structure(atoms, calc, *, pressure_GPa=0.0, fmax=0.01, max_steps=1000,
                    target_volume=None, stop_requested=None, cell_filter="unit",
                    in_plane=False):
    """Relax positions (and, for periodic structures, the cell) under a hydrostatic pressure.

    FIRE on ``UnitCellFilter(atoms, scalar_pressure=p)`` (or ``FrechetCellFilter``): it
    minimises the enthalpy H = E + pV, with the cell forces the virial over the number of
    atoms (eV). FIRE is robust from the random, far-from-equilibrium starts of a search.

    Parameters
    ----------
    atoms : ase.Atoms
        Not modified.
    calc : ASE calculator
    pressure_GPa : float, GPa
    fmax : float, eV/Å
    max_steps : int
    target_volume : float, Å³, optional
        With it, a cell whose volume leaves 0.25–4 × target is given up ("exploded"/"collapsed").
    stop_requested : callable, optional
        Checked every step; when it returns True the relaxation raises ``_Stopped``.
    cell_filter : str, ``"unit"`` or ``"frechet"``
    in_plane : bool
        Relax only the in-plane cell (xx, yy, xy strains): a slab with vacuum along z.

    Returns
    -------
    Relaxation
    """
    from ase import units
    from ase.optimize import FIRE

    work = atoms.copy()
    work.calc = calc
    periodic = bool(work.pbc.all())
    pressure = pressure_GPa * units.GPa
    target = work
    if periodic:
        import ase.filters

        if cell_filter not in _CELL_FILTERS:
            raise ParameterError(f"cell filter must be one of {', '.join(_CELL_FILTERS)}, "
                                 f"got {cell_filter!r}")
        target = getattr(ase.filters, _CELL_FILTERS[cell_filter])(
            work, scalar_pressure=pressure, mask=_SLAB_MASK if in_plane else None)
    opt = FIRE(target, logfile=None)
    steps, converged, reason = 0, False, ""
    try:
        for converged in opt.irun(fmax=fmax, steps=max_steps):
            steps = opt.nsteps
            if stop_requested is not None and stop_requested():
                raise _Stopped
            energy = work.get_potential_energy()
            if not math.isfinite(energy):
                reason = "energy is NaN/inf"
                break
            if periodic and target_volume:
                ratio = work.get_volume() / target_volume
                if not _VOLUME_LIMITS[0] <= ratio <= _VOLUME_LIMITS[1]:
                    reason = f"cell {'exploded' if ratio > 1 else 'collapsed'} " \
                             f"(volume {ratio:.2f} × the start)"
                    break
            if converged:
                break
        energy = float(work.get_potential_energy())
        residual = float(np.sqrt((target.get_forces() ** 2).sum(axis=1).max()))
    except _Stopped:
        raise
    except Exception as exc:  # a calculator failing on a wild structure is a result, not a crash
        return Relaxation(atoms=_bare(work), converged=False, steps=steps, energy=math.nan,
                          enthalpy=math.nan, volume=math.nan, fmax=math.nan,
                          reason=f"calculator error: {type(exc).__name__}: "
                                 f"{' '.join(str(exc).split())}")
    volume = float(work.get_volume()) if periodic else 0.0
    if not reason and not converged:
        reason = f"not converged in {max_steps} steps (fmax {residual:.3g} eV/Å)"
    if not reason and len(work) > 1:
        from mlptools.neighbors import neighbor_list

        d = neighbor_list("d", work.positions, work.cell.array, work.pbc, _COLLAPSE_DISTANCE)[0]
        if len(d):
            reason = f"atoms collapsed ({d.min():.2f} Å apart)"
    return Relaxation(atoms=_bare(work), converged=not reason, steps=steps, energy=energy,
                      enthalpy=energy + pressure * volume, volume=volume, fmax=residual,
                      reason=reason)


def _bare(atoms):
    out = atoms.copy()
    out.calc = None
    return out


# ---------------------------------------------------------------------------------------------
# one structure, checkpoint records
# ---------------------------------------------------------------------------------------------


def structure_key(seed, index):
    """The checkpoint key of structure ``index`` of the search with ``seed``."""
    return f"{int(seed)}:{int(index)}"


def search_one(settings, calc, seed, index, *, stop_requested=None):
    """Make and relax structure ``index`` of the search ``seed``; a JSON-able record.

    The record: ``type="result"``, ``key``, ``seed``, ``index``, ``status`` ("ok"/"failed"),
    ``reason``, ``generator``, ``steps``, ``time_s`` (wall), ``cpu_s`` (this process's CPU
    time), and for relaxed ones ``energy``,
    ``enthalpy`` (eV), ``volume`` (Å³), ``fmax`` (eV/Å), ``frame`` (numbers, positions, cell,
    pbc). Raises ``_Stopped`` when ``stop_requested`` fires during the relaxation.
    """
    from mlptools.workflows.build_db import frame_to_record

    started, cpu_started = time.perf_counter(), time.process_time()
    rng = np.random.default_rng([int(seed), int(index)])
    rec = {"type": "result", "key": structure_key(seed, index), "seed": int(seed),
           "index": int(index)}
    try:
        atoms = random_structure(settings, rng)
    except ComputationError as exc:
        return {**rec, "status": "failed", "reason": f"generation: {exc}", "generator": "",
                "steps": 0, "time_s": time.perf_counter() - started,
                "cpu_s": time.process_time() - cpu_started}
    start_volume = atoms.get_volume() if atoms.pbc.all() and not settings.slab else None
    relaxed = relax_structure(atoms, calc, pressure_GPa=settings.pressure_GPa,
                              fmax=settings.fmax, max_steps=settings.max_steps,
                              target_volume=start_volume, stop_requested=stop_requested,
                              cell_filter=settings.cell_filter, in_plane=settings.slab)
    rec.update(status="ok" if relaxed.converged else "failed", reason=relaxed.reason,
               generator=atoms.info["generator"], steps=relaxed.steps,
               time_s=time.perf_counter() - started, cpu_s=time.process_time() - cpu_started)
    if relaxed.converged:
        frame = relaxed.atoms
        frame.info = {"nform": atoms.info["nform"]}
        rec.update(energy=relaxed.energy, enthalpy=relaxed.enthalpy, volume=relaxed.volume,
                   fmax=relaxed.fmax, frame=frame_to_record(frame))
    return rec


# worker-process state (multiprocessing): the calculator is built once per process
_WORKER = {}


def _worker_init(settings, model, make_calc):
    import signal

    # the parent handles SIGTERM/SIGINT (it terminates the pool after flushing the checkpoint)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _WORKER.update(settings=settings, calc=make_calc(model))


def _worker_run(task):
    seed, index = task
    return search_one(_WORKER["settings"], _WORKER["calc"], seed, index)


# ---------------------------------------------------------------------------------------------
# the search
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SearchResult:
    """Every record of the checkpoint for these settings (this run's and earlier ones)."""

    records: list  # result records (dicts, see search_one), in key order
    n_new: int  # relaxations done in this call
    stopped: bool

    @property
    def relaxed(self):
        """Records of converged relaxations."""
        return [r for r in self.records if r["status"] == "ok"]

    @property
    def failures(self):
        """Records of failed ones (generation or relaxation), each with its ``reason``."""
        return [r for r in self.records if r["status"] != "ok"]


def _default_make_calc(model):
    from mlptools.calculators import calculator_from_argument

    return calculator_from_argument(model)


def run_search(settings, model, *, seed, n_structures, checkpoint=None, model_id=None,
               n_jobs=1, comm=None, stop_requested=None, progress=None, make_calc=None):
    """Make and relax ``n_structures`` random structures of search ``seed`` (resumable).

    Parameters
    ----------
    settings : SearchSettings
    model : str
        A model file or calculator spec (``calculator_from_argument``); sent to worker
        processes, which build their own calculator with ``make_calc(model)``.
    seed : int (>= 0)
    n_structures : int
        Indices 0 .. n_structures − 1 of this seed; those already in the checkpoint are skipped.
    checkpoint : path, optional
        JSON-lines file of finished records (see the module docstring). Its first record holds
        the settings and ``model_id``; a checkpoint of other settings is an error.
    model_id : str, optional
        What identifies the model in the checkpoint (default ``model``).
    n_jobs : int
        Worker processes (1: in this process). Ignored with ``comm``.
    comm : mpi4py communicator, optional
        Ranks relax round-robin shares; rank 0 writes. Every rank must call this.
    stop_requested : callable, optional
        Polled between structures (and steps, in-process): a True stops the search cleanly;
        relaxations in flight are dropped and redone by the next run.
    progress : callable, optional
        ``progress(n_done, n_total)`` after each structure (rank 0).
    make_calc : callable, optional
        model → ASE calculator (default ``calculator_from_argument``); must be picklable for
        ``n_jobs > 1``.

    Returns
    -------
    SearchResult
        On rank 0: every record in the checkpoint for these settings; on other ranks, empty.

    Raises
    ------
    ParameterError
        Bad seed/count, or a checkpoint made with other settings or another model.
    """
    from mlptools.workflows import _parallel
    from mlptools.workflows.build_db import Checkpoint

    if seed is None or int(seed) < 0:
        raise ParameterError(f"seed must be an integer >= 0, got {seed}")
    if int(n_structures) < 1:
        raise ParameterError(f"the number of structures must be >= 1, got {n_structures}")
    make_calc = make_calc or _default_make_calc
    stop_requested = stop_requested or (lambda: False)
    model_id = model if model_id is None else model_id
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    header = {"type": "search", "version": CHECKPOINT_VERSION, "settings": settings.to_dict(),
              "model": model_id}

    ckpt = Checkpoint(checkpoint) if checkpoint is not None and rank == 0 else None
    done, error = {}, None
    if ckpt is not None:
        try:
            done, has_header = _read_checkpoint(ckpt, header)
            if not has_header:
                ckpt.append(header)
        except ParameterError as exc:
            error = exc
    if comm is not None:
        error = comm.bcast(error, root=0)
        keys = comm.bcast(sorted(done) if rank == 0 else None, root=0)
        if rank != 0:  # the other ranks only need to know what is done
            done = dict.fromkeys(keys)
    if error is not None:
        raise error
    todo = [(int(seed), i) for i in range(int(n_structures))
            if structure_key(seed, i) not in done]
    n_total = len(done) + len(todo) if rank == 0 else 0
    n_new = 0

    def record_done(rec):
        nonlocal n_new
        done[rec["key"]] = rec
        n_new += 1
        if ckpt is not None:
            ckpt.append(rec)
        if progress is not None:
            progress(len(done), n_total)

    calc_holder = []

    def work(task):
        if not calc_holder:
            calc_holder.append(make_calc(model))
        try:
            return search_one(settings, calc_holder[0], *task, stop_requested=stop_requested)
        except _Stopped:
            return None

    stopped = False
    try:
        if comm is not None and size > 1:
            with _parallel.ase_serial():
                mine = todo[rank::size]
                if rank == 0:
                    stopped = _parallel.run_writer(comm, mine, work, stop_requested, record_done)
                else:
                    stopped, n_new = _parallel.run_worker(comm, mine, work, stop_requested)
            stopped = comm.bcast(stopped, root=0)
        elif n_jobs > 1 and len(todo) > 1:
            stopped = _run_pool(settings, model, make_calc, todo, n_jobs, stop_requested,
                                record_done)
        else:
            for task in todo:
                if stop_requested():
                    stopped = True
                    break
                rec = work(task)
                if rec is None:
                    stopped = True
                    break
                record_done(rec)
    finally:
        if ckpt is not None:
            ckpt.close()
    if rank != 0:
        return SearchResult(records=[], n_new=n_new, stopped=stopped)
    records = sorted(done.values(), key=lambda r: (r["seed"], r["index"]))
    return SearchResult(records=records, n_new=n_new, stopped=stopped)


def _read_checkpoint(ckpt, header):
    """Finished records of the checkpoint, and whether it has its header."""
    done, has_header = {}, False
    # settings added to SearchSettings later are at their defaults in older checkpoints
    defaults = {f.name: f.default for f in dataclasses.fields(SearchSettings)
                if f.default is not dataclasses.MISSING}
    defaults = SearchSettings(composition="H", **{k: v for k, v in defaults.items()}).to_dict()
    for rec in ckpt.records():
        if rec.get("type") == "search":
            has_header = True
            old = {**defaults, **rec.get("settings", {})}
            if old != header["settings"] or rec.get("model") != header["model"]:
                diff = sorted(k for k in header["settings"] if old.get(k) != header["settings"][k])
                what = f"settings ({', '.join(diff)})" if diff else \
                    f"model {rec.get('model')!r}"
                raise ParameterError(
                    f"{ckpt.path}: checkpoint of a search with other {what}; use another "
                    "output (or remove the checkpoint to start afresh)")
        elif rec.get("type") == "result":
            done[rec["key"]] = rec
    return done, has_header


def _run_pool(settings, model, make_calc, todo, n_jobs, stop_requested, record_done):
    """Relax over a process pool; the caller's process records. Returns True if stopped."""
    import multiprocessing

    # spawn: children start clean (no inherited OpenMP/BLAS thread state or open files)
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(min(n_jobs, len(todo)), initializer=_worker_init,
                    initargs=(settings, model, make_calc))
    stopped = False
    try:
        results = pool.imap_unordered(_worker_run, todo)
        while True:
            if stop_requested():
                stopped = True
                break
            try:
                rec = results.next(timeout=0.2)
            except multiprocessing.TimeoutError:
                continue
            except StopIteration:
                break
            record_done(rec)
    finally:
        if stopped:
            pool.terminate()
        else:
            pool.close()
        pool.join()
    return stopped


# ---------------------------------------------------------------------------------------------
# ranking and de-duplication
# ---------------------------------------------------------------------------------------------


def spacegroup_symbol(atoms, symprec=0.1):
    """International symbol and number (``"Fd-3m (227)"``) by spglib, or None.

    None when spglib is not installed or the structure is not periodic.
    """
    if not atoms.pbc.all():
        return None
    try:
        import spglib
    except ImportError:
        return None
    if hasattr(spglib, "error"):  # spglib >= 2.5: raise errors instead of returning None
        spglib.error.OLD_ERROR_HANDLING = False
    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    try:
        return spglib.get_spacegroup(cell, symprec=symprec)
    except Exception as exc:  # spglib.error.SpglibError (a degenerate cell)
        log.debug("spglib: %s", exc)
        return None


@dataclasses.dataclass
class RankedStructure:
    """One unique structure of a search: the lowest-enthalpy instance and how often it came."""

    atoms: object  # ase.Atoms (relaxed; info holds the results, see rank_structures)
    key: str
    energy: float  # eV, total
    enthalpy: float  # eV, total
    volume: float  # Å³
    spacegroup: str | None
    times_found: int
    keys: list  # every record key merged into this one

    @property
    def n_atoms(self):
        """Number of atoms."""
        return len(self.atoms)

    @property
    def enthalpy_per_atom(self):
        """eV/atom."""
        return self.enthalpy / len(self.atoms)


def mean_soap(frames, hypers=None):
    """Per-structure mean SOAP power spectrum, normalised: (n_structures, n_features)."""
    from mlptools.descriptors.soap import soap_power_spectrum

    frames = list(frames)
    species = sorted({int(z) for a in frames for z in a.numbers})
    desc = soap_power_spectrum(frames, {**(hypers or DEDUP_SOAP), "species": species})
    mean_sf = np.zeros((len(frames), desc.features.shape[1]))
    np.add.at(mean_sf, desc.structure_index, desc.features)
    norm = np.linalg.norm(mean_sf, axis=1, keepdims=True)
    return mean_sf / np.where(norm > 0, norm, 1.0)


def rank_structures(records, *, energy_tol=0.01, similarity=0.999, symprec=0.1,
                    merge_symprec=0.3, soap_hypers=None, pressure_GPa=0.0):
    """Unique relaxed structures, lowest enthalpy per atom first.

    Parameters
    ----------
    records : list of dict
        Result records (``search_one``); failed ones are ignored.
    energy_tol : float, eV/atom
        Largest enthalpy difference of two instances of one structure.
    similarity : float
        Smallest cosine of the mean SOAP vectors of two instances (1 = identical environments).
    symprec : float, Å
        spglib tolerance of the reported space-group symbol.
    merge_symprec : float, Å
        spglib tolerance of the space groups that two instances must share to be merged. It is
        looser than ``symprec`` because relaxations stopped at ``fmax`` leave soft distortions:
        in a Si8 search, three instances of one structure (cosine 0.9998, equal H) came out as
        P4/mmm, Cmmm and P2/m at 0.1 Å and all as P4/mmm at 0.3 Å.
    soap_hypers : dict, optional
        SOAP hypers of the comparison (default :data:`DEDUP_SOAP`).
    pressure_GPa : float, GPa
        Stored in each frame's info.

    Returns
    -------
    list of RankedStructure
        The atoms carry ``info``: ``mlptools_energy``, ``mlptools_enthalpy`` (eV),
        ``enthalpy_per_atom`` (eV/atom), ``volume_per_atom`` (Å³), ``pressure_GPa``,
        ``spacegroup``, ``times_found``, ``structure_key``, ``rank`` (1 = lowest).
    """
    from mlptools.workflows.build_db import frame_from_record

    ok = sorted((r for r in records if r["status"] == "ok"),
                key=lambda r: (r["enthalpy"] / len(r["frame"]["numbers"]), r["key"]))
    if not ok:
        return []
    frames = [frame_from_record(r["frame"]) for r in ok]
    h_s = np.array([r["enthalpy"] / len(a) for r, a in zip(ok, frames, strict=True)])
    soap_sf = mean_soap(frames, soap_hypers)
    groups = [spacegroup_symbol(a, symprec) for a in frames]
    loose = [spacegroup_symbol(a, merge_symprec) for a in frames]
    comp_s = [_reduced_formula(a) for a in frames]
    unique = []  # indices of representatives
    members = {}
    for s in range(len(ok)):
        for u in unique:
            if (comp_s[u] == comp_s[s] and abs(h_s[s] - h_s[u]) <= energy_tol
                    and soap_sf[s] @ soap_sf[u] >= similarity
                    and (loose[s] is None or loose[u] is None or loose[s] == loose[u])):
                members[u].append(s)
                break
        else:
            unique.append(s)
            members[s] = [s]
    out = []
    for rank, u in enumerate(unique, 1):
        rec, atoms = ok[u], frames[u]
        n = len(atoms)
        atoms.info = {
            "mlptools_energy": rec["energy"], "mlptools_enthalpy": rec["enthalpy"],
            "enthalpy_per_atom": rec["enthalpy"] / n, "volume_per_atom": rec["volume"] / n,
            "pressure_GPa": pressure_GPa, "spacegroup": groups[u] or "n/a",
            "times_found": len(members[u]), "structure_key": rec["key"], "rank": rank,
        }
        out.append(RankedStructure(atoms=atoms, key=rec["key"], energy=rec["energy"],
                                   enthalpy=rec["enthalpy"], volume=rec["volume"],
                                   spacegroup=groups[u], times_found=len(members[u]),
                                   keys=[ok[m]["key"] for m in members[u]]))
    return out


def _reduced_formula(atoms):
    from math import gcd

    z, counts = np.unique(atoms.numbers, return_counts=True)
    g = functools.reduce(gcd, counts.tolist())
    return tuple(zip(z.tolist(), (counts // g).tolist(), strict=True))


def summary_lines(ranked, pressure_GPa=0.0, n_failed=0):
    """The ``ca -r``-like table: one line per unique structure, enthalpy relative to the best.

    Columns: rank, key (seed:index), pressure (GPa), volume per atom (Å³), H/atom − best
    (eV), H/atom (eV), atoms, formula, space group, times found.
    """
    lines = [f"{'#':>4} {'key':<12} {'P/GPa':>7} {'V/atom':>8} {'dH/atom':>9} {'H/atom':>11} "
             f"{'n':>4} {'formula':<10} {'spacegroup':<14} {'found':>5}"]
    if not ranked:
        return lines
    best = ranked[0].enthalpy_per_atom
    for k, r in enumerate(ranked, 1):
        lines.append(
            f"{k:>4d} {r.key:<12} {pressure_GPa:>7.2f} {r.volume / r.n_atoms:>8.3f} "
            f"{r.enthalpy_per_atom - best:>9.4f} {r.enthalpy_per_atom:>11.5f} {r.n_atoms:>4d} "
            f"{r.atoms.get_chemical_formula(empirical=True):<10} {r.spacegroup or 'n/a':<14} "
            f"{r.times_found:>5d}")
    total = sum(r.times_found for r in ranked)
    lines.append(f"# {len(ranked)} unique of {total} relaxed structures, {n_failed} failed")
    return lines
