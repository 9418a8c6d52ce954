"""MLflow backend: one MLflow run per job, in one MLflow experiment per sweep.

The store is `logger.tracking_uri`, by default a SQLite file at the sweep root (`<sweep>/mlflow.db`; the run
folder for a single run), never MLflow's deprecated file store. Parallel jobs share that file: SQLite takes
concurrent writers, but not concurrent creation, since MLflow builds a fresh store with alembic migrations
that break when several processes run them at once (the store is then left unusable). So a store is
opened under a file lock next to it, and the launching process creates it before any job starts
(agnews.sweep.tracking). Telemetry is off unless the user set MLFLOW_DISABLE_TELEMETRY.

The client API with explicit run ids is used rather than mlflow's global "active run", which would leak
between the jobs a joblib worker runs one after another. Epochs are logged asynchronously (MLflow's
logging queue writes them from a thread): a SQLite commit takes tens of milliseconds on a busy machine,
which the training loop need not wait for; the run's end waits for them before it marks the run ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from agnews.config import LoggerConfig
from agnews.locks import file_lock
from agnews.results import RunStatus
from agnews.storage import sqlite_file
from agnews.tracking.facts import RunFacts, epoch_metrics, run_key, with_running_best

STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"  # MLflow wants an artifact root; agnews logs no artifacts there
MLFLOW_STATUS = {
    RunStatus.completed: "FINISHED",
    RunStatus.failed: "FAILED",
    RunStatus.diverged: "FAILED",
    RunStatus.interrupted: "KILLED",
    RunStatus.pruned: "KILLED",  # stopped before its end, by its search: not FAILED (the tag says pruned)
}
MAX_TAG_LENGTH = 5000  # MLflow's limit for tag values is 8000 characters


RUN_KEY_TAG = "agnews.run_key"  # which run folder an MLflow run belongs to, for resume


def quiet_mlflow() -> None:
    """No MLflow usage telemetry unless the user asked for it; set before mlflow is imported, which reads it."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def tracking_uri(config: LoggerConfig, store_dir: Path) -> str:
    return config.tracking_uri or f"sqlite:///{(Path(store_dir).absolute() / STORE_FILE).as_posix()}"


def experiment_name(config: LoggerConfig, store_dir: Path) -> str:
    return config.experiment_name or str(Path(store_dir).absolute())


def open_experiment(config: LoggerConfig, store_dir: Path) -> tuple[Any, str]:
    """(client, experiment id): the store opened (created on first use) and the sweep's experiment in it."""
    quiet_mlflow()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = tracking_uri(config, store_dir)
    local = config.tracking_uri is None
    name = experiment_name(config, store_dir)
    # A SQLite store is created (and its experiments) by one process at a time, whichever commands share it;
    # a server does this itself.
    store_file = sqlite_file(uri)
    lock = (
        file_lock(store_file.with_name(f"{store_file.name}.lock"), f"the MLflow store {store_file}")
        if store_file
        else contextlib.nullcontext()
    )
    with lock:
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return client, experiment.experiment_id
        artifacts = (Path(store_dir).absolute() / ARTIFACTS_DIR).as_uri() if local else None
        try:
            return client, client.create_experiment(name, artifact_location=artifacts)
        except MlflowException:  # a job of another machine created it first (a shared server)
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return client, experiment.experiment_id


def _param_text(value: bool | int | float | str) -> str:
    """MLflow params are text: strings as they are, other values as JSON (true, 0.001, 128)."""
    return (value if isinstance(value, str) else json.dumps(value))[:6000]  # MLflow's limit


def _now_ms() -> int:
    return int(time.time() * 1000)


class MlflowTracker:
    def __init__(self, config: LoggerConfig):
        self.config = config
        self.client: Any = None
        self.run_id: str | None = None
        self.step = 0
        self.pending: list[Any] = []  # epochs being logged by MLflow's async queue

    def start(self, run: RunFacts) -> None:
        from mlflow.entities import Param, RunTag

        self.client, experiment_id = open_experiment(self.config, run.store_dir)
        self.step = len(run.history)
        earlier = self._earlier_run(experiment_id, run.run_dir)
        if earlier is None:  # a new run: its params once (a resumed run's differ only in resume=true)
            tags = {**run.tags(), RUN_KEY_TAG: run_key(run.run_dir), "mlflow.source.git.commit": run.git_commit or ""}
            self.run_id = self.client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id
            params = [Param(key, _param_text(value)) for key, value in run.params().items()]
            for start in range(0, len(params), 100):  # log_batch takes at most 100 params
                self.client.log_batch(self.run_id, params=params[start : start + 100])
            logged = set()
        else:  # resuming this run folder's run: mark it running again, add the epochs it lacks
            self.run_id = earlier
            self.client.update_run(self.run_id, status="RUNNING")
            self.client.log_batch(self.run_id, tags=[RunTag("status", RunStatus.running.value)])
            logged = {metric.step for metric in self.client.get_metric_history(self.run_id, "val/acc")}
        for epoch in with_running_best(run.history):
            if epoch["epoch"] not in logged:
                self.log_epoch(epoch)

    def _earlier_run(self, experiment_id: str, run_dir: Path) -> str | None:
        """The run an earlier attempt in this run folder created (resume=true), or None. Found by a hash of
        the folder's path: a path may hold quotes, which MLflow's filter strings cannot."""
        key = f"tags.{RUN_KEY_TAG} = '{run_key(run_dir)}'"
        found = self.client.search_runs([experiment_id], filter_string=key, max_results=1)
        return found[0].info.run_id if found else None

    def log_epoch(self, epoch: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        self.step = int(epoch["epoch"])
        now = _now_ms()
        metrics = [Metric(name, value, now, self.step) for name, value in epoch_metrics(epoch).items()]
        self.pending.append(self.client.log_batch(self.run_id, metrics=metrics, synchronous=False))

    def finish(self, results: dict[str, Any], final: dict[str, float]) -> None:
        from mlflow.entities import Metric, RunTag

        now = _now_ms()
        status = str(results.get("status"))
        tags = [RunTag("status", status)]
        if results.get("error"):
            tags.append(RunTag("error", str(results["error"])[:MAX_TAG_LENGTH]))
        metrics = [Metric(name, value, now, self.step) for name, value in final.items()]
        failure = None
        for operation in self.pending:  # the epochs first; one that failed is reported after the run is ended
            try:
                operation.wait()
            except Exception as error:
                failure = failure or error
        self.pending = []
        self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
        self.client.set_terminated(self.run_id, status=MLFLOW_STATUS.get(status, "FAILED"))
        if failure is not None:
            raise failure
