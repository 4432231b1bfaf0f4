"""The floors of docs/architecture.md hold: nothing imports upward.

The core (``pgpulse``) imports none of the parts, but for the composition root
(``pgpulse/commands/``, the CLI); ``collector`` and ``etl`` import only the core;
``proxy`` may import ``etl`` and the core. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("pgpulse", "collector", "etl", "proxy")
# What each floor may import of pgpulse's own packages.
ALLOWED = {
    "pgpulse": {"pgpulse"},
    "collector": {"pgpulse", "collector"},
    "etl": {"pgpulse", "etl"},
    "proxy": {"pgpulse", "etl", "proxy"},
}
COMPOSITION_ROOT = "pgpulse/commands/"


def imported_parts(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(top for top in (n.split(".")[0] for n in names) if top in PARTS)
    return found


def upward_imports() -> dict[str, list[str]]:
    wrong: dict[str, list[str]] = {}
    for part in PARTS:
        for path in sorted((ROOT / part).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(COMPOSITION_ROOT):
                continue
            bad = sorted(imported_parts(path) - ALLOWED[part])
            if bad:
                wrong[rel] = bad
    return wrong


def test_the_scan_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import os\ndef f():\n    from proxy.app import create_app\n    import etl.runs\n")
    assert imported_parts(source) == {"proxy", "etl"}


def test_nothing_imports_upward():
    assert upward_imports() == {}
