"""The shape of the code (issue 12): no import cycles, layers import downwards only, small modules.

The import graph is read from the source with `ast` (every `import`, also inside functions, except those under
`if TYPE_CHECKING:`), so a lazy import that closes a cycle counts as one. `graphlib` finds cycles.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("geofed", "providers", "stac_bridge", "simulators")
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base
                                                                                                   else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
                # importing `p.x` first runs package `p`'s __init__: from outside `p`, that is an edge too
                parent = target.rpartition(".")[0]
                while parent and parent != name and not name.startswith(parent + "."):
                    if parent in known:
                        out.add(parent)
                    parent = parent.rpartition(".")[0]
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports(name, path, known) for name, path in found.items()}


def test_no_import_cycles() -> None:
    edges = graph()
    # a package's __init__ re-exporting its submodules is not a cycle of design: drop package → own child edges
    edges = {m: {t for t in deps if not t.startswith(m + ".")} for m, deps in edges.items()}
    try:
        tuple(graphlib.TopologicalSorter(edges).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_layers_import_downwards() -> None:
    edges = graph()
    for module, deps in edges.items():
        if module.startswith("simulators"):
            assert not {d for d in deps if d.startswith(("geofed", "providers", "stac_bridge"))}, module
        if module.startswith("geofed") and module not in ("geofed.app", "geofed.demo"):
            assert not {d for d in deps if d.startswith(("providers", "simulators", "stac_bridge"))}, module
        if module.startswith(("providers", "stac_bridge")):
            assert not {d for d in deps if d.startswith("simulators")}, module
            assert "geofed.app" not in deps, module
    # product code imports the simulators in one place: the demo launcher
    users = {m for m, deps in edges.items() if not m.startswith("simulators")
             and any(d.startswith("simulators") for d in deps)}
    assert users == {"geofed.demo"}


def test_provider_folders_follow_one_template() -> None:
    for folder in sorted(p for p in (ROOT / "providers").iterdir() if p.is_dir() and p.name != "__pycache__"):
        names = {p.name for p in folder.glob("*.py")}
        assert {"__init__.py", "client.py", "records.py", "stac.py"} <= names, folder.name
        if (folder / "features.py").exists():
            assert "sources.py" in names, folder.name
        assert "UPSTREAM = Upstream(" in (folder / "__init__.py").read_text(), folder.name


def test_modules_stay_small() -> None:
    big = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not big, big
