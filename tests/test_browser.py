"""The live avatar page in a real headless browser (Debian's chromium + chromium-driver, driven by selenium):
it loads with no console errors, a clip streams end to end over the WebSocket, and the head's mouth is open
at an open vowel and closed at a bilabial."""

import base64
import io
import shutil
import socket
import threading
import time

import numpy as np
import pytest

selenium = pytest.importorskip("selenium")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                 reason="needs Debian's chromium and chromium-driver (apt install chromium "
                                        "chromium-driver; .ci/run installs them)")]


@pytest.fixture(scope="module")
def page(tiny_talker):
    from selenium import webdriver

    from thunder3d.inference import Animator
    from thunder3d.live.server import ServerConfig, make_server

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = make_server(Animator.from_pretrained(tiny_talker, device="cpu"), ServerConfig())
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=640,480",
                "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--autoplay-policy=no-user-gesture-required",
                "--disable-background-networking", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_script_timeout(180)
    try:
        driver.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
        loaded = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.thunder3d.ready.then(() => done(true), (e) => done(String(e)));")
        assert loaded is True, loaded
        yield driver
    finally:
        driver.quit()
        srv.should_exit = True
        thread.join(10)


def _mouth(driver, weights):
    """The canvas pixels of the mouth region with ``weights`` (ARKit order) on the head."""
    from PIL import Image

    driver.execute_script("window.thunder3d.showWeights(arguments[0])", [float(w) for w in weights])
    x0, y0, x1, y1 = driver.execute_script("return window.thunder3d.mouthBox()")
    image = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("L"), dtype=np.float32)
    scale = image.shape[1] / driver.execute_script("return window.innerWidth")
    pad = 4
    return image[int(y0 * scale) - pad: int(y1 * scale) + pad, int(x0 * scale) - pad: int(x1 * scale) + pad]


def test_a_clip_streams_end_to_end_and_the_mouth_follows(page, tiny_corpus):
    from thunder3d.audio.phones import BILABIAL, OPEN_VOWELS
    from thunder3d.data.clip import load_clip
    from thunder3d.rigs.arkit import ARKIT_NAMES

    clip = load_clip(tiny_corpus, "syn000003")
    pcm = (np.clip(clip.audio, -1, 1) * 32767).astype("<i2").tobytes()
    count = page.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.thunder3d.streamPcm16(arguments[0], 16000).then(done, (e) => done('error: ' + e));",
        base64.b64encode(pcm).decode())
    assert count == round(clip.audio.size / 640)
    frames = page.execute_script("return window.thunder3d.frames()")
    assert len(frames) == count and all(f is not None and len(f) == 52 for f in frames)
    assert page.execute_script("return window.thunder3d.names()") == list(ARKIT_NAMES)

    # the clip's own motion at an open vowel and at a bilabial, shown by the page
    assert list(clip.coeff_names) == list(ARKIT_NAMES)

    def frame_of(labels):
        spans = [p for p in clip.phones if p.label in labels and p.duration >= 0.06]
        p = spans[len(spans) // 2]
        return clip.coeffs[int((p.start + p.end) / 2 * 25)]

    opened, closed = _mouth(page, frame_of(OPEN_VOWELS)), _mouth(page, frame_of(BILABIAL))
    again = _mouth(page, frame_of(BILABIAL))
    assert opened.shape == closed.shape and opened.size > 100
    assert np.abs(closed - again).mean() < 0.5  # rendering is stable
    assert np.abs(opened - closed).mean() > 4.0  # the mouth region changes with its opening
    severe = [e["message"] for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    assert page.execute_script("return window.thunder3d.errors") == []
