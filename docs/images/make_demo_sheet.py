"""Run ``thunder3d demo`` and lay frames of its MP4 out as a contact sheet.

    python docs/images/make_demo_sheet.py                 # the shipped model, default sentence
    python docs/images/make_demo_sheet.py --model RUN     # another talker

Writes ``docs/images/demo_sheet.png``: every ``--every``-th frame of the demo video (decoded back
from the MP4 with ffmpeg, so the figure shows exactly what a user sees; cropped to the lower face
unless ``--full``), each labelled with its
frame index and the phone spoken at that frame (pocketsphinx forced alignment of the demo's own
speech against its sentence; the centre frame of every P/B/M is added), and prints the demo's outputs and timing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from thunder3d.audio.align import align
from thunder3d.audio.io import load_audio
from thunder3d.cli import main
from thunder3d.cli.animate import DEMO_TEXT
from thunder3d.constants import FPS
from thunder3d.render.sheet import contact_sheet
from thunder3d.render.video import ffmpeg_exe, probe_media

HERE = Path(__file__).resolve().parent


def read_frames(path: Path, size: int) -> np.ndarray:
    """All frames of an MP4 as ``[F, size, size, 3]`` uint8 (ffmpeg decodes to raw RGB)."""
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "-s", f"{size}x{size}", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, size, size, 3)


def phone_at(phones, frame: int) -> str:
    t = (frame + 0.5) / FPS
    for p in phones:
        if p.start <= t < p.end:
            return p.label
    return ""


def main_sheet() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="talker run or checkpoint (default: the shipped model)")
    ap.add_argument("--size", type=int, default=384, help="demo video size in pixels (default 384)")
    ap.add_argument("--every", type=int, default=3, help="keep every N-th frame (default 3)")
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full", action="store_true", help="whole frames instead of the lower-face crop")
    ap.add_argument("-o", "--output", type=Path, default=HERE / "demo_sheet.png")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["demo", "-o", tmp, "--size", str(args.size), "--seed", str(args.seed)]
        if args.model:
            argv += ["--model", args.model]
        started = time.monotonic()
        if main(argv) != 0:
            return 1
        print(f"demo took {time.monotonic() - started:.1f} s")
        video = next(Path(tmp).glob("*.mp4"))
        print("streams:", probe_media(video))
        frames = read_frames(video, args.size)
        wav = next(Path(tmp).glob("*.wav"))
        phones = align(load_audio(wav), DEMO_TEXT)
        centres = {min(int((p.start + p.end) / 2 * FPS), len(frames) - 1) for p in phones
                   if p.label in ("P", "B", "M")}  # every bilabial closure is shown
        picked = sorted(set(range(0, len(frames), args.every)) | centres)
        labels = [f"{i} {phone_at(phones, i)}".strip() for i in picked]
        s = args.size
        crop = (slice(None), slice(None)) if args.full else (slice(int(0.52 * s), int(0.86 * s)),
                                                              slice(int(0.28 * s), int(0.72 * s)))
        sheet = contact_sheet([frames[i][crop] for i in picked], cols=args.cols, labels=labels)
        from PIL import Image

        Image.fromarray(sheet).save(args.output)
        print(f"wrote {args.output} ({len(picked)} of {len(frames)} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main_sheet())
