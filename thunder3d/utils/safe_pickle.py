"""Load model pickles (FLAME ``generic_model.pkl``, ``FLAME_masks.pkl``) without running their code.

A pickle names Python globals and the unpickler calls them, so loading an untrusted pickle with
:func:`pickle.load` can run anything (``os.system``...). :func:`safe_load_pickle` resolves globals
through an explicit allow-list instead:

- numpy arrays, dtypes and scalars (``numpy.core.multiarray`` and ``numpy._core.multiarray``
  spellings) map to numpy's own reconstruction functions;
- chumpy classes (``chumpy.ch.Ch``, ``chumpy.reordering.*``, ...) map to :class:`ChumpyStandIn`,
  which only records the state chumpy saved; chumpy itself is never imported;
- scipy compressed sparse matrices (``scipy.sparse.csc.csc_matrix``, ``scipy.sparse._csc.csc_matrix``,
  and the csr spellings) map to :class:`SparseStandIn`, checked when converted;
- Python 2's ``copy_reg._reconstructor`` maps to a version that only builds stand-ins.

Any other global raises :class:`~thunder3d.errors.UnsafePickleError` naming it, before it is called.
Python 2 byte strings are decoded as latin-1, as numpy expects. :func:`to_numpy` turns the result
into plain numpy arrays.
"""

from __future__ import annotations

import os
import pickle
from typing import Any, BinaryIO

import numpy as np
import scipy.sparse

from thunder3d.errors import RigError, UnsafePickleError

_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_GLOBALS = {
    "_reconstruct": np.ndarray.__reduce__(np.zeros(1))[0],  # numpy's array rebuild function
    "scalar": np.float64(0).__reduce__()[0],  # numpy's scalar rebuild function
}
_SPARSE_CLASSES = {
    ("scipy.sparse.csc", "csc_matrix"): "csc",
    ("scipy.sparse._csc", "csc_matrix"): "csc",
    ("scipy.sparse.csr", "csr_matrix"): "csr",
    ("scipy.sparse._csr", "csr_matrix"): "csr",
}


class StandIn:
    """An object a pickle asked for, kept as data: ``state`` is what the pickle's BUILD gave it."""

    global_name = "?"
    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<stand-in for {self.global_name}>"


class ChumpyStandIn(StandIn):
    """A chumpy object. A plain ``chumpy.ch.Ch`` keeps its value in ``state['x']``."""

    def to_numpy(self) -> np.ndarray:
        """The stored value as an ndarray; derived chumpy expressions cannot be evaluated."""
        if not isinstance(self.state, dict) or "x" not in self.state:
            raise RigError(
                f"cannot evaluate the chumpy expression {self.global_name} without chumpy; "
                "only stored chumpy values (chumpy.ch.Ch) are supported"
            )
        return np.asarray(to_numpy(self.state["x"]))


class SparseStandIn(StandIn):
    """A scipy compressed sparse matrix (``fmt`` is ``"csc"`` or ``"csr"``), state kept as data."""

    fmt = "csc"

    def to_scipy(self) -> scipy.sparse.spmatrix:
        """Rebuild the matrix from its stored arrays and check that they are consistent."""
        state = self.state if isinstance(self.state, dict) else {}
        shape = state.get("_shape", state.get("shape"))
        if any(key not in state for key in ("data", "indices", "indptr")) or shape is None:
            raise RigError(f"sparse matrix {self.global_name} lacks data/indices/indptr/shape")
        cls = scipy.sparse.csc_matrix if self.fmt == "csc" else scipy.sparse.csr_matrix
        arrays = (np.asarray(state["data"]), np.asarray(state["indices"]), np.asarray(state["indptr"]))
        try:
            matrix = cls(arrays, shape=tuple(int(n) for n in shape))
            matrix.check_format(full_check=True)  # indices in range, indptr monotone
        except (ValueError, TypeError) as exc:
            raise RigError(f"invalid sparse matrix {self.global_name}: {exc}") from exc
        return matrix


_STAND_IN_TYPES: dict[str, type] = {}


def _stand_in_type(base: type, global_name: str, **attrs: Any) -> type:
    """One subclass of ``base`` per pickled global name, so errors can name the original class."""
    if global_name not in _STAND_IN_TYPES:
        name = global_name.rsplit(".", 1)[-1]
        _STAND_IN_TYPES[global_name] = type(name, (base,), {"global_name": global_name, **attrs})
    return _STAND_IN_TYPES[global_name]


def _reconstructor(cls: type, base: type, state: Any) -> StandIn:
    """Python 2's ``copy_reg._reconstructor``, restricted to building stand-ins."""
    if not (isinstance(cls, type) and issubclass(cls, StandIn)) or base is not object:
        raise UnsafePickleError(f"pickle asked copy_reg._reconstructor to build {cls!r}")
    return cls()


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for raw bytes (numpy buffers).

    Only the latin-1 text-to-bytes conversion is allowed: any other codec is refused.
    """
    if encoding.replace("_", "-").lower() not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"pickle asks for _codecs.encode with codec {encoding!r}; only latin-1 is allowed")
    if not isinstance(text, str):
        raise UnsafePickleError("pickle passes a non-string to _codecs.encode")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose :meth:`find_class` only returns allow-listed globals (module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        if module in _NUMPY_MODULES and name in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[name]
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "chumpy" or module.startswith("chumpy."):
            return _stand_in_type(ChumpyStandIn, f"{module}.{name}")
        if (module, name) in _SPARSE_CLASSES:
            return _stand_in_type(SparseStandIn, f"{module}.{name}", fmt=_SPARSE_CLASSES[module, name])
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _reconstructor
        if module == "_codecs" and name == "encode":
            return _latin1_encode
        if module in ("__builtin__", "builtins") and name == "object":
            return object  # only ever the base class argument of _reconstructor
        raise UnsafePickleError(f"pickle refers to {module}.{name}, which is not allowed here")


def safe_load_pickle(path_or_file: str | os.PathLike | BinaryIO) -> Any:
    """Unpickle a file with :class:`RestrictedUnpickler` (Python 2 strings decoded as latin-1).

    Returns the unpickled object, with chumpy and sparse objects as stand-ins (see :func:`to_numpy`).
    Raises :class:`UnsafePickleError` for a global outside the allow-list, and :class:`RigError`
    for a missing, truncated or corrupt file.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        try:
            with open(path_or_file, "rb") as fh:
                return _load(fh, str(path_or_file))
        except OSError as exc:
            raise RigError(f"cannot read pickle {path_or_file}: {exc}") from exc
    return _load(path_or_file, getattr(path_or_file, "name", "<file>"))


def _load(fh: BinaryIO, label: str) -> Any:
    try:
        return RestrictedUnpickler(fh, encoding="latin1").load()
    except RigError:  # UnsafePickleError and stand-in errors already say what is wrong
        raise
    except Exception as exc:  # a corrupt pickle can fail in any opcode handler; report it as one
        reason = f"{type(exc).__name__}: {exc}"
        raise RigError(f"cannot unpickle {label}: corrupt or truncated ({reason})") from exc


def to_numpy(obj: Any) -> Any:
    """Replace stand-ins by ndarrays (sparse matrices become dense), recursing into containers.

    Dicts, lists and tuples are rebuilt with converted items; other objects are returned as is.
    """
    if isinstance(obj, ChumpyStandIn):
        return obj.to_numpy()
    if isinstance(obj, SparseStandIn):
        return obj.to_scipy().toarray()
    if isinstance(obj, dict):
        return {key: to_numpy(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_numpy(item) for item in obj)
    return obj
