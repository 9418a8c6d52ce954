"""The tracking interface a run reports to, the facts it reports, and `Tracking`, the one object the run
holds: it opens the configured backend (checking its optional package first), calls it at the start, at
the end of each epoch and at the end, never lets a tracking error end the run, and measures what
tracking costs.

Metric names are shared by both backends: train/loss, train/acc, val/loss, val/acc, val/best_acc,
train/lr, perf/epoch_time_s, perf/samples_per_s per epoch (step = epoch); test/acc, test/loss,
model/parameters, model/trainable_parameters, embedding/coverage, ... once, at the end.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agnews.config import NOT_PART_OF_THE_RUN, LoggerConfig, LoggerName, flatten
from agnews.storage import AgnewsError

log = logging.getLogger(__name__)

# What each backend imports, and the extra that installs it. MLflow's SQLite store also needs SQLAlchemy and
# alembic, which mlflow-skinny does not pull in.
REQUIRED_MODULES = {
    LoggerName.tensorboard: ("tensorboard",),
    LoggerName.mlflow: ("mlflow", "sqlalchemy", "alembic"),
}

EPOCH_METRICS = {  # history entry -> metric name
    "train_loss": "train/loss",
    "train_acc": "train/acc",
    "val_loss": "val/loss",
    "val_acc": "val/acc",
    "lr": "train/lr",
    "epoch_time_s": "perf/epoch_time_s",
    "samples_per_s": "perf/samples_per_s",
    # The best so far (Tracking adds it): what `python -m agnews.run` returns and a sweeper maximises.
    "best_val_acc": "val/best_acc",
}
FINAL_METRICS = {  # results.json metrics -> metric name
    "test_acc": "test/acc",
    "test_loss": "test/loss",
    "best_epoch": "best_epoch",
    "wall_time_s": "perf/wall_time_s",
}
COUNTS = {"num_parameters": "model/parameters", "num_trainable_parameters": "model/trainable_parameters"}
HPARAMS_METRICS = ("val/best_acc", "test/acc", "val/acc", "val/loss", "train/acc", "train/loss")


class MissingExtraError(AgnewsError):
    """The chosen logger's package is not installed."""


def quiet_mlflow() -> None:
    """No MLflow usage telemetry unless the user asked for it; set before mlflow is imported, which reads it."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def require_packages(name: LoggerName) -> None:
    """Import what `logger=name` needs, or raise MissingExtraError naming the extra to install."""
    if name is LoggerName.mlflow:
        quiet_mlflow()
    for module in REQUIRED_MODULES.get(name, ()):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise MissingExtraError(
                f'logger={name.value} needs the {module} package ({error}): pip install -e ".[{name.value}]" '
                "(or choose logger=none)"
            ) from None


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
    return {name: float(epoch[key]) for key, name in EPOCH_METRICS.items() if _is_number(epoch.get(key))}


def final_metrics(results: dict[str, Any]) -> dict[str, float]:
    """What a run established once: test metrics, parameter counts, embedding coverage, times."""
    metrics = results.get("metrics") or {}
    final = {name: float(metrics[key]) for key, name in FINAL_METRICS.items() if _is_number(metrics.get(key))}
    for key, name in COUNTS.items():
        if _is_number(results.get(key)):
            final[name] = float(results[key])
    coverage = results.get("embedding_coverage") or {}
    if coverage.get("total"):
        final["embedding/coverage"] = coverage["found"] / coverage["total"]
        final["embedding/words_found"] = float(coverage["found"])
    if _is_number(results.get("setup_time_s")):
        final["perf/setup_time_s"] = float(results["setup_time_s"])
    return final


def with_running_best(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History entries with "best_val_acc", the best validation accuracy up to each epoch."""
    best, entries = None, []
    for epoch in history:
        if _is_number(epoch.get("val_acc")):
            best = epoch["val_acc"] if best is None else max(best, epoch["val_acc"])
        entries.append({**epoch, "best_val_acc": best})
    return entries


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Tracker(Protocol):
    """A tracking backend. Its methods may raise: `Tracking` catches and reports."""

    def start(self, run: RunFacts) -> None: ...

    def log_epoch(self, epoch: dict[str, Any]) -> None:
        """One history entry (results.HISTORY_COLUMNS), logged as the epoch ends."""

    def finish(self, results: dict[str, Any], final: dict[str, float]) -> None:
        """The run ended: `results` is results.json's content (status, error, metrics), `final` the
        metrics to log once (final_metrics, plus the cost of tracking)."""


def make_tracker(name: LoggerName, config: LoggerConfig) -> Tracker:
    if name is LoggerName.tensorboard:
        from agnews.tracking.tensorboard_logger import TensorBoardTracker

        return TensorBoardTracker()
    from agnews.tracking.mlflow_logger import MlflowTracker

    return MlflowTracker(config)


class Tracking:
    """The run's tracking: a backend (or none) behind calls that never raise and are timed.

    A failing backend (a locked or unreachable store, a full disk) costs a warning, never the run: the
    run's results.json is written before each call, so nothing is lost but the live view."""

    def __init__(self, tracker: Tracker | None = None, label: str = "none"):
        self.tracker, self.label = tracker, label
        self.seconds: dict[str, list[float]] = {"start": [], "epoch": [], "finish": []}
        self.epoch_times: list[float] = []
        self.best_val_acc: float | None = None

    @classmethod
    def open(cls, config: LoggerConfig) -> Tracking:
        """The tracking `config` asks for; MissingExtraError (before anything is read or written) when its
        package is missing."""
        if config.name is LoggerName.none:
            return cls()
        require_packages(config.name)
        return cls(make_tracker(config.name, config), config.name.value)

    def start(self, run: RunFacts) -> None:
        if self.tracker is None:
            return
        self.best_val_acc = max((e["val_acc"] for e in run.history if _is_number(e.get("val_acc"))), default=None)
        if not self._call("start", lambda: self.tracker.start(run)):
            self.tracker = None  # nothing to log into: the rest of the run goes untracked

    def log_epoch(self, epoch: dict[str, Any]) -> None:
        if self.tracker is None:
            return
        if _is_number(epoch.get("epoch_time_s")):
            self.epoch_times.append(epoch["epoch_time_s"])
        if _is_number(epoch.get("val_acc")):
            best = self.best_val_acc
            self.best_val_acc = epoch["val_acc"] if best is None else max(best, epoch["val_acc"])
        entry = {**epoch, "best_val_acc": self.best_val_acc}
        self._call("epoch", lambda: self.tracker.log_epoch(entry))

    def finish(self, results: dict[str, Any]) -> None:
        if self.tracker is None:
            return
        final = final_metrics(results)
        if self.seconds["epoch"]:
            final["perf/tracking_s_per_epoch"] = statistics.median(self.seconds["epoch"])
        self._call("finish", lambda: self.tracker.finish(results, final))
        log.info("%s", self.cost())

    def cost(self) -> str:
        """What tracking took: to start, per epoch (median, and its share of an epoch), to finish."""
        start, finish = sum(self.seconds["start"]), sum(self.seconds["finish"])
        text = f"Tracking ({self.label}) took {start:.2f} s to start, {finish:.2f} s to finish"
        if self.seconds["epoch"]:
            per_epoch = statistics.median(self.seconds["epoch"])
            text += f", {1000 * per_epoch:.1f} ms per epoch"
            if self.epoch_times:
                text += f" ({100 * per_epoch / statistics.median(self.epoch_times):.3f} % of an epoch)"
        return text

    def _call(self, what: str, call: Callable[[], None]) -> bool:
        started = time.perf_counter()
        try:
            call()
            return True
        except Exception as error:
            log.warning(
                "%s tracking failed at %s (%s: %s); the run goes on, and results.json records it in full",
                self.label,
                what,
                type(error).__name__,
                str(error).strip().splitlines()[0] if str(error).strip() else "",
            )
            return False
        finally:
            self.seconds[what].append(time.perf_counter() - started)
