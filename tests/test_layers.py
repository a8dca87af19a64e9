"""The package's layers (DESIGN.md): imports point down, never up, and no two modules import each other."""

import ast
from pathlib import Path

import cirsynth

# DESIGN.md's order, bottom first. Beside it: config (atomic writes, hashing) below everything; console (the command
# line's error printing) just above data, whose errors it prints; testing (tiny random models, built from configs, for
# the tests and the demo) above models, which it loads through; report below the command line that serves it.
LAYERS = ["config", "data", "console", "metrics", "models", "testing", "editing", "captions", "synth", "cir", "world",
          "report", "cli", "commands", "__main__"]
SRC = Path(cirsynth.__file__).parent


def _imports(path: Path, with_typing: bool = True) -> set[str]:
    """The cirsynth modules ``path`` imports, at any depth of the file (lazily or not); with ``with_typing`` False,
    without those under ``if TYPE_CHECKING:`` (which never run)."""
    tree = ast.parse(path.read_text())
    skip = set()
    if not with_typing:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
                skip.update(id(n) for n in ast.walk(node))
    names = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cirsynth."):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("cirsynth."))
    return names


def _layer(module: str) -> str:
    return module.split(".")[1]


def _modules() -> dict[str, Path]:
    out = {}
    for f in SRC.rglob("*.py"):
        parts = f.relative_to(SRC).with_suffix("").parts
        if parts[0] != "__init__":
            out[".".join(("cirsynth", *parts)).removesuffix(".__init__")] = f
    return out


def test_every_module_is_in_a_layer():
    assert {_layer(m) for m in _modules()} <= set(LAYERS)


def test_imports_point_down_the_layers():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = [f"{m} imports {i}" for m, f in _modules().items() for i in _imports(f)
              if _layer(i) in rank and rank[_layer(i)] > rank[_layer(m)]]
    assert upward == []


def test_no_two_modules_import_each_other():
    """At run time: a package's __init__ re-exporting its own modules is no circle, nor is a type annotation's."""
    mods = _modules()
    edges = {m: {i for i in _imports(f, with_typing=False) if i in mods and i != m} for m, f in mods.items()}
    pairs = sorted({tuple(sorted((a, b))) for a, outs in edges.items() for b in outs if a in edges.get(b, ())})
    assert pairs == []
