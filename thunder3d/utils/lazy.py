"""Lazy package attributes: a package lists its public names and the submodule of each, and imports
a submodule only when one of its names is first used (PEP 562), so importing one small module of a
package does not import the heavy ones (scipy.signal alone takes a second)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_getattr(package: str, names: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: ``names[name]`` is the submodule that defines ``name``
    (relative to the package), or ``"submodule:other"`` when it is defined there as ``other``."""

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = names[name].partition(":")
        return getattr(importlib.import_module(f"{package}.{module}"), attr or name)

    return __getattr__


__all__ = ["lazy_getattr"]
