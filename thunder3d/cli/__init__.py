"""The ``thunder3d`` command: a thin layer over the library, one module per command group.

Every command takes ``--seed``, ``--device`` (``auto | cpu | cuda | cuda:N``, checked before any work)
and ``--threads``. Bad input (:class:`thunder3d.errors.ThunderError`) and a full disk are reported in
one line, without a traceback, with exit code 2; library warnings in one line each.
"""

from __future__ import annotations

import argparse
import errno
import gc
import sys
import warnings

from thunder3d.cli.options import Parser
from thunder3d.errors import ThunderError

USER_PATH_ERRORS = {errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT,
                    errno.ENAMETOOLONG}
"""Errors of a path the user gave (a folder where a file goes, a read-only place...): one line, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    from thunder3d import __version__
    from thunder3d.cli import animate, data, evaluate, live, rig, train

    parser = Parser(prog="thunder3d", description="Speech-driven 3D talking heads (THUNDER): "
                                     "animate any speech on a 3D face, export it, train and evaluate the models.")
    parser.add_argument("--version", action="version", version=f"thunder3d {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (animate, rig, data, train, evaluate, live):
        group.register(sub)
    return parser


def _prepare(args: argparse.Namespace) -> None:
    """What every command shares, before any of its work: threads, device, seed."""
    import torch

    from thunder3d.utils.device import resolve_device

    if getattr(args, "threads", 0) < 0:
        raise ThunderError(f"--threads must be >= 0, got {args.threads}")
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    if hasattr(args, "device"):
        args.device = resolve_device(args.device)
    torch.manual_seed(getattr(args, "seed", 0))


def _leaf(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the command ``args`` belongs to (``thunder3d data synth`` -> its own parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest, None)
            if chosen in action.choices:
                return _leaf(action.choices[chosen], args)
    return parser


def main(argv: list[str] | None = None) -> int:
    collecting = gc.isenabled()
    gc.disable()  # the command modules import torch: a million objects and no garbage; collecting is wasted
    try:
        parser = build_parser()
    finally:
        if collecting:
            gc.enable()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["sample"]:
        parser.error("`thunder3d sample` is now `thunder3d animate SPEECH -o FOLDER --format npz`")
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the command's own parser, with its usage
        _leaf(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # each distinct warning once, in one line
            warnings.showwarning = lambda message, *_: print(f"thunder3d: warning: {message}", file=sys.stderr)
            _prepare(args)
            return int(args.func(args) or 0)
    except ThunderError as exc:
        print(f"thunder3d: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" writing {exc.filename}" if exc.filename else ""
            print(f"thunder3d: error: no space left on the device{where}; nothing half-written was left",
                  file=sys.stderr)
            return 2
        if exc.errno in USER_PATH_ERRORS and exc.filename:  # a path given on the command line
            print(f"thunder3d: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("thunder3d: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The process entry point (the ``thunder3d`` script, ``python -m thunder3d``): :func:`main`, then an
    exit that skips the interpreter's final garbage collections over torch's objects (about 0.35 s:
    the objects are frozen, so the collections pass them by; everything else of a normal exit runs)."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
