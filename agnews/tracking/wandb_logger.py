"""Weights & Biases backend: one W&B run per job, in the W&B project `logger.project` ("agnews"), grouped by
the sweep folder's absolute path, named like the job, with the resolved config as W&B's (nested) config.

Offline unless the user set WANDB_MODE: no account and no network while a sweep runs. W&B writes each run
into its run folder, `<run folder>/wandb/offline-run-<time>-<id>/run-<id>.wandb`, where `wandb leet` shows
it in a terminal and `wandb sync` uploads it later. The run's facts (run_dir, sweep, job, overrides,
git_commit) and at its end its status, error and final metrics go into the W&B summary (W&B's tags are
labels of at most 64 characters); the exit code is 0 for a completed run and 1 otherwise.

Each job's run comes from wandb.init(reinit="create_new") and is used through its own object, never W&B's
global `wandb.run`, which would leak between the jobs a joblib worker runs one after another; `finish`
ends it, also when its last calls fail. Quiet and cheap: no console capture (the job's log file has the
output), no git probing (the run records its commit), no code or package list saved (listing every
installed package is 0.25 s of a 0.3 s start). W&B's system metrics stay on: sampling every 15 s cost no
measurable CPU.
"""

from __future__ import annotations

import os
from typing import Any

from agnews.config import LoggerConfig
from agnews.results import RunStatus
from agnews.tracking.facts import RunFacts, epoch_metrics, run_key, with_running_best

DEFAULT_PROJECT = "agnews"
# How long an online run's end waits for its upload before it gives up (and raises, so the run's log says
# so); the rest stays in the .wandb file for `wandb sync`. Offline runs end in milliseconds.
FINISH_TIMEOUT_S = 120


def quiet_wandb() -> None:
    """Offline unless the user chose a W&B mode; set before wandb reads it."""
    os.environ.setdefault("WANDB_MODE", "offline")


class WandbTracker:
    def __init__(self, config: LoggerConfig):
        self.config = config
        self.run: Any = None

    def start(self, run: RunFacts) -> None:
        quiet_wandb()
        import wandb

        # W&B puts the run in the system temp folder when `dir` is not writable; refuse instead, so that
        # a run's W&B data is in its run folder or nowhere.
        if not os.access(run.run_dir, os.W_OK | os.R_OK):
            raise PermissionError(f"{run.run_dir} is not writable, so W&B cannot write the run there")
        settings = wandb.Settings(
            console="off",
            disable_git=True,
            save_code=False,
            x_save_requirements=False,
            silent=True,
            reinit="create_new",
            finish_timeout=FINISH_TIMEOUT_S,
            finish_timeout_raises=True,
        )
        self.run = wandb.init(
            project=self.config.project or DEFAULT_PROJECT,
            group=str(run.sweep_dir) if run.sweep_dir else None,
            name=run.name,
            id=run_key(run.run_dir),  # the same W&B run for every attempt in this folder
            resume="allow",
            dir=run.run_dir,
            mode=os.environ["WANDB_MODE"],  # read per run: W&B reads the environment once per process
            config=run.config,
            settings=settings,
        )
        try:
            self.run.summary.update(run.tags())
            # W&B drops steps below a run's starting step: online, a resumed run starts after the last epoch
            # W&B holds; offline it starts at 0, in a new offline-run folder under the same id that
            # `wandb sync` uploads after the earlier ones from their first line on, replacing them, so every
            # recorded epoch is logged again.
            for epoch in with_running_best(run.history):
                if epoch["epoch"] >= self.run.starting_step:
                    self.log_epoch(epoch)
        except BaseException:
            self.run.finish(exit_code=1)
            raise

    def log_epoch(self, epoch: dict[str, Any]) -> None:
        # commit=True writes the epoch now: with an explicit step W&B would otherwise hold it until the next.
        self.run.log(epoch_metrics(epoch), step=int(epoch["epoch"]), commit=True)

    def finish(self, results: dict[str, Any], final: dict[str, float]) -> None:
        status = str(results.get("status"))
        try:
            summary: dict[str, Any] = {**final, "status": status}
            if results.get("error"):
                summary["error"] = str(results["error"])
            self.run.summary.update(summary)
        finally:
            # 0: W&B shows the run finished; a pruned trial was stopped on purpose (its summary says pruned).
            self.run.finish(exit_code=0 if status in (RunStatus.completed, RunStatus.pruned) else 1)
