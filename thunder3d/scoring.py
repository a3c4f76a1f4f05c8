"""Scoring talking-head systems on corpus clips: where their animations come from, and one whole run.

Above both :mod:`thunder3d.inference` (which samples checkpoints) and :mod:`thunder3d.eval` (which
measures), so that neither imports the other. :func:`score_talker` is what ``thunder3d eval talker``
does: pick the clips, build one system's predictions, measure them and add them to a results file.

Each function returns :class:`Predictions`: the rig the animations drive and a mapping from clip
id to ``[N, T, C]`` coefficients or ``[N, T, V, 3]`` vertices, the input of
:func:`thunder3d.eval.talker.evaluate_animations`. The mapping is lazy: a clip's animations are
generated, loaded or articulated when it is read, so memory holds one clip at a time (vertex
predictions of a long test split would not fit otherwise).

- :func:`checkpoint_predictions` samples a trained talker (diffusion or deterministic) with
  :func:`~thunder3d.inference.sampling.generate`;
- :func:`folder_predictions` reads ``<clip_id>.npz`` files written by any system;
- :func:`rulebased_predictions` is the production-aligner-like baseline: pocketsphinx phone
  recognition of the clip's audio, without its text, driving the corpus articulation model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thunder3d.audio.align import recognize_phones
from thunder3d.checkpoints import load_m2s, load_talker
from thunder3d.constants import SAMPLES_PER_FRAME
from thunder3d.data.articulation import articulate
from thunder3d.data.clip import Clip, corpus_clips, load_clip, read_manifest
from thunder3d.data.dataset import select_coeffs
from thunder3d.errors import EvalError, ThunderError
from thunder3d.eval.talker import (add_system, as_samples, check_clips, evaluate_animations, format_markdown,
                                   ground_truth_predictions, read_results)
from thunder3d.inference.sampling import generate
from thunder3d.rigs import Rig, load_rig
from thunder3d.rigs.arkit import ARKIT_NAMES


class LazyPredictions(Mapping[str, np.ndarray]):
    """A read-only mapping ``clip id -> animations`` that calls ``make(clip)`` on every access."""

    def __init__(self, clips: Sequence[Clip], make: Callable[[Clip], np.ndarray]) -> None:
        self._clips = {c.id: c for c in clips}
        self._make = make

    def __getitem__(self, clip_id: str) -> np.ndarray:
        return self._make(self._clips[clip_id])

    def __contains__(self, clip_id: object) -> bool:  # without making anything
        return clip_id in self._clips

    def __iter__(self) -> Iterator[str]:
        return iter(self._clips)

    def __len__(self) -> int:
        return len(self._clips)


@dataclass
class Predictions:
    """One system's animations of a list of clips.

    Attributes:
        rig: the rig the animations belong to.
        arrays: clip id -> ``[N, T, C]`` coefficients or ``[N, T, V, 3]`` vertices (lazy).
        source: what made them (a checkpoint path, a folder, ``rule-based``), for the report.
        settings: how they were made, for the report (a checkpoint's ``audio_scale``).
    """

    rig: Rig
    arrays: Mapping[str, np.ndarray]
    source: str
    settings: dict = field(default_factory=dict)


def _frame_audio(clip: Clip) -> np.ndarray:
    """The clip's audio cut or zero-padded to exactly ``T * 640`` samples (so ``T`` frames come out)."""
    n = clip.num_frames * SAMPLES_PER_FRAME
    wav = np.zeros(n, dtype=np.float32)
    wav[: min(n, clip.audio.size)] = clip.audio[:n]
    return wav


def checkpoint_predictions(run: str | os.PathLike, clips: Sequence[Clip], samples: int = 5, seed: int = 0,
                           steps: int | None = None, *, device: str = "cpu", conditioned: bool = True,
                           listener: str | None = None, listener_strength: float = 0.0, candidates: int = 1,
                           guide_options: Mapping[str, Any] | None = None, **options) -> Predictions:
    """Sample a trained talker for every clip.

    Args:
        run: talker run folder or checkpoint (:func:`~thunder3d.checkpoints.load_talker`).
        clips: the clips; their audio is cut/padded to ``T * 640`` samples so the animations have
            the clips' frame counts.
        samples: ``N`` per clip (a deterministic model is run once and its prediction repeated,
            so its S-DIV is 0).
        seed, steps: sample ``i`` of every clip is seeded with ``seed + i``; DDIM steps (None: the
            checkpoint's own).
        conditioned: pass each clip's emotion and intensity, and its style when the model knows
            it (held-out speakers get none); False samples every clip unconditioned.
        listener, listener_strength, candidates: sample with a listener
            (:func:`~thunder3d.inference.listening.listen_generate`): an M2S run or ``"builtin"``,
            the guidance step, the draws per kept sample; ``guide_options``: the guide's ``smooth``
            and ``t_max``.
        options: further :func:`~thunder3d.inference.sampling.generate` options (``audio_scale``,
            ``cond_scale``, ``window``, ``overlap``, ...).
    """
    if samples < 1:
        raise EvalError(f"samples must be >= 1, got {samples}")
    model, rig, _, _ = load_talker(run, device)
    m2s = None
    if listener is not None:
        from thunder3d.checkpoints import load_listener
        from thunder3d.inference.listening import check_listening

        check_listening(listener_strength, candidates)
        m2s, _ = load_listener(listener, rig=rig, device=device)
    styles = tuple(getattr(model, "styles", ()) or ())
    if options.get("audio_scale") is None:  # the checkpoint's recommendation
        options["audio_scale"] = model.default_guidance
    steps = model.default_steps if steps is None else steps

    def make(clip: Clip) -> np.ndarray:
        labels = {}
        if conditioned:
            labels = {"emotion": clip.emotion, "intensity": clip.intensity or None,
                      "style": clip.style if clip.style in styles else None}
        n = 1 if model.deterministic else samples
        if m2s is not None:
            from thunder3d.inference.listening import listen_generate

            out, _ = listen_generate(model, _frame_audio(clip), m2s, rig, samples=n, seed=seed, steps=steps,
                                     device=device, strength=listener_strength, candidates=candidates,
                                     **dict(guide_options or {}), **labels, **options)
            return out
        out = generate(model, _frame_audio(clip), samples=n, seed=seed, steps=steps, device=device,
                       **labels, **options)  # [n, T, C]
        return np.repeat(out, samples // n, axis=0)

    settings = {"audio_scale": float(options["audio_scale"]), "steps": int(steps)}
    if m2s is not None:
        settings.update(listener=str(listener), listener_strength=float(listener_strength), candidates=int(candidates),
                        **dict(guide_options or {}))
    return Predictions(rig, LazyPredictions(clips, make), str(run), settings)


def folder_predictions(folder: str | os.PathLike, clips: Sequence[Clip], rig: Rig) -> Predictions:
    """Animations from ``<folder>/<clip_id>.npz`` files (e.g. ``thunder3d sample`` outputs or another
    system's exports).

    Each npz holds ``coeffs`` (``[T, C]`` or ``[N, T, C]`` in ``rig``'s layout; with a
    ``coeff_names`` array the columns are matched by name) or ``vertices`` (``[T, V, 3]`` or
    ``[N, T, V, 3]`` in rig units, the rig's topology); ``coeffs`` wins when both are present.
    Every file must exist (checked at once, naming the missing ones); shapes and lengths are
    checked when a clip is read, naming the file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EvalError(f"predictions folder not found: {folder}")
    missing = [c.id for c in clips if not (folder / f"{c.id}.npz").is_file()]
    if missing:
        raise EvalError(f"{folder}: no <clip_id>.npz for {len(missing)} of {len(clips)} clips: "
                        f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")

    def make(clip: Clip) -> np.ndarray:
        path = folder / f"{clip.id}.npz"
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: np.asarray(data[k]) for k in ("coeffs", "vertices", "coeff_names") if k in data}
        except (OSError, ValueError) as exc:
            raise EvalError(f"{path}: cannot read npz ({exc})") from None
        if "coeffs" in arrays:
            x = arrays["coeffs"]
            if "coeff_names" in arrays:
                names = [str(n) for n in arrays["coeff_names"].reshape(-1)]
                if x.ndim == 0 or len(names) != x.shape[-1]:
                    raise EvalError(f"{path}: {len(names)} coeff_names for coeffs of shape {x.shape}")
                order = select_coeffs(np.arange(len(names))[None], names, rig.coeff_names, str(path))[0]
                x = x[..., order]  # columns in the rig's layout
        elif "vertices" in arrays:
            x = arrays["vertices"]
        else:
            raise EvalError(f"{path}: holds neither 'coeffs' nor 'vertices'")
        return as_samples(x, rig, clip.num_frames, str(path))[1]

    return Predictions(rig, LazyPredictions(clips, make), str(folder))


def rulebased_predictions(clips: Sequence[Clip], rig: Rig) -> Predictions:
    """The rule-based baseline: phones recognised from each clip's audio (pocketsphinx, no text)
    through the corpus articulation model (:func:`~thunder3d.data.articulation.articulate`, the
    neutral speaker), one deterministic sample ``[1, T, C]`` of speech motion only (no blinks or
    expression). Needs an ARKit-named rig (builtin, ICT, ARKit blendshapes)."""
    try:
        select_coeffs(np.zeros((1, len(ARKIT_NAMES)), np.float32), ARKIT_NAMES, rig.coeff_names, "rule-based")
    except ThunderError:
        raise EvalError(f"the rule-based baseline drives ARKit coefficients; rig {rig.spec!r} "
                        f"({rig.num_coeffs} coefficients, e.g. {list(rig.coeff_names[:3])}) has other "
                        "names") from None

    def make(clip: Clip) -> np.ndarray:
        phones = recognize_phones(clip.audio)
        coeffs = articulate(phones, clip.num_frames)  # [T, 52] ARKit order
        return select_coeffs(coeffs, ARKIT_NAMES, rig.coeff_names, clip.id)[None]

    return Predictions(rig, LazyPredictions(clips, make), "rule-based")


SYSTEM_KINDS = ("model", "predictions", "rule-based", "ground-truth")


def select_clips(corpus: str | os.PathLike, split: str = "test", voice: str | None = None,
                 limit: int = 0) -> list[str]:
    """Clip ids of ``split`` (``all`` for every split) whose manifest voice starts with ``voice``
    (``"espeak"``: the espeak voices, named without a ``source:`` prefix), the first ``limit`` of them
    (0 = all)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise EvalError(f"the number of clips must be >= 0 (0 = all), got {limit!r}")
    ids = corpus_clips(corpus, None if split == "all" else split)
    if voice:
        voices = {e["id"]: str(e.get("voice") or "") for e in read_manifest(corpus)}
        if voice == "espeak":
            ids = [i for i in ids if voices.get(i) and ":" not in voices[i]]
        else:
            ids = [i for i in ids if voices.get(i, "").startswith(voice)]
        if not ids:
            known = sorted({v.split("+")[0] for v in voices.values() if v})
            raise EvalError(f"no {split} clip of {corpus} has a voice starting with {voice!r}; "
                            f"voices: {', '.join(known) or 'none recorded'}")
    return ids[: limit or None]


def score_talker(kind: str, corpus: str | os.PathLike, *, source: str | os.PathLike | None = None,
                 name: str | None = None, results: Mapping[str, Any] | None = None, split: str = "test",
                 voice: str | None = None, clips: int = 0, samples: int = 5, seed: int = 0, steps: int | None = None,
                 guidance: float | None = None, rig: str | None = None, m2s: str | os.PathLike | None = None,
                 listener: str | None = None, listener_strength: float = 0.0, candidates: int = 1,
                 guide_options: Mapping[str, Any] | None = None, device: str = "cpu",
                 progress: bool = True) -> tuple[str, dict[str, Any]]:
    """Score one system on corpus clips: what ``thunder3d eval talker`` does.

    Args:
        kind: one of :data:`SYSTEM_KINDS`: ``model`` samples the talker checkpoint ``source``,
            ``predictions`` reads the folder ``source``, ``rule-based`` is the recogniser baseline,
            ``ground-truth`` scores the clips' own motion.
        name: the system's name in the table (default: the run or folder name).
        results: systems scored before (``{name: result}``); the new one must use the same clips.
        split, voice, clips: which clips (:func:`select_clips`).
        samples, seed, steps, guidance: sampling of ``model`` (``steps``/``guidance`` None: the model's own).
        rig: the rig of the other kinds (default: the M2S's, else builtin); not with ``model``.
        m2s: an M2S run: adds the audio-consistency figure.
        listener, listener_strength, candidates, guide_options: sample ``model`` with a listener
            (guidance and/or re-ranking, :func:`checkpoint_predictions`).
    Returns:
        ``(name, result)``; add it to ``results`` with :func:`~thunder3d.eval.talker.add_system`.
    """
    if kind not in SYSTEM_KINDS:
        raise EvalError(f"unknown system kind {kind!r}; valid: {', '.join(SYSTEM_KINDS)}")
    if kind in ("model", "predictions") and source is None:
        raise EvalError(f"a {kind} system needs a source folder")
    if kind == "model" and rig:
        raise EvalError("a rig does not go with a model: the checkpoint's rig is used")
    if kind != "model" and (listener is not None or listener_strength or candidates != 1):
        raise EvalError("--listener, --listener-strength and --candidates sample a --model")
    if listener is None and (listener_strength or candidates != 1):
        raise EvalError("--listener-strength and --candidates need a --listener (an M2S run or builtin)")
    if name is None:
        if kind in ("model", "predictions"):
            run = Path(source).resolve()
            name = run.parent.name if kind == "model" and run.name in ("best", "last") else run.name
        else:
            name = kind.replace("-", " ")
    ids = select_clips(corpus, split, voice, clips)
    check_clips(dict(results or {}), name, ids)
    loaded = [load_clip(corpus, cid) for cid in ids]
    m2s_model, m2s_rig = load_m2s(m2s, device=device) if m2s else (None, None)
    if kind == "model":
        preds = checkpoint_predictions(source, loaded, samples, seed, steps, device=device, audio_scale=guidance,
                                       listener=listener, listener_strength=listener_strength, candidates=candidates,
                                       guide_options=guide_options)
    else:
        the_rig = load_rig(rig) if rig else (m2s_rig or load_rig("builtin"))
        if kind == "predictions":
            preds = folder_predictions(source, loaded, the_rig)
        elif kind == "rule-based":
            preds = rulebased_predictions(loaded, the_rig)
        else:
            preds = Predictions(the_rig, ground_truth_predictions(loaded, the_rig), "ground truth")
    result = evaluate_animations(preds.rig, loaded, preds.arrays, m2s=m2s_model, m2s_rig=m2s_rig,
                                 progress=progress)
    result.update(source=preds.source, corpus=str(corpus), split=split, seed=seed,
                  steps=preds.settings.get("steps"), m2s=str(m2s) if m2s else None,
                  audio_scale=preds.settings.get("audio_scale"),
                  **{k: preds.settings[k] for k in ("listener", "listener_strength", "candidates", "smooth", "t_max")
                     if k in preds.settings})
    return name, result


# --------------------------------------------------------------------------- audit
AUDIT_TRACK_SUFFIXES = (".npz", ".csv")
MAX_LENGTH_GAP_S = 1.0


def load_track(path: str | os.PathLike, rig: Rig, *, fps: float | None = None, sample: int = 0) -> np.ndarray:
    """A face track as ``[T, C]`` coefficients of ``rig`` at 25 fps: an npz with ``coeffs`` (``[T, C]`` or
    ``[N, T, C]``; ``coeff_names`` matched by name, else the rig's layout; ``fps`` when stored) or a Live
    Link Face CSV; other rates are resampled linearly."""
    from thunder3d.data.import_livelink import read_livelink_csv
    from thunder3d.export.retarget import retarget

    path = Path(path)
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise EvalError(f"--fps must be a positive number, got {fps}")
    if not path.is_file():
        raise EvalError(f"track not found: {path}")
    if path.suffix.lower() not in AUDIT_TRACK_SUFFIXES:
        raise EvalError(f"{path}: a track is an .npz (coeffs) or a Live Link Face .csv, not {path.suffix or 'no suffix'!r}")
    if path.suffix.lower() == ".csv":
        try:
            take = read_livelink_csv(path, fps=fps)
        except ThunderError:
            raise
        except (OSError, ValueError) as e:
            raise EvalError(f"{path}: not a readable Live Link Face CSV ({e})") from None
        coeffs, names, rate = take.coeffs, ARKIT_NAMES, take.fps
    else:
        try:
            with np.load(path, allow_pickle=False) as z:
                if "coeffs" not in z:
                    raise EvalError(f"{path}: no 'coeffs' array (keys: {', '.join(z.files) or 'none'})")
                coeffs = np.asarray(z["coeffs"], dtype=np.float32)
                key = "coeff_names" if "coeff_names" in z else "names" if "names" in z else None
                names = None
                if key is not None:
                    stored = z[key]
                    if stored.ndim != 1:
                        raise EvalError(f"{path}: {key} must be a list of names, got an array of shape {list(stored.shape)}")
                    names = [str(n) for n in stored]
                rate = float(z["fps"]) if "fps" in z else None
        except EvalError:
            raise
        except (OSError, ValueError, TypeError, KeyError, EOFError) as e:
            raise EvalError(f"{path}: not a readable npz ({e})") from None
        if rate is not None and not (np.isfinite(rate) and rate > 0):
            raise EvalError(f"{path}: fps must be a positive number, got {rate}")
        if coeffs.ndim == 3:
            if not 0 <= sample < coeffs.shape[0]:
                raise EvalError(f"{path}: sample {sample} out of range (the file holds {coeffs.shape[0]})")
            coeffs = coeffs[sample]
        if coeffs.ndim != 2:
            raise EvalError(f"{path}: coeffs must be [T, C] or [N, T, C], got {list(coeffs.shape)}")
        rate = fps or rate or 25.0
    if names is None:
        if coeffs.shape[1] != rig.num_coeffs:
            raise EvalError(f"{path}: {coeffs.shape[1]} unnamed coefficients per frame; rig {rig.spec!r} has "
                            f"{rig.num_coeffs} (store coeff_names to map by name)")
    elif list(names) != list(rig.coeff_names):
        if len(names) != coeffs.shape[1]:
            raise EvalError(f"{path}: {len(names)} names for {coeffs.shape[1]} coefficients")
        coeffs = np.asarray(retarget(coeffs, names, rig), dtype=np.float32)
    if not np.isfinite(coeffs).all():
        raise EvalError(f"{path}: the track has NaN or infinite values")
    if len(coeffs) < 2:
        raise EvalError(f"{path}: the track has {len(coeffs)} frame(s); at least 2 are needed")
    if abs(rate - 25.0) > 1e-6:
        duration = len(coeffs) / rate
        t_new = np.arange(int(round(duration * 25.0))) / 25.0
        t_old = np.arange(len(coeffs)) / rate
        coeffs = np.stack([np.interp(t_new, t_old, coeffs[:, c]) for c in range(coeffs.shape[1])], axis=1)
    return np.ascontiguousarray(coeffs, dtype=np.float32)


def audit_files(speech: str | os.PathLike, track: str | os.PathLike, *, text: str | None = None,
                rig: str = "builtin", listener: str | None = "builtin", fps: float | None = None,
                sample: int = 0, device: str = "cpu") -> dict[str, Any]:
    """``thunder3d audit``: load the speech and the track, time the phones (forced alignment of
    ``text``, else of ``SPEECH.txt`` beside the speech, else word recognition), load the listener
    (``"builtin"``, an M2S run, or None) and :func:`~thunder3d.eval.audit.audit_track`. Everything is
    checked before the work starts."""
    from thunder3d.audio.align import align_detailed, recognize
    from thunder3d.audio.io import audio_info, load_audio
    from thunder3d.checkpoints import load_listener
    from thunder3d.eval.audit import audit_track

    speech = Path(speech)
    audio_info(speech)  # a clear AudioError for a missing or unreadable file
    the_rig = load_rig(rig)
    coeffs = load_track(track, the_rig, fps=fps, sample=sample)
    m2s = None
    if listener is not None:
        m2s, _ = load_listener(listener, rig=the_rig, device=device)
    if text is None and speech.with_suffix(".txt").is_file():
        text = speech.with_suffix(".txt").read_text(encoding="utf-8", errors="replace").strip() or None
    wav = load_audio(speech)
    duration, track_s = wav.size / 16000, len(coeffs) / 25.0
    if abs(duration - track_s) > MAX_LENGTH_GAP_S:
        raise EvalError(f"the track lasts {track_s:.2f} s and the speech {duration:.2f} s: they do not belong "
                        f"together (at most {MAX_LENGTH_GAP_S:g} s apart)")
    T = len(coeffs)
    wav = np.pad(wav, (0, max(0, T * SAMPLES_PER_FRAME - wav.size)))[: T * SAMPLES_PER_FRAME]
    phones = align_detailed(wav, text).phones if text else recognize(wav, "words")
    report = audit_track(the_rig, coeffs, wav, phones, listener=m2s)
    report.update(speech=str(speech), track=str(track), phones_from="alignment" if text else "recognition",
                  listener_source=None if listener is None else str(listener), rig=the_rig.spec)
    return report


__all__ = [
    "AUDIT_TRACK_SUFFIXES", "audit_files", "load_track",
    "SYSTEM_KINDS", "score_talker", "select_clips", "add_system", "format_markdown", "read_results",
    "LazyPredictions", "Predictions", "checkpoint_predictions", "folder_predictions",
    "rulebased_predictions",
]
