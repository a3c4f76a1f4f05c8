"""``thunder3d rig info|show|import-ict``: inspect, render and import face rigs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from thunder3d.cli.options import add_common, add_output, opt

SPECS = "builtin | ict:PATH | flame:PATH | blendshapes:PATH (default builtin)"


def cmd_rig_info(args: argparse.Namespace) -> int:
    from thunder3d.rigs import load_rig

    rig = load_rig(args.spec)
    print(json.dumps(rig.describe(), indent=2) if args.json else rig.summary())
    return 0


def cmd_rig_show(args: argparse.Namespace) -> int:
    import torch

    from thunder3d.render import render_still, save_png
    from thunder3d.rigs import load_rig

    rig = load_rig(args.spec).to(args.device)
    with torch.no_grad():
        vertices = rig(rig.coeffs(args.coeff or []))[0]
    save_png(args.output, render_still(rig, vertices, views=args.view, size=args.size))
    print(f"wrote {args.output}")
    return 0


def cmd_rig_import_ict(args: argparse.Namespace) -> int:
    from thunder3d.rigs.ict import convert_ict

    out = convert_ict(args.path, args.output)
    print(f"wrote {out}  (use it as --rig ict:{out})")
    return 0


def register(sub) -> None:
    rig = sub.add_parser("rig", help="inspect, render and import face rigs")
    commands = rig.add_subparsers(dest="rig_command", required=True, metavar="{info,show,import-ict}")
    p = commands.add_parser("info", help="print a rig's sizes, units, coefficients and regions")
    p.add_argument("spec", nargs="?", default="builtin", help=SPECS)
    opt(p, "--json", False, "print JSON")
    add_common(p)
    p.set_defaults(func=cmd_rig_info)

    p = commands.add_parser("show", help="render a still of a rig to PNG (headless)")
    p.add_argument("spec", nargs="?", default="builtin", help=SPECS)
    opt(p, "--coeff", None, "coefficient values, repeatable or comma-separated (e.g. jawOpen=1; a bare name means 1)",
        action="append",
        metavar="NAME=VALUE")
    opt(p, "--view", "front,three_quarter", "comma-separated views: front, three_quarter, side")
    opt(p, "--size", 512, "pixels per view")
    add_output(p, "PNG file", default=Path("rig.png"))
    add_common(p)
    p.set_defaults(func=cmd_rig_show)

    p = commands.add_parser("import-ict", help="convert an ICT-FaceKit folder into a compact rig file")
    p.add_argument("path", type=Path, help="ICT-FaceKit folder (holding FaceXModel/) or FaceXModel itself")
    add_output(p, "rig file", default=Path("ict_facekit.npz"))
    add_common(p)
    p.set_defaults(func=cmd_rig_import_ict)
