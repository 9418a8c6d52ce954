"""The tracking interface a run reports to (`Tracker`), and `Tracking`, the one object the run holds: it
opens the configured backend (checking its optional package first), calls it at the start, at the end of
each epoch and at the end, never lets a tracking error end the run, and measures what tracking costs.
"""

from __future__ import annotations

import importlib
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any, Protocol

from agnews.config import LoggerConfig, LoggerName
from agnews.storage import AgnewsError
from agnews.tracking.facts import RunFacts, final_metrics, is_number
from agnews.tracking.mlflow_logger import MlflowTracker, quiet_mlflow
from agnews.tracking.wandb_logger import WandbTracker, quiet_wandb

log = logging.getLogger(__name__)

# What each backend imports, and the extra that installs it. MLflow's SQLite store also needs SQLAlchemy and
# alembic, which mlflow-skinny does not pull in.
REQUIRED_MODULES = {
    LoggerName.tensorboard: ("tensorboard",),
    LoggerName.mlflow: ("mlflow", "sqlalchemy", "alembic"),
    LoggerName.wandb: ("wandb",),
}


class MissingExtraError(AgnewsError):
    """The chosen logger's package is not installed."""


def require_packages(name: LoggerName) -> None:
    """Import what `logger=name` needs, or raise MissingExtraError naming the extra to install."""
    if name is LoggerName.mlflow:
        quiet_mlflow()
    if name is LoggerName.wandb:
        quiet_wandb()
    for module in REQUIRED_MODULES.get(name, ()):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise MissingExtraError(
                f'logger={name.value} needs the {module} package ({error}): pip install -e ".[{name.value}]" '
                "(or choose logger=none)"
            ) from None


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
    if name is LoggerName.wandb:
        return WandbTracker(config)
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
        self.best_val_acc = max((e["val_acc"] for e in run.history if is_number(e.get("val_acc"))), default=None)
        if not self._call("start", lambda: self.tracker.start(run)):
            self.tracker = None  # nothing to log into: the rest of the run goes untracked

    def log_epoch(self, epoch: dict[str, Any]) -> None:
        if self.tracker is None:
            return
        if is_number(epoch.get("epoch_time_s")):
            self.epoch_times.append(epoch["epoch_time_s"])
        if is_number(epoch.get("val_acc")):
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
