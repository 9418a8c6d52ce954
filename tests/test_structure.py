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


def test_the_hydra_internals_agnews_leans_on_are_still_there():
    """What agnews uses of Hydra beyond its public API, each for a reason said where it is used: expanding a basic
    sweep before it runs (BasicSweeper.split_arguments, the launch check) and composing one planned job
    (load_sweep_config); and the class paths it compares hydra.sweeper/launcher._target_ with. Fail here,
    plainly, when Hydra changes them."""
    from omegaconf import OmegaConf

    from agnews.config import compose
    from agnews.results import BASIC_SWEEPER
    from agnews.sweep.guard import LOCAL_LAUNCHERS
    from agnews.sweep.launchers import JOBLIB_LAUNCHER
    from agnews.sweep.plan import planned_jobs

    config = compose([], with_hydra=True)
    assert config.hydra.sweeper._target_ == BASIC_SWEEPER
    assert config.hydra.launcher._target_ == LOCAL_LAUNCHERS[0]
    assert (
        compose(["hydra/launcher=joblib"], with_hydra=True).hydra.launcher._target_
        == JOBLIB_LAUNCHER
        == LOCAL_LAUNCHERS[1]
    )
    launch = OmegaConf.create(
        {"hydra": {"sweeper": {}, "overrides": {"task": ["seed=0,1", "embedding=learned,glove50"]}}}
    )
    assert planned_jobs(launch) == [
        ["seed=0", "embedding=learned"],
        ["seed=0", "embedding=glove50"],
        ["seed=1", "embedding=learned"],
        ["seed=1", "embedding=glove50"],
    ]
