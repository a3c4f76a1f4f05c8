"""``thunder3d serve`` (the talker behind HTTP and WebSocket, :mod:`thunder3d.live.server`) and ``thunder3d stream``
(speech as it arrives -> Live Link Face UDP for Unreal Engine, :mod:`thunder3d.live.livelink`)."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from thunder3d.cli.options import add_common, add_config, config_values, opt
from thunder3d.errors import ThunderError

SERVER_OPTIONS = ("host", "port", "max_mb", "max_seconds", "max_samples", "max_steps", "max_pending", "max_streams",
                  "idle_seconds", "max_message_kb", "livelink")
STREAM_OPTIONS = ("lookahead_ms", "block", "context", "steps", "guidance")
CHUNK = 320  # 20 ms of 16 kHz audio per push, as a live source delivers it


def _one_thread_unless_asked(args: argparse.Namespace) -> None:
    """Streams run their small windows fastest on one thread each (two threads per stream cost 2.7x the
    CPU on 2 cores, benchmarks/stream.py); concurrent streams and requests use the other cores."""
    if not args.threads:
        import torch

        torch.set_num_threads(1)


def cmd_serve(args: argparse.Namespace) -> int:
    from thunder3d.inference import Animator
    from thunder3d.inference.streaming import StreamConfig
    from thunder3d.live.server import ServerConfig, make_server

    config = ServerConfig(**config_values(args, SERVER_OPTIONS))
    StreamConfig(**config_values(args, STREAM_OPTIONS))  # checked before anything starts
    try:  # bind first: a port in use is one line, before the model loads
        info = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
    except OSError as exc:
        raise ThunderError(f"cannot listen on {config.host}:{config.port} ({exc.strerror or exc})") from None
    _one_thread_unless_asked(args)
    animator = Animator.from_pretrained(args.model, device=args.device)
    host, port = sock.getsockname()[:2]
    print(f"serving {animator.path or 'the shipped model'} on http://{host}:{port} "
          f"(POST /v1/animate, WS /v1/stream, GET /health; Ctrl+C stops)", flush=True)
    make_server(animator, config, StreamConfig(**config_values(args, STREAM_OPTIONS))).run(sockets=[sock])
    return 0


def register(sub) -> None:
    from thunder3d.live.server import ServerConfig

    from thunder3d.inference.streaming import StreamConfig

    p = sub.add_parser("serve", help="serve a talker: POST /v1/animate (JSON, Live Link CSV or GLB), WS /v1/stream "
                                     "(live audio in, frames out), GET /health")
    opt(p, "--model", None, "talker run folder or checkpoint (default: shipped model)")
    add_config(p, ServerConfig, SERVER_OPTIONS)
    add_config(p, StreamConfig, STREAM_OPTIONS)
    add_common(p)
    p.set_defaults(func=cmd_serve)
    register_stream(sub)



def _file_chunks(path, realtime: bool):
    """``(samples, seconds of audio so far)`` of a file in 20 ms chunks, paced at speaking speed with ``realtime``."""
    import time

    from thunder3d.audio.io import load_audio

    wav = load_audio(path)
    start = time.monotonic()
    for i in range(0, wav.size, CHUNK):
        done = min(wav.size, i + CHUNK) / 16000
        if realtime:
            time.sleep(max(0.0, start + done - time.monotonic()))
        yield wav[i:i + CHUNK], done


def _open_mic(seconds: float | None):
    """The default microphone, 16 kHz mono, opened now (a missing one is an error before any work): a
    generator of ``(samples, seconds so far)`` in 20 ms chunks until ``seconds`` or Ctrl+C."""
    import queue

    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise ThunderError(f"microphone input needs the sounddevice package and PortAudio "
                           f"(pip install sounddevice; apt install libportaudio2): {exc}") from None
    chunks: queue.Queue = queue.Queue(maxsize=500)
    try:
        mic = sounddevice.InputStream(samplerate=16000, channels=1, dtype="float32", blocksize=CHUNK,
                                      callback=lambda data, *_: chunks.put_nowait(data[:, 0].copy()))
    except Exception as exc:  # noqa: BLE001 - PortAudio reports a missing device in several ways
        raise ThunderError(f"no microphone to record from ({exc})") from None

    def chunks_of_speech():
        done = 0.0
        with mic:
            print("listening (Ctrl+C stops)", flush=True)
            try:
                while seconds is None or done < seconds:
                    chunk = chunks.get(timeout=5)
                    done += chunk.size / 16000
                    yield chunk, done
            except (KeyboardInterrupt, queue.Empty):
                return

    return chunks_of_speech()


def cmd_stream(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from thunder3d.inference import Animator
    from thunder3d.inference.streaming import Stream, StreamConfig

    if (args.input is None) == (not args.mic):
        raise ThunderError("give a speech file or --mic (one of them)")
    if args.livelink is None and args.output is None:
        raise ThunderError("say where the frames go: --livelink HOST:PORT (Unreal Engine) and/or -o FILE.csv|.npz")
    if args.output is not None and args.output.suffix.lower() not in (".csv", ".npz"):
        raise ThunderError(f"-o must end in .csv (Live Link CSV) or .npz, got {args.output.name}")
    config = StreamConfig(**config_values(args, STREAM_OPTIONS))
    if args.livelink is not None:
        from thunder3d.live.livelink import parse_address

        parse_address(args.livelink)
    if args.input is not None:
        from thunder3d.audio.io import audio_info

        audio_info(args.input)  # a missing or unreadable file: one line, before the model loads
    mic = _open_mic(args.seconds) if args.mic else None
    sender = None
    if args.livelink is not None:
        from thunder3d.live.livelink import LiveLinkSender

        sender = LiveLinkSender(args.livelink, subject=args.subject)
    _one_thread_unless_asked(args)
    animator = Animator.from_pretrained(args.model, device=args.device)
    stream = Stream(animator, config, emotion=args.emotion, intensity=args.intensity, seed=args.seed)
    matrix = None
    if sender is not None:
        from thunder3d.export.livelink import check_arkit_names

        matrix = check_arkit_names(animator.names)
    frames, audio, latency = [], [], []
    source = _file_chunks(args.input, args.realtime) if mic is None else mic
    start = time.monotonic()

    def deliver(new: np.ndarray, heard: float) -> None:
        now = time.monotonic() - start
        for row in new:
            if sender is not None:
                sender.send(row @ matrix)
            i = len(frames)
            frames.append(row)
            if args.realtime or args.mic:
                latency.append(now - min(heard, (i + 1) / 25))
    heard = 0.0
    for chunk, heard in source:
        audio.append(chunk)
        deliver(stream.push(chunk), heard)
    deliver(stream.end(), heard)
    if sender is not None:
        sender.close()
    coeffs = np.asarray(frames, np.float32).reshape(-1, len(animator.names))
    wall = time.monotonic() - start
    line = f"{len(coeffs)} frames ({len(coeffs) / 25:.2f} s) in {wall:.2f} s, look-ahead {stream.lookahead_ms:.0f} ms"
    if latency:
        p50, p95 = np.percentile(np.asarray(latency) * 1000, [50, 95])
        line += f"; latency p50 {p50:.0f} ms, p95 {p95:.0f} ms"
    if sender is not None:
        line += f"; sent to Live Link {sender.host}:{sender.port} as {args.subject!r}"
    if args.output is not None:
        from thunder3d.export.livelink import write_arkit_csv
        from thunder3d.export.npz import write_npz

        wav = np.concatenate(audio) if audio else np.zeros(0, np.float32)
        if args.output.suffix.lower() == ".csv":
            write_arkit_csv(args.output, coeffs, names=animator.names, fps=25)
        else:
            write_npz(args.output, coeffs, fps=25, names=animator.names, rig=animator.rig, audio=wav)
        line += f"; wrote {args.output}"
    print(line)
    return 0


def register_stream(sub) -> None:
    from thunder3d.conditions import EMOTIONS, INTENSITIES
    from thunder3d.inference.streaming import StreamConfig
    from thunder3d.cli.options import add_output

    p = sub.add_parser("stream", help="animate speech as it arrives (a file, paced or not, or the microphone) and "
                                      "send the frames to Unreal Engine over Live Link and/or a file")
    p.add_argument("input", nargs="?", type=Path, help="speech file (or use --mic)")
    opt(p, "--mic", False, "stream from the default microphone instead of a file")
    opt(p, "--seconds", None, "with --mic: stop after this many seconds (default: Ctrl+C)", type=float)
    opt(p, "--realtime", False, "pace a file at speaking speed, as a live source would deliver it")
    opt(p, "--livelink", None, "send Live Link Face UDP packets to HOST:PORT (Unreal's default port 11111)")
    opt(p, "--subject", "thunder3d", "Live Link subject name")
    add_output(p, "also write the frames to this .csv (Live Link CSV) or .npz")
    opt(p, "--model", None, "talker run folder or checkpoint (default: shipped model)")
    opt(p, "--emotion", None, " | ".join(EMOTIONS) + " (default: none)")
    opt(p, "--intensity", None, "emotion intensity (default: none)", type=int, choices=INTENSITIES)
    add_config(p, StreamConfig, STREAM_OPTIONS)
    add_common(p)
    p.set_defaults(func=cmd_stream)
