"""``thunder3d serve``'s HTTP contract on a real uvicorn server on loopback, with the shipped model."""

import asyncio
import csv
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from thunder3d.errors import ConfigError  # noqa: E402
from thunder3d.live.server import RequestError, ServerConfig, make_server  # noqa: E402
from thunder3d.rigs.arkit import ARKIT_NAMES  # noqa: E402


@pytest.fixture(scope="module")
def animator():
    from thunder3d.inference import Animator

    return Animator.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def speech_wav():
    from thunder3d.audio.tts import synthesize

    speech = synthesize("Bob met a man by the open window.", seed=0)
    buf = io.BytesIO()
    sf.write(buf, speech.wav, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue(), speech.wav.size


@pytest.fixture(scope="module")
def server(animator):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = make_server(animator, ServerConfig(max_mb=0.5, max_seconds=5.0, max_samples=3))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    srv.should_exit = True
    thread.join(10)


def _call(url, data=None, method=None):
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, r.headers.get("content-type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type"), e.read()


def _error(result, status):
    code, media, body = result
    assert code == status, body
    assert media == "application/json"
    message = json.loads(body)["error"]
    assert message and "\n" not in message and "Traceback" not in message and "/tmp" not in message
    return message


def test_health(server):
    code, media, body = _call(server + "/health")
    assert code == 200 and json.loads(body) == {"status": "ok"}


def test_animate_json_is_the_contract_and_reproducible(server, speech_wav):
    wav, n = speech_wav
    code, media, body = _call(server + "/v1/animate?seed=3&emotion=happy&intensity=2", wav)
    assert code == 200 and media == "application/json"
    out = json.loads(body)
    assert out["fps"] == 25 and out["names"] == list(ARKIT_NAMES) and "samples" not in out
    frames = np.array(out["frames"])
    assert frames.shape == (-(-n // 640), 52) and np.isfinite(frames).all()
    jaw = frames[:, ARKIT_NAMES.index("jawOpen")]
    assert jaw.max() - jaw.min() > 0.1  # the mouth moves with the speech
    again = json.loads(_call(server + "/v1/animate?seed=3&emotion=happy&intensity=2", wav)[2])
    assert again["frames"] == out["frames"]
    two = json.loads(_call(server + "/v1/animate?seed=3&emotion=happy&intensity=2&samples=2", wav)[2])
    assert len(two["samples"]) == 2 and two["samples"][0] == two["frames"]
    np.testing.assert_allclose(two["frames"], out["frames"], atol=1e-4)  # sample 0 does not depend on the batch
    assert np.abs(np.subtract(two["samples"][1], two["frames"])).max() > 0.01


def test_animate_csv_and_glb(server, speech_wav):
    wav, n = speech_wav
    code, media, body = _call(server + "/v1/animate?format=csv", wav)
    assert code == 200 and media.startswith("text/csv")
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0][0] == "Timecode" and len(rows) - 1 == -(-n // 640)
    code, media, body = _call(server + "/v1/animate?format=glb", wav)
    assert code == 200 and media == "model/gltf-binary" and body[:4] == b"glTF"


def test_bad_requests_get_one_line_4xx(server, speech_wav):
    wav, _ = speech_wav
    assert "valid: emotion" in _error(_call(server + "/v1/animate?colour=red", wav), 400)
    assert "format" in _error(_call(server + "/v1/animate?format=mp4", wav), 400)
    assert "intensity" in _error(_call(server + "/v1/animate?intensity=9", wav), 400)
    assert "emotion" in _error(_call(server + "/v1/animate?emotion=bored", wav), 400)
    assert "between 1 and 3" in _error(_call(server + "/v1/animate?samples=4", wav), 400)
    assert "integer" in _error(_call(server + "/v1/animate?seed=x", wav), 400)
    assert "empty" in _error(_call(server + "/v1/animate", b"", method="POST"), 400)
    _error(_call(server + "/v1/animate", b"this is not audio at all" * 10), 422)
    assert "MB" in _error(_call(server + "/v1/animate", bytes(600_000)), 413)
    long = io.BytesIO()
    sf.write(long, np.zeros(16000 * 6, dtype=np.float32), 16000, format="WAV")
    assert "5 s" in _error(_call(server + "/v1/animate", long.getvalue()), 413)
    _error(_call(server + "/v1/animate"), 405)
    _error(_call(server + "/nowhere"), 404)
    code, _, body = _call(server + "/health")  # still healthy after all of that
    assert code == 200


def test_waiting_requests_are_bounded(animator):
    from thunder3d.live.server import AnimateService

    service = AnimateService(animator, ServerConfig(max_pending=1))
    release = threading.Event()

    async def scenario():
        running = asyncio.ensure_future(service.run(release.wait))
        waiting = asyncio.ensure_future(service.run(lambda: "second"))
        await asyncio.sleep(0.1)
        with pytest.raises(RequestError, match="busy") as refused:
            await service.run(lambda: "third")
        release.set()
        return refused.value.status, await running, await waiting

    try:
        status, first, second = asyncio.run(scenario())
    finally:
        service.close()
    assert status == 503 and first is True and second == "second"


def test_bad_settings_are_clear():
    for bad in ({"port": 70000}, {"max_mb": 0}, {"max_samples": 0}, {"max_seconds": float("nan")}):
        with pytest.raises(ConfigError):
            ServerConfig(**bad)


def test_serve_command_starts_answers_and_stops(tmp_path, speech_wav):
    import os
    import signal
    import subprocess
    import sys

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    run = subprocess.run([sys.executable, "-m", "thunder3d", "serve", "--port", str(taken)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2 and "cannot listen on 127.0.0.1" in run.stderr and "Traceback" not in run.stderr
    busy.close()
    run = subprocess.run([sys.executable, "-m", "thunder3d", "serve", "--max-samples", "0"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2 and "max_samples" in run.stderr and len(run.stderr.strip().splitlines()) == 1

    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    proc = subprocess.Popen([sys.executable, "-m", "thunder3d", "serve", "--port", str(port), "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert "serving" in proc.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                assert _call(url + "/health")[0] == 200
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.time() < deadline
                time.sleep(0.2)
        code, _, body = _call(url + "/v1/animate?seed=1", speech_wav[0])
        assert code == 200 and len(json.loads(body)["frames"]) == -(-speech_wav[1] // 640)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, 130) and "Traceback" not in err  # 130: stopped by Ctrl+C


# --------------------------------------------------------------------------- WebSocket streams
@pytest.fixture(scope="module")
def stream_server(tiny_talker):
    from thunder3d.inference import Animator

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = make_server(Animator.from_pretrained(tiny_talker, device="cpu"),
                      ServerConfig(max_streams=2, idle_seconds=3.0, max_message_kb=64))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"ws://127.0.0.1:{sock.getsockname()[1]}/v1/stream"
    srv.should_exit = True
    thread.join(10)


def _pcm(seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    wav = 0.3 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + rng.normal(0, 0.01, t.size)
    return (wav * 32767).astype("<i2").tobytes()


def _drain(ws):
    """Messages until the end message (or an error)."""
    got = []
    while True:
        message = json.loads(ws.recv(timeout=60))
        got.append(message)
        if message["type"] in ("end", "error"):
            return got


def test_stream_contract_end_to_end(stream_server):
    from websockets.sync.client import connect

    pcm = _pcm(1.5)
    with connect(stream_server) as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": 16000, "emotion": "happy", "intensity": 2, "seed": 5}))
        start = json.loads(ws.recv(timeout=30))
        assert start["type"] == "start" and start["fps"] == 25 and start["names"] == list(ARKIT_NAMES)
        assert start["lookahead_ms"] == 120
        for i in range(0, len(pcm), 640):  # 20 ms chunks
            ws.send(pcm[i:i + 640])
        ws.send(json.dumps({"type": "end"}))
        messages = _drain(ws)
        frames = [m for m in messages if m["type"] == "frame"]
        assert messages[-1] == {"type": "end", "frames": round(1.5 * 25)} and len(frames) == round(1.5 * 25)
        assert [f["index"] for f in frames] == list(range(len(frames)))
        assert all(f["time"] == f["index"] / 25 and len(f["weights"]) == 52 for f in frames)
        # reset: a new utterance on the same socket, same settings: the same frames again
        ws.send(json.dumps({"type": "reset"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "start"
        ws.send(pcm)
        ws.send(json.dumps({"type": "end"}))
        again = [m for m in _drain(ws) if m["type"] == "frame"]
        assert [f["weights"] for f in again] == [f["weights"] for f in frames]


@pytest.mark.parametrize("first, expected", [
    ({"type": "start", "sample_rate": "fast"}, "sample_rate"),
    ({"type": "start", "seed": 1.5}, "seed"),
    ({"type": "start", "emotion": "bored"}, "emotion"),
    ({"type": "start", "colour": 1}, "unknown start field"),
    ({"type": "dance"}, "unknown message type"),
    ({"type": "end"}, "end without a stream"),
    ("not json", "JSON"),
    (b"abc", "2-byte"),
])
def test_stream_faults_get_an_error_and_a_close(stream_server, first, expected):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(stream_server) as ws:
        ws.send(first if isinstance(first, (str, bytes)) else json.dumps(first))
        message = json.loads(ws.recv(timeout=30))
        if isinstance(first, bytes):  # audio without a start message starts a stream with the defaults
            assert message["type"] == "start"
            message = json.loads(ws.recv(timeout=30))
        assert message["type"] == "error" and expected in message["error"] and "Traceback" not in message["error"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
        assert closed.value.rcvd.code in (1003, 1008)


def test_stream_limits_and_a_vanished_client(stream_server):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(stream_server) as a, connect(stream_server) as b:
        with connect(stream_server) as c:  # over max_streams=2
            refused = json.loads(c.recv(timeout=30))
            assert refused["type"] == "error" and "limit of 2 streams" in refused["error"]
        b.send(bytes(128 * 1024))  # over max_message_kb=64
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                b.recv(timeout=30)
        assert closed.value.rcvd.code == 1009
        idle = json.loads(a.recv(timeout=30))  # nothing sent for 3 s
        assert idle["type"] == "error" and "no message for 3 s" in idle["error"]
        with pytest.raises(ConnectionClosed) as closed:
            a.recv(timeout=30)
        assert closed.value.rcvd.code == 1000
    with connect(stream_server) as ws:  # start, send audio, vanish mid-stream
        ws.send(json.dumps({"type": "start"}))
        ws.send(_pcm(1.0))
    with connect(stream_server) as d:  # the server still streams to others
        d.send(_pcm(0.5))
        d.send(json.dumps({"type": "end"}))
        messages = _drain(d)
        assert messages[0]["type"] == "start" and messages[-1] == {"type": "end", "frames": round(0.5 * 25)}


def test_fifty_connections_at_once_are_served_or_refused(stream_server):
    from concurrent.futures import ThreadPoolExecutor

    from websockets.sync.client import connect

    from websockets.exceptions import ConnectionClosed

    def attempt(k: int) -> str:
        with connect(stream_server, open_timeout=60) as ws:
            try:
                ws.send(_pcm(0.2, seed=k))
                ws.send(json.dumps({"type": "end"}))
            except ConnectionClosed:  # refused before it could send: the refusal is still there to read
                pass
            messages = []
            try:
                while not messages or messages[-1]["type"] not in ("end", "error"):
                    messages.append(json.loads(ws.recv(timeout=60)))
            except ConnectionClosed:
                pass
            return "served" if messages[-1]["type"] == "end" else messages[-1]["error"]

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(attempt, range(50)))
    served = outcomes.count("served")
    refused = [o for o in outcomes if o != "served"]
    # at most 2 at once (a stream of an earlier test may still be finishing), the rest refused cleanly
    assert served >= 1 and all("limit of 2 streams" in o for o in refused), set(refused)
    with connect(stream_server) as ws:  # and it still serves afterwards
        ws.send(_pcm(0.3))
        ws.send(json.dumps({"type": "end"}))
        assert _drain(ws)[-1] == {"type": "end", "frames": round(0.3 * 25)}
