"""Recipe files: a whole reference database described in TOML (or YAML), so ``make`` can rebuild it.

A recipe has a ``[label]`` table (the reference calculator), optional ``[dedup]`` and ``[split]``
tables, and one ``[[structures]]`` table per ingredient::

    seed = 7                      # default for --seed
    [label]
    calc = "sw"                   # any make_calculator spec
    isolated_atoms = true         # also label one atom of each species in a box (E0)

    [dedup]
    tolerance = 0.001             # Å (the default); drop structures whose sorted distances all
                                  # agree within it (0 = off)

    [split]
    test = 0.1                    # fraction of each config_type

    [[structures]]
    kind = "volume_scan"          # see KINDS
    config_type = "diamond_ev"
    base = { prototype = "diamond", symbol = "Si", a = 5.431, cubic = true, supercell = [2, 2, 2] }
    count = 20
    volume_range = [0.85, 1.15]
    rattle = 0.01                 # Å, optional Gaussian rattle of every frame

``base`` is a prototype (``prototype``, ``symbol``, ``a``, ``c``, ``covera``, ``cubic``,
``orthorhombic``) or a file ASE reads (``file``, ``index``, ``format``), with an optional
``supercell``. Relative paths are relative to the recipe file. Errors are one line naming the
file, the table and the key (with the closest valid key when it is misspelt).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from pathlib import Path

from mlptools.errors import InputError, ParameterError

__all__ = ["KINDS", "Entry", "Recipe", "load_recipe", "parse_recipe"]

# common keys of every [[structures]] table: name -> (types, default)
_COMMON = {
    "kind": (str, None),
    "config_type": (str, None),
    "count": (int, 1),
    "rattle": ((int, float), 0.0),
}
_BASE_PROTOTYPE = {
    "prototype": (str, None), "symbol": (str, None), "a": ((int, float), None),
    "c": ((int, float), None), "covera": ((int, float), None), "cubic": (bool, False),
    "orthorhombic": (bool, False), "supercell": ((int, list), None),
}
_BASE_FILE = {
    "file": (str, None), "index": (int, 0), "format": (str, None), "supercell": ((int, list), None),
}
_MD = {
    "temperature_K": ((int, float), None), "stride": (int, 20), "equilibration": (int, 200),
    "timestep_fs": ((int, float), 1.0), "friction": ((int, float), 0.02), "calc": (str, None),
}
_MELT = {
    "melt_K": ((int, float), 3000.0), "quench_K": ((int, float), 300.0),
    "melt_steps": (int, 1000), "quench_steps": (int, 2000), "anneal_steps": (int, 200),
    "timestep_fs": ((int, float), 1.0), "friction": ((int, float), 0.02), "calc": (str, None),
}

#: kind -> (needs base, its own keys with (types, default))
KINDS = {
    "crystal": (True, {}),
    "volume_scan": (True, {"volume_range": (list, [0.85, 1.15])}),
    "strain": (True, {"max_strain": ((int, float), 0.03)}),
    "rattle": (True, {"sigma": ((int, float), 0.05)}),
    "vacancy": (True, {"n_vacancies": (int, 1)}),
    "interstitial": (True, {"symbol": (str, None), "n_trials": (int, 200)}),
    "surface": (True, {"miller": (list, None), "layers": (int, 4), "vacuum": ((int, float), 10.0),
                       "repeat": (list, [1, 1, 1])}),
    "md": (True, _MD),
    "melt_quench": (True, _MELT),
    "random": (False, {"symbols": (str, None), "volume_per_atom": (list, [15.0, 25.0]),
                       "min_distance": ((int, float), 2.0)}),
    "import": (False, {"files": ((str, list), None), "format": (str, None),
                       "max_force": ((int, float), 100.0)}),
}
_REQUIRED = {"md": ("temperature_K",), "surface": ("miller",), "random": ("symbols",),
             "import": ("files",)}
_TOP = {"seed": int, "name": str, "description": str, "label": dict, "dedup": dict,
        "split": dict, "structures": list}
_LABEL = {"calc": (str, None), "isolated_atoms": (bool, True), "box": ((int, float), 20.0)}
_DEDUP = {"tolerance": ((int, float), 1e-3), "cutoff": ((int, float), 5.0)}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One ``[[structures]]`` table, validated, with defaults filled in.

    ``digest`` is the sha256 of the table as written (canonical JSON): it keys the structure
    ids and the entry's random stream, so editing one entry leaves the others' structures alone.
    """

    index: int
    kind: str
    config_type: str
    count: int
    rattle: float
    base: dict | None
    params: dict
    digest: str


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A validated recipe: what to generate, how to label it, de-duplicate and split it."""

    source: str
    base_dir: str
    seed: int | None
    calc: str | None
    isolated_atoms: bool
    box: float
    dedup_tolerance: float
    dedup_cutoff: float
    split: dict
    entries: tuple
    digest: str


def _suggest(key, valid):
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"


def _check_table(table, spec, where, required=()):
    """Type-check ``table`` against ``spec`` (name -> (types, default)); return it with defaults."""
    if not isinstance(table, dict):
        raise ParameterError(f"{where}: expected a table, got {type(table).__name__}")
    out = {}
    for key, value in table.items():
        if key not in spec:
            raise ParameterError(f"{where}: unknown key {key!r}{_suggest(key, spec)}")
        types = spec[key][0]
        types = types if isinstance(types, tuple) else (types,)
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise ParameterError(f"{where}: {key} must be {names}, got {value!r}")
        out[key] = value
    for key in required:
        if key not in out:
            raise ParameterError(f"{where}: missing required key {key!r}")
    for key, (_, default) in spec.items():
        out.setdefault(key, default)
    return out


def parse_recipe(data, source="recipe", base_dir="."):
    """Validate a recipe given as a dict (as read from TOML/YAML) and return a :class:`Recipe`.

    Raises
    ------
    ParameterError
        One line: ``"<source>: structures[2] (kind 'md'): unknown key 'temprature'; did you mean
        'temperature_K'?"``.
    """
    if not isinstance(data, dict):
        raise ParameterError(f"{source}: a recipe is a table of tables")
    for key, value in data.items():
        if key not in _TOP:
            raise ParameterError(f"{source}: unknown top-level key {key!r}{_suggest(key, _TOP)}")
        if isinstance(value, bool) or not isinstance(value, _TOP[key]):
            raise ParameterError(f"{source}: {key} must be a {_TOP[key].__name__}")
    seed = data.get("seed")
    if seed is not None and seed < 0:
        raise ParameterError(f"{source}: seed must be >= 0, got {seed}")
    label = _check_table(data.get("label", {}), _LABEL, f"{source}: [label]")
    dedup = _check_table(data.get("dedup", {}), _DEDUP, f"{source}: [dedup]")
    if dedup["tolerance"] < 0 or dedup["cutoff"] <= 0:
        raise ParameterError(f"{source}: [dedup]: tolerance must be >= 0 and cutoff > 0 Å")
    split = data.get("split", {})
    for name, frac in split.items():
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 <= frac < 1:
            raise ParameterError(f"{source}: [split]: {name} must be a fraction in [0, 1), "
                                 f"got {frac!r}")
    if sum(split.values()) >= 1:
        raise ParameterError(f"{source}: [split]: fractions add up to {sum(split.values())} >= 1")
    tables = data.get("structures", [])
    if not tables:
        raise ParameterError(f"{source}: no [[structures]] tables")
    entries = []
    seen = {}
    for k, table in enumerate(tables):
        entry = _parse_entry(table, k, source)
        # identical tables would share ids and random streams: the n-th copy gets its own
        n = seen[entry.digest] = seen.get(entry.digest, -1) + 1
        if n:
            entry = dataclasses.replace(entry, digest=hashlib.sha256(
                f"{entry.digest}#{n}".encode()).hexdigest())
        entries.append(entry)
    entries = tuple(entries)
    canon = json.dumps(data, sort_keys=True, default=str)
    return Recipe(
        source=str(source), base_dir=str(base_dir), seed=seed, calc=label["calc"],
        isolated_atoms=label["isolated_atoms"], box=float(label["box"]),
        dedup_tolerance=float(dedup["tolerance"]), dedup_cutoff=float(dedup["cutoff"]),
        split=dict(split), entries=entries,
        digest=hashlib.sha256(canon.encode()).hexdigest(),
    )


def _parse_entry(table, k, source):
    where = f"{source}: structures[{k}]"
    if not isinstance(table, dict):
        raise ParameterError(f"{where}: expected a table")
    kind = table.get("kind")
    if kind is None:
        raise ParameterError(f"{where}: missing required key 'kind' (one of {', '.join(KINDS)})")
    if kind not in KINDS:
        raise ParameterError(f"{where}: unknown kind {kind!r}{_suggest(kind, KINDS)}"
                             .replace("valid keys", "valid kinds"))
    where = f"{where} (kind {kind!r})"
    needs_base, own = KINDS[kind]
    spec = {**_COMMON, **own}
    if needs_base:
        spec["base"] = (dict, None)
    body = _check_table(table, spec, where, required=("config_type",) + _REQUIRED.get(kind, ()))
    if body["count"] < 1:
        raise ParameterError(f"{where}: count must be >= 1, got {body['count']}")
    if body["rattle"] < 0:
        raise ParameterError(f"{where}: rattle must be >= 0 Å, got {body['rattle']}")
    base = None
    if needs_base:
        raw = body.pop("base")
        if raw is None:
            raise ParameterError(f"{where}: missing required key 'base' (a prototype or a file)")
        if "file" in raw:
            base = _check_table(raw, _BASE_FILE, f"{where}: base")
        else:
            base = _check_table(raw, _BASE_PROTOTYPE, f"{where}: base",
                                required=("prototype", "symbol"))
        sc = base.get("supercell")
        if sc is not None and not (isinstance(sc, int) and sc >= 1 or isinstance(sc, list) and
                                   len(sc) == 3 and all(isinstance(x, int) and x >= 1 for x in sc)):
            raise ParameterError(f"{where}: base: supercell must be an int or 3 ints >= 1")
    _check_values(kind, body, where)
    params = {key: value for key, value in body.items() if key not in _COMMON}
    digest = hashlib.sha256(json.dumps(table, sort_keys=True, default=str).encode()).hexdigest()
    return Entry(index=k, kind=kind, config_type=body["config_type"], count=int(body["count"]),
                 rattle=float(body["rattle"]), base=base, params=params, digest=digest)


def _check_values(kind, body, where):
    def pair(key):
        v = body[key]
        if not (isinstance(v, list) and len(v) == 2 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
                and 0 < v[0] <= v[1]):
            raise ParameterError(
                f"{where}: {key} must be [min, max] with 0 < min <= max, got {v!r}")

    if kind == "volume_scan":
        pair("volume_range")
    elif kind == "random":
        pair("volume_per_atom")
    elif kind == "surface":
        m = body["miller"]
        if not m or not all(isinstance(h, list) and len(h) == 3 and all(
                isinstance(x, int) for x in h) and any(h) for h in m):
            raise ParameterError(f"{where}: miller must be a list of [h, k, l], got {m!r}")
    elif kind == "md" and body["temperature_K"] <= 0:
        raise ParameterError(f"{where}: temperature_K must be > 0 K")
    elif kind == "strain" and not 0 <= body["max_strain"] < 0.5:
        raise ParameterError(f"{where}: max_strain must be in [0, 0.5)")
    elif kind == "import" and isinstance(body["files"], str):
        body["files"] = [body["files"]]


def load_recipe(path):
    """Read and validate a recipe file (``.toml``, or ``.yaml``/``.yml`` with PyYAML installed).

    Raises
    ------
    InputError
        The file cannot be read or parsed (names the file and the parser's message).
    ParameterError
        The recipe is invalid (see :func:`parse_recipe`).
    """
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read recipe ({exc.strerror or exc})") from None
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise InputError(f"{path}: YAML recipes need PyYAML (pip install pyyaml); "
                             "or write the recipe in TOML") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib
        try:
            data = tomllib.loads(text.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: invalid TOML: {exc}") from None
    return parse_recipe(data, source=str(path), base_dir=str(path.parent))
