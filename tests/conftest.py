"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ICT_ARCHIVE = Path(os.environ.get("THUNDER3D_ICT_ARCHIVE")
                   or REPO.parent / "shared" / "assets" / "ICT-FaceKit.tar.gz")


@pytest.fixture(scope="session")
def ict_archive() -> Path:
    """The ICT-FaceKit tarball (``$THUNDER3D_ICT_ARCHIVE`` or ``../shared/assets``); skip if absent."""
    if not ICT_ARCHIVE.is_file():
        pytest.skip(f"ICT-FaceKit archive not found at {ICT_ARCHIVE} (set THUNDER3D_ICT_ARCHIVE to "
                    "a .tar.gz of https://github.com/ICT-VGL/ICT-FaceKit)")
    return ICT_ARCHIVE


@pytest.fixture(scope="session")
def ict_dir(ict_archive, tmp_path_factory) -> Path:
    """The upstream ICT-FaceKit folder, extracted once per session (its FaceXModel files only)."""
    from thunder3d.rigs.ict import extract_archive

    return extract_archive(ict_archive, tmp_path_factory.mktemp("ict")).parent


@pytest.fixture(scope="session")
def ict_file(ict_archive, tmp_path_factory) -> Path:
    """ICT-FaceKit converted once per session by ``convert_ict``, straight from the tarball."""
    from thunder3d.rigs.ict import convert_ict

    return convert_ict(ict_archive, tmp_path_factory.mktemp("ict_rig") / "ict.npz")


@pytest.fixture(scope="session")
def ict_rig(ict_file):
    """The ICT rig loaded from the converted file (shared: do not modify it)."""
    from thunder3d.rigs.ict import load_ict

    return load_ict(ict_file)


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread is fastest (and immune to a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Six synthetic clips (seed 2), generated once per session. Shared: read only."""
    from thunder3d.data.synth import synthesize_corpus

    root = tmp_path_factory.mktemp("tiny_corpus")
    synthesize_corpus(root, hours=0.02, seed=2, workers=1, progress=False, max_clips=6)
    return root


@pytest.fixture(scope="session")
def tiny_talker(tiny_corpus, tmp_path_factory) -> Path:
    """A diffusion talker (dim 32, 1 layer, 2 s windows) trained 3 steps on :func:`tiny_corpus`
    through the CLI, once per session: the run folder (``best/`` and ``last/``). Shared: read only."""
    import torch

    from thunder3d.cli import main

    run = tmp_path_factory.mktemp("tiny_talker") / "talker"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = ["train", "talker", "--corpus", str(tiny_corpus), "-o", str(run), "--steps", "3",
                "--batch-size", "2", "--dim", "32", "--layers", "1", "--heads", "2", "--window", "2",
                "--eval-every", "3", "--save-every", "3", "--warmup", "1", "--eval-windows", "2",
                "--eval-steps", "2", "--audio-dim", "16", "--no-progress", "--seed", "0"]
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    return run
