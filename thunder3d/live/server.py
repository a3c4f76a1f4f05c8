"""``thunder3d serve``: a talker behind HTTP (Starlette on uvicorn).

Routes::

    GET  /health        200 {"status": "ok"} once the model is loaded
    POST /v1/animate    the audio file as the body (anything load_audio reads); query parameters
                        emotion, intensity (1-3), seed, samples, steps, format=json|csv|glb
                        -> 200 {"fps": 25, "names": [52 ARKit names], "frames": [[52 floats], ...]}
                           for sample 0, plus "samples": [[[...]]] when more than one was asked;
                           or the Live Link CSV / GLB bytes of sample 0

Every failure is a JSON body ``{"error": "one line"}``: 4xx for what the client sent (unknown or bad
parameters, an empty, oversized, too long or unreadable body: each checked before any animation work),
503 when the server is at its limit of waiting requests, never a traceback. The model runs on one
worker thread, so requests are served one at a time in arrival order; at most
:attr:`ServerConfig.max_pending` wait, the next ones are refused at once instead of piling up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thunder3d.conditions import check_emotion, check_intensity
from thunder3d.config import Config
from thunder3d.constants import FPS
from thunder3d.errors import ConfigError, LiveError, ThunderError

log = logging.getLogger("thunder3d.serve")

FORMATS = ("json", "csv", "glb")
PARAMETERS = ("emotion", "intensity", "seed", "samples", "steps", "format")
DRAIN = 4  # an oversized body is read (and dropped) up to this many times the limit before the 413
STATIC = Path(__file__).resolve().parent / "static"  # the live avatar page and the vendored three.js
CONTENT_TYPES = {"json": "application/json", "csv": "text/csv", "glb": "model/gltf-binary"}


@dataclass
class ServerConfig(Config):
    """Settings of ``thunder3d serve`` (also its command-line defaults).

    Attributes:
        host: interface to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).
        port: TCP port.
        max_mb: largest request body in MB (an upload over it is refused while it arrives).
        max_seconds: longest audio in seconds.
        max_samples: most animations one request may ask for.
        max_steps: most sampling steps one request may ask for.
        max_pending: requests that may wait for the model; more are refused with 503.
        max_streams: WebSocket streams at once; more are refused (close code 1013).
        idle_seconds: a stream that sends nothing for this long is closed.
        max_message_kb: largest WebSocket message in kB (larger: closed with code 1009).
        livelink: also send every streamed frame to this HOST:PORT as Live Link Face UDP (Unreal Engine).
    """

    error = ConfigError

    host: str = "127.0.0.1"
    port: int = 8000
    max_mb: float = 25.0
    max_seconds: float = 600.0
    max_samples: int = 4
    max_steps: int = 50
    max_pending: int = 8
    max_streams: int = 4
    idle_seconds: float = 30.0
    max_message_kb: int = 512
    livelink: str | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.port, int) and 0 <= self.port <= 65535):
            raise ConfigError(f"port must be 0-65535, got {self.port!r}")
        for name in ("max_mb", "max_seconds", "idle_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        for name in ("max_samples", "max_steps", "max_pending", "max_streams", "max_message_kb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if self.livelink is not None:
            from thunder3d.live.livelink import parse_address

            parse_address(self.livelink)


class RequestError(LiveError):
    """What a client did wrong: answered with ``status`` and the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _integer(params: dict[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    text = params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise RequestError(f"{name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise RequestError(f"{name} must be between {low} and {high}, got {value}")
    return value


def parse_animate_query(params: dict[str, str], config: ServerConfig) -> dict[str, Any]:
    """The options of ``POST /v1/animate`` from its query parameters, checked (:class:`RequestError`)."""
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise RequestError(f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(PARAMETERS)}")
    fmt = params.get("format", "json")
    if fmt not in FORMATS:
        raise RequestError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    try:
        emotion = check_emotion(params["emotion"]) if params.get("emotion") else None
        intensity = check_intensity(params["intensity"]) if params.get("intensity") else None
    except ThunderError as exc:
        raise RequestError(str(exc)) from None
    return {"emotion": emotion, "intensity": intensity, "format": fmt,
            "seed": _integer(params, "seed", 0, 0, 2**31 - 1),
            "samples": _integer(params, "samples", 1, 1, config.max_samples),
            "steps": _integer(params, "steps", None, 1, config.max_steps)}  # None: the model's own


class AnimateService:
    """The model behind the routes: one worker thread, a bounded number of waiting requests."""

    def __init__(self, animator, config: ServerConfig) -> None:
        from thunder3d.export.livelink import check_arkit_names

        self.animator, self.config = animator, config
        self.matrix = check_arkit_names(animator.names)  # [C, 52]: the model's layout -> ARKit order
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thunder3d-model")
        self._slots = threading.BoundedSemaphore(config.max_pending + 1)  # one running + the waiting ones

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn, *args):
        """``fn(*args)`` on the model's thread; :class:`RequestError` 503 when too many wait."""
        if not self._slots.acquire(blocking=False):
            raise RequestError(f"the server is busy ({self.config.max_pending} requests waiting); retry later", 503)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)
        finally:
            self._slots.release()

    def animate(self, body: bytes, options: dict[str, Any]) -> tuple[bytes, str]:
        """The response body and its content type for an uploaded audio file (runs on the worker)."""
        from thunder3d.audio.io import load_audio
        from thunder3d.errors import AudioError, AudioTooLongError

        with tempfile.TemporaryDirectory(prefix="thunder3d-serve-") as tmp:
            path = Path(tmp) / "upload"
            path.write_bytes(body)
            try:
                wav = load_audio(path, max_seconds=self.config.max_seconds)
            except AudioError as exc:
                status = 413 if isinstance(exc, AudioTooLongError) else 422
                raise RequestError(str(exc).replace(str(path), "the request body"), status) from None
            animations = self.animator.animate(wav, samples=options["samples"], emotion=options["emotion"],
                                               intensity=options["intensity"], steps=options["steps"],
                                               seed=options["seed"])
            return _encode(self.animator, self.matrix, animations, options["format"], Path(tmp))


def _encode(animator, matrix: np.ndarray, animations, fmt: str, tmp: Path) -> tuple[bytes, str]:
    """``matrix``: [C, 52], the model's coefficient layout -> ARKit order."""
    first = animations[0]
    if fmt == "json":
        from thunder3d.rigs.arkit import ARKIT_NAMES

        def frames(a) -> list:
            return np.round((a.coeffs @ matrix).astype(np.float64), 6).tolist()

        payload = {"fps": FPS, "names": list(ARKIT_NAMES), "frames": frames(first)}
        if len(animations) > 1:
            payload["samples"] = [frames(a) for a in animations]
        return json.dumps(payload, separators=(",", ":")).encode(), CONTENT_TYPES["json"]
    if fmt == "csv":
        from thunder3d.export.livelink import write_arkit_csv

        path = write_arkit_csv(tmp / "animation.csv", first.coeffs, names=animator.names, fps=first.fps)
    else:
        from thunder3d.export.glb import write_glb

        path = write_glb(tmp / "animation.glb", animator.rig, first.coeffs, names=animator.names, fps=first.fps)
    return path.read_bytes(), CONTENT_TYPES[fmt]


START_FIELDS = {"type": str, "sample_rate": int, "emotion": (str, type(None)), "intensity": (int, type(None)),
                "seed": int}


def parse_start(message: dict[str, Any], animator, stream_config):
    """A :class:`~thunder3d.inference.streaming.Stream` for a ``start`` message (every field optional);
    :class:`RequestError` naming what is wrong."""
    from thunder3d.inference.streaming import Stream

    unknown = sorted(set(message) - set(START_FIELDS))
    if unknown:
        raise RequestError(f"unknown start field(s) {', '.join(unknown)}; valid: {', '.join(START_FIELDS)}")
    for key, kind in START_FIELDS.items():
        value = message.get(key)
        if key in message and (not isinstance(value, kind) or isinstance(value, bool)):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise RequestError(f"start field {key!r} must be {names.replace('NoneType', 'null')}, got {value!r}")
    try:
        return Stream(animator, stream_config, sample_rate=message.get("sample_rate", 16000),
                      emotion=message.get("emotion"), intensity=message.get("intensity"), seed=message.get("seed", 0))
    except ThunderError as exc:
        raise RequestError(str(exc)) from None


class StreamService:
    """The WebSocket streams: a bounded number at once, each computing on a thread pool of that size."""

    def __init__(self, animator, config: ServerConfig, stream_config) -> None:
        from thunder3d.export.livelink import check_arkit_names

        self.animator, self.config, self.stream_config = animator, config, stream_config
        self.matrix = check_arkit_names(animator.names)  # [C, 52]
        self.active = 0
        self._pool = ThreadPoolExecutor(max_workers=config.max_streams, thread_name_prefix="thunder3d-stream")
        self.livelink = None
        if config.livelink is not None:
            from thunder3d.live.livelink import LiveLinkSender

            self.livelink = LiveLinkSender(config.livelink)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.livelink is not None:
            self.livelink.close()

    async def serve(self, ws) -> None:
        """One client, from accept to close (module docstring of the protocol)."""
        from starlette.websockets import WebSocketDisconnect

        if self.active >= self.config.max_streams:
            await ws.accept()
            await _refuse(ws, f"the server is at its limit of {self.config.max_streams} streams; retry later", 1013)
            return
        self.active += 1  # counted before the handshake completes, so the next client already sees it
        try:
            await ws.accept()
            await self._session(ws)
        except WebSocketDisconnect:
            pass  # the client went away: nothing to tell it
        except RequestError as exc:
            await _refuse(ws, str(exc), exc.status)
        except Exception:  # a bug: the client gets one line, the log the traceback
            log.exception("internal error in a stream")
            await _refuse(ws, "internal error; the server's log has the details", 1011)
        finally:
            self.active -= 1

    async def _session(self, ws) -> None:
        from starlette.websockets import WebSocketDisconnect

        loop = asyncio.get_running_loop()
        stream, start = None, {}
        while True:
            try:
                message = await asyncio.wait_for(ws.receive(), timeout=self.config.idle_seconds)
            except asyncio.TimeoutError:
                raise RequestError(f"no message for {self.config.idle_seconds:g} s; closing", 1000) from None
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            data, text = message.get("bytes"), message.get("text")
            if data is not None:
                if stream is None:  # audio without a start message: the defaults
                    stream = await self._start(ws, {})
                try:
                    frames = await loop.run_in_executor(self._pool, stream.push, data, True)
                except ThunderError as exc:
                    raise RequestError(str(exc), 1003) from None
                await self._send_frames(ws, frames, stream.sent - len(frames))
                continue
            try:
                request = json.loads(text or "")
            except ValueError:
                raise RequestError("text messages must be JSON objects with a type: start, end or reset",
                                   1003) from None
            kind = request.get("type") if isinstance(request, dict) else None
            if kind == "start":
                if stream is not None:
                    raise RequestError("a stream is running: send end (or reset) before a new start", 1008)
                start = request
                stream = await self._start(ws, start)
            elif kind == "reset":
                stream = await self._start(ws, start)
            elif kind == "end":
                if stream is None:
                    raise RequestError("end without a stream: send start and audio first", 1008)
                frames = await loop.run_in_executor(self._pool, stream.end)
                await self._send_frames(ws, frames, stream.sent - len(frames))
                await ws.send_json({"type": "end", "frames": stream.sent})
                stream = None
            else:
                raise RequestError(f"unknown message type {kind!r}; valid: start, end, reset", 1008)

    async def _start(self, ws, message: dict[str, Any]):
        stream = parse_start(message, self.animator, self.stream_config)
        from thunder3d.rigs.arkit import ARKIT_NAMES

        await ws.send_json({"type": "start", "fps": FPS, "names": list(ARKIT_NAMES),
                            "lookahead_ms": stream.lookahead_ms})
        return stream

    async def _send_frames(self, ws, frames: np.ndarray, first: int) -> None:
        weights = np.round((frames @ self.matrix).astype(np.float64), 6)
        for k, row in enumerate(weights.tolist()):
            i = first + k
            if self.livelink is not None:
                self.livelink.send(weights[k])
            await ws.send_text(json.dumps({"type": "frame", "index": i, "time": i / FPS, "weights": row},
                                          separators=(",", ":")))


async def _refuse(ws, message: str, code: int) -> None:
    """Tell the client why in one line, then close with ``code``; quietly if it is already gone."""
    try:
        await ws.send_json({"type": "error", "error": " ".join(message.split())})
        await ws.close(code=code if code >= 1000 else 1008)
    except Exception:  # noqa: BLE001 - the socket may be closed already
        pass


def _head_glb(animator) -> bytes:
    """The animator's rig at rest as GLB bytes: the page's head, one morph target per coefficient."""
    import dataclasses

    from thunder3d.export.glb import coefficient_morphs, encode_glb
    from thunder3d.rigs import LinearBlendshapeRig
    from thunder3d.rigs.arkit import arkit_name

    if not isinstance(animator.rig, LinearBlendshapeRig):
        raise RequestError(f"the rig {animator.rig.spec!r} has no blendshapes to show in a browser", 404)
    morphs = coefficient_morphs(animator.rig, np.zeros((1, animator.rig.num_coeffs), np.float32), FPS)
    names = [arkit_name(n) or n for n in morphs.target_names]  # the page drives them by their ARKit names
    return encode_glb(dataclasses.replace(morphs, target_names=names), {"generator": "thunder3d serve"})


def create_app(animator, config: ServerConfig | None = None, stream_config=None):
    """The Starlette application serving ``animator`` (a :class:`~thunder3d.inference.Animator`)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from starlette.routing import WebSocketRoute

    config = config or ServerConfig()
    service = AnimateService(animator, config)
    streams = None if animator.model.uses_phones else StreamService(animator, config, stream_config)
    limit = int(config.max_mb * 1e6)

    def error(message: str, status: int) -> JSONResponse:
        return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def animate(request: Request) -> Response:
        options = parse_animate_query(dict(request.query_params), config)
        body, size = bytearray(), 0
        async for chunk in request.stream():
            size += len(chunk)
            if size <= limit:
                body += chunk
            elif size > DRAIN * limit:  # refuse now; the client may only see the connection close
                break
        if size > limit:  # the rest was read and dropped, so the client can read the answer
            raise RequestError(f"the body is larger than the allowed {config.max_mb:g} MB", 413)
        if not body:
            raise RequestError("the body is empty: send the audio file as the request body")
        content, media = await service.run(service.animate, bytes(body), options)
        return Response(content, media_type=media)

    async def on_request_error(request: Request, exc: RequestError) -> Response:
        return error(str(exc), exc.status)

    async def on_thunder_error(request: Request, exc: ThunderError) -> Response:
        return error(str(exc), 422)

    async def on_http_error(request: Request, exc: HTTPException) -> Response:
        return error(exc.detail or "error", exc.status_code)

    async def on_other(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ClientDisconnect):
            return error("the client went away", 400)
        log.exception("internal error on %s", request.url.path)  # the traceback stays in the server's log
        return error(f"internal error ({type(exc).__name__}); the server's log has the details", 500)

    async def stream(ws) -> None:
        if streams is None:
            await ws.accept()
            await _refuse(ws, "this model reads recognised phones and cannot stream; serve a whisper or mel model",
                          1011)
            return
        await streams.serve(ws)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        service.close()
        if streams is not None:
            streams.close()

    head: list[bytes] = []

    async def head_glb(request: Request) -> Response:
        if not head:  # made once, on first use: the target rig at rest, one morph target per coefficient
            head.append(await asyncio.get_running_loop().run_in_executor(None, _head_glb, animator))
        return Response(head[0], media_type=CONTENT_TYPES["glb"])

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    app = Starlette(routes=[Route("/", page, methods=["GET"]),
                            Route("/health", health, methods=["GET"]),
                            Route("/v1/head.glb", head_glb, methods=["GET"]),
                            Route("/v1/animate", animate, methods=["POST"]),
                            WebSocketRoute("/v1/stream", stream),
                            Mount("/static", StaticFiles(directory=STATIC), name="static")],
                    exception_handlers={RequestError: on_request_error, ThunderError: on_thunder_error,
                                        HTTPException: on_http_error, Exception: on_other},
                    lifespan=lifespan)
    app.state.config, app.state.service = config, service
    return app


def make_server(animator, config: ServerConfig | None = None, stream_config=None):
    """A ``uvicorn.Server`` for ``animator``: ``.run()`` serves until interrupted (``.run(sockets=[...])``
    serves already bound sockets instead of ``config.host:port``; ``.started`` tells when it listens,
    ``.should_exit = True`` stops it)."""
    import uvicorn

    config = config or ServerConfig()
    app = create_app(animator, config, stream_config)
    return uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning",
                                         access_log=False, lifespan="on", ws="websockets-sansio",
                                         ws_max_size=config.max_message_kb * 1024))


__all__ = ["AnimateService", "FORMATS", "RequestError", "ServerConfig", "StreamService", "create_app", "make_server",
           "parse_animate_query", "parse_start"]
