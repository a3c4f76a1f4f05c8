"""Render the built-in head's reference images (front + three-quarter view side by side).

    python docs/images/make_builtin_images.py [--size 448]

Writes docs/images/builtin_{neutral,jawOpen,mouthPucker,mouthSmile,eyeBlink,mouthFunnel}.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from thunder3d.render import render_still, save_png
from thunder3d.rigs import load_rig

POSES = {
    "neutral": {},
    "jawOpen": {"jawOpen": 1.0},
    "mouthPucker": {"mouthPucker": 1.0},
    "mouthSmile": {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0},
    "eyeBlink": {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0},
    "mouthFunnel": {"mouthFunnel": 1.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=448, help="pixels per view (square)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    rig = load_rig("builtin")
    for name, values in POSES.items():
        vertices = rig(rig.coeffs(values))[0]
        image = render_still(rig, vertices, views="front,three_quarter", size=args.size)
        save_png(args.out / f"builtin_{name}.png", image)


if __name__ == "__main__":
    main()
