"""Live Link Face over UDP: ARKit frames in the iPhone app's packet layout, so Unreal Engine takes them.

Unreal's Live Link (the *Apple ARKit Face* source, UDP port 11111 by default) reads the packets
Epic's Live Link Face app sends, version 6, all numbers in network byte order::

    u8                      packet version (6)
    i32 n, n bytes          device id (UTF-8)
    i32 n, n bytes          subject name (UTF-8): the subject that appears in Unreal
    i32, f32, i32, i32      frame time: frame number, sub-frame, frame rate numerator / denominator
    u8                      value count (61)
    61 x f32                the 52 ARKit blendshapes in Unreal's ``EARFaceBlendShape`` order
                            (:data:`PACKET_NAMES`), then head yaw/pitch/roll and the left and right
                            eyes' yaw/pitch/roll in radians (:data:`POSE_NAMES`)

:func:`encode_packet` / :func:`decode_packet` convert one frame; :class:`LiveLinkSender` sends frames
from one source (a device id and a subject) with frame numbers counted from the time of day, as the
app's timecode does. Blendshape values are clamped to [0, 1], the range the app sends.
"""

from __future__ import annotations

import socket
import struct
import time
import uuid
from dataclasses import dataclass

import numpy as np

from thunder3d.errors import LiveError
from thunder3d.rigs.arkit import ARKIT_INDEX, ARKIT_NAMES

VERSION = 6
PORT = 11111
"""Unreal's default Live Link Face port."""

PACKET_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel",
    "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft",
    "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)
"""The blendshapes of a packet, in Unreal's ``EARFaceBlendShape`` order (not the CSV's:
``jawLeft``/``jawRight`` and ``mouthLeft``/``mouthRight`` come the other way round)."""
assert sorted(PACKET_NAMES) == sorted(ARKIT_NAMES)

POSE_NAMES = ("headYaw", "headPitch", "headRoll", "leftEyeYaw", "leftEyePitch", "leftEyeRoll",
              "rightEyeYaw", "rightEyePitch", "rightEyeRoll")
VALUES = len(PACKET_NAMES) + len(POSE_NAMES)  # 61

_TO_PACKET = np.array([ARKIT_INDEX[n] for n in PACKET_NAMES])  # ARKit-order vector -> packet order
_FRAME_TIME = struct.Struct(">ifii")
_VALUES = struct.Struct(f">B{VALUES}f")


@dataclass(frozen=True)
class LiveLinkPacket:
    """One decoded frame.

    Attributes:
        device_id, subject: the source.
        frame, subframe: the frame time in frames of ``rate``.
        rate: ``(numerator, denominator)`` frames per second.
        weights: ``[52]`` float32 blendshapes in :data:`~thunder3d.rigs.arkit.ARKIT_NAMES` order.
        pose: ``[9]`` float32 head and eye angles (:data:`POSE_NAMES`).
    """

    device_id: str
    subject: str
    frame: int
    subframe: float
    rate: tuple[int, int]
    weights: np.ndarray
    pose: np.ndarray


def _text(value: str, what: str) -> bytes:
    data = str(value).encode("utf-8")
    if not data or len(data) > 255:
        raise LiveError(f"the Live Link {what} must be 1-255 bytes of UTF-8, got {value!r}")
    return struct.pack(">i", len(data)) + data


def encode_packet(weights, frame: int, *, subject: str = "thunder3d", device_id: str = "thunder3d",
                  fps: int = 25, subframe: float = 0.0, pose=None) -> bytes:
    """One Live Link Face packet.

    Args:
        weights: ``[52]`` blendshapes in :data:`~thunder3d.rigs.arkit.ARKIT_NAMES` order (clamped to [0, 1]).
        frame: the frame number at ``fps``.
        subject, device_id: the source's names (1-255 bytes each).
        fps: whole frames per second (the frame rate numerator; the denominator is 1).
        subframe: fraction of a frame.
        pose: ``[9]`` head and eye angles in radians (:data:`POSE_NAMES`), default zero.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(ARKIT_NAMES),) or not np.isfinite(w).all():
        raise LiveError(f"a Live Link frame needs {len(ARKIT_NAMES)} finite ARKit weights, got shape {w.shape}")
    p = np.zeros(len(POSE_NAMES)) if pose is None else np.asarray(pose, dtype=np.float64)
    if p.shape != (len(POSE_NAMES),) or not np.isfinite(p).all():
        raise LiveError(f"a Live Link pose has {len(POSE_NAMES)} finite angles, got shape {p.shape}")
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or not 1 <= fps <= 1000:
        raise LiveError(f"the Live Link frame rate must be a whole number of frames per second, got {fps!r}")
    values = np.concatenate([np.clip(w[_TO_PACKET], 0.0, 1.0), p])
    return (struct.pack(">B", VERSION) + _text(device_id, "device id") + _text(subject, "subject name")
            + _FRAME_TIME.pack(int(frame) & 0x7FFFFFFF, float(subframe), int(fps), 1)
            + _VALUES.pack(VALUES, *values.tolist()))


def decode_packet(data: bytes) -> LiveLinkPacket:
    """Parse one packet (:func:`encode_packet`'s layout); :class:`LiveError` when it is not one."""
    try:
        if data[0] != VERSION:
            raise LiveError(f"not a Live Link Face packet of version {VERSION} (first byte {data[0]})")
        offset, texts = 1, []
        for _ in range(2):
            (n,) = struct.unpack_from(">i", data, offset)
            if not 0 <= n <= 255:
                raise LiveError(f"bad string length {n} in a Live Link packet")
            texts.append(bytes(data[offset + 4: offset + 4 + n]).decode("utf-8"))
            offset += 4 + n
        frame, subframe, num, den = _FRAME_TIME.unpack_from(data, offset)
        count, *values = _VALUES.unpack_from(data, offset + _FRAME_TIME.size)
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise LiveError(f"truncated or malformed Live Link packet ({exc})") from None
    if count != VALUES or len(data) != offset + _FRAME_TIME.size + _VALUES.size:
        raise LiveError(f"a Live Link packet holds {VALUES} values and nothing after them (count {count}, "
                            f"{len(data)} bytes)")
    packet = np.asarray(values, dtype=np.float32)
    weights = np.empty(len(ARKIT_NAMES), dtype=np.float32)
    weights[_TO_PACKET] = packet[: len(PACKET_NAMES)]
    return LiveLinkPacket(texts[0], texts[1], frame, subframe, (num, den), weights, packet[len(PACKET_NAMES):])


def parse_address(text: str, default_port: int = PORT) -> tuple[str, int]:
    """``HOST:PORT`` (or ``HOST``, or ``[IPv6]:PORT``) -> ``(host, port)``."""
    host, sep, port = str(text).strip().rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        host, port = str(text).strip(), str(default_port)  # no port, or a bare IPv6 address
    host = host.strip("[]")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise LiveError(f"expected HOST:PORT for Live Link, e.g. 127.0.0.1:{PORT}; got {text!r}")
    return host, int(port)


class LiveLinkSender:
    """Sends frames to one Unreal Live Link listener over UDP.

    Args:
        address: ``HOST:PORT`` or ``(host, port)``.
        subject: the subject name Unreal lists.
        fps: frames per second of the frames sent.
        device_id: default: a UUID derived from the subject, the same every run.
    """

    def __init__(self, address: str | tuple[str, int], *, subject: str = "thunder3d", fps: int = 25,
                 device_id: str | None = None) -> None:
        self.host, self.port = parse_address(address) if isinstance(address, str) else address
        self.subject, self.fps = subject, fps
        self.device_id = device_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"thunder3d/{subject}")).upper()
        encode_packet(np.zeros(len(ARKIT_NAMES)), 0, subject=subject, device_id=self.device_id, fps=fps)  # checks
        try:
            info = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
            self._socket = socket.socket(info[0], socket.SOCK_DGRAM)
        except OSError as exc:
            raise LiveError(f"cannot send Live Link to {self.host}:{self.port} ({exc})") from None
        self._target = info[4]
        seconds = time.time() % 86400  # frame numbers count from midnight, like a time-of-day timecode
        self.first_frame = int(seconds * fps)
        self.sent = 0

    def send(self, weights, index: int | None = None) -> None:
        """Send one frame ``[52]`` (ARKit order); ``index`` counts frames from the first (default: the next)."""
        index = self.sent if index is None else int(index)
        packet = encode_packet(weights, self.first_frame + index, subject=self.subject, device_id=self.device_id,
                               fps=self.fps)
        try:
            self._socket.sendto(packet, self._target)
        except OSError as exc:  # e.g. nothing routes there; UDP gives no other feedback
            raise LiveError(f"cannot send Live Link to {self.host}:{self.port} ({exc})") from None
        self.sent = index + 1

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> LiveLinkSender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["LiveLinkPacket", "LiveLinkSender", "PACKET_NAMES", "PORT", "POSE_NAMES",
           "decode_packet", "encode_packet", "parse_address"]
