"""Rig forward time (250 frames) for every rig family, and log-mel throughput.

    python benchmarks/rigs.py [--frames 250] [--repeats 20] [--threads 2] [--json out.json]

ICT-FaceKit is converted from ../shared/assets/ICT-FaceKit.tar.gz (or $THUNDER3D_ICT_ARCHIVE)
when present. FLAME cannot be downloaded here, so a random model with FLAME's sizes
(5023 vertices, 400 shape+expression components, 5 joints) stands in: the timing depends on the
sizes, not on the values.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import print_table, timed

from thunder3d.audio import log_mel
from thunder3d.constants import SAMPLE_RATE
from thunder3d.rigs import load_rig

ROOT = Path(__file__).resolve().parents[1]
ICT_ARCHIVE = Path(os.environ.get("THUNDER3D_ICT_ARCHIVE", ROOT.parent / "shared/assets/ICT-FaceKit.tar.gz"))


def random_flame_npz(path: Path, seed: int = 0) -> Path:
    """Write a FLAME-sized model with random values (same keys as FLAME's generic model)."""
    rng = np.random.default_rng(seed)
    v, j = 5023, 5
    template = rng.normal(size=(v, 3)).astype(np.float32) * 0.05
    weights = rng.random((v, j)).astype(np.float32)
    np.savez(
        path,
        v_template=template,
        f=rng.integers(0, v, size=(9976, 3)).astype(np.int64),
        shapedirs=(rng.normal(size=(v, 3, 400)) * 1e-3).astype(np.float32),
        posedirs=(rng.normal(size=(v * 3, (j - 1) * 9)) * 1e-3).astype(np.float32),
        J_regressor=(rng.random((j, v)) / v).astype(np.float32),
        kintree_table=np.array([[2**32 - 1, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        weights=weights / weights.sum(1, keepdims=True),
    )
    return path


def rig_specs(tmp: Path) -> list[tuple[str, str]]:
    specs = [("builtin", "builtin")]
    if ICT_ARCHIVE.is_file():
        with tarfile.open(ICT_ARCHIVE) as tar:
            tar.extractall(tmp, filter="data")
        folder = next(tmp.glob("**/FaceXModel")).parent
        specs.append(("ict", f"ict:{folder}"))
    else:
        print(f"(ICT-FaceKit archive not found at {ICT_ARCHIVE}: ict row skipped)", file=sys.stderr)
    specs.append(("flame (FLAME-sized, random)", f"flame:{random_flame_npz(tmp / 'flame.npz')}"))
    return specs


def bench_rigs(frames: int, repeats: int, tmp: Path) -> list[dict]:
    rows = []
    for label, spec in rig_specs(tmp):
        t0 = time.perf_counter()
        rig = load_rig(spec)
        load_s = time.perf_counter() - t0
        coeffs = torch.rand(frames, rig.num_coeffs) * 0.5
        with torch.no_grad():
            fwd = timed(lambda: rig(coeffs), repeats)
        grad_coeffs = coeffs.clone().requires_grad_()
        fwd_bwd = timed(lambda: rig(grad_coeffs).square().mean().backward(), max(3, repeats // 4))
        rows.append({
            "rig": label, "vertices": rig.num_vertices, "coeffs": rig.num_coeffs,
            "load_s": round(load_s, 3), f"forward_ms_{frames}f": round(fwd, 2),
            f"fwd_bwd_ms_{frames}f": round(fwd_bwd, 2),
        })
    return rows


def bench_log_mel(seconds: float, repeats: int) -> dict:
    wav = torch.randn(int(seconds * SAMPLE_RATE)) * 0.1
    ms = timed(lambda: log_mel(wav), repeats)
    return {"audio_s": seconds, "log_mel_ms": round(ms, 2), "x_realtime": round(seconds * 1e3 / ms, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        rigs = bench_rigs(args.frames, args.repeats, Path(tmp))
    mel = bench_log_mel(60.0, max(3, args.repeats // 4))
    print(f"rig forward, {args.frames} frames, {args.threads} threads (median of {args.repeats})")
    print_table(rigs)
    print()
    print_table([mel])
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "rigs": rigs, "log_mel": mel}, indent=2))


if __name__ == "__main__":
    main()
