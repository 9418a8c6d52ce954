"""SummaryCallback: summary.csv when a multirun ends, in the launching process, with every launcher. If any
job did not complete, or summary.csv cannot be written, it says so and the command exits with status 1."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from agnews.report.summary_csv import report_incomplete, write_summary
from agnews.report.sweep import SUMMARY_FILE
from agnews.results import BASIC_SWEEPER, JobRecord, RunStatus
from agnews.storage import AgnewsError
from agnews.sweep import guarded, launched_jobs, refused
from agnews.sweep.plan import declared_sweep_keys, launch_id

log = logging.getLogger(__name__)


def earlier_launches(jobs: list[JobRecord], this_launch: str | None) -> list[JobRecord]:
    """The jobs that recorded another launch than `this_launch` (jobs recording none are not among them)."""
    if this_launch is None:
        return []
    return [job for job in jobs if job.launch_job and job.launch_job.partition("/")[0] != this_launch]


class SummaryCallback(Callback):
    """Hydra callback (conf/config.yaml: hydra.callbacks.summary)."""

    @guarded
    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if refused():  # nothing was launched, and nothing in the folder may change
            return
        # Hydra 1.4 also ends a sweep that a SIGTERM, Ctrl-C or a launcher's error stops: summary.csv is still
        # written, and the command keeps that exit status (sys.exc_info: the exception on its way out).
        stopping = sys.exc_info()[1] is not None
        # Hydra turns an exception raised here into a warning and exit status 0; SystemExit gets through.
        try:
            jobs = write_summary(Path(config.hydra.sweep.dir), declared_sweep_keys(config))
        except AgnewsError as error:
            log.error("summary.csv: %s", error)
            if stopping:
                return
            raise SystemExit(1) from None
        if OmegaConf.select(config, "hydra.sweeper._target_", default=BASIC_SWEEPER) != BASIC_SWEEPER:
            # An optimising sweeper runs new trials and never reruns a study's earlier ones: a trial an earlier
            # command left unfinished is listed, but only this command's trials decide its exit status.
            mine = launched_jobs()  # agnews' search knows which trials it ran
            others = [job for job in jobs if job.job not in mine] if mine else earlier_launches(jobs, launch_id(config))
            ended = (RunStatus.completed, RunStatus.pruned)
            if unfinished := [job.job for job in others if job.status not in ended]:
                log.warning(
                    "Trials of other commands that did not complete (jobs %s: earlier ones, or still running) stay "
                    "in %s and in the study",
                    ", ".join(unfinished),
                    SUMMARY_FILE,
                )
            jobs = [job for job in jobs if job not in others]
        sweep_dir = Path(config.hydra.sweep.dir)
        missing = _launched_but_not_there(sweep_dir, jobs)
        failed = report_incomplete([job for job in jobs if _relative(sweep_dir, job.folder) not in missing])
        if (failed or missing) and not stopping:
            raise SystemExit(1)


def _launched_but_not_there(sweep_dir: Path, jobs: list[JobRecord]) -> set[str]:
    """Log every job this command launched whose folder holds no run of it: another command's run (a single run
    started into the folder while the sweep ran), or nothing at all; return their folders."""
    listed = {_relative(sweep_dir, job.folder): job for job in jobs}
    missing = set()
    for name in sorted(launched_jobs(), key=lambda name: (len(name), name)):
        job = listed.get(name)
        if job is None:
            log.error("Job %s did not run: its folder %s holds no run", name, sweep_dir / name)
        elif job.status == RunStatus.copy:
            log.error("Job %s did not run: its folder holds another command's run, not this sweep's", name)
        else:
            continue
        missing.add(name)
    return missing


def _relative(sweep_dir: Path, folder: Path) -> str:
    try:
        return folder.resolve().relative_to(sweep_dir.resolve()).as_posix()
    except ValueError:
        return folder.name
