"""Pseudo ground truth on real voices: recordings (+ optional transcripts) -> clips.

``thunder3d data from-audio DIR --out CORPUS`` runs :func:`from_audio`. Each recording is aligned
with pocketsphinx (forced alignment when a transcript ``<name>.txt`` or ``<name>.lab`` sits beside
``<name>.wav``, or the folder has a Sphinx-style ``transcription`` / ``*.transcription`` file with
lines ``<s> words </s> (name)``; phone recognition otherwise), then driven through the same articulation model as
the synthetic corpus, with neutral non-speech motion (blinks, slight drift). The result is a clip
of the corpus format whose lip motion follows the real speech's phone timings.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from thunder3d.audio.align import align, recognize_phones
from thunder3d.audio.io import load_audio
from thunder3d.audio.features import num_frames as audio_num_frames
from thunder3d.constants import FPS
from thunder3d.data.articulation import SpeakerStyle, articulate
from thunder3d.data.clip import Clip, append_manifest, assign_split, manifest_entry, save_clip
from thunder3d.data.expression import combine, expression_track
from thunder3d.data.importers import ImportReport, _progress, check_source_folder, clip_id_for
from thunder3d.errors import DataError, ThunderError
from thunder3d.rigs.arkit import ARKIT_NAMES

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
TRANSCRIPT_EXTENSIONS = (".txt", ".lab")


_SPHINX_LINE = re.compile(r"^(?P<text>.*?)\s*\((?P<id>[^()\s]+)\)\s*$")


def read_sphinx_transcription(path: Path) -> dict[str, str]:
    """A Sphinx ``transcription`` file (lines ``<s> words </s> (utterance_id)``) -> {id: words}."""
    texts = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _SPHINX_LINE.match(line.strip())
        if match:
            words = [w for w in match["text"].split() if w.lower() not in ("<s>", "</s>", "<sil>")]
            if words:
                texts[match["id"]] = " ".join(words)
    return texts


def read_transcript(wav: Path) -> str | None:
    """The transcript of a recording: ``<stem>.txt`` or ``<stem>.lab`` beside it, else its line in
    a Sphinx ``transcription`` / ``*.transcription`` file of the same folder; or None."""
    for ext in TRANSCRIPT_EXTENSIONS:
        path = wav.with_suffix(ext)
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            return text or None
    for path in sorted(wav.parent.glob("*transcription")):
        if path.is_file():
            text = read_sphinx_transcription(path).get(wav.stem)
            if text:
                return text
    return None


def clip_from_recording(
    wav_path: str | os.PathLike,
    clip_id: str,
    text: str | None = None,
    *,
    style: SpeakerStyle | None = None,
    seed: int = 0,
) -> Clip:
    """One recording -> a clip with articulated ARKit coefficients ``[T, 52]`` at 25 fps.

    Args:
        wav_path: any audio file :func:`~thunder3d.audio.load_audio` reads.
        clip_id: id of the clip.
        text: transcript for forced alignment; None recognises phones instead.
        style: speaker style of the articulation model (default: the neutral speaker).
        seed: seed of the non-speech motion (blinks, drift).
    """
    wav = load_audio(wav_path)
    phones = align(wav, text) if text else recognize_phones(wav)
    num_frames = audio_num_frames(len(wav))
    speech = articulate(phones, num_frames, style or SpeakerStyle(), fps=FPS)
    track = expression_track(num_frames, "neutral", 1, np.random.default_rng(seed))
    coeffs = combine(speech, track.offsets)
    return Clip(
        id=clip_id, audio=wav,
        coeffs=coeffs, coeff_names=ARKIT_NAMES, rig="arkit", phones=phones,
        emotion="neutral", intensity=1, voice=f"recording:{Path(wav_path).name}", text=text,
        meta={"source": "from-audio", "alignment": "forced" if text else "recognized"},
    )


def from_audio(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    skip_bad: bool = False,
    progress: bool = True,
    seed: int = 0,
) -> ImportReport:
    """Turn every recording under ``src`` (recursively) into a clip in ``out``.

    Returns an :class:`~thunder3d.data.importers.ImportReport`; bad recordings raise
    :class:`~thunder3d.data.clip.DataError` naming the file, or are listed when ``skip_bad``.
    """
    src, out = Path(src), Path(out)
    check_source_folder(src)
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"no recordings ({', '.join(AUDIO_EXTENSIONS)}) found in {src}")
    report = ImportReport(format="from-audio", src=src, out=out)
    entries = []
    try:
        for index, wav in enumerate(_progress(files, progress, "from-audio")):
            clip_id = clip_id_for(wav.relative_to(src).with_suffix(""))
            try:
                clip = clip_from_recording(wav, clip_id, read_transcript(wav), seed=seed + index)
                clip.split = assign_split(clip_id)
                save_clip(out, clip)
            except ThunderError as exc:
                if not skip_bad:
                    raise DataError(f"recording {wav}: {exc}") from exc
                report.skipped.append((clip_id, str(exc)))
                continue
            report.imported.append(clip_id)
            entries.append(manifest_entry(clip))
    finally:
        if entries:
            append_manifest(out, entries)
    return report
