"""summary.csv: one row per job of a sweep, from what each run recorded about itself. Written by
`SummaryCallback` when a multirun ends, and at any time by `python -m agnews.report --summary SWEEP`
(also while jobs still run, or after the launcher was killed)."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from agnews.launch import launch_id
from agnews.report.sweep import SUMMARY_FILE, holds_single_runs, read_sweep, swept_keys
from agnews.results import BASIC_SWEEPER, JobRecord, RunStatus
from agnews.storage import AgnewsError, atomic_write_text

log = logging.getLogger(__name__)

SUMMARY_METRICS = ("test_acc", "best_val_acc", "best_epoch", "epochs", "wall_time_s", "num_parameters")


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
    incomplete = [job for job in jobs if job.status not in (RunStatus.completed, RunStatus.copy)]
    for job in incomplete:
        log.error("Job %s %s: %s", job.job, job.status, (job.error.strip().splitlines() or ["no results"])[0])
    if incomplete:
        log.error("%d of %d jobs did not complete; see %s", len(incomplete), len(jobs), SUMMARY_FILE)
    return len(incomplete)


def declared_sweep_keys(config: Any) -> list[str]:
    """The keys a launch sweeps: its `a=x,y` overrides and its sweeper's params (from the launching
    command's own config in memory, not from multirun.yaml on disk)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    parsed = OverridesParser.create().parse_overrides([str(item) for item in config.hydra.overrides.task])
    swept = {override.key_or_group.lstrip("+~") for override in parsed if override.is_sweep_override()}
    return sorted(swept | {str(key).lstrip("+~") for key in params})


def earlier_launches(jobs: list[JobRecord], this_launch: str | None) -> list[JobRecord]:
    """The jobs that recorded another launch than `this_launch` (jobs recording none are not among them)."""
    if this_launch is None:
        return []
    return [job for job in jobs if job.launch_job and job.launch_job.partition("/")[0] != this_launch]


class SummaryCallback(Callback):
    """Hydra callback (conf/config.yaml: hydra.callbacks.summary) writing summary.csv when a multirun ends.
    It runs in the launching process, with every launcher. If any job did not complete, or summary.csv
    cannot be written, it says so and makes the command exit with status 1."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        # Hydra turns an exception raised here into a warning and exit status 0; SystemExit gets through.
        try:
            jobs = write_summary(Path(config.hydra.sweep.dir), declared_sweep_keys(config))
        except AgnewsError as error:
            log.error("summary.csv: %s", error)
            raise SystemExit(1) from None
        if OmegaConf.select(config, "hydra.sweeper._target_", default=BASIC_SWEEPER) != BASIC_SWEEPER:
            # An optimising sweeper runs new trials and never reruns a study's earlier ones: a trial an earlier
            # command left unfinished is listed, but only this command's trials decide its exit status.
            earlier = earlier_launches(jobs, launch_id(config))
            if unfinished := [job.job for job in earlier if job.status != RunStatus.completed]:
                log.warning(
                    "Trials of earlier commands that did not complete (jobs %s) stay in %s and in the study",
                    ", ".join(unfinished),
                    SUMMARY_FILE,
                )
            jobs = [job for job in jobs if job not in earlier]
        if report_incomplete(jobs):
            raise SystemExit(1)
