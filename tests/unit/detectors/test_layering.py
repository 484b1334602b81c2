"""detectors/ stands below data/, metrics/ and bench/: it never imports them (DESIGN.md's layering)."""

from __future__ import annotations

import ast
from pathlib import Path

import fractalad.detectors

FORBIDDEN: tuple[str, ...] = ("fractalad.data", "fractalad.metrics", "fractalad.bench", "fractalad.report")


def imported_modules(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` statement in the file names (absolute imports)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_detectors_import_neither_data_nor_metrics() -> None:
    package = Path(fractalad.detectors.__file__).parent
    offending = {
        f"{path.relative_to(package)}: {name}"
        for path in package.rglob("*.py")
        for name in imported_modules(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    }
    assert not offending, f"detectors/ imports layers above it: {sorted(offending)}"


def test_the_scan_sees_nested_and_from_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from fractalad.data.images import x\n    import fractalad.metrics.roc\n")
    assert imported_modules(source) == {"fractalad.data.images", "fractalad.metrics.roc"}
