"""The 52 ARKit blendshape names and conversions from other naming schemes.

The order is the one of Live Link Face CSV captures, so a coefficient vector in ARKit layout can be
written to or read from such a file column by column. "Left"/"Right" are the subject's own sides
(ICT-FaceKit's ``_L``/``_R``).
"""

from __future__ import annotations

ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawRight", "jawLeft", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
assert len(ARKIT_NAMES) == 52 and len(set(ARKIT_NAMES)) == 52

ARKIT_INDEX: dict[str, int] = {name: i for i, name in enumerate(ARKIT_NAMES)}


def arkit_name(name: str) -> str | None:
    """Map a blendshape name in a common spelling to its ARKit name, or None if it is not one.

    Accepted spellings: ARKit (``jawOpen``), Live Link Face / capitalised (``JawOpen``),
    ICT-FaceKit suffixes (``mouthSmile_L``), ``_Left``/``.L``/``-L`` suffixes, any case.
    Names that split one ARKit shape in two (ICT's ``browInnerUp_L``) map to the shared shape.
    """
    raw = name.strip()
    for suffix, side in (("_L", "Left"), ("_R", "Right"), (".L", "Left"), (".R", "Right"),
                         ("-L", "Left"), ("-R", "Right"), ("_Left", "Left"), ("_Right", "Right")):
        if raw.endswith(suffix):
            raw = raw[: -len(suffix)] + side
            break
    key = raw.replace("_", "").replace(" ", "").lower()
    for candidate in ARKIT_NAMES:
        if candidate.lower() == key:
            return candidate
    # split shapes whose ARKit counterpart has no side
    for base in ("browInnerUp", "cheekPuff"):
        if key in (base.lower() + "left", base.lower() + "right"):
            return base
    return None
