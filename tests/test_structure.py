"""The shape of the code, read from its source with `ast` (nothing is imported or run).

- No import cycles between modules (a package gathering its own modules' names is not one; a module importing the
  package that imports it is).
- No module imports another module's underscore names.
- Every module under 400 lines (a longer one becomes a package).
- Imports point one way between the layers: entry points (``vsr``, ``cli*``) -> jobs (pipeline, train, evaluate,
  bench) -> parts (video, data, models, losses, metrics) -> base (errors, atomic, precision). Within a layer only
  the pairs in ``SAME_LAYER`` may import each other: ``train`` runs ``evaluate`` but never imports ``pipeline``, and
  the parts import no other part except ``data`` reading clips through ``video``. ``video`` imports no torch, and
  only the ``cli*`` modules import click.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "vsr"
MAX_LINES = 400

# Entry points: the package itself, __main__ and every vsr/cli*.py (the only modules that import click).
LAYERS = {
    "vsr": 3, "vsr.__main__": 3,
    "vsr.pipeline": 2, "vsr.train": 2, "vsr.evaluate": 2, "vsr.bench": 2, "vsr.compare": 2, "vsr.info": 2,
    "vsr.video": 1, "vsr.data": 1, "vsr.models": 1, "vsr.losses": 1, "vsr.metrics": 1,
    "vsr.errors": 0, "vsr.atomic": 0, "vsr.precision": 0, "vsr.provenance": 0,
}
LAYER_NAMES = {3: "entry point", 2: "job", 1: "part", 0: "base"}
# Imports allowed between two units of one layer (entry points and base modules may import each other freely).
SAME_LAYER = {("vsr.train", "vsr.evaluate"), ("vsr.bench", "vsr.pipeline"), ("vsr.data", "vsr.video"),
              ("vsr.compare", "vsr.pipeline")}
NO_TORCH = ("vsr.video",)


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    return name.removesuffix(".__init__")


MODULES = {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The vsr module an imported dotted name lives in (``vsr.models.SCALES`` -> ``vsr.models``), or None."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in MODULES else None


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """(module imported, name taken from it or None, line) for every import of a vsr module, at any depth."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package (a package's __init__ is its own package)
                parts = module.split(".")
                parts = parts[: len(parts) - node.level + (1 if is_package else 0)]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub, None, node.lineno) if sub in MODULES else (base, alias.name, node.lineno))
    out = []
    for target, name, line in found:
        if target == "vsr" or target.startswith("vsr."):
            resolved = _resolve(target)
            if resolved is not None and resolved != module:
                out.append((resolved, name, line))
    return out


IMPORTS = {module: _imports(module) for module in MODULES}


def _unit(module: str) -> str:
    """The top-level unit a module belongs to: ``vsr.pipeline.enhance`` -> ``vsr.pipeline``."""
    return ".".join(module.split(".")[:2])


def _layer(unit: str) -> int | None:
    return 3 if unit.startswith("vsr.cli") else LAYERS.get(unit)


def test_the_scan_sees_the_package():
    # Guards the checks below against passing because they read nothing.
    assert {"vsr", "vsr.cli", "vsr.pipeline.enhance", "vsr.models.registry", "vsr.video.writer"} <= set(MODULES)
    assert ("vsr.models.archs", "SCALES") in {(t, n) for t, n, _ in IMPORTS["vsr.models"]}
    assert "vsr.pipeline.plan" in {t for t, _, _ in IMPORTS["vsr.pipeline.enhance"]}


def test_no_import_cycles():
    # A package importing its own modules (to gather their names) is not a cycle: Python finishes the package's
    # module first. A module importing an ancestor package that imports it back is (caught by the second check).
    graph = {m: {t for t, _, _ in IMPORTS[m] if not t.startswith(m + ".")} for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    cycles = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(path[path.index(t):] + [t]))
            elif t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    back = [f"{m} -> {t} -> {m}" for m in MODULES for t, _, _ in IMPORTS[m]
            if m.startswith(t + ".") and m in {u for u, _, _ in IMPORTS[t]}]
    assert not cycles + back, "import cycles:\n" + "\n".join(cycles + back)


def test_no_module_imports_another_modules_private_names():
    bad = [f"{m}:{line} imports {t}.{name}" for m in MODULES for t, name, line in IMPORTS[m]
           if name and name.startswith("_") and not name.startswith("__")]
    # Attribute access counts too: `video._thing` on a module imported whole.
    for m, path in MODULES.items():
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                aliases.update({a.asname: a.name for a in node.names if a.asname and a.name.startswith("vsr")})
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vsr"):
                for a in node.names:
                    if f"{node.module}.{a.name}" in MODULES:
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")
                    and aliases[node.value.id] != m):
                bad.append(f"{m}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_short(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines < MAX_LINES, f"{MODULES[module]} has {lines} lines; split it (a module past ~400 becomes a package)"


def test_every_top_level_module_has_a_layer():
    missing = sorted({_unit(m) for m in MODULES if _layer(_unit(m)) is None})
    assert not missing, f"give these top-level modules a layer in LAYERS: {missing}"


def test_imports_point_one_way():
    bad = []
    for m in MODULES:
        for t, _, line in IMPORTS[m]:
            src, dst = _unit(m), _unit(t)
            if src == dst:
                continue
            up, down = _layer(src), _layer(dst)
            if up is None or down is None:
                continue  # test_every_top_level_module_has_a_layer names it
            allowed = down < up or (down == up and (up in (0, 3) or (src, dst) in SAME_LAYER))
            if not allowed:
                bad.append(f"{m}:{line} ({LAYER_NAMES[up]}) imports {t} ({LAYER_NAMES[down]})")
    assert not bad, "\n".join(bad)


def test_train_never_imports_the_pipeline():
    bad = [f"{m} imports {t}" for m in MODULES if _unit(m) == "vsr.train"
           for t, _, _ in IMPORTS[m] if _unit(t) == "vsr.pipeline"]
    assert not bad


def _imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in a file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.append((node.lineno, (node.module or "").split(".")[0]))
    return found


def test_video_imports_no_torch():
    bad = [f"{m}:{line} imports torch" for m, path in MODULES.items() if _unit(m) in NO_TORCH
           for line, package in _imported_packages(path) if package == "torch"]
    assert not bad, "\n".join(bad)


def test_only_the_cli_modules_import_click():
    bad = [f"{m}:{line} imports click" for m, path in MODULES.items() if not _unit(m).startswith("vsr.cli")
           for line, package in _imported_packages(path) if package == "click"]
    assert not bad, "\n".join(bad)
