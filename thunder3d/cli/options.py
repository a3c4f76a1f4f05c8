"""Options shared by the commands, options built from config dataclasses, old names kept hidden.

An option built from a config field takes its default from the dataclass and its help from the
field's docstring (:func:`thunder3d.config.field_docs`): the library and the command line agree.
"""

from __future__ import annotations

import argparse
import copy
import re
import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from thunder3d.config import field_docs
from thunder3d.utils.device import DEVICE_CHOICES

OLD_NAMES = {"--out", "--talker", "--checkpoint", "--audio-scale", "--cond-scale"}
"""Option names of the previous release: still accepted, no longer shown."""


class Formatter(argparse.HelpFormatter):
    def _format_action_invocation(self, action: argparse.Action) -> str:
        shown = copy.copy(action)
        shown.option_strings = [s for s in action.option_strings if s not in OLD_NAMES]
        return super()._format_action_invocation(shown)


class Parser(argparse.ArgumentParser):
    """The parser of every command: old option names are hidden from the help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{"formatter_class": Formatter, **kwargs})

    def error(self, message: str) -> typing.NoReturn:
        for name in OLD_NAMES:
            message = re.sub(f"/{name}(?![\\w-])", "", message)
        super().error(message)


def opt(p: argparse.ArgumentParser, flags: str | tuple[str, ...], default: Any = None, help: str = "",
        **kwargs: Any) -> None:
    """One option: its type follows the default (``False`` makes a switch), and the default is shown."""
    if default is False:
        kwargs.setdefault("action", "store_true")
    elif default is not None and "action" not in kwargs:
        kwargs.setdefault("type", type(default))
    if default is not None and default is not False and default != "" and "(default" not in help:
        help += f" (default {default})"
    p.add_argument(*((flags,) if isinstance(flags, str) else flags), default=default,
                   help=help + (" (required)" if kwargs.get("required") else ""), **kwargs)


def add_common(p: argparse.ArgumentParser, progress: bool = False) -> None:
    """``--seed``, ``--device``, ``--threads`` (and ``--no-progress``) of every command."""
    opt(p, "--seed", 0, "random seed; the same seed gives the same output")
    opt(p, "--device", "auto", f"{DEVICE_CHOICES} (default auto: CUDA when present, else CPU)")
    opt(p, "--threads", 0, "torch CPU threads (default 0: one per core; on a busy machine 1 is often faster)")
    if progress:
        opt(p, "--no-progress", False, "no progress bar")


def add_output(p: argparse.ArgumentParser, help: str, default: Path | None = None, required: bool = False) -> None:
    opt(p, ("-o", "--output", "--out"), default, help, type=Path, required=required)


def add_config(p: argparse.ArgumentParser, cls: type, names: Iterable[str], *, flags: Mapping[str, str] = {},
               defaults: Mapping[str, Any] = {}, helps: Mapping[str, str] = {}) -> None:
    """One option per config field: ``--field-name`` (or ``flags[field]``) with the field's type,
    default (or ``defaults[field]``) and docstring's first sentence (or ``helps[field]``)."""
    docs, hints = {**field_docs(cls), **helps}, typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in names:
        f, flag = fields[name], flags.get(name, "--" + name.replace("_", "-"))
        default = defaults.get(name, f.default if f.default_factory is dataclasses.MISSING else f.default_factory())
        text, kind = docs.get(name, "").split(". ")[0].rstrip("."), _option_type(hints[name])
        if kind is bool:
            opt(p, flag, False, text, dest=name)
        elif default is dataclasses.MISSING:
            opt(p, flag, None, text, dest=name, type=kind, required=True)
        else:
            shown = f" (default {','.join(map(str, default))})" if isinstance(default, tuple) else ""
            opt(p, flag, default, text + shown, dest=name, type=kind)


def config_values(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names}  # the parsed values of add_config options


def _option_type(hint: Any) -> Any:
    """``int | None`` -> int; ``tuple[float, float]`` -> a parser of ``"1,2"``; anything else -> str."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = [a for a in typing.get_args(hint) if a is not type(None)][0]
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return lambda text: tuple(item(v) for v in text.split(","))
    return hint if hint in (int, float, str, bool) else str
