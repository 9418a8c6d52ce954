"""summary.csv: one row per job of a sweep, from what each run recorded about itself. Written when a multirun
ends (agnews.sweep.summary), and at any time by `python -m agnews.report --summary SWEEP` (also while jobs
still run, or after the launcher was killed)."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agnews.report.sweep import SUMMARY_FILE, holds_single_runs, read_sweep, swept_keys
from agnews.results import SUMMARY_METRICS, JobRecord, RunStatus
from agnews.storage import AgnewsError, atomic_write_text

log = logging.getLogger(__name__)


def summary_table(jobs: list[JobRecord], declared: Iterable[str] = ()) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows): the job, the settings the sweep varies, status, headline metrics, error."""
    keys = swept_keys(jobs, declared)
    rows = [
        {
            "job": job.job,
            **{key: job.label(key) for key in keys},
            "status": job.status,
            **{name: job.metrics.get(name) for name in SUMMARY_METRICS},
            "error": (job.error.strip().splitlines() or [""])[0],
        }
        for job in jobs
    ]
    return ["job", *keys, "status", *SUMMARY_METRICS, "error"], rows


def write_summary(sweep_dir: Path, declared: Iterable[str] = ()) -> list[JobRecord]:
    """Write summary.csv at the sweep root (atomically); return the jobs it lists. A folder of single runs
    is no sweep: it gets no summary.csv."""
    jobs = read_sweep(sweep_dir)
    if holds_single_runs(jobs):
        raise AgnewsError(
            f"{sweep_dir} holds {len(jobs)} single runs, not the jobs of a sweep, so no summary.csv was written "
            f"there; python -m agnews.report {sweep_dir} compares them"
        )
    columns, rows = summary_table(jobs, declared)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = sweep_dir / SUMMARY_FILE
    atomic_write_text(path, buffer.getvalue())
    log.info("Wrote %s: %d jobs", path, len(rows))
    return jobs


def report_incomplete(jobs: list[JobRecord]) -> int:
    """Log every job that did not complete, and every folder that copies another's run; return how many jobs
    did not complete."""
    for job in jobs:
        if job.status == RunStatus.copy:
            log.warning("Job folder %s is not counted: %s", job.job, job.error)
    keys = {job.data_key for job in jobs if job.data_key and job.status != RunStatus.copy}
    if len(keys) > 1:
        log.warning(
            "The jobs trained on %d different versions of the data (their data.key: a CSV changed between them); "
            "%s and the report keep them apart",
            len(keys),
            SUMMARY_FILE,
        )
    # A pruned trial ended as its search decided: not a failure.
    incomplete = [job for job in jobs if job.status not in (RunStatus.completed, RunStatus.pruned, RunStatus.copy)]
    for job in incomplete:
        log.error("Job %s %s: %s", job.job, job.status, (job.error.strip().splitlines() or ["no results"])[0])
    if incomplete:
        log.error("%d of %d jobs did not complete; see %s", len(incomplete), len(jobs), SUMMARY_FILE)
    return len(incomplete)
