"""The package's structure, checked on its imports: Hydra is known only to the entry point, the config
schemas and agnews/sweep (what runs in Hydra's launching process); the report and tracking know none of it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

HYDRA = ("hydra", "hydra_plugins", "omegaconf")


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function (a lazy import is an import too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(repo: Path) -> dict[str, set[str]]:
    """agnews' modules (dotted names) and what each imports."""
    return {
        ".".join(path.relative_to(repo).with_suffix("").parts).removesuffix(".__init__"): imports_of(path)
        for path in sorted((repo / "agnews").rglob("*.py"))
    }


def test_only_the_entry_point_the_schemas_and_sweep_import_hydra(repo):
    importers = {name for name, imported in modules(repo).items() if any(m.split(".")[0] in HYDRA for m in imported)}
    allowed = {"agnews.run", "agnews.config"}
    assert importers - allowed == {name for name in importers if name.startswith("agnews.sweep")}
    assert {"agnews.sweep.guard", "agnews.sweep.study", "agnews.run"} <= importers  # the check sees imports


def test_report_and_tracking_know_neither_hydra_nor_the_launching_process(repo):
    for name, imported in modules(repo).items():
        if name.startswith(("agnews.report", "agnews.tracking")):
            assert not [m for m in imported if m.split(".")[0] in HYDRA or m.startswith("agnews.sweep")], name


def test_importing_the_report_and_tracking_loads_no_hydra(repo):
    script = (
        "import importlib, pkgutil, sys, agnews.report, agnews.tracking\n"
        "for package in (agnews.report, agnews.tracking):\n"
        "    for module in pkgutil.iter_modules(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(module.name)\n"
        f"loaded = sorted(name for name in sys.modules if name.split('.')[0] in {HYDRA!r})\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=repo, check=True)
