"""How far a sweep has got, said in the launching process: a line as each job ends (jobs done of the total,
completed / failed / diverged so far, time spent and an estimate of the rest from the ended jobs' times), and a
line at the end. Works the same for every launcher, the basic one, joblib, Ray and Slurm: each job, wherever
it runs, leaves `.agnews.ended` in its folder when it ends (note_job_end), and a thread of the launching
command watches the sweep folder for those of its own launch (a Slurm job that the launching command does not
see end, because it was killed, is simply not counted).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from agnews.report.sweep import SUMMARY_FILE
from agnews.results import BASIC_SWEEPER, RunStatus
from agnews.storage import atomic_write_text
from agnews.sweep import refused
from agnews.sweep.launchers import JOBLIB_LAUNCHER, joblib_workers
from agnews.sweep.plan import launch_id, planned_jobs
from agnews.sweep.study import STUDY_SWEEPER

log = logging.getLogger(__name__)

JOB_END_FILE = ".agnews.ended"
POLL_S = 1.0


def note_job_end(run_dir: Path, launch_job: str | None, status: str, seconds: float, detail: str = "") -> None:
    """In a job: say that it ended, for its launch's progress lines. Never fails the job."""
    if launch_job is None:
        return
    note = {"launch_job": launch_job, "status": status, "seconds": seconds, "detail": detail}
    try:
        atomic_write_text(run_dir / JOB_END_FILE, json.dumps(note) + "\n")
    except Exception as error:  # a full disk: the job's own record matters, not this
        log.debug("could not note the end of %s: %s", run_dir, error)


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """The ended jobs of one launch, and the lines about them."""

    def __init__(self, sweep_dir: Path, launch: str, total: int | None, at_once: int):
        self.sweep_dir, self.launch, self.total, self.at_once = sweep_dir, launch, total, max(1, at_once)
        self.started = time.monotonic()
        self.ended: dict[str, dict[str, Any]] = {}  # job folder -> its note

    def poll(self) -> list[str]:
        """Lines for the jobs that ended since the last poll."""
        lines = []
        for path in sorted(self.sweep_dir.glob(f"*/{JOB_END_FILE}"), key=lambda path: path.stat().st_mtime):
            job = path.parent.name
            if job in self.ended:
                continue
            try:
                note = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # written by now? next poll
            if not str(note.get("launch_job", "")).startswith(f"{self.launch}/"):
                continue  # an earlier launch's, or another command's on the same study
            self.ended[job] = note
            lines.append(self.line(job, note))
        return lines

    def counts(self) -> str:
        """'3 completed, 1 failed, 0 diverged' (and any other status that occurred: pruned, interrupted)."""
        counts = dict.fromkeys((RunStatus.completed.value, RunStatus.failed.value, RunStatus.diverged.value), 0)
        for note in self.ended.values():
            counts[note["status"]] = counts.get(note["status"], 0) + 1
        return ", ".join(f"{count} {status}" for status, count in counts.items())

    def line(self, job: str, note: dict[str, Any]) -> str:
        done = len(self.ended)
        counts = self.counts()
        elapsed = time.monotonic() - self.started
        text = f"Job {job} {note['status']}{' (' + note['detail'] + ')' if note.get('detail') else ''}"
        text += f" | {done}/{self.total} done" if self.total else f" | {done} done"
        text += f": {counts} | {_clock(elapsed)} elapsed"
        if self.total and done < self.total:
            typical = statistics.fmean(float(note["seconds"]) for note in self.ended.values())
            text += f", about {_clock(typical * math.ceil((self.total - done) / self.at_once))} left"
        return text

    def closing(self) -> str:
        total = f"{len(self.ended)}/{self.total}" if self.total else str(len(self.ended))
        return (
            f"Sweep ended: {total} jobs ended ({self.counts()}) in {_clock(time.monotonic() - self.started)}; "
            f"summary: {self.sweep_dir / SUMMARY_FILE}"
        )


class ProgressCallback(Callback):
    """Hydra callback (conf/config.yaml: hydra.callbacks.progress); after the folder guard, which gives the
    launch its id."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:  # launchers pickle callbacks into their workers: the watcher stays
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launch = launch_id(config)
        if launch is None:
            return
        sweeper = config.hydra.sweeper
        if sweeper.get("_target_") == BASIC_SWEEPER:
            total = len(planned_jobs(config))
        else:
            total = int(sweeper.n_trials) if sweeper.get("_target_") == STUDY_SWEEPER else None
        at_once = int(sweeper.get("n_jobs") or 1) if sweeper.get("_target_") == STUDY_SWEEPER else total or 1
        if config.hydra.launcher.get("_target_") == JOBLIB_LAUNCHER:
            at_once = min(at_once, joblib_workers(int(config.hydra.launcher.get("n_jobs") or -1)))
        elif config.hydra.launcher.get("_target_", "").endswith("BasicLauncher"):
            at_once = 1
        self._progress = Progress(Path(config.hydra.sweep.dir), launch, total, at_once)
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="agnews-progress", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            self._say()

    def _say(self) -> None:
        for line in self._progress.poll():
            log.info("%s", line)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._progress is None:
            return
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        if not refused():
            self._say()
            log.info("%s", self._progress.closing())
        self._progress = None
