"""The product API: a trained talker that turns speech into :class:`Animation` objects.

::

    animator = Animator.from_pretrained()                 # the model shipped with the package
    animator = Animator.from_pretrained("runs/talker", rig="ict:ict.npz")
    [anim] = animator.animate("speech.wav", emotion="happy", intensity=2, seed=3)
    anim.coeffs            # [T, C] float32 in anim.rig's layout (anim.names), 25 fps
    for verts in anim.iter_vertices(250):                 # [<=250, V, 3], rig forward in chunks
        ...

Speech of any length goes through :func:`~thunder3d.inference.sampling.generate` in one call (with
the checkpoint's training window, overlap a quarter of it), so every seam is an inpainted,
cross-faded window seam, exactly as within a short clip. Memory grows with the length only through arrays a few kB per frame wide: files are
decoded block by block (:func:`~thunder3d.audio.io.iter_audio_blocks`), so a long 44.1 kHz stereo
file is never held whole at its own rate; what stays is the 16 kHz mono speech (2.5 kB per frame)
and the coefficients (``4 C`` bytes per frame and sample). Features and activations exist for one
window at a time (attention spans a window, never the whole sequence).

Speech that is digital silence (RMS below :data:`SILENCE_DB`) gives a still face at rest (all
coefficients exactly 0) and a warning, not whatever the model makes of noise.

A model trained on one ARKit rig can drive another (``rig=``): coefficients are moved across by
name (:mod:`thunder3d.export.retarget`: ARKit shapes, ICT's ``_L``/``_R`` splits, identical names);
a rig none of whose coefficients can be driven (FLAME for an ARKit model) is refused.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thunder3d.audio.io import audio_info, iter_audio_blocks, to_mono_16k
from thunder3d.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from thunder3d.data.dataset import Normalizer
from thunder3d.conditions import EMOTIONS, check_emotion, check_intensity
from thunder3d.utils.device import resolve_device
from thunder3d.errors import AudioError, CheckpointError, ExportError, RigError, ThunderError
from thunder3d.inference.sampling import generate, plan_windows
from thunder3d.rigs import Rig, load_rig
from thunder3d.checkpoints import load_talker
from thunder3d.models.talker import TalkerModel

BUILTIN_NAMES = ("builtin", "thunder-builtin", "thunder3d-builtin")
"""Names of the model shipped inside the package (``from_pretrained()`` with no argument)."""

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "assets" / "pretrained" / "thunder-builtin"
"""Where the shipped model lives: a checkpoint directory (``config.json`` + ``model.safetensors``)."""

SILENCE_DB = -60.0
"""Speech whose RMS level is below this (dBFS) is silence: a still face at rest."""

_READ_BLOCK_SECONDS = 60.0  # audio files are decoded this much at a time


# --------------------------------------------------------------------------- result
@dataclass
class Animation:
    """One animated sample of a talker.

    Attributes:
        coeffs: ``[T, C]`` float32 rig coefficients, in the layout of ``names``.
        names: the ``C`` coefficient names (``rig.coeff_names``).
        rig: the face rig the coefficients drive.
        fps: frames per second (25).
        audio: the speech, ``[N]`` float32 mono at 16 kHz (``T = ceil(N / 640)``), or None.
        sample: index of this sample among those drawn together.
        seed: the seed of this sample (``seed + sample`` of the call).
        emotion, intensity, style: the conditions it was sampled with (None = unconditioned).
        source: the audio file it was made from, when there was one.
    """

    coeffs: np.ndarray = field(repr=False)
    names: tuple[str, ...] = field(repr=False)
    rig: Rig = field(repr=False)
    fps: float = FPS
    audio: np.ndarray | None = field(default=None, repr=False)
    sample: int = 0
    seed: int = 0
    emotion: str | None = None
    intensity: int | None = None
    style: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        self.coeffs = np.asarray(self.coeffs, dtype=np.float32)
        self.names = tuple(self.names)
        if self.coeffs.ndim != 2 or self.coeffs.shape[1] != len(self.names):
            raise ThunderError(f"animation coefficients must be [T, {len(self.names)}] (one column per "
                               f"name), got {self.coeffs.shape}")
        if self.names != tuple(self.rig.coeff_names):
            raise RigError(f"animation coefficients are not in rig {self.rig.spec!r}'s layout")

    @property
    def num_frames(self) -> int:
        """``T``."""
        return int(self.coeffs.shape[0])

    @property
    def duration(self) -> float:
        """Seconds of animation (``T / fps``)."""
        return self.num_frames / self.fps

    @torch.no_grad()
    def vertices(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Vertices ``[stop - start, V, 3]`` float32 (rig units) of frames ``[start, stop)``.

        All frames of a long animation need ``T * V * 12`` bytes: prefer :meth:`iter_vertices`.
        """
        device = self.rig.neutral.device
        x = torch.from_numpy(self.coeffs[start:stop]).to(device)
        return self.rig(x).cpu().numpy()

    def iter_vertices(self, chunk: int = 250) -> Iterator[np.ndarray]:
        """Vertices ``[<= chunk, V, 3]`` of consecutive frames, ``chunk`` frames at a time."""
        if chunk < 1:
            raise ThunderError(f"chunk must be >= 1 frame, got {chunk}")
        for start in range(0, self.num_frames, chunk):
            yield self.vertices(start, start + chunk)


# --------------------------------------------------------------------------- audio
def _read_audio(source: Any) -> tuple[np.ndarray, str | None]:
    """``(wav [N] float32 at 16 kHz, file path or None)`` from a path, a 16 kHz array or an
    ``(array, rate)`` pair; files are decoded block by block. Raises AudioError as load_audio."""
    if isinstance(source, (str, os.PathLike)):
        info = audio_info(source)
        total = math.ceil(info.frames * SAMPLE_RATE / info.sample_rate)
        wav = np.empty(total, dtype=np.float32)
        filled = 0
        for block in iter_audio_blocks(info.path, _READ_BLOCK_SECONDS):
            n = min(block.size, total - filled)
            wav[filled: filled + n] = block[:n]
            filled += n
        return wav[:filled], info.path
    if isinstance(source, tuple) and len(source) == 2:
        data, rate = source
        return to_mono_16k(np.asarray(data), rate), None
    if isinstance(source, torch.Tensor):
        source = source.detach().cpu().numpy()
    data = np.asarray(source)
    if data.ndim != 1:
        raise ThunderError(f"audio must be a file path, 16 kHz mono samples [N] or an (array, rate) "
                           f"pair, got an array of shape {data.shape}")
    return to_mono_16k(data, SAMPLE_RATE), None


def _level_db(wav: np.ndarray, chunk: int = 1 << 20) -> float:
    """RMS level of ``wav [N]`` in dBFS (-inf for digital silence), summed ``chunk`` samples at a
    time so a long file needs no float64 copy of itself."""
    total = sum(float(np.dot(part, part)) for part in
                (wav[i: i + chunk].astype(np.float64) for i in range(0, wav.size, chunk)))
    rms = math.sqrt(total / max(wav.size, 1))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


# --------------------------------------------------------------------------- the animator
class _Counted:
    """The model as :func:`generate` sees it, ticking ``tick`` after every network evaluation
    (``steps`` per window for diffusion, one for the regressor): the progress bar's unit."""

    def __init__(self, model: TalkerModel, tick) -> None:
        self._model, self._tick = model, tick

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def predict(self, *args, **kwargs) -> torch.Tensor:
        out = self._model.predict(*args, **kwargs)
        self._tick()
        return out


class Animator:
    """A trained talker, ready to animate speech on a rig.

    Build it with :meth:`from_pretrained`. Attributes: ``model``
    (:class:`~thunder3d.models.talker.TalkerModel`), ``rig`` (the rig animations are made for),
    ``trained_rig`` (the checkpoint's rig), ``normalizer``, ``config`` (the checkpoint's
    ``config.json``), ``path``, ``device``, ``window`` (seconds per sampling window: the training
    window).
    """

    def __init__(self, model: TalkerModel, trained_rig: Rig, normalizer: Normalizer,
                 config: dict[str, Any], *, rig: str | Rig | dict | None = None,
                 device: str | torch.device = "cpu", path: str | Path | None = None) -> None:
        self.model = model
        self.trained_rig = trained_rig
        self.normalizer = normalizer
        self.config = config
        self.device = torch.device(device)
        self.path = None if path is None else Path(path)
        self.window = float((config.get("data") or {}).get("window_seconds") or 4.0)
        same = rig is None or rig == trained_rig.spec or rig == trained_rig.config()
        target = trained_rig if same else load_rig(rig).to(self.device)
        self.rig: Rig = target
        self._retarget: np.ndarray | None = None  # [C_trained, C] when the layouts differ
        self._listeners: dict[str, Any] = {}  # M2S listeners by spec, loaded on first use
        if tuple(target.coeff_names) != tuple(trained_rig.coeff_names):
            self._retarget = _retarget_matrix(trained_rig, target)
        if model.uses_phones:  # start the recognition workers now: they load while the audio does
            from thunder3d.audio.align import recognizer_pool

            pool = recognizer_pool(model.audio_encoder.recognizer)
            if pool is not None:
                pool.start()

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike | None = None, *,
                        device: str | torch.device | None = "auto", rig: str | Rig | dict | None = None,
                        ema: bool = True, recognizer: str | None = None,
                        mel_gain: float | None = None, synthetic_speech: bool = False,
                        onnx: bool | None = None) -> Animator:
        """Load a talker.

        Args:
            path_or_name: None or one of :data:`BUILTIN_NAMES` for the model shipped with the
                package; else a talker run folder (``best/`` then ``last/``) or checkpoint directory.
            device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``; a device this
                machine lacks is a :class:`~thunder3d.errors.DeviceError`.
            rig: animate this rig (spec, config or :class:`~thunder3d.rigs.Rig`) instead of the
                checkpoint's; an ARKit rig for an ARKit model (coefficients retargeted by name).
            ema: use the EMA weights when the checkpoint has them.
            recognizer: for a model that reads recognised phones, how to recognise them instead
                of the checkpoint's choice: ``"words"`` (word recognition, what the shipped model
                uses: lip-sync on real speech) or ``"phones"`` (the phone loop, about a second faster
                per 10 s of speech, less accurate).
            mel_gain: for a hybrid model, the weight of its mel branch instead of the checkpoint's
                (0-1; the shipped model: 0.25, tuned for human voices; synthetic voices like its
                training corpus's do better at 1 with ``recognizer="phones"``, see the model card).
            synthetic_speech: the speech will come from a synthetic voice like the training
                corpus's (espeak, festival): a hybrid model then uses ``recognizer="phones"`` and
                ``mel_gain=1`` unless those are given (what ``thunder3d demo`` does).
            onnx: run the denoiser and a frozen Whisper encoder with onnxruntime (about twice as fast
                on a CPU; outputs equal torch's to ~1e-5; the graphs are exported once and cached,
                :mod:`thunder3d.models.onnx`). Default: on for the CPU, off for CUDA.
        Raises:
            CheckpointError: no such model, the shipped model is not installed, or not a talker;
                a ``recognizer`` for a model that reads no phones, or an unknown one; a
                ``mel_gain`` for a model without a hybrid encoder, or outside [0, 1].
            RigError: ``rig`` cannot be driven by the checkpoint's coefficients.
        """
        device = resolve_device(None if device is None else str(device))
        path = _resolve_model(path_or_name)
        model, trained_rig, normalizer, config = load_talker(path, device, ema=ema)
        encoder = model.audio_encoder
        if synthetic_speech and hasattr(encoder, "mel_gain"):
            recognizer = "phones" if recognizer is None else recognizer
            mel_gain = 1.0 if mel_gain is None else mel_gain
        if recognizer is not None and not model.uses_phones:
            raise CheckpointError(f"recognizer={recognizer!r}: the model at {path} reads no phones "
                                  f"(audio encoder {encoder.kind!r})")
        if mel_gain is not None and not hasattr(encoder, "mel_gain"):
            raise CheckpointError(f"mel_gain={mel_gain!r}: the model at {path} has no hybrid audio encoder "
                                  f"({encoder.kind!r})")
        try:  # the encoder checks the values
            if recognizer is not None:
                from thunder3d.audio.align import check_recognizer

                encoder.recognizer = check_recognizer(recognizer)
            if mel_gain is not None:
                encoder.mel_gain = float(mel_gain)
        except AudioError as exc:
            raise CheckpointError(str(exc)) from None
        on_cpu = torch.device(device).type == "cpu"
        if on_cpu and (onnx is None or onnx):
            model.use_onnx()
        return cls(model, trained_rig, normalizer, config, rig=rig, device=device, path=path)

    # ------------------------------------------------------------------ facts
    @property
    def names(self) -> tuple[str, ...]:
        """Coefficient names of the animations (the target rig's layout)."""
        return tuple(self.rig.coeff_names)

    @property
    def emotions(self) -> tuple[str, ...]:
        return EMOTIONS

    @property
    def styles(self) -> tuple[str, ...]:
        """Speaking styles the model was trained with (``style=`` values)."""
        return tuple(self.model.styles)

    @property
    def default_guidance(self) -> float:
        """Audio guidance scale used when :meth:`animate` gets none (the checkpoint's
        ``sampling.guidance``; 1 = plain conditional sampling)."""
        return float(self.model.default_guidance)

    @property
    def default_steps(self) -> int:
        """DDIM steps used when :meth:`animate` gets none (the checkpoint's ``sampling.steps``, else 10)."""
        return int(self.model.default_steps)

    @property
    def deterministic(self) -> bool:
        """True for the regressor baseline: every seed gives the same animation."""
        return self.model.deterministic

    def __repr__(self) -> str:
        kind = "regressor" if self.deterministic else "diffusion"
        return (f"Animator({self.path}, {kind}, rig={self.rig.spec!r}, trained on "
                f"{self.trained_rig.spec!r}, device={self.device})")

    # ------------------------------------------------------------------ animation
    def animate(self, audio: Any, samples: int = 1, *, emotion: str | None = None,
                intensity: int | str | None = None, style: str | None = None, steps: int | None = None,
                guidance: float | None = None, cond_guidance: float = 1.0, seed: int = 0,
                window: float | None = None, overlap: float | None = None,
                progress: bool = False, listener: str | os.PathLike | None = None,
                listener_strength: float = 0.0, candidates: int = 1) -> list[Animation]:
        """Animate speech of any length.

        Args:
            audio: an audio file (anything :func:`~thunder3d.audio.io.load_audio` reads), 16 kHz
                mono samples ``[N]``, or an ``(array, sample_rate)`` pair.
            samples: how many animations to draw (sample ``i`` is seeded with ``seed + i``).
            emotion: one of :data:`~thunder3d.conditions.EMOTIONS` (or a common alias) or None.
            intensity: 1, 2, 3 or None.
            style: one of :attr:`styles` or None.
            steps: DDIM steps (ignored by the regressor; None: :attr:`default_steps`, what the
                checkpoint recommends).
            guidance: classifier-free guidance scale of the audio (1 = plain conditional; None:
                :attr:`default_guidance`, what the checkpoint recommends).
            cond_guidance: guidance scale of emotion, intensity and style (0 ignores them).
            seed: base seed.
            window, overlap: sampling window and the overlap of consecutive windows, in seconds
                (default: the training window, :attr:`window`, and a quarter of it).
            progress: show a tqdm progress bar (one tick per network evaluation).
            listener: sample with a mesh-to-speech listener (``"builtin"`` or an M2S run of the
                model's rig; :mod:`thunder3d.inference.listening`): ``listener_strength`` > 0 steers
                every DDIM step towards what it hears as the speech, ``candidates`` > 1 draws that many
                animations per sample and keeps the ones it hears as most in sync.
        Returns:
            ``samples`` :class:`Animation` objects sharing one ``audio`` array, each ``[T, C]`` with
            ``T = ceil(N / 640)``.
        Raises:
            AudioError: anything load_audio refuses (missing, empty, corrupt, NaN/inf, < 40 ms).
            ThunderError: bad options (the valid values listed), or a model that produced NaN.
        """
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise ThunderError(f"samples must be an integer >= 1, got {samples!r}")
        emotion = None if emotion is None else check_emotion(emotion)
        intensity = None if intensity is None else check_intensity(intensity)
        if style is not None and style not in self.styles:
            valid = ", ".join(self.styles) if self.styles else "none (trained without styles)"
            raise ThunderError(f"unknown style {style!r}; valid: {valid}")
        T_train = self.model.schedule.num_train_timesteps if self.model.schedule is not None else None
        steps = self.default_steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1 or (
                T_train is not None and steps > T_train):
            raise ThunderError(f"steps must be an integer in 1..{T_train or 'inf'}, got {steps!r}")
        guidance = self.default_guidance if guidance is None else guidance
        for name, value in (("guidance", guidance), ("cond_guidance", cond_guidance)):
            if not math.isfinite(float(value)):
                raise ThunderError(f"{name} must be a finite number, got {value!r}")
        listening = None
        if listener is not None:
            from thunder3d.inference.listening import check_listening

            check_listening(listener_strength, candidates)
            if self.deterministic:
                raise ThunderError("a listener steers or re-ranks diffusion samples; this model is the regressor")
            listening = {"listener": self._listener(listener), "rig": self.trained_rig,
                         "strength": float(listener_strength), "candidates": int(candidates)}
        elif listener_strength or candidates != 1:
            raise ThunderError("listener_strength and candidates need a listener (builtin or an M2S run)")
        window = self.window if window is None else float(window)
        overlap = window / 4 if overlap is None else float(overlap)
        if not (math.isfinite(window) and 1.0 <= window <= 30.0):
            raise ThunderError(f"window must be between 1 and 30 seconds, got {window!r}")
        if not (math.isfinite(overlap) and 0.0 <= overlap < window):
            raise ThunderError(f"overlap must be at least 0 and below the window ({window:g} s), got {overlap!r}")

        wav, source = _read_audio(audio)
        frames = math.ceil(wav.size / SAMPLES_PER_FRAME)
        name = source or "audio"
        if _level_db(wav) < SILENCE_DB:
            warnings.warn(f"{name}: the speech is silent (RMS below {SILENCE_DB:g} dBFS); "
                          "the face stays at rest", stacklevel=2)
            coeffs = np.zeros((samples, frames, self.rig.num_coeffs), np.float32)
        else:
            coeffs = self._sample(wav, frames, samples, emotion=emotion, intensity=intensity,
                                  style=style, steps=int(steps), audio_scale=float(guidance),
                                  cond_scale=float(cond_guidance), seed=int(seed), window=window,
                                  overlap=overlap, progress=progress, name=name, listening=listening)
        return [Animation(coeffs=coeffs[i], names=self.names, rig=self.rig, audio=wav, sample=i,
                          seed=int(seed) + i, emotion=emotion, intensity=intensity, style=style,
                          source=source)
                for i in range(samples)]

    def _listener(self, spec: str | os.PathLike):
        """The M2S listener ``spec`` (loaded once per Animator)."""
        from thunder3d.checkpoints import load_listener

        key = str(spec)
        if key not in self._listeners:
            self._listeners[key], _ = load_listener(spec, rig=self.trained_rig, device=self.device)
        return self._listeners[key]

    def _sample(self, wav: np.ndarray, frames: int, samples: int, *, window: float, overlap: float,
                progress: bool, name: str, listening: dict | None = None, **options: Any) -> np.ndarray:
        """``[N, T, C]`` coefficients in the target rig's layout (generate + retarget)."""
        plan = plan_windows(frames, round(window * FPS), round(overlap * FPS), inpaint=not self.deterministic)
        per_window = 1 if self.deterministic else options["steps"]
        from tqdm import tqdm

        with tqdm(total=len(plan) * per_window, desc=f"animating {Path(name).name}", unit="step",
                  disable=not progress, leave=False) as bar:
            model = _Counted(self.model, bar.update) if progress else self.model
            if listening is not None:
                from thunder3d.inference.listening import listen_generate

                bar.total *= listening["candidates"]
                coeffs, _ = listen_generate(model, wav, samples=samples, normalizer=self.normalizer,
                                            window=window, overlap=overlap, device=self.device,
                                            **listening, **options)
            else:
                coeffs = generate(model, wav, normalizer=self.normalizer, samples=samples,
                                  window=window, overlap=overlap, device=self.device,
                                  **options)  # [N, T, C] in the trained rig's layout
        if not np.isfinite(coeffs).all():
            raise ThunderError(f"{name}: the model produced non-finite coefficients (NaN/inf); "
                               f"the checkpoint {self.path} may be corrupt or diverged")
        if self._retarget is not None:
            coeffs = coeffs @ self._retarget  # [N, T, C_trained] @ [C_trained, C]
        return np.ascontiguousarray(coeffs, dtype=np.float32)


# --------------------------------------------------------------------------- batches of files
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")


def audio_inputs(source: str | os.PathLike, output: str | os.PathLike | None = None, *,
                 skip_bad: bool = False) -> tuple[list[tuple[Path, str | None]], list[str]]:
    """What to animate for a path, checked before any work: ``(jobs, skipped)``.

    ``jobs`` are ``(file, subfolder)`` pairs: ``[(file, None)]`` for a file, or every audio file of a
    folder (:data:`AUDIO_SUFFIXES`) with the subfolder its results go to (``<stem>``, or
    ``<name>_<ext>`` when two files share a stem). Every file's header is read: an unreadable one
    raises its :class:`~thunder3d.errors.AudioError`, or is listed in ``skipped`` with ``skip_bad``.
    With ``output``, a result ``<stem>.wav`` that would overwrite its own input is refused.
    """
    from thunder3d.audio.io import audio_info

    source = Path(source)
    if source.is_dir():
        files = sorted(f for f in source.iterdir() if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise ThunderError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {source}")
        stems = [f.stem for f in files]
        found = [(f, f.stem if stems.count(f.stem) == 1 else f.name.replace(".", "_")) for f in files]
    else:
        found = [(source, None)]
    jobs, skipped = [], []
    for path, sub in found:
        try:
            audio_info(path)
        except AudioError as exc:
            if not skip_bad:
                raise
            skipped.append(str(exc))
            continue
        if output is not None and (Path(output) / (sub or "") / f"{path.stem}.wav").resolve() == path.resolve():
            raise ThunderError(f"writing into {output} would overwrite the input {path} with its 16 kHz copy; "
                               "choose another output folder")
        jobs.append((path, sub))
    return jobs, skipped


# --------------------------------------------------------------------------- helpers
def _resolve_model(path_or_name: str | os.PathLike | None) -> Path:
    """The checkpoint path for a model name or path (module docstring of :class:`Animator`)."""
    if path_or_name is None or (isinstance(path_or_name, str)
                                and path_or_name.strip().lower() in BUILTIN_NAMES):
        if not (PRETRAINED_DIR / "config.json").is_file():
            raise CheckpointError(f"the built-in model is not installed (expected a checkpoint at "
                                  f"{PRETRAINED_DIR}); pass a trained talker run instead "
                                  f"(--model PATH, Animator.from_pretrained(PATH))")
        return PRETRAINED_DIR
    path = Path(path_or_name)
    if not path.exists():
        raise CheckpointError(f"no model {str(path_or_name)!r}: not a path to a talker run or "
                              f"checkpoint, nor a built-in name ({', '.join(BUILTIN_NAMES)})")
    return path


def _retarget_matrix(source: Rig, target: Rig) -> np.ndarray:
    """``[C_source, C_target]``: ``target_coeffs = source_coeffs @ M`` (by name, see
    :mod:`thunder3d.export.retarget`); RigError when no name of ``target`` can be driven, a warning
    naming those that cannot."""
    from thunder3d.export.retarget import retarget_matrix

    try:
        matrix = retarget_matrix(source.coeff_names, target.coeff_names)
    except ExportError:
        raise RigError(f"rig {target.spec!r} is incompatible with the checkpoint: none of its "
                       f"{target.num_coeffs} coefficients ({', '.join(target.coeff_names[:3])}, ...) "
                       f"matches the {source.spec!r} coefficients the model makes "
                       f"({', '.join(source.coeff_names[:3])}, ...); use an ARKit rig (builtin, "
                       f"ict:PATH, blendshapes:PATH) for an ARKit model") from None
    unfed = [name for name, column in zip(target.coeff_names, matrix.T) if not column.any()]
    if unfed:
        warnings.warn(f"rig {target.spec!r}: {len(unfed)} of its coefficients match no coefficient of "
                      f"the checkpoint and stay at 0: {', '.join(unfed[:8])}"
                      f"{' ...' if len(unfed) > 8 else ''}", stacklevel=4)
    return matrix


__all__ = ["AUDIO_SUFFIXES", "BUILTIN_NAMES", "PRETRAINED_DIR", "SILENCE_DB", "Animation", "Animator", "audio_inputs"]
