"""MP4 videos of rig animations with their speech, through the ffmpeg binary of ``imageio-ffmpeg``.

- :func:`render_video` — one animation, one or several views side by side.
- :func:`render_video_grid` — N animations of the same audio (e.g. diffusion samples) in a grid.
- :class:`VideoWriter` — the encoder both use: raw RGB frames in, an h264/AAC file out.
- :func:`probe_media` — streams of a media file (codec, duration, fps, size, sample rate).

Frames are streamed: one :class:`~thunder3d.render.gl.Renderer` draws each frame, which goes straight
into ffmpeg's stdin, so memory does not grow with the length of the animation (pass an iterator of
``[V, 3]`` frames to avoid holding the vertices too).

**Durations.** The animation is authoritative: a video of ``T`` frames lasts exactly ``T / fps``
seconds and its audio is trimmed to that length, or padded with silence when shorter, so the video
and audio streams always have the same duration (no ``-shortest`` guessing). Because ``T`` is only
known at the end for an iterator, the video is encoded first (to a temporary file) and the audio
muxed in afterwards; the second step copies the video stream and only encodes the AAC audio.

**Files.** Everything is written under temporary names in the target folder and renamed onto the
path when complete; on any error (a bad frame, ffmpeg failing) nothing is left behind. A failed
ffmpeg raises :class:`~thunder3d.render.gl.RenderError` with the end of ffmpeg's own message.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from thunder3d.errors import RenderError
from thunder3d.constants import FPS, SAMPLE_RATE
from thunder3d.render.gl import _as_numpy

CONTAINERS = (".mp4", ".mov", ".mkv")
"""File extensions :class:`VideoWriter` writes (h264 + AAC fit all three)."""

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow")
AUDIO_BITRATE = "96k"
STDERR_LINES = 12  # lines of ffmpeg's stderr quoted in a RenderError


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped with ``imageio-ffmpeg`` (or ``$IMAGEIO_FFMPEG_EXE``)."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise RenderError(f"writing video needs the 'imageio-ffmpeg' package (pip install imageio-ffmpeg): {exc}"
                          ) from exc
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:  # no binary for this platform and none on PATH
        raise RenderError(f"no ffmpeg binary found: {exc}") from exc


def _stderr_tail(text: str, lines: int = STDERR_LINES) -> str:
    tail = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return "\n".join(tail) if tail else "(ffmpeg printed nothing)"


def _run_ffmpeg(args: Sequence[str], what: str) -> subprocess.CompletedProcess:
    """Run ffmpeg to completion; :class:`RenderError` with its last stderr lines if it fails."""
    proc = subprocess.run([ffmpeg_exe(), *args], stdin=subprocess.DEVNULL, capture_output=True)
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace")
        raise RenderError(f"ffmpeg failed while {what} (exit code {proc.returncode}):\n{_stderr_tail(stderr)}")
    return proc


def _fps_string(fps: float) -> str:
    """``fps`` for ffmpeg's command line, exact for integers (25 -> ``"25"``)."""
    return str(int(fps)) if float(fps).is_integer() else repr(float(fps))


def _prepare_audio(audio) -> np.ndarray | None:
    """``None``, a path (any format :func:`thunder3d.audio.load_audio` reads) or a 16 kHz mono array
    -> ``[N]`` float32 or None."""
    if audio is None:
        return None
    if isinstance(audio, (str, os.PathLike)):
        from thunder3d.audio.io import load_audio

        return load_audio(audio)
    wav = _as_numpy(audio)
    if wav.ndim != 1:
        raise RenderError(f"audio must be a [N] 16 kHz mono array or a file path, got shape {wav.shape}")
    wav = wav.astype(np.float32, copy=False)
    if not np.isfinite(wav).all():
        raise RenderError("audio contains NaN or infinity")
    return wav


def fit_audio(wav: np.ndarray, num_frames: int, fps: float = FPS, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``wav`` trimmed to ``num_frames / fps`` seconds, or padded with silence to that length."""
    length = int(round(num_frames * sr / fps))
    if wav.size >= length:
        return wav[:length]
    return np.concatenate([wav, np.zeros(length - wav.size, dtype=wav.dtype)])


class VideoWriter:
    """Encode ``[H, W, 3]`` uint8 RGB frames to an h264 (+ AAC) file, atomically.

    Example::

        with VideoWriter("out.mp4", audio=wav) as writer:
            for frame in frames:
                writer.write(frame)

    Leaving the ``with`` block normally finishes the file; leaving it through an exception (or
    calling :meth:`abort`) deletes everything written so far. The first frame fixes the size;
    an odd width or height is padded by repeating the last column/row (yuv420p needs even sizes).

    Args:
        path: output file, ``.mp4`` (or ``.mov`` / ``.mkv``).
        fps: frames per second.
        audio: None, a file path, or a ``[N]`` float32 16 kHz mono array. Trimmed or padded with
            silence to the video's duration (see the module docstring).
        crf: x264 constant rate factor, 0 (lossless) .. 51; 18-23 looks clean for faces.
        preset: x264 speed preset, one of :data:`X264_PRESETS`.
        ffmpeg_options: extra ffmpeg output options for the video encode (e.g.
            ``["-tune", "animation"]``), passed through unchecked.
    """

    def __init__(self, path: str | os.PathLike, *, fps: float = FPS, audio=None, crf: int = 20,
                 preset: str = "medium", ffmpeg_options: Sequence[str] = ()) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in CONTAINERS:
            raise RenderError(f"cannot write video {self.path}: unknown extension {self.path.suffix!r}; "
                              f"valid: {list(CONTAINERS)}")
        if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) or not (
                math.isfinite(fps) and 0 < fps <= 240):
            raise RenderError(f"fps must be a number in (0, 240], got {fps!r}")
        if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
            raise RenderError(f"crf must be an integer in [0, 51], got {crf!r}")
        if preset not in X264_PRESETS:
            raise RenderError(f"unknown x264 preset {preset!r}; valid: {list(X264_PRESETS)}")
        self.fps = fps
        self.crf = int(crf)
        self.preset = preset
        self.ffmpeg_options = [str(o) for o in ffmpeg_options]
        self.audio = _prepare_audio(audio)  # fail on bad audio before any rendering
        self.num_frames = 0
        self.size: tuple[int, int] | None = None  # (width, height) of the input frames
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._workdir: Path | None = None
        self._done = False

    # ------------------------------------------------------------------ writing
    def _video_file(self) -> Path:
        assert self._workdir is not None
        return self._workdir / f"video{self.path.suffix}"

    def _start(self, width: int, height: int) -> None:
        """Create the temporary folder beside the output and start the video encoder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._workdir = Path(tempfile.mkdtemp(prefix=f".{self.path.stem}.", suffix=".tmp", dir=self.path.parent))
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: ffmpeg can never block on it
        out_w, out_h = width + width % 2, height + height % 2
        args = [
            ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{out_w}x{out_h}",
            "-framerate", _fps_string(self.fps), "-i", "pipe:0",
            "-an", "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf), "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", *self.ffmpeg_options, str(self._video_file()),
        ]
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr)

    def _ffmpeg_stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def _encoder_failed(self, what: str) -> RenderError:
        """Stop the encoder and describe its failure (exit code and last stderr lines)."""
        assert self._proc is not None
        with contextlib.suppress(OSError, ValueError):
            self._proc.stdin.close()
        try:
            code = self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        return RenderError(f"ffmpeg failed while {what} (exit code {code}):\n{_stderr_tail(self._ffmpeg_stderr())}")

    def write(self, frame) -> None:
        """Append one ``[H, W, 3]`` uint8 RGB frame (numpy or torch)."""
        if self._done:
            raise RenderError(f"VideoWriter for {self.path} is already closed")
        image = _as_numpy(frame)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise RenderError(f"video frames must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        if self.size is None:
            self.size = (width, height)
            self._start(width, height)
        elif self.size != (width, height):
            raise RenderError(f"frame {self.num_frames} is {width}x{height}, the video is "
                              f"{self.size[0]}x{self.size[1]}")
        if width % 2 or height % 2:  # yuv420p: repeat the last column / row
            image = np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        try:
            self._proc.stdin.write(np.ascontiguousarray(image).tobytes())
        except (BrokenPipeError, OSError) as exc:
            error = self._encoder_failed(f"encoding frame {self.num_frames} of {self.path.name}")
            raise error from exc
        self.num_frames += 1

    # ------------------------------------------------------------------ finishing
    def close(self) -> Path:
        """Finish encoding, mux the audio and move the file onto :attr:`path`; returns the path."""
        if self._done:
            return self.path
        try:
            if self.num_frames == 0:
                raise RenderError(f"no frames were written to {self.path}")
            self._proc.stdin.close()
            if self._proc.wait() != 0:
                raise self._encoder_failed(f"encoding {self.path.name}")
            if self.audio is None:
                os.replace(self._video_file(), self.path)  # same folder: an atomic rename
            else:
                wav_path = self._workdir / "audio.wav"
                import soundfile as sf

                sf.write(wav_path, fit_audio(self.audio, self.num_frames, self.fps), SAMPLE_RATE, subtype="FLOAT")
                muxed = self._workdir / f"muxed{self.path.suffix}"
                _run_ffmpeg(["-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                             "-i", str(self._video_file()), "-i", str(wav_path),
                             "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                             "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-movflags", "+faststart", str(muxed)],
                            f"adding the audio to {self.path.name}")
                os.replace(muxed, self.path)  # same folder: an atomic rename
        except BaseException:
            self.abort()
            raise
        self._cleanup()
        self._done = True
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and delete every temporary file; nothing is written at :attr:`path`."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        with contextlib.suppress(OSError, ValueError):
            if self._proc is not None:
                self._proc.stdin.close()
        self._cleanup()
        self._done = True

    def _cleanup(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        if not getattr(self, "_done", True):
            self.abort()


# ---------------------------------------------------------------------------- rendering loops

def _frames(vertices) -> tuple[Iterator, int | None]:
    """Frames ``[V, 3]`` of a ``[T, V, 3]`` array/tensor (lazily, one at a time) or of an iterable,
    and ``T`` when known."""
    if hasattr(vertices, "shape") and hasattr(vertices, "ndim"):
        if vertices.ndim != 3 or vertices.shape[-1] != 3:
            raise RenderError(f"vertices must be [T, V, 3], got {tuple(vertices.shape)}")
        return (vertices[t] for t in range(vertices.shape[0])), int(vertices.shape[0])
    if isinstance(vertices, Iterable):
        return iter(vertices), (len(vertices) if hasattr(vertices, "__len__") else None)
    raise RenderError(f"vertices must be a [T, V, 3] array or tensor, or an iterable of [V, 3] frames, "
                      f"got {type(vertices).__name__}")


def _progress(total: int | None, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame")


def _render_frame(renderer, vertices, cameras, index: int) -> list[np.ndarray]:
    """One render per camera; an invalid frame is reported with its index."""
    try:
        return [renderer.render(vertices, camera) for camera in cameras]
    except RenderError as exc:
        raise RenderError(f"frame {index}: {exc}") from exc


def render_video(rig, vertices, path: str | os.PathLike, *, audio=None, fps: float = FPS,
                 size: int | tuple[int, int] = 512, view: str | Sequence[str] = "front", samples: int = 0,
                 crf: int = 20, preset: str = "medium", progress: bool = False,
                 ffmpeg_options: Sequence[str] = ()) -> Path:
    """Render an animation of ``rig`` to an h264 MP4 with its audio (AAC).

    Args:
        rig: the :class:`thunder3d.rigs.Rig` the vertices belong to.
        vertices: ``[T, V, 3]`` numpy array or torch tensor, or an iterable of ``[V, 3]`` frames
            (for long sequences: e.g. a generator running the rig window by window).
        path: output ``.mp4`` (``.mov``, ``.mkv`` also work); written atomically.
        audio: None (silent video), a ``[N]`` float32 16 kHz array, or an audio file path. Trimmed
            to ``T / fps`` seconds or padded with silence.
        fps: frame rate of ``vertices``.
        size: pixels per view, int or ``(width, height)``.
        view: a view name or a list of them (comma-separated string works), side by side.
        samples: MSAA samples; 0 (default) is 2-3x faster on CPU renderers.
        crf, preset, ffmpeg_options: see :class:`VideoWriter`.
        progress: show a tqdm progress bar.
    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    Raises:
        RenderError: bad arguments, a NaN frame (named by index), no EGL, or ffmpeg failing;
            no file is left at ``path`` then.
    """
    from thunder3d.render import rig_camera
    from thunder3d.render.camera import parse_views
    from thunder3d.render.gl import Renderer

    names = parse_views(view)
    frames, total = _frames(vertices)
    bar = _progress(total, progress, Path(path).name)
    with VideoWriter(path, fps=fps, audio=audio, crf=crf, preset=preset, ffmpeg_options=ffmpeg_options) as writer, \
            Renderer(rig.faces, rig.vertex_colors, size=size, samples=samples) as renderer:
        cameras = [rig_camera(rig, name, renderer.aspect) for name in names]
        try:
            for index, frame in enumerate(frames):
                images = _render_frame(renderer, frame, cameras, index)
                writer.write(images[0] if len(images) == 1 else np.concatenate(images, axis=1))
                if bar is not None:
                    bar.update()
        finally:
            if bar is not None:
                bar.close()
    return writer.path


def render_video_grid(rig, sequences: Sequence, path: str | os.PathLike, *, audio=None, cols: int | None = None,
                      labels: Sequence[str] | None = None, fps: float = FPS, size: int | tuple[int, int] = 256,
                      view: str = "front", samples: int = 0, crf: int = 20, preset: str = "medium",
                      progress: bool = False, ffmpeg_options: Sequence[str] = ()) -> Path:
    """Render N animations of the same audio side by side in a grid (e.g. diffusion samples).

    Args:
        rig: the rig all sequences belong to.
        sequences: N vertex sequences, each ``[T, V, 3]`` (numpy/torch) or an iterable of ``[V, 3]``
            frames; all must have the same number of frames.
        path: output file (see :func:`render_video`).
        audio: the shared audio (see :func:`render_video`).
        cols: grid columns (``None``: near-square, ``ceil(sqrt(N))``).
        labels: N captions drawn under the cells (Pillow's default font), or None.
        size: pixels per cell, int or ``(width, height)``.
        view: one named view for every cell.
        fps, samples, crf, preset, progress, ffmpeg_options: as in :func:`render_video`.
    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from thunder3d.render import rig_camera
    from thunder3d.render.camera import parse_views
    from thunder3d.render.gl import Renderer
    from thunder3d.render.sheet import GridLayout

    names = parse_views(view)
    if len(names) != 1:
        raise RenderError(f"render_video_grid takes one view name, got {view!r}")
    sequences = list(sequences)
    layout = GridLayout.make(len(sequences), size, cols, labels)
    streams = [_frames(seq) for seq in sequences]
    lengths = {total for _, total in streams if total is not None}
    if len(lengths) > 1:
        raise RenderError(f"all sequences of a grid video need the same number of frames, got {sorted(lengths)}")
    canvas = layout.canvas(labels)  # labels drawn once; cells are overwritten per frame
    bar = _progress(next(iter(lengths), None), progress, Path(path).name)
    with VideoWriter(path, fps=fps, audio=audio, crf=crf, preset=preset, ffmpeg_options=ffmpeg_options) as writer, \
            Renderer(rig.faces, rig.vertex_colors, size=layout.cell, samples=samples) as renderer:
        camera = rig_camera(rig, names[0], renderer.aspect)
        iterators = [frames for frames, _ in streams]
        try:
            index = 0
            while True:
                frames = [next(it, None) for it in iterators]
                ended = [f is None for f in frames]
                if all(ended):
                    break
                if any(ended):
                    raise RenderError(f"grid sequence {ended.index(True)} ended after {index} frames, "
                                      f"before the others")
                for k, frame in enumerate(frames):
                    layout.paste(canvas, k, _render_frame(renderer, frame, [camera], index)[0])
                writer.write(canvas)
                index += 1
                if bar is not None:
                    bar.update()
        finally:
            if bar is not None:
                bar.close()
    return writer.path


# ---------------------------------------------------------------------------- probing

_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM = re.compile(r"Stream #0:(\d+)[^:]*:\s*(Video|Audio|Subtitle|Data|Attachment):\s*(.*)")
_FPS = re.compile(r"([\d.]+)\s*fps")
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_RATE = re.compile(r"(\d+)\s*Hz")


def probe_media(path: str | os.PathLike) -> dict:
    """Describe a media file's streams with the bundled ffmpeg (no ffprobe needed).

    Runs ``ffmpeg -i path -map 0 -c copy -f framecrc -`` once: no decoding, every packet listed.
    Stream durations come from the packet timestamps (end of the last packet minus the start of
    the first one, AAC priming excluded), so they are exact, per stream.

    Returns:
        ``{"path", "format", "duration" (container, seconds), "streams": [...]}``, each stream a
        dict with ``index``, ``type`` (``video``/``audio``/...), ``codec``, ``duration``, ``packets``,
        and for video ``width``, ``height``, ``fps``, ``pix_fmt``, ``frames``; for audio
        ``sample_rate``, ``channels``.
    Raises:
        RenderError: missing file, or one ffmpeg cannot read (with ffmpeg's message).
    """
    path = Path(path)
    if not path.is_file():
        raise RenderError(f"no such media file: {path}")
    proc = _run_ffmpeg(["-hide_banner", "-nostdin", "-i", str(path), "-map", "0", "-c", "copy",
                        "-f", "framecrc", "-"], f"reading {path}")
    stderr = proc.stderr.decode("utf-8", "replace")
    header: dict[int, dict[str, str]] = {}
    packets: dict[int, list[tuple[int, int]]] = {}
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("#"):
            match = re.match(r"#(\w+) (\d+):\s*(.*)", line)
            if match:
                header.setdefault(int(match[2]), {})[match[1]] = match[3].strip()
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) >= 4 and all(re.fullmatch(r"-?\d+", f) for f in fields[:4]):
            packets.setdefault(int(fields[0]), []).append((int(fields[2]), int(fields[3])))  # pts, duration

    info_lines = {int(m[1]): (m[2].lower(), m[3]) for m in map(_STREAM.search, stderr.splitlines()) if m}
    streams = []
    for index in sorted(set(header) | set(info_lines)):
        meta = header.get(index, {})
        kind, text = info_lines.get(index, (meta.get("media_type", "unknown"), ""))
        stream: dict = {"index": index, "type": meta.get("media_type", kind),
                        "codec": meta.get("codec_id") or (text.split()[0].rstrip(",") if text else None)}
        tb_num, _, tb_den = meta.get("tb", "1/1").partition("/")
        timebase = int(tb_num) / int(tb_den or 1)
        pkts = packets.get(index, [])
        stream["packets"] = len(pkts)
        if pkts:
            start = max(min(pts for pts, _ in pkts), 0)  # AAC priming packets have negative pts
            end = max(pts + dur for pts, dur in pkts)
            stream["duration"] = (end - start) * timebase
        else:
            stream["duration"] = None
        if stream["type"] == "video":
            dims = meta.get("dimensions") or (_SIZE.search(text)[0] if _SIZE.search(text) else "0x0")
            width, height = (int(v) for v in dims.split("x"))
            fps_match = _FPS.search(text)
            pix = re.search(r"\b(yuv\w+|rgb\w+|bgr\w+|gray\w*|nv12)\b", text)
            stream.update(width=width, height=height, fps=float(fps_match[1]) if fps_match else None,
                          pix_fmt=pix[1] if pix else None, frames=len(pkts))
        elif stream["type"] == "audio":
            rate = meta.get("sample_rate") or (_RATE.search(text)[1] if _RATE.search(text) else None)
            layout = meta.get("channel_layout_name", "")
            channels = {"mono": 1, "stereo": 2}.get(layout)
            if channels is None:
                match = re.search(r"(\d+) channels", text)
                channels = int(match[1]) if match else None
            stream.update(sample_rate=int(rate) if rate else None, channels=channels)
        streams.append(stream)

    duration = _DURATION.search(stderr)
    fmt = re.search(r"Input #0, ([^,]+(?:,[^,]+)*?), from", stderr)
    return {
        "path": str(path),
        "format": fmt[1] if fmt else None,
        "duration": (int(duration[1]) * 3600 + int(duration[2]) * 60 + float(duration[3])) if duration else None,
        "streams": streams,
    }


__all__ = ["CONTAINERS", "X264_PRESETS", "VideoWriter", "ffmpeg_exe", "fit_audio", "probe_media",
           "render_video", "render_video_grid"]
