"""What a run leaves behind and what a sweep adds up to.

Each run directory gets `results.json` (resolved config, metrics, per-epoch history, environment) and
`history.csv` (the history as a table). These two files are all that the summary and the report read.
When a multirun ends, `SummaryCallback` writes `summary.csv` at the sweep root: one row per job.

No torch here: the report imports this module and must start fast.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import subprocess
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback

from agnews.storage import AgnewsError, atomic_write_text

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
HISTORY_FILE = "history.csv"
SUMMARY_FILE = "summary.csv"
RESULTS_FORMAT = "agnews-results/1"

# Flat snake_case per-epoch metrics, in history.csv column order.
HISTORY_COLUMNS = (
    "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s", "samples_per_s",
)  # fmt: skip
SUMMARY_METRICS = ("test_acc", "best_val_acc", "best_epoch", "epochs", "wall_time_s", "num_parameters")


class RunStatus(StrEnum):
    completed = "completed"
    running = "running"  # results.json written at the start; a run killed before its end stays so
    failed = "failed"
    diverged = "diverged"
    unfinished = "unfinished"  # a job folder with no results.json at all


def write_run_results(run_dir: Path, results: dict[str, Any]) -> None:
    """Write results.json and history.csv, each atomically."""
    atomic_write_text(run_dir / RESULTS_FILE, json.dumps(results, indent=2, allow_nan=True) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(results.get("history", []))
    atomic_write_text(run_dir / HISTORY_FILE, buffer.getvalue())


def read_run_results(run_dir: Path) -> dict[str, Any] | None:
    """The run's results.json as a dict; None when the run never wrote one."""
    path = run_dir / RESULTS_FILE
    if not path.exists():
        return None
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AgnewsError(f"{path} is not valid JSON ({error}); delete it and rerun that job") from error
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise AgnewsError(f"{path} is not an agnews results file (expected format {RESULTS_FORMAT!r})")
    return results


def read_job_overrides(run_dir: Path) -> dict[str, str]:
    """The job's overrides (Hydra's .hydra/overrides.yaml) as {key: value}, '+' prefixes dropped."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return {}
    overrides = {}
    for item in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
        key, _, value = str(item).partition("=")
        overrides[key.lstrip("+~")] = value
    return overrides


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders of a sweep: direct children holding results.json or Hydra's .hydra/ folder,
    numerically ordered when named by job number."""
    jobs = [
        child
        for child in sweep_dir.iterdir()
        if child.is_dir() and ((child / RESULTS_FILE).exists() or (child / ".hydra").is_dir())
    ]

    def job_order(path: Path) -> tuple[bool, int, str]:
        return (not path.name.isdigit(), int(path.name) if path.name.isdigit() else 0, path.name)

    return sorted(jobs, key=job_order)


def summarize_job(job_dir: Path) -> dict[str, Any]:
    """One summary row: the job's overrides, then its status and headline metrics."""
    row: dict[str, Any] = {"job": job_dir.name, **read_job_overrides(job_dir)}
    results = read_run_results(job_dir)
    if results is None:
        row["status"] = RunStatus.unfinished.value
        return row
    metrics = results.get("metrics", {})
    row["status"] = results.get("status", RunStatus.unfinished.value)
    for name in SUMMARY_METRICS:
        row[name] = metrics.get(name, results.get(name))
    row["error"] = results.get("error") or ""
    return row


def swept_keys(sweep_dir: Path, override_keys: set[str], rows: list[dict[str, Any]]) -> list[str]:
    """The override keys a sweep varies: swept in its command line or sweeper params (multirun.yaml), or
    differing between jobs. An override every job shares (data.dir=...) is not a column."""
    declared: set[str] = set()
    multirun = sweep_dir / "multirun.yaml"
    if multirun.exists():
        from hydra.core.override_parser.overrides_parser import OverridesParser

        hydra = (yaml.safe_load(multirun.read_text(encoding="utf-8")) or {}).get("hydra") or {}
        declared |= set((hydra.get("sweeper") or {}).get("params") or {})
        task = (hydra.get("overrides") or {}).get("task") or []
        parsed = OverridesParser.create().parse_overrides(task)
        declared |= {override.key_or_group.lstrip("+~") for override in parsed if override.is_sweep_override()}
    varying = {key for key in override_keys if len({str(row.get(key)) for row in rows}) > 1}
    return sorted((declared & override_keys) | varying)


def write_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    """Write summary.csv at the sweep root (atomically); return its rows."""
    rows = [summarize_job(job_dir) for job_dir in find_job_dirs(sweep_dir)]
    fixed = {"job", "status", "error", *SUMMARY_METRICS}
    override_keys = swept_keys(sweep_dir, {key for row in rows for key in row} - fixed, rows)
    columns = ["job", *override_keys, "status", *SUMMARY_METRICS, "error"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = sweep_dir / SUMMARY_FILE
    atomic_write_text(path, buffer.getvalue())
    log.info("Wrote %s: %d jobs", path, len(rows))
    return rows


def git_commit(source_dir: Path | None = None) -> str | None:
    """The project's git commit when it runs from a checkout, else None."""
    source_dir = source_dir or Path(__file__).resolve().parent
    try:
        command = ["git", "rev-parse", "HEAD"]
        completed = subprocess.run(command, cwd=source_dir, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() or None


class SummaryCallback(Callback):
    """Hydra callback (conf/config.yaml: hydra.callbacks.summary) writing summary.csv when a multirun ends.
    It runs in the launching process, also with the joblib and submitit launchers. If any job did not
    complete, it lists them and makes the command exit with status 1."""

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        rows = write_summary(Path(config.hydra.sweep.dir))
        not_completed = [row for row in rows if row["status"] != RunStatus.completed.value]
        if not_completed:
            for row in not_completed:
                log.error("Job %s %s: %s", row["job"], row["status"], row.get("error") or "no results")
            log.error("%d of %d jobs did not complete; see summary.csv", len(not_completed), len(rows))
            raise SystemExit(1)
