"""The one-way import rule of docs/ARCHITECTURE.md, checked on the source (no imports executed)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "thunder3d"

# layer rank of each top-level part of the package; a module may import only equal or lower ranks
RANK = {
    "constants": 0, "errors": 0, "utils": 0, "sphinx": 0,
    "rigs": 1, "audio": 1,
    "data": 2,
    "models": 3,
    "train": 4, "eval": 4,
    "inference": 5, "export": 5, "render": 5,
    "cli": 6, "__init__": 6, "__main__": 6,
}
# peers that must not know each other even at the same rank
FORBIDDEN = {("rigs", "audio"), ("audio", "rigs"), ("inference", "render")}


def part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def imported_parts(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            if name.startswith("thunder3d."):
                parts.add(name.split(".")[1])
    return parts


def test_every_part_has_a_rank():
    unknown = {part_of(p) for p in PACKAGE.rglob("*.py")} - set(RANK)
    assert not unknown, f"add these to RANK and docs/ARCHITECTURE.md: {unknown}"


def test_imports_point_down_only():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        src = part_of(path)
        for dst in imported_parts(path):
            if dst == src:
                continue
            if RANK.get(dst, 99) > RANK[src] or (src, dst) in FORBIDDEN:
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports thunder3d.{dst}")
    assert not bad, "layer violations:\n" + "\n".join(bad)
