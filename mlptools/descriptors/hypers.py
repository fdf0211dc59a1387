"""Hyperparameters as frozen dataclasses that round-trip to JSON (HDF5 attributes) and parse from
the CLI's ``"cutoff=5 n_max=8 l_max=6 sigma=0.5"`` strings.

Each descriptor's hypers class subclasses :class:`Hypers`, sets ``type`` (its ``"type"`` key) and
implements ``validate()`` raising :class:`~mlptools.errors.ParameterError` with the offending key.
"""

import dataclasses
import difflib
import json
import shlex
import typing
from typing import ClassVar

from mlptools.errors import ParameterError


def _coerce(text, annotation, key):
    """Turn a spec-string token into the field's type (int, float, bool, str, tuple[...])."""
    if typing.get_origin(annotation) is tuple:
        inner = typing.get_args(annotation)[0]
        items = [t for t in text.replace(";", ",").split(",") if t]
        return tuple(_coerce(t, inner, key) for t in items)
    try:
        if annotation is int:
            return int(text)
        if annotation is float:
            return float(text)
        if annotation is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on", "t"):
                return True
            if low in ("0", "false", "no", "off", "f"):
                return False
            raise ValueError(text)
    except ValueError:
        raise ParameterError(
            f"hyper '{key}': cannot read {text!r} as {annotation.__name__}") from None
    return text


def parse_key_values(text, what):
    """``"a=1 b='x y'"`` → ``{"a": "1", "b": "x y"}`` (keys with '-' spelt with '_').

    Raises ParameterError naming ``what`` for a word without '=' or unbalanced quotes.
    """
    try:
        tokens = shlex.split(text or "")
    except ValueError as exc:  # "No closing quotation"
        raise ParameterError(f"{what}: {exc} in {text!r}") from None
    data = {}
    for token in tokens:
        if "=" not in token:
            raise ParameterError(f"{what}: expected key=value, got {token!r}")
        key, value = token.split("=", 1)
        data[key.strip().replace("-", "_")] = value.strip()
    return data


@dataclasses.dataclass(frozen=True)
class Hypers:
    """Base class: dict/JSON/spec-string round trips with helpful errors."""

    type: ClassVar[str] = "base"

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raise ParameterError for out-of-range values (overridden by subclasses)."""

    @classmethod
    def field_names(cls):
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data):
        """Build from a dict; an unknown key is an error that suggests the closest valid key."""
        data = dict(data)
        kind = data.pop("type", cls.type)
        if kind != cls.type:
            raise ParameterError(f"hypers of type {kind!r} given where {cls.type!r} is expected")
        names = cls.field_names()
        for key in data:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = (f"; did you mean '{close[0]}'?" if close
                        else f"; valid keys: {', '.join(names)}")
                raise ParameterError(f"unknown {cls.type} hyper '{key}'{hint}")
        types = typing.get_type_hints(cls)
        for key, value in list(data.items()):
            if isinstance(value, list):
                data[key] = tuple(value)
            elif isinstance(value, str) and types[key] is not str:
                data[key] = _coerce(value, types[key], key)
        return cls(**data)

    @classmethod
    def from_string(cls, text):
        """Parse ``"key=value key=value"`` (values with commas become tuples)."""
        return cls.from_dict(parse_key_values(text, f"{cls.type} hypers"))

    def to_dict(self):
        out = {"type": self.type}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))


# ---------------------------------------------------------------------------------------------
# ACSF and GAP 2-body / 3-body hypers (mlptools.descriptors.acsf, mlptools.descriptors.nbody)
# ---------------------------------------------------------------------------------------------


def _flatten_numbers(value, key):
    """Flatten nested lists/tuples (or a "a,b;c,d" string) of numbers into a list of floats."""
    if isinstance(value, str):
        value = [t for t in value.replace(";", ",").split(",") if t.strip()]
    out = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
            continue
        try:
            out.append(float(item))
        except (TypeError, ValueError):
            raise ParameterError(f"acsf hyper '{key}': cannot read {item!r} as a number") from None
    return out


def _group(value, width, key, names):
    """Numbers regrouped into a tuple of ``width``-tuples (accepts nested or flat input)."""
    flat = _flatten_numbers(value, key)
    if len(flat) % width:
        raise ParameterError(f"acsf hyper '{key}': expected ({', '.join(names)}) groups of "
                             f"{width} numbers, got {len(flat)} numbers")
    return tuple(tuple(flat[k:k + width]) for k in range(0, len(flat), width))


def _species_numbers(value, key):
    """Species as a sorted tuple of unique atomic numbers (symbols such as "Si" accepted)."""
    from ase.data import atomic_numbers

    if isinstance(value, (str, int)):
        value = [t for t in str(value).split(",") if t.strip()]
    out = []
    for item in value:
        text = str(item).strip()
        if text in atomic_numbers:
            out.append(atomic_numbers[text])
            continue
        try:
            z = int(text)
        except ValueError:
            raise ParameterError(f"hyper '{key}': unknown element {text!r}") from None
        if not 1 <= z <= 118:
            raise ParameterError(f"hyper '{key}': atomic number {z} out of range 1..118")
        out.append(z)
    return tuple(sorted(set(out)))


@dataclasses.dataclass(frozen=True)
class AcsfHypers(Hypers):
    """Behler–Parrinello atom-centred symmetry functions (``type = "acsf"``).

    Attributes
    ----------
    cutoff : float, Å. Cosine cutoff f_c(r) = ½(cos(πr/r_c) + 1) for r < r_c.
    species : tuple of int. Neighbour species (sorted atomic numbers; symbols accepted on input).
        Empty means the sorted species of the frames described.
    g2 : tuple of (eta [1/Å²], r_s [Å]) pairs. G2 = Σ_j exp(−η(r_ij − r_s)²) f_c(r_ij).
    g4 : tuple of (eta [1/Å²], zeta, lambda) triples.
        G4 = 2^(1−ζ) Σ_{j<k} (1 + λ cos θ_ijk)^ζ exp(−η(r_ij² + r_ik² + r_jk²))
             f_c(r_ij) f_c(r_ik) f_c(r_jk)   (unordered neighbour pairs j < k).
    g5 : tuple of (eta, zeta, lambda) triples; as G4 without r_jk in the Gaussian and without
        f_c(r_jk).

    Representation: ``g2``/``g4``/``g5`` are stored as tuples of tuples and ``to_dict()`` gives
    lists of lists (``{"g2": [[0.1, 0.0], ...]}``). Input may be nested lists, a flat list, or the
    spec-string form ``g2=0.1,0;0.5,0`` (flat numbers regrouped by 2 or 3).
    """

    type: ClassVar[str] = "acsf"

    cutoff: float = 6.0
    species: tuple[int, ...] = ()
    g2: tuple[tuple[float, ...], ...] = (
        (0.0, 0.0), (0.02, 0.0), (0.05, 0.0), (0.1, 0.0), (0.2, 0.0), (0.5, 0.0), (1.0, 0.0),
    )
    g4: tuple[tuple[float, ...], ...] = (
        (0.005, 1.0, 1.0), (0.005, 1.0, -1.0), (0.005, 2.0, 1.0), (0.005, 2.0, -1.0),
        (0.005, 4.0, 1.0), (0.005, 4.0, -1.0),
    )
    g5: tuple[tuple[float, ...], ...] = ()

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        if isinstance(data.get("species"), str):   # "Si,O" from a spec string: symbols allowed
            data["species"] = _species_numbers(data["species"], "species")
        return super().from_dict(data)

    def __post_init__(self):
        object.__setattr__(self, "species", _species_numbers(self.species, "species"))
        object.__setattr__(self, "g2", _group(self.g2, 2, "g2", ("eta", "r_s")))
        object.__setattr__(self, "g4", _group(self.g4, 3, "g4", ("eta", "zeta", "lambda")))
        object.__setattr__(self, "g5", _group(self.g5, 3, "g5", ("eta", "zeta", "lambda")))
        _float_fields(self, ("cutoff",))
        super().__post_init__()

    def validate(self):
        import math

        if not (isinstance(self.cutoff, (int, float)) and math.isfinite(self.cutoff)
                and self.cutoff > 0):
            raise ParameterError(f"acsf hyper 'cutoff' must be > 0 Å, got {self.cutoff}")
        if not (self.g2 or self.g4 or self.g5):
            raise ParameterError("acsf hypers 'g2', 'g4' and 'g5' are all empty: give at least one "
                                 "symmetry function")
        for eta, r_s in self.g2:
            if not (math.isfinite(eta) and eta >= 0):
                raise ParameterError(f"acsf hyper 'g2': eta must be >= 0 1/Å², got {eta}")
            if not (math.isfinite(r_s) and r_s >= 0):
                raise ParameterError(f"acsf hyper 'g2': r_s must be >= 0 Å, got {r_s}")
        for key in ("g4", "g5"):
            for eta, zeta, lam in getattr(self, key):
                if not (math.isfinite(eta) and eta >= 0):
                    raise ParameterError(f"acsf hyper '{key}': eta must be >= 0 1/Å², got {eta}")
                if not (math.isfinite(zeta) and zeta >= 1):
                    raise ParameterError(f"acsf hyper '{key}': zeta must be >= 1, got {zeta}")
                if lam not in (1.0, -1.0):
                    raise ParameterError(f"acsf hyper '{key}': lambda must be +1 or -1, got {lam}")

    def to_dict(self):
        out = super().to_dict()
        for key in ("g2", "g4", "g5"):
            out[key] = [list(p) for p in getattr(self, key)]
        return out


def _float_fields(hypers, names):
    """Store integer lengths as floats (so ``cutoff=4`` and ``cutoff=4.0`` compare equal)."""
    for name in names:
        value = getattr(hypers, name)
        if isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(hypers, name, float(value))


def _symbols_to_numbers(data, keys):
    """``z1=Si`` as well as ``z1=14``: element symbols in species-filter keys become numbers."""
    from ase.data import atomic_numbers

    data = dict(data)
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value.strip() in atomic_numbers:
            data[key] = atomic_numbers[value.strip()]
    return data


def _validate_gap_cutoff(hypers, zs):
    import math

    if not (isinstance(hypers.cutoff, (int, float)) and math.isfinite(hypers.cutoff)
            and hypers.cutoff > 0):
        raise ParameterError(f"{hypers.type} hyper 'cutoff' must be > 0 Å, got {hypers.cutoff}")
    w = hypers.cutoff_transition_width
    if not (isinstance(w, (int, float)) and math.isfinite(w) and 0 < w <= hypers.cutoff):
        raise ParameterError(f"{hypers.type} hyper 'cutoff_transition_width' must be in "
                             f"(0, cutoff={hypers.cutoff}] Å, got {w}")
    for key in zs:
        z = getattr(hypers, key)
        if not (isinstance(z, int) and 0 <= z <= 118):
            raise ParameterError(f"{hypers.type} hyper '{key}' must be an atomic number "
                                 f"(0 = any species), got {z!r}")


@dataclasses.dataclass(frozen=True)
class TwoBodyHypers(Hypers):
    """GAP ``distance_2b`` (``type = "distance_2b"``): one instance per pair, feature r_ij (Å).

    Attributes
    ----------
    cutoff : float, Å
    cutoff_transition_width : float, Å. GAP's covariance cutoff f(r) is 1 for r <= r_c − w,
        ½(cos(π(r − r_c + w)/w) + 1) for r_c − w < r < r_c, 0 beyond.
    z1, z2 : int. Species filter (atomic numbers, 0 = any; symbols accepted in from_dict and
        spec strings, ``z1=Si``); a pair matches in either order.
    """

    type: ClassVar[str] = "distance_2b"

    cutoff: float = 5.0
    cutoff_transition_width: float = 0.5
    z1: int = 0
    z2: int = 0

    @classmethod
    def from_dict(cls, data):
        return super().from_dict(_symbols_to_numbers(data, ("z1", "z2")))

    def __post_init__(self):
        _float_fields(self, ("cutoff", "cutoff_transition_width"))
        super().__post_init__()

    def validate(self):
        _validate_gap_cutoff(self, ("z1", "z2"))


@dataclasses.dataclass(frozen=True)
class ThreeBodyHypers(Hypers):
    """GAP ``angle_3b`` (``type = "angle_3b"``): one instance per triplet (i; j < k).

    Features (r_ij + r_ik, (r_ij − r_ik)², r_jk) in Å and Å²; covariance cutoff f(r_ij) f(r_ik).

    Attributes
    ----------
    cutoff : float, Å (on r_ij and r_ik; r_jk is not cut)
    cutoff_transition_width : float, Å (as :class:`TwoBodyHypers`)
    z : int. Centre species filter (0 = any; symbols accepted as for :class:`TwoBodyHypers`).
    z1, z2 : int. Neighbour species filter (0 = any); matches (j, k) in either order.
    """

    type: ClassVar[str] = "angle_3b"

    cutoff: float = 3.5
    cutoff_transition_width: float = 0.5
    z: int = 0
    z1: int = 0
    z2: int = 0

    @classmethod
    def from_dict(cls, data):
        return super().from_dict(_symbols_to_numbers(data, ("z", "z1", "z2")))

    def __post_init__(self):
        _float_fields(self, ("cutoff", "cutoff_transition_width"))
        super().__post_init__()

    def validate(self):
        _validate_gap_cutoff(self, ("z", "z1", "z2"))


# ---------------------------------------------------------------------------------------------
# SOAP hypers (mlptools.descriptors.soap)
# ---------------------------------------------------------------------------------------------

_SOAP_RADIAL_BASES = ("gto",)


@dataclasses.dataclass(frozen=True)
class SoapHypers(Hypers):
    """SOAP power spectrum (``type = "soap"``); see :mod:`mlptools.descriptors.soap`.

    Attributes
    ----------
    cutoff : float, Å (> 0). Neighbours at d >= cutoff do not contribute.
    cutoff_width : float, Å (0 <= w < cutoff). Shifted-cosine transition: f_c(d) = 1 for
        d <= cutoff − w, ½(1 + cos(π(d − cutoff + w)/w)) up to the cutoff (0 means a hard step).
    n_max : int (>= 1). Number of radial basis functions, n = 0 .. n_max − 1.
    l_max : int (>= 0). Largest angular channel.
    sigma : float, Å (> 0). Width of the atomic Gaussians exp(−r²/2σ²).
    radial_basis : str. ``"gto"``: featomic's GTOs r^n exp(−r²/2σ_n²),
        σ_n = cutoff·max(√n, 1)/n_max, Löwdin-orthonormalised on [0, ∞).
    center_weight : float. Weight of the centre atom's own Gaussian in its density.
    scaling_r0 : float, Å (>= 0). Radial scaling of each neighbour's Gaussian by
        u(d) = c/(c + (d/r0)^m) (Willatt, Musil, Ceriotti 2018; featomic's ``Willatt2018``),
        which weights near neighbours above far ones; 0 turns it off.
    scaling_rate : float (> 0). c in u(d).
    scaling_exponent : int (>= 0). m in u(d).
    normalize : bool. Divide each power-spectrum vector by its Euclidean norm.
    species : tuple of int. Sorted atomic numbers (symbols accepted on input); empty means the
        sorted species of the frames described in one call.
    """

    type: ClassVar[str] = "soap"

    cutoff: float = 5.0
    cutoff_width: float = 1.0
    n_max: int = 8
    l_max: int = 6
    sigma: float = 0.5
    radial_basis: str = "gto"
    center_weight: float = 1.0
    scaling_r0: float = 0.0
    scaling_rate: float = 1.0
    scaling_exponent: int = 4
    normalize: bool = True
    species: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        if isinstance(data.get("species"), str):   # "Si,O" from a spec string: symbols allowed
            data["species"] = _species_numbers(data["species"], "species")
        return super().from_dict(data)

    def __post_init__(self):
        object.__setattr__(self, "species", _species_numbers(self.species, "species"))
        _float_fields(self, ("cutoff", "cutoff_width", "sigma", "center_weight", "scaling_r0",
                             "scaling_rate"))
        super().__post_init__()

    def validate(self):
        import math

        def real(x):
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

        if not (real(self.cutoff) and self.cutoff > 0):
            raise ParameterError(f"soap hyper 'cutoff' must be > 0 Å, got {self.cutoff}")
        if not (real(self.cutoff_width) and 0 <= self.cutoff_width < self.cutoff):
            raise ParameterError(f"soap hyper 'cutoff_width' must be in [0, cutoff={self.cutoff}) "
                                 f"Å, got {self.cutoff_width}")
        if not (isinstance(self.n_max, int) and not isinstance(self.n_max, bool)
                and 1 <= self.n_max <= 64):
            raise ParameterError(f"soap hyper 'n_max' must be an integer in 1..64, "
                                 f"got {self.n_max!r}")
        if not (isinstance(self.l_max, int) and not isinstance(self.l_max, bool)
                and 0 <= self.l_max <= 30):
            raise ParameterError(f"soap hyper 'l_max' must be an integer in 0..30, "
                                 f"got {self.l_max!r}")
        if not (real(self.sigma) and self.sigma > 0):
            raise ParameterError(f"soap hyper 'sigma' must be > 0 Å, got {self.sigma}")
        if self.radial_basis not in _SOAP_RADIAL_BASES:
            raise ParameterError(f"soap hyper 'radial_basis' must be one of "
                                 f"{', '.join(_SOAP_RADIAL_BASES)}, got {self.radial_basis!r}")
        if not real(self.center_weight):
            raise ParameterError(f"soap hyper 'center_weight' must be a finite number, "
                                 f"got {self.center_weight}")
        if not isinstance(self.normalize, bool):
            raise ParameterError(f"soap hyper 'normalize' must be true or false, "
                                 f"got {self.normalize!r}")
        if not (real(self.scaling_r0) and self.scaling_r0 >= 0):
            raise ParameterError(f"soap hyper 'scaling_r0' must be >= 0 Å (0: no radial "
                                 f"scaling), got {self.scaling_r0}")
        if not (real(self.scaling_rate) and self.scaling_rate > 0):
            raise ParameterError(f"soap hyper 'scaling_rate' must be > 0, "
                                 f"got {self.scaling_rate}")
        if not (isinstance(self.scaling_exponent, int) and not isinstance(
                self.scaling_exponent, bool) and 0 <= self.scaling_exponent <= 32):
            raise ParameterError(f"soap hyper 'scaling_exponent' must be an integer in 0..32, "
                                 f"got {self.scaling_exponent!r}")
