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
        raise ParameterError(f"hyper '{key}': cannot read {text!r} as {annotation.__name__}") from None
    return text


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
                hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
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
        data = {}
        for token in shlex.split(text or ""):
            if "=" not in token:
                raise ParameterError(f"{cls.type} hypers: expected key=value, got {token!r}")
            key, value = token.split("=", 1)
            data[key.strip().replace("-", "_")] = value.strip()
        return cls.from_dict(data)

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
