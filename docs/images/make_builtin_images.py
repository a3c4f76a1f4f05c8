"""Render the built-in head's reference images.

    python docs/images/make_builtin_images.py [--size 448] [--cell 200]

Writes docs/images/builtin_{neutral,jawOpen,mouthPucker,mouthSmile,eyeBlink,mouthFunnel}.png
(front + three-quarter view side by side) and docs/images/builtin_shapes.png, a labelled contact
sheet of front views of the speech and emotion shapes, framed from the brows to the chin.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from thunder3d.render import Renderer, contact_sheet, render_still, save_png
from thunder3d.render.camera import framing
from thunder3d.rigs import load_rig

POSES = {
    "neutral": {},
    "jawOpen": {"jawOpen": 1.0},
    "mouthPucker": {"mouthPucker": 1.0},
    "mouthSmile": {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0},
    "eyeBlink": {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0},
    "mouthFunnel": {"mouthFunnel": 1.0},
}


def both(name: str, value: float = 1.0) -> dict[str, float]:
    """``{nameLeft: value, nameRight: value}``."""
    return {f"{name}Left": value, f"{name}Right": value}


SHEET = {  # label -> coefficients, in reading order
    "neutral": {},
    "jawOpen": {"jawOpen": 1.0},
    "jawOpen+mouthClose": {"jawOpen": 0.6, "mouthClose": 0.6},
    "mouthFunnel": {"mouthFunnel": 1.0},
    "mouthPucker": {"mouthPucker": 1.0},
    "mouthRollLower": {"mouthRollLower": 1.0},
    "mouthRollUpper": {"mouthRollUpper": 1.0},
    "mouthPress": both("mouthPress"),
    "mouthLowerDown": both("mouthLowerDown"),
    "mouthUpperUp": both("mouthUpperUp"),
    "mouthStretch": both("mouthStretch"),
    "mouthSmile": both("mouthSmile"),
    "mouthFrown": both("mouthFrown"),
    "mouthSmileLeft": {"mouthSmileLeft": 1.0},
    "mouthShrugLower": {"mouthShrugLower": 1.0},
    "mouthLeft": {"mouthLeft": 1.0},
    "eyeBlink": both("eyeBlink"),
    "eyeSquint": both("eyeSquint"),
    "eyeWide": both("eyeWide"),
    "browInnerUp": {"browInnerUp": 1.0},
    "browDown": both("browDown"),
    "browOuterUp": both("browOuterUp"),
    "cheekPuff": {"cheekPuff": 1.0},
    "cheekSquint": both("cheekSquint"),
}
FACE_BOX = np.array([[-6.0, -12.3, 6.0], [6.0, 3.2, 11.0]])  # brows to chin (cm), framed in each cell


def shape_sheet(rig, sheet: dict[str, dict[str, float]], cell: int, columns: int) -> np.ndarray:
    """Front views ``[H, W, 3]`` uint8 of each pose in a grid, each labelled under its picture."""
    camera = framing(FACE_BOX, "front", rig.units, margin=0.02)
    with Renderer(rig.faces, rig.vertex_colors, size=cell) as renderer:
        images = [renderer.render(rig(rig.coeffs(values))[0], camera) for values in sheet.values()]
    return contact_sheet(images, cols=columns, labels=list(sheet), label_height=16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=448, help="pixels per view (square)")
    parser.add_argument("--cell", type=int, default=200, help="pixels per contact-sheet picture")
    parser.add_argument("--columns", type=int, default=6, help="contact-sheet pictures per row")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--sheet-only", action="store_true", help="write only builtin_shapes.png")
    args = parser.parse_args()
    rig = load_rig("builtin")
    if not args.sheet_only:
        for name, values in POSES.items():
            vertices = rig(rig.coeffs(values))[0]
            image = render_still(rig, vertices, views="front,three_quarter", size=args.size)
            save_png(args.out / f"builtin_{name}.png", image)
    save_png(args.out / "builtin_shapes.png", shape_sheet(rig, SHEET, args.cell, args.columns))


if __name__ == "__main__":
    main()
