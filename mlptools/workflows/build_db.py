"""Build a labelled reference database from a recipe: generate → de-duplicate → label → split.

Library half of ``mlptools build-db``. Labelling is checkpointed: every labelled (or failed)
structure is appended as one JSON line to a checkpoint file, flushed and fsync'ed, keyed by a
structure id (sha256 of the recipe entry, the seed and the index). Running the same recipe with the
same seed and checkpoint again skips everything already done, so a ``kill -9`` loses at most the
structure being computed. The generated structures are stored in the checkpoint too, so MD-made
snapshots are not recomputed on resume.

With an MPI communicator (mpi4py) rank 0 generates the structures and broadcasts them, every rank
labels a disjoint round-robin share, and rank 0 alone writes the checkpoint.

A calculation that raises is recorded with its error and skipped; it never stops the run.
``stop_requested()`` is checked between structures (SIGTERM from a batch system): the build
returns with ``stopped=True`` after the structure in hand.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from mlptools.calculators import isolated_atom, make_calculator
from mlptools.errors import ComputationError, InputError, MlptoolsError, ParameterError
from mlptools.keys import CONFIG_TYPE, ENERGY, FORCES, STRESS
from mlptools.workflows import _parallel
from mlptools.workflows import structures as st

__all__ = [
    "BuildResult",
    "Checkpoint",
    "Summary",
    "build_database",
    "deduplicate",
    "frame_from_record",
    "frame_to_record",
    "generate_structures",
    "label_structure",
    "split_by_config_type",
    "summarize",
]

log = logging.getLogger(__name__)

STRUCTURE_ID = "structure_id"
ISOLATED_ATOM = "IsolatedAtom"  # config_type of the E0 frames (the GAP/MACE convention)
CHECKPOINT_VERSION = 1


# ---------------------------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------------------------


def structure_id(entry_digest, seed, k):
    """Stable id of the k-th structure of a recipe entry: sha256(entry, seed, k), 16 hex digits."""
    return hashlib.sha256(f"{entry_digest}:{seed}:{k}".encode()).hexdigest()[:16]


def _entry_rng(entry, seed):
    # Each entry draws from its own stream, keyed by its content: editing or adding one entry
    # leaves the structures of the others unchanged.
    return np.random.default_rng([int(seed), int(entry.digest[:15], 16)])


def _read_structures(path, *, require=(), fmt=None):
    """Frames of a file through mlptools.io (any format ASE reads); ``fmt`` forces an ASE format."""
    if fmt is None:
        from mlptools.io.extxyz import iter_frames

        return list(iter_frames([str(path)], require=require, min_distance=0.0))
    import ase.io

    from mlptools.io.validate import check_frame, normalize_labels

    try:
        frames = ase.io.read(path, index=":", format=fmt)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except Exception as exc:  # ASE raises many types for a bad file
        raise InputError(f"{path}: cannot read as {fmt} ({type(exc).__name__}: {exc})") from None
    frames = frames if isinstance(frames, list) else [frames]
    return [check_frame(normalize_labels(a, str(path), k), str(path), k, require=require,
                        min_distance=0.0) for k, a in enumerate(frames)]


def _make_base(entry, base_dir):
    base = entry.base
    if "file" in base:
        path = Path(base["file"])
        if not path.is_absolute():
            path = Path(base_dir) / path
        frames = _read_structures(path, fmt=base["format"])
        try:
            atoms = st._clean(frames[base["index"]])
        except IndexError:
            raise InputError(
                f"{path}: has {len(frames)} frames, no index {base['index']}") from None
    else:
        atoms = st.prototype(base["symbol"], base["prototype"], a=base["a"], c=base["c"],
                             covera=base["covera"], cubic=base["cubic"],
                             orthorhombic=base["orthorhombic"])
    if base.get("supercell"):
        atoms = st.supercell(atoms, base["supercell"])
    return atoms


def _entry_frames(entry, rng, base_dir, md_calc, make_calc):
    p = entry.params
    base = _make_base(entry, base_dir) if entry.base is not None else None
    n = entry.count
    kind = entry.kind
    if kind == "crystal":
        return [st._clean(base) for _ in range(n)]
    if kind == "volume_scan":
        return st.volume_scan(base, n, volume_range=p["volume_range"])
    if kind == "strain":
        return st.random_strains(base, n, rng, max_strain=p["max_strain"])
    if kind == "rattle":
        return [st.rattle(base, rng, sigma=p["sigma"]) for _ in range(n)]
    if kind == "vacancy":
        return st.vacancies(base, n, rng, n_vacancies=p["n_vacancies"])
    if kind == "interstitial":
        return st.interstitials(base, n, rng, symbol=p["symbol"], n_trials=p["n_trials"])
    if kind == "surface":
        slabs = st.surfaces(base, p["miller"], layers=p["layers"], vacuum=p["vacuum"],
                            repeat=p["repeat"])
        return [st._clean(s) for s in slabs for _ in range(n)]
    if kind in ("md", "melt_quench"):
        spec = p["calc"] or md_calc
        if spec is None:
            raise ParameterError(f"{kind} needs a calculator: set calc in the table or [label]")
        kw = {k: v for k, v in p.items() if k != "calc"}
        fn = st.md_snapshots if kind == "md" else st.melt_quench
        return fn(base, make_calc(spec), n, rng, **kw)
    if kind == "random":
        return st.random_structures(p["symbols"], n, rng, volume_per_atom=p["volume_per_atom"],
                                    min_distance=p["min_distance"])
    if kind == "import":
        return _import_frames(p, base_dir)
    raise ParameterError(f"unknown kind {kind!r}")  # recipe.py validated it; kept for safety


def _import_frames(p, base_dir):
    """Existing labelled frames (DFT outputs), with label and unit checks."""
    paths = []
    for pattern in p["files"]:
        full = pattern if os.path.isabs(pattern) else os.path.join(base_dir, pattern)
        matches = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
        if not matches:
            raise InputError(f"{pattern}: no file matches")
        paths.extend(matches)
    frames = []
    for path in paths:
        for k, atoms in enumerate(_read_structures(path, require=(ENERGY, FORCES),
                                                   fmt=p["format"])):
            results = dict(atoms.calc.results)
            where = f"{path}: frame {k}"
            e = float(results[ENERGY])
            f = np.asarray(results[FORCES], dtype=float)
            if f.shape != (len(atoms), 3):
                raise InputError(
                    f"{where}: forces have shape {f.shape}, expected ({len(atoms)}, 3)")
            if not np.isfinite(e) or not np.all(np.isfinite(f)):
                raise InputError(f"{where}: energy or forces are NaN/inf")
            fmax = float(np.abs(f).max()) if len(f) else 0.0
            if fmax > p["max_force"]:
                raise InputError(f"{where}: a force of {fmax:.3g} eV/Å exceeds max_force = "
                                 f"{p['max_force']} (wrong units? labels must be eV and eV/Å)")
            if abs(e) / max(len(atoms), 1) > 1e5:
                raise InputError(f"{where}: |energy| per atom {abs(e) / len(atoms):.3g} eV is "
                                 "implausible (wrong units? energies must be eV)")
            frame = st._clean(atoms)
            labels = {ENERGY: e, FORCES: f}
            if STRESS in results and np.all(np.isfinite(results[STRESS])):
                labels[STRESS] = np.asarray(results[STRESS], dtype=float)
            frame.info["_labels"] = labels
            frame.info["source"] = f"{os.path.basename(path)}:{k}"
            frames.append(frame)
    return frames


def generate_structures(recipe, *, seed, calc=None, make_calc=make_calculator):
    """All structures of a recipe, in recipe order, each tagged with config_type and an id.

    Parameters
    ----------
    recipe : mlptools.workflows.recipe.Recipe
    seed : int
        With the recipe, fixes every structure (same recipe + seed → identical structures).
    calc : str, optional
        Calculator spec for MD entries without their own ``calc`` (default: the recipe's).
    make_calc : callable
        spec → calculator (for tests).

    Returns
    -------
    list of ase.Atoms
        ``info["config_type"]`` and ``info["structure_id"]`` set; imported frames carry their
        labels in ``info["_labels"]``.
    """
    md_calc = calc or recipe.calc
    frames = []
    for entry in recipe.entries:
        rng = _entry_rng(entry, seed)
        try:
            made = _entry_frames(entry, rng, recipe.base_dir, md_calc, make_calc)
        except MlptoolsError as exc:
            raise type(exc)(f"{recipe.source}: structures[{entry.index}] "
                            f"({entry.config_type}): {exc}") from None
        for k, atoms in enumerate(made):
            if entry.rattle > 0 and entry.kind != "import":
                atoms = st.rattle(atoms, rng, sigma=entry.rattle)
            atoms.info[CONFIG_TYPE] = entry.config_type
            atoms.info[STRUCTURE_ID] = structure_id(entry.digest, seed, k)
            frames.append(atoms)
    return frames


def _isolated_atoms(frames, box):
    species = sorted({int(z) for a in frames for z in a.numbers})
    out = []
    from ase.data import chemical_symbols

    for z in species:
        atoms = isolated_atom(chemical_symbols[z], box=box)
        atoms.info[CONFIG_TYPE] = ISOLATED_ATOM
        atoms.info[STRUCTURE_ID] = f"e0-{chemical_symbols[z]}-{box:g}"
        out.append(atoms)
    return out


# ---------------------------------------------------------------------------------------------
# de-duplication
# ---------------------------------------------------------------------------------------------


def _fingerprint(atoms, cutoff):
    from mlptools.neighbors import neighbor_list

    d = neighbor_list("d", atoms.positions, atoms.cell.array, atoms.pbc, cutoff)[0]
    return np.sort(d)


def deduplicate(frames, *, tolerance, cutoff=5.0):
    """Drop near-identical structures, keeping the first of each group.

    Two structures are near-identical when they have the same species counts and periodicity,
    cell volumes within ``tolerance`` × (their number of atoms) Å³, and the same number of
    pair distances below ``cutoff`` that all agree within ``tolerance`` Å once sorted (invariant
    under rotation, translation and permutation).

    Returns
    -------
    kept : list of ase.Atoms
    dropped : list of str
        structure ids of the dropped frames.
    """
    if tolerance <= 0:
        return list(frames), []
    kept, dropped, buckets = [], [], {}
    for atoms in frames:
        if "_labels" in atoms.info:  # imported data is kept as given
            kept.append(atoms)
            continue
        fp = _fingerprint(atoms, cutoff)
        key = (tuple(sorted(np.unique(atoms.numbers, return_counts=True)[1].tolist())),
               tuple(np.unique(atoms.numbers).tolist()), tuple(atoms.pbc.tolist()), len(fp))
        vol = atoms.get_volume() if atoms.pbc.all() else 0.0
        twin = None
        for other_fp, other_vol in buckets.get(key, []):
            if abs(vol - other_vol) <= tolerance * len(atoms) and (
                    len(fp) == 0 or np.max(np.abs(fp - other_fp)) <= tolerance):
                twin = True
                break
        if twin:
            dropped.append(atoms.info.get(STRUCTURE_ID))
        else:
            buckets.setdefault(key, []).append((fp, vol))
            kept.append(atoms)
    return kept, dropped


# ---------------------------------------------------------------------------------------------
# labelling and records
# ---------------------------------------------------------------------------------------------


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value


def frame_to_record(atoms):
    """A JSON-able dict of a frame: numbers, positions, cell, pbc, info, labels (exact floats)."""
    rec = {
        "numbers": atoms.numbers.tolist(),
        "positions": atoms.positions.tolist(),
        "cell": atoms.cell.array.tolist(),
        "pbc": atoms.pbc.tolist(),
        "info": {k: _jsonable(v) for k, v in atoms.info.items()
                 if k != "_labels" and isinstance(_jsonable(v), (str, int, float, bool, list))},
    }
    labels = atoms.info.get("_labels")
    if labels is None and atoms.calc is not None:
        labels = atoms.calc.results
    if labels:
        rec["labels"] = {k: _jsonable(v) for k, v in labels.items()
                         if k in (ENERGY, FORCES, STRESS)}
    return rec


def frame_from_record(rec):
    """Inverse of :func:`frame_to_record`; labels come back on a SinglePointCalculator."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = Atoms(numbers=rec["numbers"], positions=rec["positions"], cell=rec["cell"],
                  pbc=rec["pbc"])
    atoms.info.update(rec["info"])
    labels = rec.get("labels")
    if labels:
        atoms.calc = SinglePointCalculator(
            atoms, **{k: np.asarray(v) if k != ENERGY else float(v) for k, v in labels.items()})
    return atoms


def label_structure(atoms, calc):
    """Energy (eV), forces (eV/Å) and, for fully periodic cells, stress (eV/Å³) of ``atoms``.

    Returns
    -------
    dict
        ``{"energy": float, "forces": (n, 3), "stress": (6,)}`` (stress only when pbc is all
        True and the calculator provides it).

    Raises
    ------
    ComputationError
        The calculator raised, or returned NaN/inf (message ``"Type: message"``).
    """
    from ase.calculators.calculator import PropertyNotImplementedError

    work = atoms.copy()
    work.calc = calc
    try:
        energy = float(work.get_potential_energy())
        forces = np.array(work.get_forces(), dtype=float)
        labels = {ENERGY: energy, FORCES: forces}
        if work.pbc.all():
            try:
                labels[STRESS] = np.array(work.get_stress(voigt=True), dtype=float)
            except PropertyNotImplementedError:
                pass
    except Exception as exc:  # a failing reference calculation is data, not a crash
        raise ComputationError(f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None
    if not np.isfinite(energy) or not np.all(np.isfinite(forces)):
        raise ComputationError("calculator returned NaN/inf")
    return labels


def _label_record(atoms, calc_spec, calc_holder, make_calc):
    sid = atoms.info[STRUCTURE_ID]
    if "_labels" in atoms.info:  # imported: already labelled and checked
        return {"type": "result", "id": sid, "status": "ok", "calc": "import",
                "frame": frame_to_record(atoms)}
    if calc_holder[0] is None:
        calc_holder[0] = make_calc(calc_spec)
    try:
        labels = label_structure(atoms, calc_holder[0])
    except ComputationError as exc:
        calc_holder[0] = None  # a calculator may be left in a bad state: start afresh
        return {"type": "result", "id": sid, "status": "failed", "calc": calc_spec,
                "config_type": atoms.info.get(CONFIG_TYPE), "error": str(exc)}
    frame = atoms.copy()
    frame.info["_labels"] = labels
    return {"type": "result", "id": sid, "status": "ok", "calc": calc_spec,
            "frame": frame_to_record(frame)}


# ---------------------------------------------------------------------------------------------
# checkpoint
# ---------------------------------------------------------------------------------------------


class Checkpoint:
    """Append-only JSON-lines file; each record is flushed and fsync'ed as it is written.

    Records: ``{"type": "structures", "recipe", "seed", "frames", "duplicates"}`` (the generated
    set) and ``{"type": "result", "id", "status": "ok"|"failed", ...}``. A line cut short by a
    kill is ignored (and cut off before the next append).
    """

    def __init__(self, path):
        self.path = Path(path)
        self._fh = None

    def records(self):
        """Every complete record in the file (none if it does not exist)."""
        if not self.path.exists():
            return []
        out = []
        with open(self.path, "rb") as fh:
            for n, line in enumerate(fh, 1):
                if not line.endswith(b"\n"):
                    break  # torn final line
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    raise InputError(f"{self.path}: line {n}: not a checkpoint record; "
                                     "remove the file to start afresh") from None
        return out

    def append(self, record):
        """Write one record durably (flush + fsync)."""
        if self._fh is None:
            self._repair()
            self._fh = open(self.path, "ab")
        self._fh.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def _repair(self):
        if not self.path.exists():
            return
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if data and not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)

    def close(self):
        """Close the file (records are already on disk)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# ---------------------------------------------------------------------------------------------
# the build
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Summary:
    """Per-config-type statistics of a labelled database (for the stderr summary)."""

    counts: dict  # config_type -> number of labelled frames
    energy_per_atom_range: dict  # config_type -> (min, max), eV/atom
    max_force: dict  # config_type -> max |F| component norm, eV/Å
    n_frames: int
    n_failed: int
    n_duplicates: int
    e0: dict  # symbol -> eV

    def lines(self):
        """Human-readable table lines (the CLI prints them on stderr)."""
        out = [f"{'config_type':<20} {'count':>6} {'E/atom min':>11} {'E/atom max':>11} "
               f"{'max|F|':>8}"]
        for ct in sorted(self.counts):
            lo, hi = self.energy_per_atom_range[ct]
            out.append(f"{ct:<20} {self.counts[ct]:>6d} {lo:>11.4f} {hi:>11.4f} "
                       f"{self.max_force[ct]:>8.3f}")
        out.append(f"total {self.n_frames} frames, {self.n_failed} failed, "
                   f"{self.n_duplicates} duplicates dropped")
        if self.e0:
            out.append("E0: " + ", ".join(f"{s} {e:.6f} eV" for s, e in self.e0.items()))
        return out


@dataclasses.dataclass
class BuildResult:
    """What :func:`build_database` produced (complete on rank 0; empty frames on other ranks)."""

    frames: list  # labelled ase.Atoms in recipe order (SinglePointCalculator labels)
    failures: list  # (structure_id, config_type, error)
    duplicates: list  # dropped structure ids
    e0: dict
    stopped: bool
    n_total: int
    n_labelled_now: int
    summary: Summary | None = None


def summarize(frames, failures=(), duplicates=(), e0=None):
    """Counts per config type, energy-per-atom range and max force of labelled frames."""
    counts, erange, fmax = {}, {}, {}
    for atoms in frames:
        ct = atoms.info.get(CONFIG_TYPE, "default")
        res = atoms.calc.results
        epa = float(res[ENERGY]) / len(atoms)
        f = float(np.linalg.norm(res[FORCES], axis=1).max()) if len(atoms) else 0.0
        counts[ct] = counts.get(ct, 0) + 1
        lo, hi = erange.get(ct, (np.inf, -np.inf))
        erange[ct] = (min(lo, epa), max(hi, epa))
        fmax[ct] = max(fmax.get(ct, 0.0), f)
    return Summary(counts=counts, energy_per_atom_range=erange, max_force=fmax,
                   n_frames=len(frames), n_failed=len(failures), n_duplicates=len(duplicates),
                   e0=dict(e0 or {}))


def split_by_config_type(frames, fractions, rng):
    """Random split of each config type: ``{"test": 0.1}`` → ``{"train": [...], "test": [...]}``.

    Each named set gets round(fraction × n) frames of every config type (drawn with ``rng``),
    ``"train"`` the rest; order within a set follows the input. Isolated-atom frames always go
    to train.
    """
    names = list(fractions)
    if "train" in names:
        raise ParameterError("split: 'train' is the remainder; name the other sets only")
    if sum(fractions.values()) >= 1 or any(not 0 <= f < 1 for f in fractions.values()):
        raise ParameterError(
            f"split fractions must be in [0, 1) and add up to < 1, got {fractions}")
    groups = {}
    for k, atoms in enumerate(frames):
        groups.setdefault(atoms.info.get(CONFIG_TYPE, "default"), []).append(k)
    where = {}
    for ct, idx in groups.items():
        if ct == ISOLATED_ATOM:
            continue
        perm = rng.permutation(len(idx))
        start = 0
        for name in names:
            take = int(round(fractions[name] * len(idx)))
            for p in perm[start:start + take]:
                where[idx[p]] = name
            start += take
    out = {"train": [], **{n: [] for n in names}}
    for k, atoms in enumerate(frames):
        out[where.get(k, "train")].append(atoms)
    return out


def _generate_all(recipe, seed, calc_spec, make_calc, explore=None):
    frames = generate_structures(recipe, seed=seed, calc=calc_spec, make_calc=make_calc)
    frames, duplicates = deduplicate(frames, tolerance=recipe.dedup_tolerance,
                                     cutoff=recipe.dedup_cutoff)
    if explore is not None:
        frames = _explore(frames, explore, seed)
    if recipe.isolated_atoms and calc_spec is not None:
        frames = frames + _isolated_atoms(frames, recipe.box)
    return frames, duplicates


def _explore(frames, explore, seed):
    """The generated structures replaced by the snapshots the interim potential is least sure of."""
    from mlptools.calculators import calculator_from_argument
    from mlptools.workflows.explore import explore as run_explore

    model, settings = explore
    imported = [a for a in frames if "_labels" in a.info]  # already labelled: kept as they are
    seeds = [a for a in frames if "_labels" not in a.info]
    result = run_explore(seeds, calculator_from_argument(model), np.random.default_rng([seed, 2]),
                         settings, id_key=STRUCTURE_ID)
    log.info("explore: kept %d of %d candidates by %s (%d trajectories ended early)",
             len(result.frames), len(result.scores), result.method, result.n_failed)
    return imported + result.frames


def build_database(recipe, *, seed=None, calc=None, checkpoint=None, comm=None,
                   stop_requested=None, progress=None, make_calc=make_calculator, explore=None):
    """Generate, de-duplicate and label the structures of a recipe, with checkpoint/resume.

    Parameters
    ----------
    recipe : mlptools.workflows.recipe.Recipe
    seed : int, optional
        Defaults to the recipe's ``seed``; one of the two is required.
    calc : str, optional
        Calculator spec; overrides ``[label] calc``.
    checkpoint : path, optional
        JSON-lines checkpoint; rerunning with the same one resumes (see module docstring).
    comm : mpi4py communicator, optional
        None for a serial run; with one, ranks label round-robin shares and rank 0 writes.
    stop_requested : callable, optional
        Checked between structures; when it returns True the build stops cleanly.
    progress : callable, optional
        ``progress(n_done, n_total)`` on rank 0 after each structure.
    make_calc : callable
        spec → calculator.
    explore : (str, ExploreSettings), optional
        An interim potential (model file or calculator spec) and how to explore with it: the
        generated structures seed short MD runs and only the most uncertain snapshots are
        labelled (:mod:`mlptools.workflows.explore`).

    Returns
    -------
    BuildResult
        On rank 0: frames in recipe order (E0 frames last), failures, duplicates, E0, summary.

    Raises
    ------
    ParameterError
        No seed or no calculator, or a checkpoint made with another calculator.
    """
    context = _parallel.ase_serial() if comm is not None else contextlib.nullcontext()
    with context:
        return _build_database(recipe, seed, calc, checkpoint, comm, stop_requested, progress,
                               make_calc, explore)


def _build_database(recipe, seed, calc, checkpoint, comm, stop_requested, progress, make_calc,
                    explore=None):
    seed = recipe.seed if seed is None else seed
    if seed is None:
        raise ParameterError(f"{recipe.source}: no seed: give --seed or a top-level seed")
    if seed < 0:
        raise ParameterError(f"seed must be >= 0, got {seed}")
    calc_spec = calc or recipe.calc
    stop_requested = stop_requested or (lambda: False)
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)

    ckpt = Checkpoint(checkpoint) if checkpoint is not None and rank == 0 else None
    payload = None
    error = None
    if rank == 0:
        try:
            payload = _prepare(recipe, seed, calc_spec, ckpt, make_calc, explore)
        except MlptoolsError as exc:
            error = exc
    if comm is not None:
        error = comm.bcast(error, root=0)
        payload = comm.bcast(payload, root=0)
    if error is not None:
        raise error
    frames, duplicates, done = payload

    todo = [a for a in frames if a.info[STRUCTURE_ID] not in done]
    mine = todo[rank::size]
    n_total = len(frames)
    calc_holder = [None]
    stopped = False
    n_now = 0

    def label(atoms):
        return _label_record(atoms, calc_spec, calc_holder, make_calc)

    def record_done(rec):
        nonlocal n_now
        done[rec["id"]] = rec
        n_now += 1
        if ckpt is not None:
            ckpt.append(rec)
        if progress is not None:
            progress(len(done), n_total)

    try:
        if comm is None or size == 1:
            for atoms in mine:
                if stop_requested():
                    stopped = True
                    break
                record_done(label(atoms))
        elif rank == 0:
            stopped = _parallel.run_writer(comm, mine, label, stop_requested, record_done)
        else:
            stopped, n_now = _parallel.run_worker(comm, mine, label, stop_requested)
    finally:
        if ckpt is not None:
            ckpt.close()
    if comm is not None:
        stopped = comm.bcast(stopped, root=0)
    if rank != 0:
        return BuildResult(frames=[], failures=[], duplicates=list(duplicates), e0={},
                           stopped=stopped, n_total=n_total, n_labelled_now=n_now)
    out, failures, e0 = [], [], {}
    for atoms in frames:
        rec = done.get(atoms.info[STRUCTURE_ID])
        if rec is None:
            continue
        if rec["status"] == "ok":
            frame = frame_from_record(rec["frame"])
            out.append(frame)
            if frame.info.get(CONFIG_TYPE) == ISOLATED_ATOM:
                e0[frame.get_chemical_symbols()[0]] = float(frame.calc.results[ENERGY])
        else:
            failures.append((rec["id"], rec.get("config_type"), rec["error"]))
    regular = [a for a in out if a.info.get(CONFIG_TYPE) != ISOLATED_ATOM]
    return BuildResult(frames=out, failures=failures, duplicates=list(duplicates), e0=e0,
                       stopped=stopped, n_total=n_total, n_labelled_now=n_now,
                       summary=summarize(regular, failures, duplicates, e0))


def _prepare(recipe, seed, calc_spec, ckpt, make_calc, explore=None):
    """Rank 0: generated structures (from the checkpoint when it has them) and finished records."""
    explore_key = None if explore is None else [explore[0], explore[1].to_dict()]
    if any(e.kind != "import" for e in recipe.entries):
        if calc_spec is None:
            raise ParameterError(f"{recipe.source}: no calculator: give --calc or [label] calc")
        make_calc(calc_spec)  # fail fast, with one clear line, on an unknown spec
    records = ckpt.records() if ckpt is not None else []
    block = None
    done = {}
    for rec in records:
        if rec.get("type") == "structures" and rec.get("recipe") == recipe.digest and \
                rec.get("seed") == seed and rec.get("calc") == calc_spec and \
                rec.get("explore") == explore_key:
            block = rec
        elif rec.get("type") == "result":
            if rec["calc"] not in (calc_spec, "import"):
                raise ParameterError(
                    f"{ckpt.path}: labelled with calculator {rec['calc']!r}, not {calc_spec!r}; "
                    "use another checkpoint file or remove it")
            done[rec["id"]] = rec
    if block is not None:
        frames = [frame_from_record(r) for r in block["frames"]]
        for atoms in frames:
            if atoms.calc is not None:  # only imported frames were stored with labels
                atoms.info["_labels"] = dict(atoms.calc.results)
            atoms.calc = None
        duplicates = block["duplicates"]
    else:
        frames, duplicates = _generate_all(recipe, seed, calc_spec, make_calc, explore)
        if ckpt is not None:
            recs = [frame_to_record(atoms) for atoms in frames]
            ckpt.append({"type": "structures", "version": CHECKPOINT_VERSION,
                         "recipe": recipe.digest, "seed": seed, "calc": calc_spec,
                         "explore": explore_key,
                         "frames": recs, "duplicates": duplicates})
    ids = {a.info[STRUCTURE_ID] for a in frames}
    done = {k: v for k, v in done.items() if k in ids}
    return frames, duplicates, done
