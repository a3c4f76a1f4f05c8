"""Live Link Face UDP packets: the app's layout byte for byte, and a real sender -> receiver on loopback."""

import socket
import struct

import numpy as np
import pytest

from thunder3d.errors import LiveError
from thunder3d.live.livelink import (PACKET_NAMES, POSE_NAMES, LiveLinkSender, decode_packet, encode_packet,
                                     parse_address)
from thunder3d.rigs.arkit import ARKIT_INDEX, ARKIT_NAMES


def _weights(seed=0):
    return np.random.default_rng(seed).uniform(0, 1, len(ARKIT_NAMES)).astype(np.float32)


def test_layout_is_the_apps_version_6_packet():
    w = np.zeros(52, dtype=np.float32)
    w[ARKIT_INDEX["jawLeft"]], w[ARKIT_INDEX["jawOpen"]] = 0.25, 0.75
    data = encode_packet(w, 1234, subject="Face", device_id="ABC", fps=25, subframe=0.5)
    assert data[0] == 6
    assert struct.unpack(">i", data[1:5])[0] == 3 and data[5:8] == b"ABC"
    assert struct.unpack(">i", data[8:12])[0] == 4 and data[12:16] == b"Face"
    assert struct.unpack(">ifii", data[16:32]) == (1234, 0.5, 25, 1)
    assert data[32] == 61 and len(data) == 33 + 61 * 4
    values = struct.unpack(">61f", data[33:])
    # Unreal's enum order: jawForward 14, jawLeft 15, jawRight 16, jawOpen 17
    assert values[15] == 0.25 and values[16] == 0.0 and values[17] == 0.75
    assert PACKET_NAMES[15] == "jawLeft" and PACKET_NAMES[21] == "mouthLeft" and len(PACKET_NAMES) + len(POSE_NAMES) == 61


def test_round_trip_clamps_to_the_apps_range():
    w = _weights()
    w[0], w[1] = -0.5, 1.5
    pose = np.linspace(-0.3, 0.3, 9)
    p = decode_packet(encode_packet(w, 7, subject="s", device_id="d", pose=pose))
    assert (p.device_id, p.subject, p.frame, p.rate) == ("d", "s", 7, (25, 1))
    expected = np.clip(w, 0, 1)
    np.testing.assert_array_equal(p.weights, expected.astype(np.float32))
    np.testing.assert_allclose(p.pose, pose, atol=1e-7)


@pytest.mark.parametrize("bad", [b"", b"\x05" + bytes(300), b"\x06\x00\x00\x01\x00", b"\x06" + bytes(100)])
def test_garbage_is_a_clear_error(bad):
    with pytest.raises(LiveError):
        decode_packet(bad)


def test_bad_frames_and_addresses_are_clear_errors():
    with pytest.raises(LiveError, match="52 finite"):
        encode_packet(np.zeros(51), 0)
    with pytest.raises(LiveError, match="52 finite"):
        encode_packet(np.full(52, np.nan), 0)
    with pytest.raises(LiveError, match="subject"):
        encode_packet(np.zeros(52), 0, subject="")
    with pytest.raises(LiveError, match="whole number"):
        encode_packet(np.zeros(52), 0, fps=29.97)
    assert parse_address("10.0.0.2:9000") == ("10.0.0.2", 9000)
    assert parse_address("unreal.local") == ("unreal.local", 11111)
    assert parse_address("[::1]:7000") == ("::1", 7000)
    for bad in ("host:port", ":11111", "host:0", "host:70000"):
        with pytest.raises(LiveError, match="HOST:PORT"):
            parse_address(bad)


def test_sender_reaches_a_receiver_on_loopback():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    frames = [_weights(k) for k in range(5)]
    with LiveLinkSender(f"127.0.0.1:{receiver.getsockname()[1]}", subject="Talker") as sender:
        for w in frames:
            sender.send(w)
        first = sender.first_frame
    got = [decode_packet(receiver.recv(2048)) for _ in frames]
    receiver.close()
    assert [p.frame - first for p in got] == list(range(5))
    assert {p.subject for p in got} == {"Talker"} and len({p.device_id for p in got}) == 1
    for p, w in zip(got, frames):
        np.testing.assert_array_equal(p.weights, w)


def test_stream_command_sends_every_frame_to_live_link(tiny_talker, tiny_corpus, tmp_path, capsys):
    from thunder3d.cli import main
    from thunder3d.data.clip import load_clip
    from thunder3d.data.import_livelink import read_livelink_csv
    import soundfile as sf

    clip = load_clip(tiny_corpus, "syn000002")
    wav = tmp_path / "speech.wav"
    sf.write(wav, clip.audio, 16000)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    out = tmp_path / "frames.csv"
    code = main(["stream", str(wav), "--model", str(tiny_talker), "--livelink",
                 f"127.0.0.1:{receiver.getsockname()[1]}", "--subject", "Tester", "-o", str(out), "--threads", "1"])
    assert code == 0
    frames = round(clip.audio.size / 640)
    packets = [decode_packet(receiver.recv(2048)) for _ in range(frames)]
    receiver.close()
    assert [p.frame - packets[0].frame for p in packets] == list(range(frames))
    assert {p.subject for p in packets} == {"Tester"}
    csv_frames = read_livelink_csv(out)[0]  # [T, 52] in ARKit order
    assert csv_frames.shape == (frames, 52)
    np.testing.assert_allclose(csv_frames, np.stack([p.weights for p in packets]), atol=1e-6)
    assert f"{frames} frames" in capsys.readouterr().out


def test_stream_command_errors_are_one_line(tmp_path, capsys):
    from thunder3d.cli import main

    assert main(["stream", "--livelink", "127.0.0.1:11111"]) == 2
    assert "a speech file or --mic" in capsys.readouterr().err
    assert main(["stream", str(tmp_path / "missing.wav"), "--livelink", "127.0.0.1:11111"]) == 2
    assert "missing.wav" in capsys.readouterr().err
    assert main(["stream", str(tmp_path / "x.wav")]) == 2
    assert "--livelink" in capsys.readouterr().err
    assert main(["stream", str(tmp_path / "x.wav"), "-o", str(tmp_path / "x.mp4")]) == 2
    assert ".csv" in capsys.readouterr().err
    assert main(["stream", str(tmp_path / "x.wav"), "--livelink", "nowhere:port"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
    assert main(["stream", str(tmp_path / "x.wav"), "-o", str(tmp_path / "x.csv"), "--block", "0"]) == 2
    assert "block" in capsys.readouterr().err
    try:
        import sounddevice  # noqa: F401

        sounddevice.query_devices(kind="input")
        has_mic = True
    except Exception:  # noqa: BLE001 - no PortAudio or no input device
        has_mic = False
    if not has_mic:  # refused before any model is loaded (the model path below does not exist)
        assert main(["stream", "--mic", "-o", str(tmp_path / "m.csv"), "--model", str(tmp_path / "none")]) == 2
        assert "microphone" in capsys.readouterr().err
