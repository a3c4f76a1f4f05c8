"""The restricted unpickler: Python 2 era chumpy/numpy/scipy pickles load as data, code never runs.

``py2_pickle_bytes`` writes pickles the way FLAME's Python 2 tools did (byte strings as ``str``
opcodes, ``copy_reg``/``numpy.core`` module names, chumpy classes named without chumpy installed);
``test_flame.py`` uses it for its synthetic ``generic_model.pkl``.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess

import numpy as np
import pytest
import scipy.sparse

from thunder3d.errors import RigError, UnsafePickleError
from thunder3d.utils.safe_pickle import ChumpyStandIn, safe_load_pickle, to_numpy

PY2_MODULES = {
    "copyreg": "copy_reg",
    "builtins": "__builtin__",
    "numpy._core.multiarray": "numpy.core.multiarray",
    "scipy.sparse._csc": "scipy.sparse.csc",
}
"""Python 3 module names -> the spellings found in Python 2 era model pickles."""


class _Py2StylePickler(pickle._Pickler):
    """Protocol 2, bytes written as Python 2 ``str``, globals written by name without importing them."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, renames):
        super().__init__(file, protocol=2)
        self.renames = renames

    def save_global(self, obj, name=None):
        module = self.renames.get(obj.__module__, obj.__module__)
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)

    def _save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def py2_pickle_bytes(obj, renames=PY2_MODULES) -> bytes:
    """Pickle ``obj`` as a Python 2 era model file would be (see module docstring)."""
    buf = io.BytesIO()
    _Py2StylePickler(buf, renames).dump(obj)
    return buf.getvalue()


def fake_chumpy_class(module: str, name: str) -> type:
    """A throwaway class that pickles under a chumpy name; instances keep attributes as state."""
    return type(name, (), {"__module__": module, "__qualname__": name})


def chumpy_value(array: np.ndarray):
    """An object pickled like ``chumpy.ch.Ch`` holding ``array`` (state ``{'x': array}``)."""
    obj = fake_chumpy_class("chumpy.ch", "Ch")()
    obj.x = array
    return obj


# --------------------------------------------------------------------------- what loads
@pytest.mark.parametrize("renames", [PY2_MODULES, {}], ids=["numpy.core", "numpy._core"])
def test_arrays_and_chumpy_values_load_without_chumpy(renames):
    data = {"a": np.arange(6, dtype=np.float64).reshape(2, 3), "ch": chumpy_value(np.eye(3)),
            "nested": [chumpy_value(np.ones(2, dtype=np.float32)), (1, "text")], "i": np.int64(7)}
    blob = py2_pickle_bytes(data, renames)
    assert (b"numpy.core.multiarray" in blob) == bool(renames) and b"chumpy.ch\nCh" in blob
    loaded = safe_load_pickle(io.BytesIO(blob))
    assert isinstance(loaded["ch"], ChumpyStandIn) and "chumpy.ch.Ch" in repr(loaded["ch"])
    out = to_numpy(loaded)
    np.testing.assert_array_equal(out["a"], data["a"])
    np.testing.assert_array_equal(out["ch"], np.eye(3))
    assert out["nested"][0].dtype == np.float32 and out["nested"][1] == (1, "text") and out["i"] == 7


def test_python2_reconstructor_opcodes_build_stand_ins():
    # protocol 0 as Python 2 wrote it: copy_reg._reconstructor(cls, object, None) then BUILD
    blob = (b"ccopy_reg\n_reconstructor\n(cchumpy.ch\nCh\nc__builtin__\nobject\nNtR"
            b"(dS'x'\nI5\nsb.")
    assert to_numpy(safe_load_pickle(io.BytesIO(blob))) == 5


@pytest.mark.parametrize("renames", [PY2_MODULES, {}], ids=["scipy.sparse.csc", "scipy.sparse._csc"])
def test_csc_matrix_is_rebuilt_from_its_arrays(renames):
    dense = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    blob = py2_pickle_bytes({"J": scipy.sparse.csc_matrix(dense)}, renames)
    np.testing.assert_array_equal(to_numpy(safe_load_pickle(io.BytesIO(blob)))["J"], dense)


def test_inconsistent_sparse_matrix_is_a_rig_error():
    matrix = scipy.sparse.csc_matrix(np.eye(3))
    matrix.indices = np.array([0, 1, 7], dtype=matrix.indices.dtype)  # row 7 of a 3-row matrix
    loaded = safe_load_pickle(io.BytesIO(py2_pickle_bytes(matrix)))
    with pytest.raises(RigError, match="invalid sparse matrix"):
        to_numpy(loaded)


def test_chumpy_expression_cannot_be_evaluated_and_says_which():
    op = fake_chumpy_class("chumpy.reordering", "transpose")()
    op.a = chumpy_value(np.eye(2))
    loaded = safe_load_pickle(io.BytesIO(py2_pickle_bytes(op)))
    with pytest.raises(RigError, match="chumpy.reordering.transpose"):
        to_numpy(loaded)


def test_path_input(tmp_path):
    path = tmp_path / "m.pkl"
    path.write_bytes(py2_pickle_bytes({"v": np.zeros(3)}))
    assert to_numpy(safe_load_pickle(path))["v"].shape == (3,)
    assert to_numpy(safe_load_pickle(str(path)))["v"].shape == (3,)


# --------------------------------------------------------------------------- what is refused
class _Evil:
    def __init__(self, func, *args):
        self.call = (func, args)

    def __reduce__(self):
        return self.call


def _marker_command(marker) -> str:
    return f"touch {marker}"


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("kind", ["os.system", "eval", "subprocess", "getattr"])
def test_code_execution_is_refused_and_never_runs(tmp_path, kind, protocol):
    marker = tmp_path / "pwned"
    payload = {
        "os.system": (_Evil(os.system, _marker_command(marker)), "system"),
        "eval": (_Evil(eval, f"__import__('os').system({_marker_command(marker)!r})"), "eval"),
        "subprocess": (_Evil(subprocess.call, ["touch", str(marker)]), r"\.call"),  # py2: commands.call
        "getattr": (_Evil(getattr, _Evil(__import__, "os"), "system"), "getattr"),
    }
    evil, name = payload[kind]
    blob = pickle.dumps({"v_template": evil}, protocol=protocol)
    with pytest.raises(UnsafePickleError, match=name):
        safe_load_pickle(io.BytesIO(blob))
    assert not marker.exists()


def test_refusal_names_the_global():
    blob = pickle.dumps(_Evil(os.system, "true"), protocol=2)
    with pytest.raises(UnsafePickleError) as info:
        safe_load_pickle(io.BytesIO(blob))
    assert "posix.system" in str(info.value) or "nt.system" in str(info.value)


def test_reconstructor_only_builds_stand_ins():
    blob = b"ccopy_reg\n_reconstructor\n(cnumpy\nndarray\nc__builtin__\nobject\nNtR."
    with pytest.raises(UnsafePickleError, match="_reconstructor"):
        safe_load_pickle(io.BytesIO(blob))


@pytest.mark.parametrize("blob", [b"", b"\x80\x02}q\x00(X\x01\x00", b"not a pickle at all"],
                         ids=["empty", "truncated", "garbage"])
def test_corrupt_pickles_are_rig_errors(blob):
    with pytest.raises(RigError, match="corrupt or truncated"):
        safe_load_pickle(io.BytesIO(blob))


def test_missing_file_is_a_rig_error(tmp_path):
    with pytest.raises(RigError, match="cannot read pickle"):
        safe_load_pickle(tmp_path / "nope.pkl")


def test_python3_protocol2_numpy_pickle_loads(tmp_path):
    """Python 3 writes numpy buffers in protocol 2 through ``_codecs.encode(..., 'latin1')``."""
    import pickle

    import numpy as np

    from thunder3d.utils.safe_pickle import safe_load_pickle

    data = {"exp": np.arange(12, dtype=np.float32).reshape(3, 4), "fps": 30}
    path = tmp_path / "clip.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    assert b"_codecs" in path.read_bytes()
    loaded = safe_load_pickle(path)
    assert np.array_equal(loaded["exp"], data["exp"]) and loaded["fps"] == 30


def test_codecs_encode_with_other_codec_refused(tmp_path):
    import pickle

    from thunder3d.errors import UnsafePickleError
    from thunder3d.utils.safe_pickle import safe_load_pickle

    class Evil:
        def __reduce__(self):
            import _codecs
            return (_codecs.encode, ("x", "rot13"))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Evil(), protocol=2))
    import pytest

    with pytest.raises(UnsafePickleError, match="rot13"):
        safe_load_pickle(path)
