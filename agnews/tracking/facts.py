"""What a run reports to a tracker: `RunFacts` (known when it starts), and its numbers under metric names
every backend shares: per epoch (step = epoch) train/loss, train/acc, val/loss, val/acc, val/best_acc,
train/lr, perf/epoch_time_s, perf/samples_per_s; once, at the end, test/acc, test/loss, best_epoch,
model/parameters, model/trainable_parameters, embedding/coverage, perf/wall_time_s, perf/setup_time_s."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agnews.config import NOT_PART_OF_THE_RUN, flatten
from agnews.results import EPOCH_METRICS as RECORDED_EPOCH_METRICS
from agnews.results import RUN_METRICS, run_metrics

EPOCH_METRICS = {  # history entry -> metric name
    **{metric.name: metric.tracked_as for metric in RECORDED_EPOCH_METRICS if metric.tracked_as},
    # The best so far (Tracking adds it): what `python -m agnews.run` returns and a sweeper maximises.
    "best_val_acc": "val/best_acc",
}
FINAL_METRICS = {metric.name: metric.tracked_as for metric in RUN_METRICS if metric.tracked_as}
HPARAMS_METRICS = ("val/best_acc", "test/acc", "val/acc", "val/loss", "train/acc", "train/loss")


@dataclass(frozen=True)
class RunFacts:
    """What a run knows about itself when it starts."""

    run_dir: Path  # absolute
    config: dict[str, Any]  # the resolved config, plain values (results.json's "config")
    overrides: list[str] = field(default_factory=list)
    git_commit: str | None = None
    sweep_dir: Path | None = None  # absolute; None for a single run
    job: int | None = None  # the job number in its sweep
    history: list[dict[str, Any]] = field(default_factory=list)  # epochs recorded before (a resumed run)

    @classmethod
    def of(cls, run_dir: Path, header: dict[str, Any], history: list[dict[str, Any]]) -> RunFacts:
        """From the header of a run's results.json (experiment._run)."""
        sweep = header.get("sweep") or {}
        return cls(
            run_dir=Path(run_dir).absolute(),
            config=header["config"],
            overrides=list(header.get("overrides") or []),
            git_commit=header.get("git_commit"),
            sweep_dir=Path(sweep["dir"]) if sweep.get("dir") else None,
            job=sweep.get("job"),
            history=list(history),
        )

    @property
    def store_dir(self) -> Path:
        """Where a tracker keeps what a sweep shares (MLflow's mlflow.db): the sweep root, else the run folder."""
        return self.sweep_dir or self.run_dir

    @property
    def name(self) -> str:
        """The job's overrides that change what it computes, or the folder's name when there are none."""
        meaningful = [item for item in self.overrides if not _is_incidental(item)]
        return " ".join(meaningful) or self.run_dir.name

    def params(self) -> dict[str, bool | int | float | str]:
        """The resolved config as flat `section.key` params (None as "null", lists as JSON)."""
        return {key: _param_value(value) for key, value in flatten(self.config).items()}

    def tags(self) -> dict[str, str]:
        tags = {"run_dir": str(self.run_dir), "overrides": " ".join(self.overrides), "status": "running"}
        if self.sweep_dir is not None:
            tags["sweep"] = str(self.sweep_dir)
        if self.job is not None:
            tags["job"] = str(self.job)
        if self.git_commit:
            tags["git_commit"] = self.git_commit
        return tags


def run_key(run_dir: Path) -> str:
    """A stable id of a run folder (a hash of its absolute path): how a backend finds the run that an earlier
    attempt in the same folder started, to continue it on resume."""
    return hashlib.sha256(str(Path(run_dir).absolute()).encode()).hexdigest()[:32]


def _is_incidental(override: str) -> bool:
    key = override.partition("=")[0].lstrip("+~")
    return key.startswith("hydra") or key in NOT_PART_OF_THE_RUN


def _param_value(value: Any) -> bool | int | float | str:
    if value is None:
        return "null"
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value)


def epoch_metrics(epoch: dict[str, Any]) -> dict[str, float]:
    """A history entry as metric name -> value (its step is epoch["epoch"])."""
    return {name: float(epoch[key]) for key, name in EPOCH_METRICS.items() if is_number(epoch.get(key))}


def final_metrics(results: dict[str, Any]) -> dict[str, float]:
    """What a run established once: test metrics, parameter counts, embedding coverage, times."""
    metrics = run_metrics(results)
    final = {name: float(metrics[key]) for key, name in FINAL_METRICS.items() if is_number(metrics.get(key))}
    coverage = results.get("embedding_coverage") or {}
    if coverage.get("total"):
        final["embedding/coverage"] = coverage["found"] / coverage["total"]
        final["embedding/words_found"] = float(coverage["found"])
    return final


def with_running_best(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History entries with "best_val_acc", the best validation accuracy up to each epoch."""
    best, entries = None, []
    for epoch in history:
        if is_number(epoch.get("val_acc")):
            best = epoch["val_acc"] if best is None else max(best, epoch["val_acc"])
        entries.append({**epoch, "best_val_acc": best})
    return entries


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
