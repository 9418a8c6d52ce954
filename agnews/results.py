"""The record a run keeps of itself: `results.json` (resolved config, status, metrics, per-epoch history,
environment, the data it trained on) and `history.csv` (the history as a table). Written by the run as it
goes; read by resume, summary.csv and the report, which trust nothing else in a run folder.

`read_job` is the one reader of a job folder. A job's labels come from its own results.json: the
resolved config for any config key, the overrides it recorded for the rest (`+experiment=...`). Hydra
rewrites `.hydra/overrides.yaml` and `multirun.yaml` whenever a command reaches the folder, even one that
agnews then refuses, so those files are read only for a job that never wrote results.json.

No torch here: the report imports this module and must start fast.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from agnews.storage import AgnewsError, atomic_write_text

# The files of a run folder. checkpoint.py writes the two .pt files; their names live here, without torch,
# for the launcher and predict.
RESULTS_FILE = "results.json"
HISTORY_FILE = "history.csv"
VOCAB_FILE = "vocab.txt"
MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"
RUN_FILES = frozenset({RESULTS_FILE, HISTORY_FILE, VOCAB_FILE, MODEL_FILE, CHECKPOINT_FILE, "run.log"})
RESULTS_FORMAT = "agnews-results/1"


@dataclass(frozen=True)
class Metric:
    name: str  # flat snake_case: its key in results.json ("metrics", or a history entry)
    tracked_as: str | None = None  # what trackers (TensorBoard, MLflow, W&B) log it as; None: not logged
    in_summary: bool = False  # a column of summary.csv (and of the report's table of runs)


# What a run establishes once (results.json "metrics"): the one list summary.csv, the report and the trackers
# read. A new metric is a line here, and the value in the metrics experiment.run_experiment records.
RUN_METRICS = (
    Metric("test_acc", "test/acc", in_summary=True),  # measured once, with the best-validation weights
    Metric("test_loss", "test/loss"),
    Metric("best_val_acc", in_summary=True),  # logged per epoch as val/best_acc
    Metric("best_epoch", "best_epoch", in_summary=True),
    Metric("epochs", in_summary=True),
    Metric("stopped_early"),
    Metric("final_train_acc"),
    Metric("final_train_loss"),
    Metric("final_val_acc"),
    Metric("wall_time_s", "perf/wall_time_s", in_summary=True),
    Metric("setup_time_s", "perf/setup_time_s"),  # start to first batch: data, embedding and model ready
    Metric("num_parameters", "model/parameters", in_summary=True),
    Metric("num_trainable_parameters", "model/trainable_parameters"),
)
# Per epoch (results.json "history", history.csv in this column order; step = epoch for trackers).
EPOCH_METRICS = (
    Metric("epoch"),
    Metric("train_loss", "train/loss"),
    Metric("train_acc", "train/acc"),
    Metric("val_loss", "val/loss"),
    Metric("val_acc", "val/acc"),
    Metric("lr", "train/lr"),
    Metric("epoch_time_s", "perf/epoch_time_s"),
    Metric("samples_per_s", "perf/samples_per_s"),
)
HISTORY_COLUMNS = tuple(metric.name for metric in EPOCH_METRICS)
SUMMARY_METRICS = tuple(metric.name for metric in RUN_METRICS if metric.in_summary)


class RunStatus(StrEnum):
    completed = "completed"
    running = "running"  # results.json written at the start; a run killed before its end stays so
    failed = "failed"
    diverged = "diverged"
    interrupted = "interrupted"  # stopped with Ctrl-C (SIGINT) or SIGTERM; resume=true continues it
    pruned = "pruned"  # a search's pruner stopped it after an epoch: not a failure, not in the report's means
    unfinished = "unfinished"  # a job folder with no results.json at all
    unreadable = "unreadable"  # a results.json that cannot be read: its numbers are unknown
    copy = "copy"  # a folder holding a run recorded elsewhere (report.sweep.mark_copies): counted once, there


def write_run_results(run_dir: Path, results: dict[str, Any]) -> None:
    """Write results.json and history.csv, each atomically."""
    atomic_write_text(run_dir / RESULTS_FILE, json.dumps(results, indent=2, allow_nan=True) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(results.get("history", []))
    atomic_write_text(run_dir / HISTORY_FILE, buffer.getvalue())


def read_run_results(run_dir: Path) -> dict[str, Any] | None:
    """The run's results.json as a dict; None when the run never wrote one; AgnewsError naming the file
    when it cannot be read or is not an agnews results file."""
    path = run_dir / RESULTS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise AgnewsError(f"{path} cannot be read ({error}); delete that job's folder and rerun it") from error
    try:
        results = json.loads(text)
    except json.JSONDecodeError as error:
        raise AgnewsError(f"{path} is not valid JSON ({error}); delete that job's folder and rerun it") from error
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise AgnewsError(f"{path} is not an agnews results file (expected format {RESULTS_FORMAT!r})")
    if results.get("status") not in set(RunStatus) or not isinstance(results.get("config"), dict):
        raise AgnewsError(f"{path} has no valid status and config; delete that job's folder and rerun it")
    return results


# Hydra's grid sweeper; any other sweeper (Optuna, Nevergrad, Ax) proposes its jobs' settings itself.
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


DATA_KEY = "data.key"  # a job's label for the data it trained on: runs on other data never share a row
DATA_KEY_SHOWN = 8


@dataclass(frozen=True)
class JobRecord:
    folder: Path
    status: str  # a RunStatus value
    error: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config the run recorded; {} if none
    overrides: dict[str, str] = field(default_factory=dict)  # key -> value, '+'/'~' prefixes dropped
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    sweeper: str | None = None  # the Hydra sweeper that launched the job (its _target_); None if not recorded
    launch_job: str | None = None  # '<launch id>/<job number>' of the multirun launch that ran it, if recorded
    run_id: str = ""  # which run this is, the same in every copy of its folder ("" for a folder without a record)
    recorded_sweep: str | None = None  # the sweep folder the run recorded (as its launch saw it); None: a single run
    recorded_job: str | None = None  # the job number it recorded in that sweep
    data_key: str | None = None  # the prepared-data key of the data it was trained on, if recorded
    embedding_kind: dict[str, Any] = field(default_factory=dict)  # {"name", "label", "pretrained"} of its kind

    @property
    def job(self) -> str:
        return self.folder.name

    def label(self, key: str) -> str | None:
        """The job's value of `key`, spelled as in an override: the recorded config's value when the key is
        a config setting (a group gives its option's name), else the recorded override, else None.
        DATA_KEY is the data the run trained on (the first characters of its prepared-data key)."""
        if key == DATA_KEY:
            return self.data_key[:DATA_KEY_SHOWN] if self.data_key else None
        value = _config_value(self.config, key)
        return value if value is not None else self.overrides.get(key)


def _config_value(config: dict[str, Any], key: str) -> str | None:
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, dict):
        value = value.get("name")
    return None if value is None else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


def parse_overrides(items: Iterable[Any]) -> dict[str, str]:
    """["+experiment=x", "seed=1"] -> {"experiment": "x", "seed": "1"}."""
    overrides = {}
    for item in items:
        key, _, value = str(item).partition("=")
        overrides[key.lstrip("+~")] = value
    return overrides


def _hydra_overrides(job_dir: Path) -> dict[str, str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    try:
        return parse_overrides(yaml.safe_load(path.read_text(encoding="utf-8")) or [])
    except (OSError, yaml.YAMLError, TypeError):
        return {}


def read_job(job_dir: Path) -> JobRecord:
    """A job folder as the run recorded it; never raises for a damaged folder (its status says so)."""
    try:
        results = read_run_results(job_dir)
    except AgnewsError as error:
        return JobRecord(job_dir, RunStatus.unreadable.value, str(error), overrides=_hydra_overrides(job_dir))
    if results is None:
        note = f"no {RESULTS_FILE}: the job never started, or was killed before its first write"
        return JobRecord(job_dir, RunStatus.unfinished.value, note, overrides=_hydra_overrides(job_dir))
    history = results.get("history")
    sweep = results.get("sweep") if isinstance(results.get("sweep"), dict) else {}
    data = results.get("data") if isinstance(results.get("data"), dict) else {}
    return JobRecord(
        folder=job_dir,
        status=results["status"],
        error=results.get("error") or "",
        config=results["config"],
        overrides=parse_overrides(results.get("overrides") or []),
        metrics=run_metrics(results),
        history=[epoch for epoch in history or [] if isinstance(epoch, dict)],
        sweeper=sweep.get("sweeper"),
        launch_job=results.get("launch_job") if isinstance(results.get("launch_job"), str) else None,
        run_id=str(results.get("run_id") or _legacy_run_id(results, job_dir)),
        recorded_sweep=str(sweep["dir"]) if sweep.get("dir") else None,
        recorded_job=str(sweep["job"]) if sweep.get("job") is not None else None,
        data_key=str(data["key"]) if data.get("key") else None,
        embedding_kind=_embedding_kind(results),
    )


def run_metrics(results: dict[str, Any]) -> dict[str, Any]:
    """results.json's "metrics"; from a file written before they all lived there, also the counts and times
    it kept at its top level."""
    metrics = dict(results["metrics"]) if isinstance(results.get("metrics"), dict) else {}
    for name in ("num_parameters", "num_trainable_parameters", "wall_time_s", "setup_time_s"):
        if metrics.get(name) is None and results.get(name) is not None:
            metrics[name] = results[name]
    return metrics


def _embedding_kind(results: dict[str, Any]) -> dict[str, Any]:
    """The kind of embedding a run started from, as it recorded it (agnews.embeddings); for a run recorded
    before kinds were recorded, what its config's kind meant then: learned, or GloVe."""
    recorded = results.get("embedding_kind")
    if isinstance(recorded, dict) and {"name", "label", "pretrained"} <= recorded.keys():
        return recorded
    embedding = results["config"].get("embedding")
    name = embedding.get("kind") if isinstance(embedding, dict) else None
    if name is None:
        return {}
    return {"name": name, "label": {"glove": "GloVe"}.get(name, name), "pretrained": name != "learned"}


def _legacy_run_id(results: dict[str, Any], job_dir: Path) -> str:
    """The identity of a run recorded before run ids: where and when it started, which a copy keeps; a record
    without a start time has only its folder."""
    if not results.get("started_at"):
        return f"folder:{job_dir.resolve()}"
    where = json.dumps(
        [results.get("sweep"), results.get("launch_job"), results.get("started_at"), results.get("config")],
        sort_keys=True,
    )
    return "legacy-" + hashlib.sha256(where.encode()).hexdigest()[:16]
