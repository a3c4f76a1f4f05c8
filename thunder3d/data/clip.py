"""The clip on disk: one utterance of 16 kHz speech and the face motion that goes with it.

A corpus is a folder of clips and one ``manifest.jsonl``::

    corpus/
      manifest.jsonl      one JSON object per clip (see MANIFEST_FIELDS)
      <id>.wav            16 kHz mono speech (PCM16 by default, or float)
      <id>.npz            motion and labels (see NPZ_KEYS); written last

Every file is written to a temporary name and renamed when complete, and a clip's ``.npz`` is
renamed into place only after its ``.wav``, so **a clip exists when its npz exists**
(:func:`clip_exists`): an interrupted writer never leaves a half clip behind. The npz is written
with fixed zip timestamps, so the same clip always gives the same bytes.

``<id>.npz`` keys (loaded with ``allow_pickle=False``; any other key is refused):

=================  ==========================================================================
``coeffs``         ``[T, C]`` float32 motion coefficients at ``fps``, layout ``coeff_names``
``fps``            scalar; must be 25 (:data:`thunder3d.constants.FPS`)
``rig``            str, the rig family the coefficients drive (``arkit``, ``flame``, ...)
``coeff_names``    ``[C]`` str
``phone_start``    ``[N]`` float64 seconds, with ``phone_end`` ``[N]`` and ``phone_label`` ``[N]``
                   str from :data:`thunder3d.audio.phones.PHONES` (all three or none)
``emotion``        str, one of the 8 MEAD emotions (:data:`thunder3d.data.expression.EMOTIONS`)
``intensity``      int >= 0 (MEAD levels 1..3; 0 means "not given")
``style``          str, speaker or speaking-style id
``voice``          str, the TTS voice or recording source
``text``           str, the transcript
``head_rotation``  ``[T, 3]`` float32 axis-angle (radians) of the head, rig coordinates
``shape``          ``[S]`` float32 identity coefficients (e.g. FLAME betas)
``split``          str, one of :data:`SPLITS`
``meta``           str, a JSON object of anything else (sources, generator settings)
``version``        int, :data:`FORMAT_VERSION`
=================  ==========================================================================

Validation (:func:`validate_clip`, run by :func:`save_clip` and :func:`load_clip`) raises
:class:`DataError` naming the clip for: an audio length more than one frame (640 samples) away from
``T * 640``, NaN/inf anywhere, unknown npz keys, an fps other than 25, empty coefficients, and
``coeff_names`` whose length is not ``C``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from thunder3d.audio.io import load_audio, save_audio
from thunder3d.audio.phones import Phone, phones_from_arrays, phones_to_arrays, validate_phones
from thunder3d.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from thunder3d.conditions import EMOTIONS  # the 8 MEAD emotions; index = position
from thunder3d.errors import AudioError, DataError
from thunder3d.utils.io import atomic_path, atomic_write_text

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.jsonl"

EMOTION_ALIASES: dict[str, str] = {
    "neu": "neutral", "calm": "neutral",
    "happiness": "happy", "hap": "happy", "joy": "happy",
    "sadness": "sad",
    "surprise": "surprised", "sur": "surprised",
    "fearful": "fear", "afraid": "fear", "fea": "fear",
    "disgust": "disgusted", "dis": "disgusted",
    "anger": "angry", "ang": "angry",
    "contemptuous": "contempt", "con": "contempt",
}
"""Other spellings of the MEAD emotions that :func:`normalize_emotion` accepts."""

SPLITS: tuple[str, ...] = ("train", "val", "test")

REQUIRED_KEYS = ("coeffs", "fps", "rig", "coeff_names")
OPTIONAL_KEYS = ("phone_start", "phone_end", "phone_label", "emotion", "intensity", "style", "voice",
                 "text", "head_rotation", "shape", "split", "meta", "version")
NPZ_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS

MANIFEST_FIELDS = ("id", "split", "duration", "num_frames", "style", "emotion", "intensity", "voice",
                   "text", "rig")
"""Keys of one manifest line (``None`` where a clip has no value)."""

_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamp: byte-identical npz files




@dataclass
class Clip:
    """One utterance: speech and the face motion that goes with it.

    Attributes:
        id: file stem, ``[A-Za-z0-9][A-Za-z0-9._-]*``.
        audio: ``[N]`` float32 at 16 kHz, ``N`` within 640 samples of ``T * 640``.
        coeffs: ``[T, C]`` float32 at ``fps``.
        coeff_names: ``C`` names (the rig's layout).
        rig: rig family (``arkit``, ``flame``, ...).
        fps: frames per second; only 25 is stored.
        phones: timed phones, or None when unknown.
        emotion: one of the 8 MEAD emotions (:data:`~thunder3d.data.expression.EMOTIONS`), or None.
        intensity: emotion intensity (MEAD levels 1..3), or None.
        style: speaker / speaking-style id, or None.
        voice: TTS voice or recording source, or None.
        text: transcript, or None.
        head_rotation: ``[T, 3]`` float32 axis-angle in radians, or None.
        shape: ``[S]`` float32 identity coefficients, or None.
        split: one of :data:`SPLITS`, or None.
        meta: anything else, JSON-serialisable.
    """

    id: str
    audio: np.ndarray
    coeffs: np.ndarray
    coeff_names: Sequence[str]
    rig: str
    fps: float = FPS
    phones: list[Phone] | None = None
    emotion: str | None = None
    intensity: int | None = None
    style: str | None = None
    voice: str | None = None
    text: str | None = None
    head_rotation: np.ndarray | None = None
    shape: np.ndarray | None = None
    split: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.audio = np.asarray(self.audio, dtype=np.float32)
        self.coeffs = np.asarray(self.coeffs, dtype=np.float32)
        self.coeff_names = tuple(str(n) for n in self.coeff_names)
        if self.head_rotation is not None:
            self.head_rotation = np.asarray(self.head_rotation, dtype=np.float32)
        if self.shape is not None:
            self.shape = np.asarray(self.shape, dtype=np.float32)
        if self.phones is not None:
            self.phones = list(self.phones)

    @property
    def num_frames(self) -> int:
        """``T``, the number of motion frames."""
        return int(self.coeffs.shape[0]) if self.coeffs.ndim >= 1 else 0

    @property
    def duration(self) -> float:
        """Length of the motion in seconds (``T / fps``)."""
        return self.num_frames / float(self.fps)


# --------------------------------------------------------------------------- validation
def normalize_emotion(emotion: str | None, *, name: str = "emotion") -> str | None:
    """Map an emotion in a common spelling (``Anger``, ``surprise``, ``ang``...) to one of
    :data:`~thunder3d.data.expression.EMOTIONS`; None stays None."""
    if emotion is None:
        return None
    key = str(emotion).strip().lower()
    key = EMOTION_ALIASES.get(key, key)
    if key not in EMOTIONS:
        raise DataError(f"{name}: unknown emotion {emotion!r}; valid: {', '.join(EMOTIONS)}")
    return key


def _fail(clip_id: str, where: str | None, message: str) -> DataError:
    place = f" ({where})" if where else ""
    return DataError(f"clip {clip_id!r}{place}: {message}")


def validate_clip(clip: Clip, *, where: str | None = None) -> None:
    """Raise :class:`DataError` naming the clip (and ``where``, e.g. its file) unless it is usable.

    Checks the id, fps, shapes and dtypes, finite values, names, the audio/motion length
    (within one frame), phones, emotion, intensity and split (see the module docstring).
    """
    cid = str(clip.id)

    def fail(message: str) -> DataError:
        return _fail(cid, where, message)

    if not isinstance(clip.id, str) or not _ID_PATTERN.match(clip.id):
        raise fail("clip ids must be 1-200 characters of letters, digits, '.', '_' or '-', "
                   "starting with a letter or digit")
    if not isinstance(clip.rig, str) or not clip.rig.strip():
        raise fail(f"rig must be a non-empty string, got {clip.rig!r}")
    fps = float(clip.fps)
    if fps != FPS:
        raise fail(f"unsupported fps {clip.fps!r}: clips are stored at {FPS} fps "
                   "(the importers resample)")
    if clip.coeffs.ndim != 2:
        raise fail(f"coeffs must be [T, C], got shape {clip.coeffs.shape}")
    t, c = clip.coeffs.shape
    if t == 0 or c == 0:
        raise fail(f"coeffs are empty (shape {clip.coeffs.shape})")
    if not np.isfinite(clip.coeffs).all():
        bad = np.argwhere(~np.isfinite(clip.coeffs))[0]
        raise fail(f"coeffs contain NaN or inf (first at frame {bad[0]}, coefficient {bad[1]})")
    if len(clip.coeff_names) != c:
        raise fail(f"{len(clip.coeff_names)} coeff_names for {c} coefficients")
    if len(set(clip.coeff_names)) != c:
        dupes = sorted({n for n in clip.coeff_names if clip.coeff_names.count(n) > 1})
        raise fail(f"coeff_names repeat {dupes}")
    if clip.audio.ndim != 1 or clip.audio.size == 0:
        raise fail(f"audio must be non-empty [N] samples, got shape {clip.audio.shape}")
    if not np.isfinite(clip.audio).all():
        raise fail("audio contains NaN or inf")
    expected = t * SAMPLES_PER_FRAME
    if abs(clip.audio.size - expected) > SAMPLES_PER_FRAME:
        raise fail(f"audio/motion length mismatch: {clip.audio.size} samples "
                   f"({clip.audio.size / SAMPLE_RATE:.3f} s) for {t} frames "
                   f"({t / FPS:.3f} s, {expected} samples); more than one frame apart")
    for label, arr in (("head_rotation", clip.head_rotation), ("shape", clip.shape)):
        if arr is None:
            continue
        if label == "head_rotation" and arr.shape != (t, 3):
            raise fail(f"head_rotation must be [T, 3] = [{t}, 3], got {arr.shape}")
        if label == "shape" and (arr.ndim != 1 or arr.size == 0):
            raise fail(f"shape must be a non-empty [S] vector, got {arr.shape}")
        if not np.isfinite(arr).all():
            raise fail(f"{label} contains NaN or inf")
    if clip.phones is not None:
        try:
            validate_phones(clip.phones, duration=clip.audio.size / SAMPLE_RATE + 1.0 / FPS,
                            name="phones")
        except AudioError as exc:
            raise fail(str(exc)) from None
    if clip.emotion is not None:
        if clip.emotion not in EMOTIONS:
            raise fail(f"unknown emotion {clip.emotion!r}; valid: {', '.join(EMOTIONS)} "
                       "(see normalize_emotion)")
    if clip.intensity is not None:
        if isinstance(clip.intensity, bool) or int(clip.intensity) != clip.intensity \
                or clip.intensity < 0:
            raise fail(f"intensity must be an integer >= 0, got {clip.intensity!r}")
    if clip.split is not None and clip.split not in SPLITS:
        raise fail(f"unknown split {clip.split!r}; valid: {', '.join(SPLITS)}")
    for label in ("style", "voice", "text"):
        value = getattr(clip, label)
        if value is not None and not isinstance(value, str):
            raise fail(f"{label} must be a string or None, got {type(value).__name__}")
    if not isinstance(clip.meta, dict):
        raise fail(f"meta must be a dict, got {type(clip.meta).__name__}")
    try:
        json.dumps(clip.meta)
    except (TypeError, ValueError) as exc:
        raise fail(f"meta is not JSON-serialisable ({exc})") from None


# --------------------------------------------------------------------------- save / load
def clip_paths(root: str | os.PathLike, clip_id: str) -> tuple[Path, Path]:
    """``(<root>/<id>.wav, <root>/<id>.npz)``."""
    root = Path(root)
    return root / f"{clip_id}.wav", root / f"{clip_id}.npz"


def clip_exists(root: str | os.PathLike, clip_id: str) -> bool:
    """True when the clip's npz (written last) and wav are both present."""
    wav, npz = clip_paths(root, clip_id)
    return npz.is_file() and wav.is_file()


def _clip_arrays(clip: Clip) -> dict[str, np.ndarray]:
    """The npz content of a (validated) clip, optional keys only when set."""
    arrays: dict[str, np.ndarray] = {
        "version": np.array(FORMAT_VERSION, dtype=np.int64),
        "coeffs": np.ascontiguousarray(clip.coeffs, dtype=np.float32),
        "fps": np.array(float(clip.fps), dtype=np.float64),
        "rig": np.array(clip.rig),
        "coeff_names": np.array(list(clip.coeff_names), dtype=str),
    }
    if clip.phones is not None:
        arrays.update(phones_to_arrays(clip.phones))
    for key in ("emotion", "style", "voice", "text", "split"):
        value = getattr(clip, key)
        if value is not None:
            arrays[key] = np.array(value, dtype=str)
    if clip.intensity is not None:
        arrays["intensity"] = np.array(int(clip.intensity), dtype=np.int64)
    if clip.head_rotation is not None:
        arrays["head_rotation"] = np.ascontiguousarray(clip.head_rotation, dtype=np.float32)
    if clip.shape is not None:
        arrays["shape"] = np.ascontiguousarray(clip.shape, dtype=np.float32)
    if clip.meta:
        arrays["meta"] = np.array(json.dumps(clip.meta, sort_keys=True))
    return arrays


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an uncompressed ``.npz`` with fixed timestamps (same arrays -> same bytes), atomically."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for key in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asanyarray(arrays[key]), allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue())


def save_clip(root: str | os.PathLike, clip: Clip, *, subtype: str = "PCM_16") -> Path:
    """Validate ``clip`` and write ``<root>/<id>.wav`` then ``<root>/<id>.npz``, each atomically.

    Args:
        root: corpus folder (created if missing).
        clip: the clip; ``fps`` must be 25.
        subtype: wav sample format: ``"PCM_16"`` (default, what most tools read) or ``"FLOAT"``
            (the audio comes back bit for bit).

    Returns:
        The npz path. Its presence marks the clip as complete.
    """
    if subtype not in ("PCM_16", "FLOAT"):
        raise DataError(f"unknown wav subtype {subtype!r}; valid: 'PCM_16', 'FLOAT'")
    validate_clip(clip)
    wav_path, npz_path = clip_paths(root, clip.id)
    arrays = _clip_arrays(clip)
    Path(root).mkdir(parents=True, exist_ok=True)
    save_audio(wav_path, clip.audio, SAMPLE_RATE, subtype=subtype)
    write_npz(npz_path, arrays)  # last: the clip exists from here on
    return npz_path


def _scalar(data: Mapping[str, np.ndarray], key: str) -> Any:
    if key not in data:
        return None
    value = np.asarray(data[key])
    if value.shape != ():
        raise ValueError(f"{key} must be a scalar, got shape {value.shape}")
    return value.item()


def read_clip_npz(path: str | os.PathLike, clip_id: str | None = None) -> dict[str, Any]:
    """Read and check a clip's npz (no audio): a dict of the Clip fields it holds.

    Raises :class:`DataError` naming the clip for a missing/corrupt file or unknown keys.
    """
    path = Path(path)
    clip_id = clip_id or path.stem
    if not path.is_file():
        raise _fail(clip_id, str(path), "motion file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            unknown = sorted(set(npz.files) - set(NPZ_KEYS))
            if unknown:
                raise _fail(clip_id, str(path), f"unknown npz keys {unknown}; valid: {list(NPZ_KEYS)}")
            missing = [k for k in REQUIRED_KEYS if k not in npz.files]
            if missing:
                raise _fail(clip_id, str(path), f"npz lacks required keys {missing}")
            data = {key: npz[key] for key in npz.files}
    except DataError:
        raise
    except Exception as exc:  # zip/npy errors of a truncated or foreign file
        raise _fail(clip_id, str(path), f"cannot read npz ({type(exc).__name__}: {exc})") from exc
    try:
        version = _scalar(data, "version")
        if version is not None and int(version) > FORMAT_VERSION:
            raise ValueError(f"written by a newer thunder3d (format {version} > {FORMAT_VERSION})")
        fields: dict[str, Any] = {
            "coeffs": np.asarray(data["coeffs"]),
            "fps": float(_scalar(data, "fps")),
            "rig": str(_scalar(data, "rig")),
            "coeff_names": tuple(str(n) for n in np.asarray(data["coeff_names"]).reshape(-1)),
        }
        phone_keys = [k for k in ("phone_start", "phone_end", "phone_label") if k in data]
        if phone_keys and len(phone_keys) != 3:
            raise ValueError(f"phones need phone_start, phone_end and phone_label; found {phone_keys}")
        if phone_keys:
            fields["phones"] = phones_from_arrays(data["phone_start"], data["phone_end"],
                                                  data["phone_label"])
        for key in ("emotion", "style", "voice", "text", "split"):
            value = _scalar(data, key)
            fields[key] = None if value is None else str(value)
        intensity = _scalar(data, "intensity")
        fields["intensity"] = None if intensity is None else int(intensity)
        for key in ("head_rotation", "shape"):
            fields[key] = np.asarray(data[key]) if key in data else None
        meta = _scalar(data, "meta")
        fields["meta"] = json.loads(meta) if meta is not None else {}
    except (ValueError, TypeError, AudioError, json.JSONDecodeError) as exc:
        raise _fail(clip_id, str(path), str(exc)) from exc
    return fields


def load_clip(root: str | os.PathLike, clip_id: str, *, audio: bool = True) -> Clip:
    """Load and validate ``<root>/<id>.wav`` + ``<root>/<id>.npz``.

    Args:
        audio: False skips decoding the wav (``clip.audio`` is then empty and the length check
            uses the wav header); for statistics over motion only.
    """
    wav_path, npz_path = clip_paths(root, clip_id)
    if not npz_path.is_file():
        raise _fail(clip_id, str(Path(root)), "clip not found (no npz; an unfinished clip has none)")
    fields = read_clip_npz(npz_path, clip_id)
    if not wav_path.is_file():
        raise _fail(clip_id, str(wav_path), "audio file not found")
    try:
        if audio:
            wav = load_audio(wav_path)
        else:
            import soundfile as sf

            info = sf.info(str(wav_path))
            num = math.ceil(info.frames * SAMPLE_RATE / info.samplerate)
            wav = np.zeros(0, dtype=np.float32)
    except (AudioError, RuntimeError) as exc:
        raise _fail(clip_id, str(wav_path), str(exc)) from exc
    clip = Clip(id=clip_id, audio=wav, **fields)
    if audio:
        validate_clip(clip, where=str(npz_path))
    else:  # validate everything but the audio samples, checking the length from the header
        validate_clip(Clip(**{**clip.__dict__, "audio": np.zeros(num, np.float32)}),
                      where=str(npz_path))
    return clip


# --------------------------------------------------------------------------- manifest
def manifest_entry(clip: Clip) -> dict[str, Any]:
    """The manifest line of a clip (:data:`MANIFEST_FIELDS`)."""
    return {
        "id": clip.id, "split": clip.split, "duration": round(clip.duration, 6),
        "num_frames": clip.num_frames, "style": clip.style, "emotion": clip.emotion,
        "intensity": clip.intensity, "voice": clip.voice, "text": clip.text, "rig": clip.rig,
    }


def manifest_path(root: str | os.PathLike) -> Path:
    return Path(root) / MANIFEST_NAME


def write_manifest(root: str | os.PathLike, entries: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``<root>/manifest.jsonl`` atomically, one JSON object per clip, sorted by id.

    Entries need an ``id``; ids must be unique. Other keys are kept as given.
    """
    entries = [dict(e) for e in entries]
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        cid = entry.get("id")
        if not isinstance(cid, str) or not cid:
            raise DataError(f"manifest entry {i} has no id: {entry!r}")
        if cid in seen:
            raise DataError(f"manifest lists clip {cid!r} twice")
        seen.add(cid)
    entries.sort(key=lambda e: e["id"])
    text = "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in entries)
    path = manifest_path(root)
    atomic_write_text(path, text)
    return path


def read_manifest(root: str | os.PathLike) -> list[dict[str, Any]]:
    """The entries of ``<root>/manifest.jsonl``; a clear error for a missing folder or file."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"corpus folder not found: {root}")
    path = manifest_path(root)
    if not path.is_file():
        raise DataError(f"corpus {root} has no {MANIFEST_NAME} (run rebuild_manifest to make one "
                        "from its clips)")
    entries = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not a JSON object ({exc})") from exc
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise DataError(f"{path}:{lineno}: expected a JSON object with an 'id'")
        entries.append(entry)
    return entries


def append_manifest(root: str | os.PathLike, entries: Iterable[Mapping[str, Any]]) -> Path:
    """Add or replace entries (matched by id) and rewrite the whole manifest atomically.

    Not safe against concurrent writers: let one process own the manifest.
    """
    merged: dict[str, dict[str, Any]] = {}
    if manifest_path(root).is_file():
        merged = {e["id"]: e for e in read_manifest(root)}
    for entry in entries:
        merged[entry["id"]] = dict(entry)
    return write_manifest(root, merged.values())


def rebuild_manifest(root: str | os.PathLike) -> Path:
    """Write the manifest from the complete clips (npz + wav) found in ``root``."""
    entries = [manifest_entry(load_clip(root, cid, audio=False)) for cid in _scan_ids(root)]
    return write_manifest(root, entries)


def _scan_ids(root: str | os.PathLike) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"corpus folder not found: {root}")
    ids = sorted(p.stem for p in root.glob("*.npz") if not p.name.startswith("."))
    if not ids:
        raise DataError(f"corpus {root} holds no clips (no <id>.npz files)")
    return ids


def corpus_clips(root: str | os.PathLike, split: str | None = None) -> list[str]:
    """Ids of the clips of a corpus (optionally of one split), sorted.

    Uses the manifest when there is one; otherwise scans the folder for ``<id>.npz``
    (reading each npz's ``split`` if a split is asked for). Raises :class:`DataError` for a missing
    or empty corpus, an unknown split, or a split with no clips.
    """
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    root = Path(root)
    if manifest_path(root).is_file():
        entries = read_manifest(root)
        if not entries:
            raise DataError(f"corpus {root} has an empty {MANIFEST_NAME}")
        ids = sorted(e["id"] for e in entries if split is None or e.get("split") == split)
    else:
        ids = _scan_ids(root)
        if split is not None:
            ids = [cid for cid in ids if read_clip_npz(root / f"{cid}.npz").get("split") == split]
    if not ids:
        raise DataError(f"corpus {root} has no clips in split {split!r}")
    return ids


def stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by ``key`` (SHA-256), the same on every machine and Python run."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:12], 16) / float(1 << 48)


def assign_split(key: str, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """Deterministic train/val/test for ``key`` (a speaker or clip id) by :func:`stable_fraction`.

    ``fractions`` are the expected shares of train, val and test (they must sum to 1).
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise DataError(f"split fractions must be three non-negative numbers summing to 1, "
                        f"got {fractions}")
    u = stable_fraction(key)
    if u < fractions[0]:
        return "train"
    return "val" if u < fractions[0] + fractions[1] else "test"


__all__ = [
    "Clip", "DataError", "EMOTIONS", "FORMAT_VERSION", "MANIFEST_FIELDS", "MANIFEST_NAME",
    "NPZ_KEYS", "SPLITS", "append_manifest", "assign_split", "clip_exists", "clip_paths",
    "corpus_clips", "load_clip", "manifest_entry", "normalize_emotion", "read_clip_npz",
    "read_manifest", "rebuild_manifest", "save_clip", "stable_fraction", "validate_clip",
    "write_manifest", "write_npz",
]
