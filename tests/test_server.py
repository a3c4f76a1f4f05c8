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
