"""The package's layers only point down (docs/architecture.md), checked on every import statement, including the ones
inside functions: models -> teachers -> data/eval -> tasks -> engine -> deploy -> pipeline -> commands."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "disdepth"

# Lower number = lower layer. A module may import its own layer or any layer below it, never one above.
LAYERS: dict[str, int] = {
    "config": 0,
    "checkpoint": 0,
    "runs": 0,
    "recipes": 0,
    "models": 1,
    "teachers": 2,
    "data": 3,
    "eval": 3,
    "tasks": 4,
    "engine": 5,
    "deploy": 6,
    "api": 6,
    "pipeline": 7,
    "commands": 8,
    "cli": 8,
    "__main__": 8,
}


def layer_of(module: str) -> int:
    """Layer of ``disdepth.<top>...``; the package ``__init__`` (lazy ``disdepth.load``) sits with the API."""
    parts = module.split(".")
    if len(parts) == 1:
        return LAYERS["api"]
    if parts[1] not in LAYERS:
        raise AssertionError(f"{module}: not in LAYERS; give the new package a layer in tests/test_layers.py")
    return LAYERS[parts[1]]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, imported disdepth module) for every import in the file (or ``source`` given for it), at any depth."""
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "disdepth"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            if base.split(".")[0] != "disdepth":
                continue
            found.append((node.lineno, base))
            # ``from disdepth import demo`` / ``from disdepth.pipeline import stages``: the names may be modules.
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").is_file():
                    found.append((node.lineno, candidate))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    for path in SOURCES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path):
    own = layer_of(module_name(path))
    upward = [
        f"line {line}: {target} (layer {layer_of(target)})"
        for line, target in imports_of(path)
        if layer_of(target) > own
    ]
    assert not upward, f"{module_name(path)} (layer {own}) imports from above: " + "; ".join(upward)


def test_the_check_catches_an_upward_import():
    """The test above can fail: a models module importing the engine inside a function, or the CLI, is reported."""
    probe = PACKAGE / "models" / "probe.py"  # never written: its source is given
    source = "def f():\n    from disdepth.engine.loop import train\n    from ..commands import common\n"
    own = layer_of(module_name(probe))
    assert [t for _, t in imports_of(probe, source) if layer_of(t) > own] == [
        "disdepth.engine.loop",
        "disdepth.commands",
        "disdepth.commands.common",
    ]
