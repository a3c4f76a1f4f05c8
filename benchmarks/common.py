"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def write_generated(path: Path, marker: str, text: str) -> None:
    """Write ``text`` to the markdown file ``path`` after ``marker``, keeping what precedes the marker
    (the page's hand-written part) when the file has one."""
    kept = ""
    if path.is_file() and marker in path.read_text(encoding="utf-8"):
        kept = path.read_text(encoding="utf-8").split(marker)[0]
    path.write_text(kept + marker + "\n\n" + text, encoding="utf-8")


def print_table(rows: list[dict]) -> None:
    """Rows of dicts as an aligned text table (columns from the first row)."""
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(cols, widths)))
