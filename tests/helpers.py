"""Helpers shared by test modules (imported as ``from helpers import ...``)."""

import pytest

from thunder3d.render import RenderError
from thunder3d.render.gl import create_context


def _egl_missing() -> str:
    """Why headless OpenGL cannot start here, or "" when it can."""
    try:
        create_context().release()
    except RenderError as exc:
        return str(exc)
    return ""


needs_gl = pytest.mark.skipif(bool(_egl_missing()), reason=f"no headless OpenGL here: {_egl_missing()}")
