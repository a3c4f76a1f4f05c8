"""Render the synthetic-corpus reference figures from the project's own pipeline.

    python docs/images/make_corpus_images.py --seed 0

Speech synthesis (espeak-ng, with phone timings) -> coarticulation (phones -> 52 ARKit coefficients)
-> non-speech expression track (emotion, blinks, gaze) -> ``combine`` -> the built-in head. Writes:

- ``corpus_speech.png``: one sentence rich in bilabials and open vowels, about every second frame
  (plus the centre frame of every B/P/M), close up on the lower face, each frame labelled with its
  index and the phone spoken at its centre.
- ``corpus_emotions.png``: the same sentence at one open-vowel frame under each of the 8 emotions at
  intensity 3 (same seed, so only the emotion differs).
- ``corpus_demo.mp4``: a 384 px talking-head video of a longer passage with its speech.

It also prints, per frame of the speech sheet, the phone, jawOpen, mouthClose, mouthPress and the
inner-lip aperture in mm, so lip closures can be checked by number as well as by eye.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from thunder3d.audio.features import num_frames
from thunder3d.audio.tts import synthesize
from thunder3d.data.articulation import SpeakerStyle, articulate
from thunder3d.data.expression import EMOTIONS, combine, expression_track
from thunder3d.render import framing, render_video, save_png, sequence_sheet
from thunder3d.rigs import load_rig

SENTENCE = "Bob and Pam ate a big apple."
DEMO_TEXT = "Bob and Pam ate a big apple. Then Mabel baked a warm plum pie, and we all had some."
VOICE = "en-us"
BILABIALS = ("B", "P", "M")
OPEN_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY")
# framing boxes on the built-in head (cm, [min, max] corners): nose to chin, and brows to chin
MOUTH_BOX = np.array([[-4.5, -12.6, 6.0], [4.5, -2.8, 11.0]])
FACE_BOX = np.array([[-6.0, -12.3, 6.0], [6.0, 3.2, 11.0]])


def phone_at(phones, t: float) -> str:
    """Label of the phone spoken at time ``t`` (seconds)."""
    for phone in phones:
        if phone.start <= t < phone.end:
            return phone.label
    return "SIL"


def clip(rig, text: str, emotion: str, intensity: int, seed: int):
    """Synthesise ``text`` and animate it: (utterance, coeffs [T, 52], vertices [T, V, 3])."""
    utt = synthesize(text, VOICE, seed=seed)
    frames = num_frames(utt.wav.size)
    speech = articulate(utt.phones, frames, SpeakerStyle())
    emphasis = [word.start for word in utt.words]
    track = expression_track(frames, emotion, intensity, rng=np.random.default_rng(seed), emphasis_times=emphasis)
    coeffs = combine(speech, track.offsets)
    with torch.no_grad():
        vertices = rig(torch.from_numpy(coeffs))
    return utt, coeffs, vertices


def speech_frames(phones, frames: int, step: int = 2) -> list[int]:
    """Every ``step``-th frame of the spoken part plus the centre frame of every bilabial."""
    spoken = [p for p in phones if p.label != "SIL"]
    first, last = int(spoken[0].start * 25), min(frames - 1, int(spoken[-1].end * 25))
    chosen = set(range(first, last + 1, step))
    chosen |= {min(frames - 1, int((p.start + p.end) / 2 * 25)) for p in spoken if p.label in BILABIALS}
    return sorted(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the speech noise and expression track")
    parser.add_argument("--cell", type=int, default=160, help="pixels per contact-sheet picture")
    parser.add_argument("--video-size", type=int, default=384, help="pixels of the demo video (square)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--no-video", action="store_true", help="write only the two PNGs")
    args = parser.parse_args()
    rig = load_rig("builtin")
    index = {name: rig.coeff_index(name) for name in ("jawOpen", "mouthClose", "mouthPressLeft", "eyeBlinkLeft")}
    mm = rig.mm_per_unit

    # 1. speech: a close-up of the lower face, frame by frame
    utt, coeffs, vertices = clip(rig, SENTENCE, "neutral", 1, args.seed)
    frames = speech_frames(utt.phones, len(coeffs))
    centre = lambda t: (t + 0.5) / 25  # noqa: E731  frame centre in seconds
    labels = [f"{t}  {phone_at(utt.phones, centre(t))}" for t in frames]
    close_up = framing(MOUTH_BOX, "front", rig.units, margin=0.02)
    sheet = sequence_sheet(rig, vertices, frames, cols=7, labels=labels, cell_size=args.cell, camera=close_up)
    save_png(args.out / "corpus_speech.png", sheet)
    aperture = rig.lip_aperture(vertices).numpy() * mm
    print(f"{SENTENCE!r}: {utt.duration:.2f} s, {len(coeffs)} frames")
    print(" frame phone  jawOpen mouthClose mouthPress aperture_mm")
    for t in frames:
        print(f"{t:6d} {phone_at(utt.phones, centre(t)):>5s} {coeffs[t, index['jawOpen']]:8.3f} "
              f"{coeffs[t, index['mouthClose']]:10.3f} {coeffs[t, index['mouthPressLeft']]:10.3f} "
              f"{aperture[t]:11.2f}")

    # 2. emotions: one open-vowel frame (no blink there) under every emotion at intensity 3
    vowel_frames = [t for t in range(len(coeffs)) if phone_at(utt.phones, centre(t)) in OPEN_VOWELS]
    _, neutral_coeffs, _ = clip(rig, SENTENCE, "neutral", 3, args.seed)
    frame = max(vowel_frames, key=lambda t: neutral_coeffs[t, index["jawOpen"]]
                - neutral_coeffs[t, index["eyeBlinkLeft"]])
    images, names = [], []
    for emotion in EMOTIONS:
        _, _, emo_vertices = clip(rig, SENTENCE, emotion, 3, args.seed)
        images.append(emo_vertices[frame])
        names.append(f"{emotion}  ({phone_at(utt.phones, centre(frame))})")
    face = framing(FACE_BOX, "front", rig.units, margin=0.02)
    save_png(args.out / "corpus_emotions.png",
             sequence_sheet(rig, torch.stack(images), cols=4, labels=names, cell_size=args.cell + 60, camera=face))
    print(f"emotions at frame {frame} ({phone_at(utt.phones, centre(frame))})")

    # 3. a short demo video with its speech
    if not args.no_video:
        utt, _, vertices = clip(rig, DEMO_TEXT, "happy", 2, args.seed)
        path = render_video(rig, vertices, args.out / "corpus_demo.mp4", audio=utt.wav, size=args.video_size,
                            samples=4, crf=24, preset="slow")
        print(f"{path}: {utt.duration:.2f} s, {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
