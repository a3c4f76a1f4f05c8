"""``thunder3d serve``: the talker behind HTTP (:mod:`thunder3d.live.server`)."""

from __future__ import annotations

import argparse
import socket

from thunder3d.cli.options import add_common, add_config, config_values, opt
from thunder3d.errors import ThunderError

SERVER_OPTIONS = ("host", "port", "max_mb", "max_seconds", "max_samples", "max_steps", "max_pending")


def cmd_serve(args: argparse.Namespace) -> int:
    from thunder3d.inference import Animator
    from thunder3d.live.server import ServerConfig, make_server

    config = ServerConfig(**config_values(args, SERVER_OPTIONS))
    try:  # bind first: a port in use is one line, before the model loads
        info = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
    except OSError as exc:
        raise ThunderError(f"cannot listen on {config.host}:{config.port} ({exc.strerror or exc})") from None
    animator = Animator.from_pretrained(args.model, device=args.device)
    host, port = sock.getsockname()[:2]
    print(f"serving {animator.path or 'the shipped model'} on http://{host}:{port} "
          f"(POST /v1/animate, GET /health; Ctrl+C stops)", flush=True)
    make_server(animator, config).run(sockets=[sock])
    return 0


def register(sub) -> None:
    from thunder3d.live.server import ServerConfig

    p = sub.add_parser("serve", help="serve a talker over HTTP: POST /v1/animate (JSON, Live Link CSV or GLB), "
                                     "GET /health")
    opt(p, "--model", None, "talker run folder or checkpoint (default: shipped model)")
    add_config(p, ServerConfig, SERVER_OPTIONS)
    add_common(p)
    p.set_defaults(func=cmd_serve)
