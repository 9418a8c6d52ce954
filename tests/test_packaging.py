"""agnews installed like a package: the wheel carries conf/ (as the package agnews.conf) and runs from any
folder, users' own presets still add options to every group, and pyproject.toml lists every package."""

from __future__ import annotations

import csv
import os
import subprocess
import tomllib
from pathlib import Path

import pytest

# The python of a virtual environment where the agnews wheel is installed, without the checkout on the path
# (.ci/run builds one); without it the installed-wheel test is skipped.
WHEEL_PYTHON = os.environ.get("AGNEWS_WHEEL_PYTHON")


def test_pyproject_lists_every_package_and_config_folder(repo):
    listed = set(tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    code = {".".join(path.parent.relative_to(repo).parts) for path in (repo / "agnews").rglob("__init__.py")}
    configs = {
        ".".join(("agnews", *folder.relative_to(repo).parts))
        for folder in [repo / "conf", *(path for path in (repo / "conf").rglob("*") if path.is_dir())]
        if any(folder.rglob("*.yaml"))
    }
    assert listed == code | configs


def run_installed(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment.update(AGNEWS_CACHE_DIR=str(cache), HYDRA_FULL_ERROR="0")
    return subprocess.run([WHEEL_PYTHON, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.skipif(not WHEEL_PYTHON, reason="AGNEWS_WHEEL_PYTHON names no python with the agnews wheel (.ci/run)")
def test_the_installed_wheel_runs_and_sweeps_from_another_folder(ag_news_dir, tmp_path, repo):
    elsewhere, cache = tmp_path / "elsewhere", tmp_path / "cache"
    elsewhere.mkdir()
    where = run_installed(
        "-c",
        "import agnews, agnews.config as c; print(agnews.__file__); print(c.config_source())",
        cwd=elsewhere,
        cache=cache,
    )
    package, source = where.stdout.split()
    assert not Path(package).resolve().is_relative_to(repo) and source == "pkg://agnews.conf", where.stdout

    tiny = [f"data.dir={ag_news_dir}", "data.val_fraction=0.25", "trainer.epochs=1", "trainer.progress_bar=false"]
    single = run_installed("-m", "agnews.run", *tiny, cwd=elsewhere, cache=cache)
    assert single.returncode == 0, single.stderr[-3000:]
    run_dir = elsewhere / single.stdout.split("Run folder: ")[1].strip()
    assert run_dir.is_relative_to(elsewhere / "outputs") and (run_dir / "model.pt").is_file()

    swept = run_installed("-m", "agnews.run", "--multirun", *tiny, "seed=0,1", cwd=elsewhere, cache=cache)
    assert swept.returncode == 0, swept.stderr[-3000:]
    (summary,) = (elsewhere / "multirun").glob("*/*/summary.csv")
    with open(summary, newline="") as handle:
        assert [(row["seed"], row["status"]) for row in csv.DictReader(handle)] == [
            ("0", "completed"),
            ("1", "completed"),
        ]

    # A user's own presets, kept outside any checkout, add options to the installed groups.
    presets = tmp_path / "my-presets"
    (presets / "embedding").mkdir(parents=True)
    (presets / "embedding" / "learned16.yaml").write_text(
        "defaults:\n  - /schema/embedding@_here_: embedding\nname: learned16\nkind: learned\ndim: 16\n"
    )
    own = run_installed(
        "-m",
        "agnews.run",
        "--config-dir",
        str(presets),
        "embedding=learned16",
        *tiny,
        "hydra.run.dir=own",
        cwd=elsewhere,
        cache=cache,
    )
    assert own.returncode == 0, own.stderr[-3000:]
    assert '"name": "learned16"' in (elsewhere / "own" / "results.json").read_text()
