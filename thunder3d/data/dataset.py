"""Training windows from a corpus of clips, their batching, and coefficient normalisation.

:class:`ClipDataset` draws one random window per item from the clips of a split. An item::

    audio      [W * 640] float32   16 kHz speech of the window
    coeffs     [W, C]    float32   motion (normalised when the dataset has a Normalizer)
    phones     [W]       int64     phone index per frame (PHONES; SIL where no phone covers the
                                   frame centre), -100 for clips without phones and padding
    heard      [W]       int64     only with ``recognized=True``: the phones pocketsphinx
                                   recognises in the clip (:mod:`.recognized`), -100 padding
    pretrained [W, F]    float32   only with ``pretrained=NAME``: the clip's cached frozen
                                   features (:mod:`.pretrained`, e.g. Whisper's), zero padding
    audio_context [A * 640] float32 only with ``audio_context``: the ``A`` frames of speech
                                   before the window, what a streaming model's encoder hears of
                                   the past; zeros before the clip's start (a stream's first
                                   windows hear less audio instead: the one difference)
    mask       [W]       bool      True on real frames
    emotion    []        int64     index into EMOTIONS, -1 if none
    intensity  []        int64     emotion intensity, 0 if none
    style      []        int64     index into dataset.styles, -1 if none or unseen in training
    id         str                 clip id
    start      int                 first frame of the window in the clip

``W`` is ``window_seconds * 25`` frames; a clip shorter than that is returned whole (``W = T``)
and :func:`collate` pads it (audio and coeffs with zeros, ``mask`` False, ``phones``/``heard`` -100).
The window of item ``i`` depends only on ``(seed, epoch, i)``: call :meth:`ClipDataset.set_epoch`
at the start of each epoch to draw new windows.

:func:`compute_stats` gives a :class:`Normalizer` (per-coefficient mean and floored std over every
frame of the training clips); its :meth:`~Normalizer.to_dict` is plain JSON for checkpoints.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from thunder3d.audio.phones import to_frame_labels
from thunder3d.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from thunder3d.data.clip import (
    EMOTIONS,
    DataError,
    clip_paths,
    corpus_clips,
    load_clip,
    manifest_path,
    read_clip_npz,
    read_manifest,
)
from thunder3d.data.degrade import DegradeConfig, degrade_motion
from thunder3d.data.pretrained import pretrained_path, read_pretrained
from thunder3d.data.recognized import read_recognized, recognized_path

PAD_PHONE = -100
"""Phone label of frames without one (``ignore_index`` of :func:`torch.nn.functional.cross_entropy`)."""
MIN_WINDOW_SECONDS, MAX_WINDOW_SECONDS = 1.0, 8.0
MAX_AUDIO_CONTEXT_SECONDS = 4.0
DEFAULT_MIN_STD = 1e-2


def check_audio_context(seconds: float, error: type[Exception] = DataError) -> float:
    """``seconds`` of speech before each window (0 to :data:`MAX_AUDIO_CONTEXT_SECONDS`) as a float;
    ``error`` otherwise."""
    seconds = float(seconds)
    if not 0.0 <= seconds <= MAX_AUDIO_CONTEXT_SECONDS:
        raise error(f"audio_context must be between 0 and {MAX_AUDIO_CONTEXT_SECONDS:g} s, got {seconds:g}")
    return seconds


# --------------------------------------------------------------------------- normalisation
@dataclass
class Normalizer:
    """Per-coefficient standardisation: ``(x - mean) / std`` over the last axis.

    Attributes:
        mean: ``[C]`` float32.
        std: ``[C]`` float32, already floored (never 0).
        coeff_names: the ``C`` names the statistics belong to.
    """

    mean: np.ndarray
    std: np.ndarray
    coeff_names: tuple[str, ...]

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(self.std, dtype=np.float32).reshape(-1)
        self.coeff_names = tuple(str(n) for n in self.coeff_names)
        c = len(self.coeff_names)
        if self.mean.shape != (c,) or self.std.shape != (c,):
            raise DataError(f"normalizer: mean {self.mean.shape} and std {self.std.shape} must both "
                            f"have one value per coefficient ({c})")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all()) or (self.std <= 0).any():
            raise DataError("normalizer: mean and std must be finite and std > 0")

    def _stats(self, x: Any) -> tuple[Any, Any]:
        if x.shape[-1] != len(self.coeff_names):
            raise DataError(f"normalizer has {len(self.coeff_names)} coefficients, got data with "
                            f"{x.shape[-1]}")
        if isinstance(x, Tensor):
            return (torch.as_tensor(self.mean, dtype=x.dtype, device=x.device),
                    torch.as_tensor(self.std, dtype=x.dtype, device=x.device))
        return self.mean, self.std

    def normalize(self, x: Any) -> Any:
        """``[..., C]`` numpy array or tensor -> ``(x - mean) / std``, same type."""
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalize(self, x: Any) -> Any:
        """Inverse of :meth:`normalize`: ``x * std + mean``."""
        mean, std = self._stats(x)
        return x * std + mean

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: ``{"coeff_names": [...], "mean": [...], "std": [...]}`` (float32 values exact)."""
        return {"coeff_names": list(self.coeff_names), "mean": [float(v) for v in self.mean],
                "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Normalizer":
        """Rebuild from :meth:`to_dict` output."""
        missing = [k for k in ("coeff_names", "mean", "std") if k not in data]
        if missing:
            raise DataError(f"normalizer dict lacks {missing}")
        return cls(np.asarray(data["mean"], dtype=np.float32), np.asarray(data["std"], dtype=np.float32),
                   tuple(data["coeff_names"]))


def compute_stats(source: "ClipDataset | str | os.PathLike", split: str = "train", *,
                  coeff_names: Sequence[str] | None = None,
                  min_std: float = DEFAULT_MIN_STD) -> Normalizer:
    """Mean and std of every coefficient over all frames of the clips.

    Args:
        source: a :class:`ClipDataset` (its clips and coefficient layout; ``split`` is ignored)
            or a corpus folder (the clips of ``split``).
        coeff_names: with a folder, the coefficients to use (default: the first clip's).
        min_std: floor of the std, so constant coefficients do not blow up when normalised.

    Returns:
        A :class:`Normalizer` (statistics accumulated in float64).
    """
    if isinstance(source, ClipDataset):
        root, ids, names = source.root, source.ids, source.coeff_names
    else:
        root = Path(source)
        ids = corpus_clips(root, split)
        names = tuple(coeff_names) if coeff_names is not None else \
            read_clip_npz(clip_paths(root, ids[0])[1], ids[0])["coeff_names"]
    count, ref = 0, None
    total = total_sq = None
    for cid in ids:
        fields = read_clip_npz(clip_paths(root, cid)[1], cid)
        x = select_coeffs(fields["coeffs"], fields["coeff_names"], names, cid).astype(np.float64)
        if ref is None:
            ref = x.mean(axis=0)  # shift: sums of squares without cancellation
            total, total_sq = np.zeros_like(ref), np.zeros_like(ref)
        d = x - ref
        total += d.sum(axis=0)
        total_sq += np.square(d).sum(axis=0)
        count += len(x)
    mean_d = total / count
    var = np.maximum(total_sq / count - np.square(mean_d), 0.0)
    return Normalizer(ref + mean_d, np.maximum(np.sqrt(var), min_std), names)


def select_coeffs(coeffs: np.ndarray, names: Sequence[str], wanted: Sequence[str],
                  clip_id: str) -> np.ndarray:
    """Columns ``wanted`` of ``coeffs`` ``[T, C]`` (named ``names``) -> ``[T, len(wanted)]``."""
    names = tuple(names)
    if names == tuple(wanted):
        return coeffs
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in wanted if n not in index]
    if missing:
        raise DataError(f"clip {clip_id!r}: lacks coefficients {missing[:8]}"
                        f"{' ...' if len(missing) > 8 else ''} (has {len(names)}: {list(names[:4])} ...); "
                        "pass rig_coeff_names to choose a common layout")
    return coeffs[:, [index[n] for n in wanted]]


# --------------------------------------------------------------------------- dataset
@dataclass
class _Motion:
    """What the dataset keeps of a clip besides audio."""

    coeffs: np.ndarray  # [T, C] float32, selected (and normalised) columns
    phones: np.ndarray  # [T] int64
    heard: np.ndarray | None  # [T] int64 recognised phones, with recognized=True
    pretrained: np.ndarray | None  # [T, F] float16 cached pretrained features, with pretrained=NAME
    emotion: int
    intensity: int
    style: int


def style_vocabulary(root: str | os.PathLike) -> tuple[str, ...]:
    """Sorted speaker/style ids of the corpus's train split (manifest, else the npz files)."""
    root = Path(root)
    if manifest_path(root).is_file():
        styles = {e.get("style") for e in read_manifest(root) if e.get("split") == "train"}
    else:
        try:
            ids = corpus_clips(root, "train")
        except DataError:
            ids = []
        styles = {read_clip_npz(clip_paths(root, cid)[1], cid)["style"] for cid in ids}
    return tuple(sorted(s for s in styles if s))


class ClipDataset(torch.utils.data.Dataset):
    """Random windows of the clips of one split (module docstring for the items).

    Args:
        root: corpus folder.
        split: ``train``, ``val`` or ``test``.
        window_seconds: window length, 1 to 8 s (``round(window_seconds * 25)`` frames).
        rig_coeff_names: coefficients to return, in this order (a subset or reordering of the
            clips' ``coeff_names``); default: the first clip's layout, which every clip must share.
        seed: base seed of the window draws.
        windows_per_epoch: items per epoch; each picks a clip at random with probability
            proportional to its length. Default: one window per clip, item ``i`` from clip ``i``.
        normalizer: applied to ``coeffs``; must cover the same coefficient names.
        cache_audio: keep decoded audio in memory after first use (default). False reads each
            window from the wav file instead (large corpora).
        styles: the style vocabulary (e.g. from a checkpoint); default: :func:`style_vocabulary`.
        oversample: ``{voice prefix: k}``: clips whose manifest ``voice`` starts with the prefix
            count ``k`` times (integer >= 1; the first matching prefix applies). With one window per
            clip, their extra items follow the ``len(ids)`` plain ones (so item ``i < len(ids)``
            is still clip ``i``); with ``windows_per_epoch``, their probability is ``k`` times as high.
        recognized: also return ``heard``, the recognised phones cached in the corpus
            (:func:`~thunder3d.data.recognized.read_recognized`; a clip without them is a
            :class:`DataError` naming ``thunder3d data recognize``).
        recognizer: which recogniser's cache ``heard`` comes from (``"phones"`` or ``"words"``).
        pretrained: also return ``pretrained``, the cached frozen features of that name
            (:func:`~thunder3d.data.pretrained.read_pretrained`, e.g. ``"whisper-tiny.en"``; a clip
            without them is a :class:`DataError` naming ``thunder3d data features``).
        degrade: label degradation of the motion (:class:`~thunder3d.data.degrade.DegradeConfig`,
            applied to the raw coefficients before normalisation; audio and phones stay clean).
        fraction: keep only this fraction of the split's clips (0 < f <= 1), chosen by a hash of
            the clip id, so the clips of a smaller fraction are a subset of a larger one's and the
            choice does not depend on the seed.
        audio_context: also return ``audio_context``, this many seconds of speech before each window
            (0 to 4; ``round(audio_context * 25)`` frames): a model trained to hear the past beyond its
            window, as a stream's blocks do.
    """

    def __init__(self, root: str | os.PathLike, split: str, window_seconds: float = 4.0,
                 rig_coeff_names: Sequence[str] | None = None, seed: int = 0,
                 windows_per_epoch: int | None = None, normalizer: Normalizer | None = None, *,
                 cache_audio: bool = True, styles: Sequence[str] | None = None,
                 oversample: Mapping[str, int] | None = None, recognized: bool = False,
                 recognizer: str = "phones", pretrained: str | None = None,
                 degrade: "DegradeConfig | None" = None, fraction: float = 1.0,
                 audio_context: float = 0.0) -> None:
        window_seconds = float(window_seconds)
        audio_context = check_audio_context(audio_context)
        fraction = float(fraction)
        if not 0.0 < fraction <= 1.0:
            raise DataError(f"fraction must be in (0, 1], got {fraction:g}")
        if not MIN_WINDOW_SECONDS <= window_seconds <= MAX_WINDOW_SECONDS:
            raise DataError(f"window_seconds must be between {MIN_WINDOW_SECONDS:g} and "
                            f"{MAX_WINDOW_SECONDS:g} s, got {window_seconds:g}")
        if windows_per_epoch is not None and int(windows_per_epoch) < 1:
            raise DataError(f"windows_per_epoch must be >= 1, got {windows_per_epoch}")
        self.root = Path(root)
        self.split = split
        self.ids = corpus_clips(self.root, split)
        if fraction < 1.0:
            self.ids = [cid for cid in self.ids if zlib.crc32(cid.encode("utf-8")) / 2**32 < fraction]
            if not self.ids:
                raise DataError(f"fraction {fraction:g} keeps none of the {split} clips of {self.root}")
        self.fraction = fraction
        self.degrade = degrade if degrade is not None and degrade.active else None
        self.window_seconds = window_seconds
        self.window_frames = int(round(window_seconds * FPS))
        self.context_frames = int(round(audio_context * FPS))
        self.seed = int(seed)
        self.epoch = 0
        self.windows_per_epoch = None if windows_per_epoch is None else int(windows_per_epoch)
        self.cache_audio = cache_audio
        self.recognized = bool(recognized)
        self.recognizer = recognizer
        if self.recognized:  # fail now, not at the first batch that meets a clip without them
            missing = [cid for cid in self.ids if not recognized_path(self.root, cid, recognizer).is_file()]
            if missing:
                flag = "" if recognizer == "phones" else f" --recognizer {recognizer}"
                raise DataError(f"{len(missing)} of {len(self.ids)} {split} clips (e.g. {missing[0]!r}) "
                                "have no recognised phones, which this audio encoder reads: run "
                                f"`thunder3d data recognize {self.root}{flag}` once")
        self.pretrained = pretrained
        if pretrained is not None:
            missing = [cid for cid in self.ids if not pretrained_path(self.root, cid, pretrained).is_file()]
            if missing:
                raise DataError(f"{len(missing)} of {len(self.ids)} {split} clips (e.g. {missing[0]!r}) have no cached "
                                f"{pretrained} features, which this audio encoder reads: run `thunder3d data features "
                                f"{self.root}` once")
        self.styles = tuple(styles) if styles is not None else style_vocabulary(self.root)
        self._style_index = {s: i for i, s in enumerate(self.styles)}
        if rig_coeff_names is not None:
            names = tuple(rig_coeff_names)
            if not names or len(set(names)) != len(names):
                raise DataError(f"rig_coeff_names must be distinct names, got {len(names)} "
                                f"({len(set(names))} distinct)")
        else:
            names = read_clip_npz(clip_paths(self.root, self.ids[0])[1], self.ids[0])["coeff_names"]
        self.coeff_names: tuple[str, ...] = names
        if normalizer is not None and tuple(normalizer.coeff_names) != names:
            raise DataError("normalizer coefficients differ from the dataset's; compute it with the "
                            "same rig_coeff_names")
        self.normalizer = normalizer
        self._motion: dict[int, _Motion] = {}
        self._audio: dict[int, np.ndarray] = {}
        self._weights: np.ndarray | None = None
        self.repeats = self._repeats(dict(oversample or {}))  # [clips] int
        # item -> clip in one-window-per-clip mode: every clip once, then the extra copies
        self._items = np.concatenate([np.arange(len(self.ids)),
                                      np.repeat(np.arange(len(self.ids)), self.repeats - 1)])

    def _repeats(self, oversample: dict[str, int]) -> np.ndarray:
        """How many times each clip counts: ``[clips]`` int (1 unless ``oversample`` names its voice)."""
        repeats = np.ones(len(self.ids), dtype=np.int64)
        if not oversample:
            return repeats
        for prefix, k in oversample.items():
            if not isinstance(prefix, str) or not prefix:
                raise DataError(f"oversample keys must be non-empty voice prefixes, got {prefix!r}")
            if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                raise DataError(f"oversample {prefix!r}: the count must be an integer >= 1, got {k!r}")
        if not manifest_path(self.root).is_file():
            raise DataError(f"oversample needs the voices of the corpus manifest; {self.root} has none")
        voices = {e["id"]: str(e.get("voice") or "") for e in read_manifest(self.root)}
        matched = set()
        for i, cid in enumerate(self.ids):
            for prefix, k in oversample.items():
                if voices.get(cid, "").startswith(prefix):
                    repeats[i] = k
                    matched.add(prefix)
                    break
        unmatched = sorted(set(oversample) - matched)
        if unmatched:
            known = sorted({voices.get(cid, "") for cid in self.ids})
            raise DataError(f"oversample: no {self.split} clip has a voice starting with {unmatched}; "
                            f"voices: {', '.join(known[:12])}{' ...' if len(known) > 12 else ''}")
        return repeats

    # ---- sizes and epochs
    def __len__(self) -> int:
        return self.windows_per_epoch if self.windows_per_epoch is not None else len(self._items)

    def set_epoch(self, epoch: int) -> None:
        """Draw the windows of ``epoch`` (items depend on seed, epoch and index only)."""
        self.epoch = int(epoch)

    @property
    def num_coeffs(self) -> int:
        return len(self.coeff_names)

    def num_frames(self, k: int) -> int:
        """Frames of clip ``k`` (loads and caches its motion)."""
        return len(self._load_motion(k).coeffs)

    def _clip_weights(self) -> np.ndarray:
        """Probability of each clip in ``windows_per_epoch`` mode: proportional to its length."""
        if self._weights is None:
            lengths = None
            if manifest_path(self.root).is_file():
                by_id = {e["id"]: e for e in read_manifest(self.root)}
                frames = [by_id.get(cid, {}).get("num_frames") for cid in self.ids]
                if all(isinstance(f, int) and f > 0 for f in frames):
                    lengths = np.asarray(frames, dtype=np.float64)
            if lengths is None:
                lengths = np.asarray([self.num_frames(k) for k in range(len(self.ids))], np.float64)
            lengths = lengths * self.repeats
            self._weights = lengths / lengths.sum()
        return self._weights

    # ---- loading
    def _load_motion(self, k: int) -> _Motion:
        if k not in self._motion:
            cid = self.ids[k]
            fields = read_clip_npz(clip_paths(self.root, cid)[1], cid)
            coeffs = select_coeffs(fields["coeffs"], fields["coeff_names"], self.coeff_names, cid)
            coeffs = np.ascontiguousarray(coeffs, dtype=np.float32)
            if not np.isfinite(coeffs).all():
                raise DataError(f"clip {cid!r}: coeffs contain NaN or inf")
            num = len(coeffs)
            phones = fields.get("phones")
            labels = (to_frame_labels(phones, num, fps=FPS) if phones is not None
                      else np.full(num, PAD_PHONE, dtype=np.int64))
            if self.degrade is not None:
                coeffs = degrade_motion(coeffs, labels, cid, self.degrade)
            if self.normalizer is not None:
                coeffs = self.normalizer.normalize(coeffs).astype(np.float32)
            emotion = fields.get("emotion")
            self._motion[k] = _Motion(
                coeffs=coeffs,
                phones=labels.astype(np.int64),
                heard=read_recognized(self.root, cid, num, self.recognizer) if self.recognized else None,
                pretrained=(read_pretrained(self.root, cid, num, self.pretrained) if self.pretrained else None),
                emotion=EMOTIONS.index(emotion) if emotion in EMOTIONS else -1,
                intensity=int(fields.get("intensity") or 0),
                style=self._style_index.get(fields.get("style"), -1),
            )
        return self._motion[k]

    def _read_audio(self, k: int, start: int, frames: int) -> np.ndarray:
        """``[frames * 640]`` float32 from frame ``start`` of clip ``k`` (zero-padded at the end; a
        negative ``start`` is zero-padded at the beginning)."""
        if start < 0:
            before = min(-start, frames)
            return np.concatenate([np.zeros(before * SAMPLES_PER_FRAME, np.float32),
                                   self._read_audio(k, 0, frames - before)])
        n = frames * SAMPLES_PER_FRAME
        lo = start * SAMPLES_PER_FRAME
        if self.cache_audio:
            if k not in self._audio:
                self._audio[k] = load_clip(self.root, self.ids[k]).audio
            wav = self._audio[k][lo:lo + n]
        else:
            wav = _read_wav_range(clip_paths(self.root, self.ids[k])[0], lo, lo + n, self.ids[k])
        if wav.size < n:  # the wav may be up to one frame shorter than the motion
            wav = np.pad(wav, (0, n - wav.size))
        return wav

    # ---- items
    def window(self, index: int) -> tuple[int, int, int]:
        """``(clip index, start frame, frames)`` of item ``index`` this epoch."""
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range for {len(self)} items")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.windows_per_epoch is None:
            k = int(self._items[index])
        else:
            k = int(rng.choice(len(self.ids), p=self._clip_weights()))
        total = self.num_frames(k)
        frames = min(self.window_frames, total)
        start = int(rng.integers(0, total - frames + 1))
        return k, start, frames

    def __getitem__(self, index: int) -> dict[str, Any]:
        k, start, frames = self.window(index)
        motion = self._load_motion(k)
        stop = start + frames
        item = {
            "audio": torch.from_numpy(np.array(self._read_audio(k, start, frames), dtype=np.float32)),
            "coeffs": torch.from_numpy(motion.coeffs[start:stop].copy()),
            "phones": torch.from_numpy(motion.phones[start:stop].copy()),
            "mask": torch.ones(frames, dtype=torch.bool),
            "emotion": torch.tensor(motion.emotion, dtype=torch.long),
            "intensity": torch.tensor(motion.intensity, dtype=torch.long),
            "style": torch.tensor(motion.style, dtype=torch.long),
            "id": self.ids[k],
            "start": start,
        }
        if motion.heard is not None:
            item["heard"] = torch.from_numpy(motion.heard[start:stop].copy())
        if motion.pretrained is not None:
            item["pretrained"] = torch.from_numpy(motion.pretrained[start:stop].astype(np.float32))
        if self.context_frames:
            past = self._read_audio(k, start - self.context_frames, self.context_frames)
            item["audio_context"] = torch.from_numpy(np.array(past, dtype=np.float32))
        return item


def _read_wav_range(path: Path, lo: int, hi: int, clip_id: str) -> np.ndarray:
    """Samples ``[lo, hi)`` of a 16 kHz wav without decoding the rest (other rates: full load)."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            if f.samplerate == SAMPLE_RATE:
                f.seek(min(lo, f.frames))
                data = f.read(max(0, min(hi, f.frames) - lo), dtype="float32", always_2d=True)
                return data.mean(axis=1).astype(np.float32) if data.shape[1] > 1 else data[:, 0]
    except (RuntimeError, OSError) as exc:
        raise DataError(f"clip {clip_id!r} ({path}): cannot read audio ({exc})") from exc
    root, _ = os.path.split(path)
    return load_clip(root, clip_id).audio[lo:hi]


def collate(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack items, padding to the longest: ``audio`` ``[B, W*640]``, ``coeffs`` ``[B, W, C]``,
    ``phones`` ``[B, W]`` (-100 padding), ``mask`` ``[B, W]`` (False padding), ``emotion``,
    ``intensity``, ``style``, ``start`` ``[B]``, ``id`` list of str; ``heard`` ``[B, W]`` (-100
    padding), ``pretrained`` ``[B, W, F]`` (zero padding) and ``audio_context`` ``[B, A * 640]`` when
    every item has them."""
    if not batch:
        raise DataError("collate: empty batch")
    frames = max(int(item["coeffs"].shape[0]) for item in batch)
    num_coeffs = int(batch[0]["coeffs"].shape[1])
    size = len(batch)
    audio = torch.zeros(size, frames * SAMPLES_PER_FRAME)
    coeffs = torch.zeros(size, frames, num_coeffs)
    phones = torch.full((size, frames), PAD_PHONE, dtype=torch.long)
    mask = torch.zeros(size, frames, dtype=torch.bool)
    heard = (torch.full((size, frames), PAD_PHONE, dtype=torch.long)
             if all("heard" in item for item in batch) else None)
    pretrained = (torch.zeros(size, frames, batch[0]["pretrained"].shape[1])
                  if all("pretrained" in item for item in batch) else None)
    for b, item in enumerate(batch):
        n = int(item["coeffs"].shape[0])
        if item["coeffs"].shape[1] != num_coeffs:
            raise DataError(f"collate: item {item.get('id')!r} has {item['coeffs'].shape[1]} "
                            f"coefficients, the first {num_coeffs}")
        audio[b, : item["audio"].shape[0]] = item["audio"]
        coeffs[b, :n] = item["coeffs"]
        phones[b, :n] = item["phones"]
        mask[b, :n] = item["mask"]
        if heard is not None:
            heard[b, :n] = item["heard"]
        if pretrained is not None:
            pretrained[b, :n] = item["pretrained"]
    out = {
        "audio": audio, "coeffs": coeffs, "phones": phones, "mask": mask,
        "emotion": torch.stack([torch.as_tensor(i["emotion"]) for i in batch]).long(),
        "intensity": torch.stack([torch.as_tensor(i["intensity"]) for i in batch]).long(),
        "style": torch.stack([torch.as_tensor(i["style"]) for i in batch]).long(),
        "start": torch.tensor([int(i["start"]) for i in batch], dtype=torch.long),
        "id": [i["id"] for i in batch],
    }
    if heard is not None:
        out["heard"] = heard
    if pretrained is not None:
        out["pretrained"] = pretrained
    if all("audio_context" in item for item in batch):
        out["audio_context"] = torch.stack([item["audio_context"] for item in batch])
    return out


__all__ = [
    "ClipDataset", "Normalizer", "PAD_PHONE", "collate", "compute_stats", "select_coeffs",
    "style_vocabulary",
]
