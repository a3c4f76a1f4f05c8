"""The one-way import rule of docs/ARCHITECTURE.md, checked on the source (no imports executed).

Each top-level part of the package lists the parts it may import (lazy imports inside functions
count too); everything else, peers included, is a violation. Modules may not import each other in
a cycle, and the package uses absolute imports only, so this check sees every import.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "thunder3d"

BASE = {"constants", "errors", "config", "conditions", "utils"}
SIGNAL = BASE | {"rigs", "audio", "sphinx"}
# what each top-level part may import (besides itself)
ALLOWED = {
    "constants": set(), "errors": set(),
    "sphinx": {"errors"}, "utils": {"errors"}, "config": {"errors"}, "conditions": {"errors"},
    "rigs": BASE, "audio": BASE | {"sphinx"},
    "render": BASE | {"rigs", "audio"},
    "data": SIGNAL,
    "models": SIGNAL | {"data"},
    "checkpoints": SIGNAL | {"data", "models"},
    "eval": SIGNAL | {"data", "models"},
    "export": SIGNAL | {"data", "render"},
    "train": SIGNAL | {"data", "models", "checkpoints", "eval"},
    "inference": SIGNAL | {"data", "models", "checkpoints", "export"},
    "scoring": SIGNAL | {"data", "models", "checkpoints", "eval", "export", "inference"},
    "live": SIGNAL | {"data", "models", "checkpoints", "export", "inference"},
}
TOP = {"cli", "__init__", "__main__"}  # may import anything


def part_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def module_of(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, int]]:
    """``(thunder3d module, line)`` of every absolute import of the package in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("thunder3d.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("thunder3d."):
            found.append((node.module, node.lineno))
    return found


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_part_has_a_rule():
    unknown = {part_of(p) for p in sources()} - set(ALLOWED) - TOP
    assert not unknown, f"add these to ALLOWED and docs/ARCHITECTURE.md: {unknown}"


def test_no_relative_imports():
    bad = [f"{p.relative_to(PACKAGE.parent)}:{n.lineno}" for p in sources()
           for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
           if isinstance(n, ast.ImportFrom) and n.level > 0]
    assert not bad, "relative imports (write them absolute so the layer check sees them): " + ", ".join(bad)


def test_imports_follow_the_rule():
    bad = []
    for path in sources():
        src = part_of(path)
        if src in TOP:
            continue
        for module, line in imports_of(path):
            dst = module.split(".")[1]
            if dst != src and dst not in ALLOWED[src]:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({src}) imports {module}")
    assert not bad, "layer violations:\n" + "\n".join(bad)


def test_inference_is_free_of_training_and_evaluation():
    """The rule the product depends on, spelled out: sampling never pulls in training code."""
    for part in ("inference", "models", "export", "render", "checkpoints"):
        assert not ALLOWED[part] & {"train", "eval", "scoring", "cli"}, part


def test_no_import_cycles_between_modules():
    modules = {module_of(p): p for p in sources()}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for module, _ in imports_of(path):
            while module and module not in modules:  # "from thunder3d.x import y" where y is a name
                module = module.rpartition(".")[0]
            if module and module != name and not name.startswith(module + "."):  # a package's own __init__
                targets.add(module)
        graph[name] = targets
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
