"""One base for every configuration dataclass: plain JSON out, checked JSON in.

A config is a ``@dataclass`` that also derives from :class:`Config`. It gets

- :meth:`Config.to_dict`: plain JSON (tuples become lists, nested configs become dicts);
- :meth:`Config.from_dict`: the inverse, which names unknown keys (with the valid ones) and missing
  required keys, rebuilds nested configs from their dicts and tuples from lists, and passes saved
  layouts of older versions through :meth:`Config.upgrade` first.

Errors are the class's ``error`` (a :class:`~thunder3d.errors.ConfigError` by default). The field
docstrings of a config are also the help of the command-line options built from it
(``thunder3d.cli.options``), so a default lives in exactly one place.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import re
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

from thunder3d.errors import ConfigError


class Config:
    """Base of configuration dataclasses (module docstring)."""

    error: ClassVar[type[Exception]] = ConfigError
    label: ClassVar[str] = ""  # how errors name this config (default: the class name)

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Turn a layout saved by an older version into the current one (default: unchanged)."""
        return data

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: every field, nested configs as dicts, tuples as lists."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Rebuild from :meth:`to_dict` (or an older layout, see :meth:`upgrade`)."""
        if not isinstance(data, Mapping):
            raise cls.error(f"{cls._label()} must be a mapping, got {type(data).__name__}")
        data = cls.upgrade(copy.deepcopy(dict(data)))
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise cls.error(f"unknown {cls._label()} keys {unknown}; valid: {', '.join(fields)}")
        missing = [name for name, f in fields.items() if name not in data
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise cls.error(f"{cls._label()} lacks required keys {missing}")
        hints = typing.get_type_hints(cls)
        for name, value in data.items():
            data[name] = _typed(hints.get(name), value)
        return cls(**data)

    @classmethod
    def _label(cls) -> str:
        return cls.label or cls.__name__


def field_docs(cls: type) -> dict[str, str]:
    """``{field: description}`` from the ``Args:``/``Attributes:`` sections of the docstrings of
    ``cls`` and its bases (``a, b: text`` documents both), with reST markup removed: the help text of
    command-line options built from the config."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        text = inspect.cleandoc(klass.__dict__.get("__doc__") or "")
        section, current = False, None
        for line in text.splitlines():
            if re.fullmatch(r"(Args|Attributes):", line.strip()):
                section, current = True, None
                continue
            if not section:
                continue
            if line and not line.startswith(" "):
                section = False
                continue
            entry = re.fullmatch(r" {4}([a-z_][a-z0-9_, ]*):\s*(.*)", line)
            if entry:
                current = [n.strip() for n in entry.group(1).split(",")]
                for name in current:
                    docs[name] = entry.group(2)
            elif current and line.strip():
                for name in current:
                    docs[name] += " " + line.strip()
    return {k: _plain_text(v) for k, v in docs.items()}


def _plain_text(text: str) -> str:
    text = re.sub(r":\w+:`~?(?:[\w.]*\.)?([\w]+)`", r"\1", text)  # :class:`~a.b.C` -> C
    return text.replace("``", "").replace("`", "").strip()


def _plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _typed(hint: Any, value: Any) -> Any:
    """A JSON value as the field's type wants it: a nested config from a dict, a tuple from a list."""
    for option in typing.get_args(hint) or (hint,):
        if isinstance(option, type) and issubclass(option, Config) and isinstance(value, Mapping):
            return option.from_dict(value)
    origin = typing.get_origin(hint)
    if isinstance(value, list) and (origin is tuple or any(typing.get_origin(a) is tuple
                                                         for a in typing.get_args(hint))):
        return tuple(value)
    return value


__all__ = ["Config", "field_docs"]
