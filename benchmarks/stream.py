"""Real-time streaming against its targets: latency, CPU per stream, concurrent streams, a soak.

    python benchmarks/stream.py [--model RUN] [--streams 1,2,3] [--seconds 20] [--soak-minutes 10] [--json F]

A ``thunder3d serve`` process is started on loopback (``--threads`` torch threads) with the model (a
talker that reads no recognised phones), and clients in this process stream speech (LibriVox
recordings of Debian's pocketsphinx-testdata when installed, else espeak-ng sentences) over
``WS /v1/stream`` in 20 ms PCM16 chunks at speaking speed:

- **latency** of frame ``i``: its arrival minus the moment the chunk completing its audio
  (``[i / 25, (i + 1) / 25)`` s) was sent; p50 / p95 / max per concurrency level (target with the
  default look-ahead: p95 <= 250 ms);
- **CPU per stream**: the server's CPU seconds per second of streamed audio, divided by the streams;
- **streams held**: the most concurrent streams whose p95 stays within the target with every frame
  delivered (target >= 2 on 2 cores);
- **soak** (``--soak-minutes``): 2 streams for that long, one utterance after another on each socket
  (``reset``); the server's resident memory over time (growth from the first to the last minute)
  and frames missing (target: no growth, none missing).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from common import print_table
from speed import machine

TARGET_P95_MS = 250.0
CHUNK = 320  # 20 ms at 16 kHz


def speech(seconds: float) -> np.ndarray:
    """``seconds`` of human speech (LibriVox clips) or, without them, espeak-ng sentences."""
    from thunder3d.audio.io import load_audio

    folder = Path("/usr/share/pocketsphinx/test/data/librivox")
    files = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    if files:
        parts = [load_audio(f) for f in files]
    else:
        from thunder3d.audio.tts import synthesize

        parts = [synthesize(t, seed=0).wav for t in ("Bob bought a big map of Paris before the summer.",
                                                     "Would you like to move the meeting to Monday morning?")]
    wav = np.concatenate(parts)
    while wav.size < seconds * 16000:
        wav = np.concatenate([wav, wav])
    return wav[: int(seconds * 16000)]


def _pcm16(wav: np.ndarray) -> bytes:
    return (np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()


def stream_once(ws, pcm: bytes, seed: int = 0) -> dict:
    """Stream one utterance ``pcm`` on the connection ``ws`` at speaking speed: per-frame latencies and
    the frame count."""
    sent_at: list[float] = []
    arrivals: dict[int, float] = {}
    end = {}

    def receive() -> None:
        while True:
            message = json.loads(ws.recv(timeout=120))
            if message["type"] == "frame":
                arrivals[message["index"]] = time.monotonic()
            elif message["type"] in ("end", "error"):
                end.update(message)
                return

    ws.send(json.dumps({"type": "start", "sample_rate": 16000, "seed": seed}))
    start = json.loads(ws.recv(timeout=60))
    if start["type"] != "start":
        raise SystemExit(f"the server refused the stream: {start}")
    reader = threading.Thread(target=receive)
    reader.start()
    t0 = time.monotonic()
    for k, i in enumerate(range(0, len(pcm), 2 * CHUNK)):
        time.sleep(max(0.0, t0 + k * CHUNK / 16000 - time.monotonic()))
        ws.send(pcm[i:i + 2 * CHUNK])
        sent_at.append(time.monotonic())
    ws.send(json.dumps({"type": "end"}))
    reader.join()
    samples = len(pcm) // 2
    expected = round(samples / 640)
    latency = []
    for i, t in arrivals.items():
        last_sample = min(samples, (i + 1) * 640) - 1
        chunk = last_sample // CHUNK
        if chunk < len(sent_at):
            latency.append((t - sent_at[chunk]) * 1000)
    return {"expected": expected, "received": len(arrivals), "end": end.get("frames"), "latency_ms": latency,
            "lookahead_ms": start["lookahead_ms"], "error": end.get("error")}


def _proc_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds, resident MB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS")) / 1024
    return cpu, rss


def start_server(model: str, threads: int, extra: list[str]) -> tuple[subprocess.Popen, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([sys.executable, "-m", "thunder3d", "serve", "--model", model, "--port", str(port),
                             "--threads", str(threads), "--max-streams", "8", "--idle-seconds", "120", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "serving" not in line:
        raise SystemExit(f"the server did not start: {line}{proc.stderr.read()}")
    import urllib.request

    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"ws://127.0.0.1:{port}/v1/stream"


def concurrency(url: str, pid: int, n: int, pcm: bytes) -> dict:
    from websockets.sync.client import connect

    results = [None] * n

    def client(k: int) -> None:
        with connect(url, max_size=None) as ws:
            results[k] = stream_once(ws, pcm, seed=k)

    cpu0, _ = _proc_stat(pid)
    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    cpu1, rss = _proc_stat(pid)
    latency = np.concatenate([r["latency_ms"] for r in results])
    audio = len(pcm) / 2 / 16000
    missing = sum(r["expected"] - r["received"] for r in results)
    p50, p95 = np.percentile(latency, [50, 95])
    return {"streams": n, "audio_s": round(audio, 1), "wall_s": round(wall, 1), "p50_ms": round(float(p50)),
            "p95_ms": round(float(p95)), "max_ms": round(float(latency.max())),
            "cpu_per_stream": round((cpu1 - cpu0) / audio / n, 3), "missing_frames": int(missing),
            "server_rss_mb": round(rss), "lookahead_ms": results[0]["lookahead_ms"],
            "ok": bool(p95 <= TARGET_P95_MS and missing == 0)}


def soak(url: str, pid: int, minutes: float, pcm: bytes) -> dict:
    from websockets.sync.client import connect

    stop = time.monotonic() + minutes * 60
    totals = {"expected": 0, "received": 0, "utterances": 0}
    memory: list[tuple[float, float]] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        with connect(url, max_size=None) as ws:
            while time.monotonic() < stop:  # one utterance after another on the same socket
                r = stream_once(ws, pcm, seed=k)
                with lock:
                    totals["expected"] += r["expected"]
                    totals["received"] += r["received"]
                    totals["utterances"] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(2)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        memory.append((time.monotonic() - t0, _proc_stat(pid)[1]))
        time.sleep(10)
    first = [m for t, m in memory if t <= 60] or [memory[0][1]]
    last = [m for t, m in memory if t >= memory[-1][0] - 60]
    return {"minutes": minutes, "streams": 2, **totals, "missing_frames": totals["expected"] - totals["received"],
            "rss_first_minute_mb": round(max(first)), "rss_last_minute_mb": round(max(last)),
            "rss_growth_mb": round(max(last) - max(first), 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin",
                   help="a talker that reads no recognised phones, whisper or mel (default: the shipped model)")
    p.add_argument("--streams", default="1,2,3", help="concurrency levels")
    p.add_argument("--seconds", type=float, default=20.0, help="speech per stream")
    p.add_argument("--soak-minutes", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    p.add_argument("--server-args", default="", help="more `thunder3d serve` options, e.g. '--lookahead-ms 80'")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    pcm = _pcm16(speech(args.seconds))
    proc, url = start_server(args.model, args.threads, args.server_args.split())
    try:
        rows = [concurrency(url, proc.pid, int(n), pcm) for n in args.streams.split(",")]
        print_table(rows)
        held = max([r["streams"] for r in rows if r["ok"]], default=0)
        print(f"streams held within p95 <= {TARGET_P95_MS:.0f} ms with every frame: {held}")
        result = {"machine": machine(args.threads), "model": args.model, "server_args": args.server_args,
                  "levels": rows, "streams_held": held}
        if args.soak_minutes > 0:
            result["soak"] = soak(url, proc.pid, args.soak_minutes, pcm)
            print_table([result["soak"]])
    finally:
        proc.terminate()
        proc.wait(30)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
