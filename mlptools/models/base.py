"""What every fitted model shares: species, per-species E0, a baseline, the model file, prediction.

Energy model of every kind::

    E = Σ_i E0[Z_i] + E_baseline + E_ml

where E_ml is the regressor's (GAP, linear, ...) local-energy sum and E_baseline a fixed
repulsive pair term (:mod:`mlptools.models.baselines`). Forces and stress are the exact
derivatives; stress is ASE's (1/V) dE/dε (eV/Å³, positive = tensile).

Model file (format "mlptools-model", version 1), one HDF5 file written atomically::

    /                attrs: format, format_version, units, hypers (JSON of the fit hypers),
                     provenance (JSON), model_kind ("gap", "linear", "quadratic", ...)
    /species         (S,) int64, atomic numbers, sorted
    /e0              (S,) float64, eV per atom of each species;  attrs: method
    /baseline        group; attrs: kind ("none", "zbl" or "table"), hypers (JSON; zbl: the
                     per-pair switching radii "pairs": [[Z1, Z2, r_in, r_out], ...] in Å;
                     table: "pairs" [[Z1, Z2] or "*", ...] and "source"); table datasets
                     r_k (Å) and energy_k (eV), the k-th pair's grid and energies
    /training_errors group; attrs: train, valid (JSON of ErrorReport.to_dict(), or "null"),
                     fit_seconds
    /model           group filled by the kind's ``to_h5`` (see its class docstring)

Kinds register themselves in :data:`MODEL_KINDS` (``kind -> class``) with :func:`register`; a
class provides ``to_h5(group)`` and the classmethod ``from_h5(group, common)``, and implements
:meth:`Model.predict_ml`.
"""

import json
import logging

import numpy as np

from mlptools import keys
from mlptools.errors import InputError, ParameterError

log = logging.getLogger(__name__)

FORMAT = "mlptools-model"
FORMAT_VERSION = 1
UNITS = {"energy": "eV", "forces": "eV/Å", "stress": "eV/Å³ (ASE sign)", "length": "Å",
         "e0": "eV/atom", "sigma_energy": "eV/atom", "sigma_force": "eV/Å",
         "sigma_virial": "eV/atom"}

#: model_kind -> class with to_h5/from_h5
MODEL_KINDS = {}


def register(*kinds):
    """Class decorator: store the class under each ``kind`` in :data:`MODEL_KINDS`."""
    def deco(cls):
        for kind in kinds:
            MODEL_KINDS[kind] = cls
        return cls

    return deco


def species_symbols(numbers):
    from ase.data import chemical_symbols

    return ", ".join(chemical_symbols[int(z)] for z in numbers)


class Model:
    """Base of fitted models: species, E0, baseline and the common prediction driver.

    Attributes
    ----------
    kind : str, the ``model_kind``
    species : tuple of int, atomic numbers the model covers
    e0 : dict int -> float, eV per atom of each species
    e0_method : str, how E0 was obtained ("isolated", "given", "fitted")
    baseline : Baseline or None
    hypers : dict, JSON of the fit hypers
    training_errors : dict, {"train": ErrorReport dict or None, "valid": ...}
    """

    kind = "base"

    def __init__(self, *, species, e0, e0_method="fitted", baseline=None, hypers=None,
                 training_errors=None):
        self.species = tuple(int(z) for z in species)
        self.e0 = {int(z): float(e0[z]) for z in self.species}
        self.e0_method = e0_method
        self.baseline = baseline
        self.hypers = hypers or {}
        self.training_errors = training_errors or {"train": None, "valid": None}

    # ---------------------------------------------------------------- to be provided by kinds

    @property
    def cutoff(self):
        """Largest interaction range (Å), ML terms and baseline."""
        raise NotImplementedError

    def predict_ml(self, atoms, *, forces=True, stress=True, uncertainty=False):
        """The ML part of one structure: dict with ``energies`` (n,) eV and, as asked,
        ``forces`` (n, 3) eV/Å, ``virial_de`` dE/dε (3, 3) eV, and the uncertainty keys."""
        raise NotImplementedError

    def to_h5(self, group):
        raise NotImplementedError

    @classmethod
    def from_h5(cls, group, common):
        raise NotImplementedError

    # ---------------------------------------------------------------- common driver

    def check_species(self, numbers, where="structure"):
        missing = sorted(set(int(z) for z in np.unique(numbers)) - set(self.species))
        if missing:
            raise InputError(f"{where}: species {species_symbols(missing)} not covered by the "
                             f"model (it has {species_symbols(self.species)})")

    def e0_per_atom(self, numbers):
        return np.array([self.e0[int(z)] for z in numbers], dtype=np.float64)

    def predict(self, atoms, *, forces=True, stress=True, uncertainty=False):
        """Energy, per-atom energies, forces, stress (and uncertainties) of one structure.

        Returns
        -------
        dict
            ``energy`` eV, ``energies`` (n,) eV, ``forces`` (n, 3) eV/Å, ``stress`` Voigt-6
            eV/Å³ (ASE sign; only for a 3-D cell), and with ``uncertainty`` the keys of
            :mod:`mlptools.keys` (``energy_uncertainty`` eV, ``energies_uncertainty`` (n,) eV,
            ``forces_uncertainty`` (n,) eV/Å).

        Raises
        ------
        InputError
            A species the model lacks.
        """
        self.check_species(atoms.numbers)
        n = len(atoms)
        stress = stress and atoms.cell.rank == 3
        out = self.predict_ml(atoms, forces=forces, stress=stress, uncertainty=uncertainty)
        energies = out["energies"] + self.e0_per_atom(atoms.numbers)
        f = out.get("forces")
        de = out.get("virial_de")
        if self.baseline is not None:
            b = self.baseline.compute(atoms, forces=forces, stress=stress)
            energies = energies + b["energies"]
            if forces:
                f = f + b["forces"]
            if stress:
                de = de + b["virial_de"]
        res = {"energy": float(energies.sum()), "energies": energies}
        res["free_energy"] = res["energy"]
        if forces:
            res["forces"] = f if f is not None else np.zeros((n, 3))
        if stress:
            m = (de + de.T) / (2.0 * abs(atoms.cell.volume))
            res["stress"] = np.array([m[0, 0], m[1, 1], m[2, 2], m[1, 2], m[0, 2], m[0, 1]])
        if uncertainty:
            for key in (keys.ENERGY_UNCERTAINTY, keys.ENERGIES_UNCERTAINTY,
                        keys.FORCES_UNCERTAINTY):
                res[key] = out[key]
        return res

    def predict_frames(self, frames, **kwargs):
        """:meth:`predict` of every frame (a list of dicts)."""
        return [self.predict(a, **kwargs) for a in frames]


# -------------------------------------------------------------------------------------- E0


def isolated_atom_e0(frames):
    """{Z: energy} from frames that are single isolated atoms with an energy (else empty).

    A frame counts when it has one atom and either config_type "IsolatedAtom" (gap_fit's name)
    or no periodic cell.
    """
    found = {}
    for atoms in frames:
        if len(atoms) != 1 or atoms.calc is None or atoms.calc.results.get("energy") is None:
            continue
        if atoms.info.get(keys.CONFIG_TYPE) == "IsolatedAtom" or not atoms.pbc.any():
            found[int(atoms.numbers[0])] = float(atoms.calc.results["energy"])
    return found


def fit_e0(frames, species, given=None):
    """Per-species E0 (eV/atom) and how it was obtained.

    Priority: ``given`` ({Z: eV}) for the species it names, then isolated-atom frames, then a
    least-squares fit of total energy against composition (for one species: the mean energy
    per atom), for the remaining species with the known ones subtracted.

    Returns
    -------
    (dict Z -> float, str method)
    """
    given = {int(k): float(v) for k, v in (given or {}).items()}
    e0 = dict(given)
    method = "given" if given else None
    iso = {z: e for z, e in isolated_atom_e0(frames).items() if z not in e0}
    if iso:
        e0.update(iso)
        method = "isolated" if method is None else method + "+isolated"
    rest = [z for z in species if z not in e0]
    if rest:
        rows, ys = [], []
        for atoms in frames:
            if atoms.calc is None or atoms.calc.results.get("energy") is None:
                continue
            if float(atoms.info.get(keys.WEIGHT, 1.0)) <= 0:
                continue
            counts = {z: int(np.count_nonzero(atoms.numbers == z)) for z in species}
            known = sum(e0[z] * c for z, c in counts.items() if z in e0)
            rows.append([counts[z] for z in rest])
            ys.append(float(atoms.calc.results["energy"]) - known)
        if not rows:
            raise InputError(f"no energies to fit E0 of {species_symbols(rest)}; give --e0")
        coef, *_ = np.linalg.lstsq(np.array(rows, float), np.array(ys), rcond=None)
        for z, c in zip(rest, coef, strict=True):
            e0[z] = float(c)
        method = "fitted" if method is None else method + "+fitted"
    return {z: e0[z] for z in species}, method


def parse_e0(text):
    """``"Si=-0.16,O=-2.1"`` -> {14: -0.16, 8: -2.1} (eV)."""
    from ase.data import atomic_numbers

    out = {}
    for item in (t.strip() for t in (text or "").split(",") if t.strip()):
        if "=" not in item:
            raise ParameterError(f"--e0: expected SYMBOL=eV, got {item!r}")
        sym, value = (s.strip() for s in item.split("=", 1))
        if sym not in atomic_numbers:
            raise ParameterError(f"--e0: unknown element {sym!r}")
        try:
            out[atomic_numbers[sym]] = float(value)
        except ValueError:
            raise ParameterError(f"--e0: cannot read {value!r} as eV") from None
    return out


# -------------------------------------------------------------------------------------- files


def save_model(path, model, provenance=None):
    """Write ``model`` to ``path`` (HDF5, atomically)."""
    import h5py

    from mlptools.io import h5
    from mlptools.io.atomic import atomic_path

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        h5.write_header(f, FORMAT, FORMAT_VERSION, UNITS, provenance or {}, hypers=model.hypers)
        f.attrs["model_kind"] = model.kind
        f.create_dataset("species", data=np.array(model.species, dtype=np.int64))
        ds = f.create_dataset("e0", data=np.array([model.e0[z] for z in model.species]))
        ds.attrs["method"] = model.e0_method
        g = f.create_group("baseline")
        g.attrs["kind"] = "none" if model.baseline is None else model.baseline.kind
        g.attrs["hypers"] = json.dumps(None if model.baseline is None else
                                       model.baseline.to_dict())
        for name, values in ({} if model.baseline is None else model.baseline.arrays()).items():
            g.create_dataset(name, data=values)
        t = f.create_group("training_errors")
        for key, value in {"train": None, "valid": None, **model.training_errors}.items():
            t.attrs[key] = json.dumps(value)
        model.to_h5(f.create_group("model"))


def load_model(path):
    """Read a model file written by :func:`save_model`.

    Raises
    ------
    InputError
        Not a model file, an unsupported version or model kind, or a damaged file.
    """
    import h5py

    from mlptools.io import h5
    from mlptools.models import baselines

    _import_kinds()
    header = h5.check_header(path, FORMAT, (FORMAT_VERSION,))
    try:
        with h5py.File(path, "r") as f:
            kind = h5._attr(f.attrs.get("model_kind"))
            if kind not in MODEL_KINDS:
                raise InputError(f"{path}: unknown model kind {kind!r} (this mlptools reads "
                                 f"{', '.join(sorted(MODEL_KINDS))})")
            species = tuple(int(z) for z in f["species"][()])
            e0 = dict(zip(species, (float(x) for x in f["e0"][()]), strict=True))
            bl = json.loads(h5._attr(f["baseline"].attrs["hypers"]))
            common = dict(
                species=species, e0=e0, e0_method=h5._attr(f["e0"].attrs.get("method", "")),
                baseline=None if bl is None else baselines.from_dict(
                    bl, {name: ds[()] for name, ds in f["baseline"].items()}),
                hypers=header["hypers"] or {},
                training_errors={k: json.loads(h5._attr(v))
                                 for k, v in f["training_errors"].attrs.items()},
            )
            model = MODEL_KINDS[kind].from_h5(f["model"], common)
    except (KeyError, OSError, ValueError) as exc:
        raise InputError(f"{path}: damaged model file ({exc})") from None
    model.provenance = header.get("provenance")
    return model


def model_summary(path):
    """Kind, species, E0 and overall training/validation errors of a model file (for info)."""
    import h5py
    from ase.data import chemical_symbols

    from mlptools.io import h5

    with h5py.File(path, "r") as f:
        species = [int(z) for z in f["species"][()]]
        out = {"model_kind": h5._attr(f.attrs.get("model_kind")),
               "species": [chemical_symbols[z] for z in species],
               "e0_eV": {chemical_symbols[z]: float(e) for z, e in zip(species, f["e0"][()],
                                                                       strict=True)},
               "baseline": h5._attr(f["baseline"].attrs.get("kind"))}
        for key in ("train", "valid"):
            text = f["training_errors"].attrs.get(key)
            rep = json.loads(h5._attr(text)) if text is not None else None
            if rep:
                row = rep["rows"][-1]
                out[f"{key}_errors"] = {k: row[k] for k in (
                    "n_frames", "energy_rmse", "forces_rmse", "stress_rmse")}
    return out


def _import_kinds():
    """Import the modules that register the built-in kinds."""
    import mlptools.models.committee  # noqa: F401
    import mlptools.models.gap  # noqa: F401
    import mlptools.models.linear  # noqa: F401
    import mlptools.models.nn  # noqa: F401
