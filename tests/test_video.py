"""Video writing: real renders of the built-in head piped to the bundled ffmpeg, probed back.

Small sizes and short sequences keep this fast; every check reads the written file back with
ffmpeg itself (``probe_media``, decoded frames), so nothing is taken on trust.
"""

import subprocess

import numpy as np
import pytest
from helpers import needs_gl
import soundfile as sf
import torch

from thunder3d.constants import FPS, SAMPLE_RATE
from thunder3d.render import (GridLayout, RenderError, VideoWriter, contact_sheet, probe_media, render_video,
                              render_video_grid, sequence_sheet)
from thunder3d.render.video import ffmpeg_exe, fit_audio



T = 12  # frames per test clip (0.48 s)


@pytest.fixture(scope="module")
def rig():
    from thunder3d.rigs import load_rig

    return load_rig("builtin")


@pytest.fixture(scope="module")
def talking(rig) -> torch.Tensor:
    """``[T, V, 3]``: the jaw opens from closed to fully open."""
    coeffs = rig.coeffs(frames=T)
    coeffs[:, rig.coeff_index("jawOpen")] = torch.linspace(0.0, 1.0, T)
    return rig(coeffs).detach()


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(round(seconds * SAMPLE_RATE))) / SAMPLE_RATE
    return (0.2 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)


def streams(path) -> dict[str, dict]:
    return {s["type"]: s for s in probe_media(path)["streams"]}


def decode(path, width: int, height: int) -> np.ndarray:
    """All frames ``[N, H, W, 3]`` uint8, decoded by the bundled ffmpeg."""
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@needs_gl
@pytest.mark.parametrize("seconds", [1.0, 0.3], ids=["audio-longer", "audio-shorter"])
def test_h264_aac_durations_match(rig, talking, tmp_path, seconds):
    path = render_video(rig, talking, tmp_path / "talk.mp4", audio=tone(seconds), size=96)
    s = streams(path)
    assert s["video"]["codec"] == "h264" and s["audio"]["codec"] == "aac"
    assert s["video"]["pix_fmt"] == "yuv420p"
    assert (s["video"]["width"], s["video"]["height"]) == (96, 96)
    assert s["video"]["frames"] == T and s["video"]["fps"] == FPS
    assert s["audio"]["sample_rate"] == SAMPLE_RATE
    # the animation is authoritative: audio trimmed or padded to T / fps
    assert s["video"]["duration"] == pytest.approx(T / FPS, abs=1e-6)
    assert abs(s["audio"]["duration"] - s["video"]["duration"]) < 1.0 / FPS
    assert leftovers(tmp_path) == ["talk.mp4"]


@needs_gl
def test_audio_from_file_and_frames_really_move(rig, talking, tmp_path):
    wav = tmp_path / "speech.wav"
    sf.write(wav, tone(0.48), SAMPLE_RATE)
    path = render_video(rig, talking, tmp_path / "talk.mp4", audio=wav, size=96)
    assert set(streams(path)) == {"video", "audio"}
    frames = decode(path, 96, 96).astype(np.int16)
    assert len(frames) == T
    assert frames[0].std() > 10  # a lit face on a gradient, not a flat (black) frame
    assert np.abs(frames[-1] - frames[0]).mean() > 1.0  # the jaw opened


@needs_gl
def test_no_audio_gives_video_only(rig, talking, tmp_path):
    path = render_video(rig, talking.numpy(), tmp_path / "silent.mp4", size=96)
    assert list(streams(path)) == ["video"]


@needs_gl
def test_views_side_by_side_and_iterator_input(rig, talking, tmp_path):
    frames = (talking[t] for t in range(T))  # a generator: length unknown until it ends
    path = render_video(rig, frames, tmp_path / "views.mp4", audio=tone(2.0), size=(64, 80),
                        view=["front", "side"])
    s = streams(path)
    assert (s["video"]["width"], s["video"]["height"]) == (128, 80)
    assert s["video"]["frames"] == T
    assert abs(s["audio"]["duration"] - T / FPS) < 1.0 / FPS


@needs_gl
def test_odd_sizes_are_padded_to_even(rig, talking, tmp_path):
    s = streams(render_video(rig, talking[:3], tmp_path / "odd.mp4", size=(65, 47)))
    assert (s["video"]["width"], s["video"]["height"]) == (66, 48)


@needs_gl
def test_grid_dimensions_and_labels(rig, talking, tmp_path):
    labels = ["sample 1", "sample 2", "sample 3"]
    path = render_video_grid(rig, [talking, talking.flip(0), talking.numpy()], tmp_path / "grid.mp4",
                             audio=tone(0.48), cols=2, labels=labels, size=64)
    layout = GridLayout.make(3, 64, 2, labels)
    width, height = layout.size
    s = streams(path)
    assert (s["video"]["width"], s["video"]["height"]) == (width + width % 2, height + height % 2)
    assert s["video"]["frames"] == T and "audio" in s
    frame = decode(path, s["video"]["width"], s["video"]["height"])[0]
    strip = frame[64:64 + layout.label_height, :64]  # label strip under the first cell
    assert strip.min() < 100 and np.median(strip) > 200  # dark text on white
    empty = frame[64 + layout.label_height:, 64:width]  # the fourth cell has no picture
    assert empty.min() > 200


@needs_gl
def test_grid_refuses_sequences_of_different_lengths(rig, talking, tmp_path):
    with pytest.raises(RenderError, match="same number of frames"):
        render_video_grid(rig, [talking, talking[:5]], tmp_path / "grid.mp4", size=32)
    with pytest.raises(RenderError, match="ended after 5 frames"):
        render_video_grid(rig, [talking, iter(talking[:5])], tmp_path / "grid.mp4", size=32)
    assert leftovers(tmp_path) == []


@needs_gl
def test_failed_render_leaves_nothing(rig, talking, tmp_path):
    bad = talking.clone()
    bad[5, 100] = float("nan")
    target = tmp_path / "out.mp4"
    with pytest.raises(RenderError, match="frame 5: vertices contain NaN"):
        render_video(rig, bad, target, audio=tone(0.48), size=64)
    assert leftovers(tmp_path) == []  # no file at the path, no temporary file or folder
    target.write_bytes(b"previous")  # an existing file survives a failed overwrite untouched
    with pytest.raises(RenderError):
        render_video(rig, bad, target, size=64)
    assert target.read_bytes() == b"previous" and leftovers(tmp_path) == ["out.mp4"]


@needs_gl
def test_ffmpeg_failure_is_a_render_error(rig, talking, tmp_path):
    with pytest.raises(RenderError, match=r"ffmpeg failed.*exit code") as info:
        render_video(rig, talking, tmp_path / "out.mp4", size=64, ffmpeg_options=["-profile:v", "nonsense"])
    assert "nonsense" in str(info.value) or "profile" in str(info.value).lower()  # ffmpeg's own words
    assert leftovers(tmp_path) == []


def test_writer_validates_options(tmp_path):
    with pytest.raises(RenderError, match="valid: .*mp4"):
        VideoWriter(tmp_path / "out.avi")
    with pytest.raises(RenderError, match="valid: .*veryfast"):
        VideoWriter(tmp_path / "out.mp4", preset="quick")
    with pytest.raises(RenderError, match="crf"):
        VideoWriter(tmp_path / "out.mp4", crf=60)
    with pytest.raises(RenderError, match="NaN"):
        VideoWriter(tmp_path / "out.mp4", audio=np.array([0.0, np.nan], np.float32))
    with pytest.raises(RenderError, match="no frames"):
        with VideoWriter(tmp_path / "out.mp4"):
            pass
    assert leftovers(tmp_path) == []


def test_writer_without_renderer(tmp_path):
    """Frames from anywhere (here gradients) encode too; a mid-stream size change is refused."""
    frame = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (16, 1, 3))
    with VideoWriter(tmp_path / "plain.mp4", fps=10, audio=tone(1.0)) as writer:
        for _ in range(5):
            writer.write(frame)
    s = streams(tmp_path / "plain.mp4")
    assert s["video"]["frames"] == 5 and s["video"]["fps"] == 10
    assert s["audio"]["duration"] == pytest.approx(0.5, abs=0.1 / 10)
    with pytest.raises(RenderError, match="frame 1 is 16x16"):
        with VideoWriter(tmp_path / "sizes.mp4") as writer:
            writer.write(frame)
            writer.write(frame[:, :16])
    assert leftovers(tmp_path) == ["plain.mp4"]


def test_fit_audio():
    wav = np.ones(1000, np.float32)
    assert fit_audio(wav, 1).shape == (640,)
    padded = fit_audio(wav, 2)
    assert padded.shape == (1280,) and padded[999] == 1 and padded[1000:].max() == 0


def test_probe_media_errors(tmp_path):
    with pytest.raises(RenderError, match="no such media file"):
        probe_media(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(RenderError, match="ffmpeg failed"):
        probe_media(junk)


def test_probe_media_audio_file(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, tone(0.5), SAMPLE_RATE)
    (audio,) = probe_media(wav)["streams"]
    assert audio["type"] == "audio" and audio["codec"] == "pcm_s16le"
    assert audio["sample_rate"] == SAMPLE_RATE and audio["channels"] == 1
    assert audio["duration"] == pytest.approx(0.5, abs=1e-3)


def test_contact_sheet_layout_and_labels():
    images = [np.full((24, 32, 3), 60 * k, np.uint8) for k in range(5)]
    sheet = contact_sheet(images, cols=3, labels=[f"AA{k}" for k in range(5)], label_height=14)
    assert sheet.shape == (2 * (24 + 14), 3 * 32, 3) and sheet.dtype == np.uint8
    assert (sheet[38:62, 32:64] == 240).all()  # picture 4 (value 4 * 60) sits in row 2, column 2
    strip = sheet[24:38, :32]
    assert strip.min() < 100 and strip.max() == 255  # text drawn on white
    assert (sheet[38:, 64:] == 255).all()  # the sixth cell is empty
    plain = contact_sheet(images, cols=5)
    assert plain.shape == (24, 160, 3)  # no labels: no strip
    resized = contact_sheet(images, cols=2, cell_size=16)
    assert resized.shape == (3 * 16, 2 * 16, 3)
    with pytest.raises(RenderError, match="2 labels for 5"):
        contact_sheet(images, labels=["a", "b"])
    with pytest.raises(RenderError, match="uint8"):
        contact_sheet([np.zeros((4, 4, 3))])


@needs_gl
def test_sequence_sheet_renders_frames(rig, talking):
    sheet = sequence_sheet(rig, talking, frames=[0, 6, 11], cols=3, labels=["M", "AE", "AA"], cell_size=64,
                           samples=0, label_height=12)
    assert sheet.shape == (76, 192, 3)
    assert not np.array_equal(sheet[:64, :64], sheet[:64, 128:])  # closed vs open jaw
    with pytest.raises(RenderError, match="frame 12 is outside"):
        sequence_sheet(rig, talking, frames=[12], cell_size=32)
