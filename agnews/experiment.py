"""One training run from a typed config: claim the run folder, prepare data (once per process), build the
model, train, evaluate on test with the best-validation weights, and record everything in the folder.

results.json is built in one place (`_record`) from the parts a run knows: its header (config, overrides,
environment), its `RunProgress` (what training has established so far) and its end (status, metrics).
It is written when the run starts, after every epoch and when it ends, so a killed run leaves a record.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from agnews import checkpoint
from agnews.config import AppConfig, EmbeddingConfig, OovInit, to_plain_dict
from agnews.data import ag_news
from agnews.data.glove import EmbeddingMatrix, build_embedding_matrix
from agnews.data.prepare import data_key, prepare_data
from agnews.data.text import Vocab
from agnews.devices import check_device
from agnews.embeddings import embedding_kind
from agnews.locks import claim_folder
from agnews.model import build_model, count_parameters
from agnews.results import (
    CHECKPOINT_FILE,
    MODEL_FILE,
    RESULTS_FORMAT,
    VOCAB_FILE,
    RunStatus,
    write_run_results,
)
from agnews.run_folder import REQUEUED, Action, decide, other_run
from agnews.storage import AgnewsError, remove_stale_temporaries, resolve_cache_dir
from agnews.threads import choose_threads
from agnews.tracking.facts import RunFacts
from agnews.tracking.tracker import Tracking
from agnews.train import DivergedError, Pruned, TrainState, can_use_sparse_embedding, evaluate, fit

log = logging.getLogger(__name__)

CHOOSE_RUN_DIR = "choose a writable one with hydra.run.dir=PATH (or hydra.sweep.dir=PATH for a sweep)"

# Consecutive jobs of a sweep in one process (basic and joblib launchers reuse workers) usually share
# the embedding and differ in seed: keep the last matrix built. Only one, as a glove300 matrix for a full
# AG News vocab is over 100 MB. The key holds everything the matrix depends on.
_last_embedding: dict[tuple, EmbeddingMatrix] = {}


def prepare_embedding(
    config: EmbeddingConfig, vocab: Vocab, cache_dir: Path, seed: int, progress: bool = True
) -> EmbeddingMatrix | None:
    """The matrix of pretrained vectors for `vocab` that the embedding's kind gives (agnews.embeddings), or None
    for a kind trained from scratch."""
    kind = embedding_kind(config.kind)
    if not kind.pretrained:
        return None
    oov_seed = seed if config.oov is OovInit.random else None
    key = (kind.name, config.dim, config.path, str(cache_dir), tuple(config.urls), config.oov, vocab.digest, oov_seed)
    if key not in _last_embedding:
        vectors = kind.load_vectors(config, cache_dir, progress)
        _last_embedding.clear()
        _last_embedding[key] = build_embedding_matrix(vocab.itos, vectors, config.oov, seed=seed)
    return _last_embedding[key]  # build_embedding_matrix logged its coverage


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


@dataclass
class RunProgress:
    """What a run has established so far; the training step fills it in as it goes, so a run that fails
    halfway still records its finished epochs and its setup."""

    history: list[dict[str, Any]] = field(default_factory=list)
    device: str | None = None
    threads: dict[str, Any] | None = None  # the torch threads it chose, and why (agnews.threads)
    data: dict[str, Any] | None = None  # {"key": prepared-data key, "vocab_sha256": ...}: which data it trains on
    embedding_kind: dict[str, Any] | None = None  # its kind's name, label and whether it is pretrained
    embedding_coverage: dict[str, int] | None = None
    resumed_after_epoch: int | None = None
    # Known before the run ends, recorded in results.json's "metrics" (results.RUN_METRICS) from the start.
    counts: dict[str, Any] = field(default_factory=dict)  # num_parameters, num_trainable_parameters, setup_time_s


class Terminated(BaseException):
    """Raised in a run when its process receives SIGTERM (kill, timeout, docker stop, Slurm's scancel), so
    that the run records itself as interrupted and keeps its checkpoint, as for Ctrl-C."""


def run_experiment(
    config: AppConfig,
    run_dir: Path,
    overrides: list[str] | None = None,
    sweep: dict[str, Any] | None = None,
    launch_job: str | None = None,
    pruning: EpochPruning | None = None,
) -> dict[str, Any]:
    """Train and evaluate one configuration in `run_dir`; return its results.json content. `sweep` says
    where a sweep's job belongs ({"dir", "job", "sweeper"}; results.json records it), None for a single run.

    The folder is claimed for the run's duration: a second command reaching it fails at once. With
    `config.resume`, a run completed there with the same config and data is returned as it is, and a
    killed, failed or interrupted one continues from its last checkpoint. `launch_job` names the job of a
    multirun launch (launch.launch_job): a run it recorded itself is resumed without resume=true, as that
    is the same job run again (a cluster requeued it after a preemption or time limit).
    """
    run_dir = Path(run_dir)
    with claim_folder(run_dir, "run directory", CHOOSE_RUN_DIR):
        remove_stale_temporaries(run_dir)  # a killed write's; nobody else writes here while we hold the claim
        cache_dir = resolve_cache_dir(config.data.cache_dir)
        decision = decide(run_dir, config, data_key=lambda: data_key(config.data, cache_dir), launch_job=launch_job)
        if decision.action is Action.refuse:
            raise AgnewsError(f"{run_dir} {decision.reason}")
        if decision.action is Action.skip:
            log.info(
                "Skipping %s: %s (test acc %.2f%%)",
                run_dir,
                decision.reason,
                100 * decision.previous["metrics"]["test_acc"],
            )
            (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
            return decision.previous
        previous = decision.previous
        if decision.action is Action.rerun:
            log.warning("%s completed earlier, but %s: running it again from scratch", run_dir, decision.reason)
            (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)  # from scratch: no checkpoint anyone left there
            previous = None
        if decision.requeued:
            log.info("%s holds %s: continuing it", run_dir, REQUEUED)
        if decision.action is Action.resume:
            config = replace(config, resume=True)
        return _run(config, run_dir, cache_dir, overrides or [], previous, sweep, launch_job, pruning)


class EpochPruning(Protocol):
    """A search's judge of its trial (agnews.sweep.study.TrialPruning): told the history after every epoch, it
    raises train.Pruned to stop the run."""

    def after_epoch(self, history: list[dict[str, Any]]) -> None: ...


def _run(
    config: AppConfig,
    run_dir: Path,
    cache_dir: Path,
    overrides: list[str],
    previous: dict[str, Any] | None,
    sweep: dict[str, Any] | None,
    launch_job: str | None,
    pruning: EpochPruning | None,
) -> dict[str, Any]:
    started = time.perf_counter()
    tracking = Tracking.open(config.logger)  # a missing package fails here, before anything is read
    header = {
        "format": RESULTS_FORMAT,
        # Which run this is, wherever its folder is copied: kept when the run resumes, new for a new run.
        "run_id": (previous or {}).get("run_id") or uuid.uuid4().hex,
        "config": to_plain_dict(config),
        "overrides": list(overrides),
        "sweep": sweep,
        "launch_job": launch_job,
        "torch_version": torch.__version__,
        "git_commit": git_commit(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    # A resumed run keeps the epochs it recorded, even if this attempt fails before training.
    progress = RunProgress(history=list(previous["history"]) if previous else [])
    write_run_results(run_dir, _record(header, progress, RunStatus.running))
    tracking.start(RunFacts.of(run_dir, header, progress.history))
    status, error, metrics = RunStatus.failed, None, {}
    try:
        metrics = _train_and_test(config, run_dir, cache_dir, header, progress, previous, tracking, pruning)
        status = RunStatus.completed
    except Pruned as caught:
        status, error = RunStatus.pruned, str(caught)
        metrics = _metrics_so_far(progress.history)
        log.info("Run %s", caught)
    except DivergedError as caught:
        status, error = RunStatus.diverged, str(caught)
        log.error("Run diverged: %s", caught)
    except KeyboardInterrupt:
        status, error = RunStatus.interrupted, "interrupted (Ctrl-C)"
        raise
    except Terminated:
        status, error = RunStatus.interrupted, "stopped by SIGTERM (kill, timeout, docker stop or scancel)"
        raise
    except SystemExit as caught:  # how submitit stops a job that it requeues
        status = RunStatus.interrupted
        error = f"stopped by SystemExit({caught.code}), as submitit stops a preempted or timed-out job"
        raise
    except BaseException as caught:
        error = f"{type(caught).__name__}: {caught}"
        raise
    finally:
        wall_time = time.perf_counter() - started
        results = _record(header, progress, status, error, metrics, wall_time)
        write_run_results(run_dir, results)
        tracking.finish(results)
    (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)  # the run ended: nothing left to resume
    return results


def _record(
    header: dict[str, Any],
    progress: RunProgress,
    status: RunStatus,
    error: str | None = None,
    metrics: dict[str, Any] | None = None,
    wall_time_s: float | None = None,
) -> dict[str, Any]:
    """results.json's content; the one place that assembles it. Every number a run establishes once is in
    "metrics" (results.RUN_METRICS), and only there."""
    facts = asdict(progress)
    record = {**header, "status": status.value, "error": error, "metrics": {**facts.pop("counts"), **(metrics or {})}}
    record.update(facts)
    if wall_time_s is not None:
        record["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        record["metrics"]["wall_time_s"] = wall_time_s
    return record


def _train_and_test(
    config: AppConfig,
    run_dir: Path,
    cache_dir: Path,
    header: dict[str, Any],
    progress: RunProgress,
    previous: dict[str, Any] | None,
    tracking: Tracking,
    pruning: EpochPruning | None = None,
) -> dict[str, Any]:
    """The run itself; returns the test metrics. Fills `progress` as it goes."""
    started = time.perf_counter()
    trainer = config.trainer
    # Set for every job: a process that runs several jobs (the basic launcher, joblib and Ray workers) must not
    # hand one job's thread count to the next.
    threads = choose_threads(trainer.num_threads)
    torch.set_num_threads(threads.count)
    progress.threads = threads.as_record()
    log.info("%d torch thread(s): %s", threads.count, threads.why)
    device = check_device(trainer)
    progress.device = str(device)
    seed_everything(config.seed)
    data = prepare_data(config.data, cache_dir, progress=trainer.progress_bar)
    progress.data = {"key": data.key, "vocab_sha256": data.vocab.digest}
    data.vocab.save(run_dir / VOCAB_FILE)
    matrix = prepare_embedding(config.embedding, data.vocab, cache_dir, config.seed, trainer.progress_bar)
    progress.embedding_kind = embedding_kind(config.embedding.kind).facts()
    if matrix is not None:
        progress.embedding_coverage = {"found": matrix.found, "total": matrix.total}
    pretrained = None if matrix is None else torch.from_numpy(matrix.weights)
    sparse = can_use_sparse_embedding(config.optimizer)
    num_classes = len(ag_news.CLASS_NAMES)
    model = build_model(config.model, config.embedding, len(data.vocab), num_classes, pretrained, sparse).to(device)
    total, trainable = count_parameters(model)
    progress.counts.update(num_parameters=total, num_trainable_parameters=trainable)
    log.info("Model: %d parameters (%d trainable) on %s", total, trainable, device)

    state = TrainState(model, config.optimizer, trainer, device, config.seed)
    checkpoint_path = run_dir / CHECKPOINT_FILE
    if config.resume and checkpoint_path.exists():
        saved = checkpoint.load_checkpoint(checkpoint_path, device)
        mismatch = other_run(saved["config"], {"key": saved.get("data_key")}, config, lambda: data.key)
        if mismatch:
            raise AgnewsError(
                f"{checkpoint_path} was made by a run {mismatch.what}; it is not loaded. {mismatch.remedy}"
            )
        state.load_state_dict(saved)
        progress.resumed_after_epoch = len(state.history)

    def on_epoch_end(state: TrainState) -> None:
        progress.history = list(state.history)
        if trainer.checkpoint:
            checkpoint.save_checkpoint(checkpoint_path, state.state_dict(), header["config"], data.key)
        write_run_results(run_dir, _record(header, progress, RunStatus.running))
        tracking.log_epoch(state.history[-1])
        if pruning is not None:  # last: the epoch is recorded and mirrored whether or not the search stops here
            pruning.after_epoch(state.history)

    progress.counts["setup_time_s"] = time.perf_counter() - started
    fit(state, data.train, data.val, trainer, config.optimizer, on_epoch_end)
    progress.history = list(state.history)
    model.load_state_dict(state.best_state)
    checkpoint.save_model(
        run_dir / MODEL_FILE,
        header["config"],
        state.best_state,
        state.best_epoch,
        list(ag_news.CLASS_NAMES),
        data.vocab.digest,
    )
    test_loss, test_acc = evaluate(model, data.test, device, trainer.precision)
    last = state.history[-1]
    log.info(
        "Test accuracy %.2f%% with the weights of epoch %d (val %.2f%%)",
        100 * test_acc,
        state.best_epoch,
        100 * state.best_val_acc,
    )
    return {
        "test_acc": test_acc,
        "test_loss": test_loss,
        "best_val_acc": state.best_val_acc,
        "best_epoch": state.best_epoch,
        "epochs": len(state.history),
        "stopped_early": state.stopped_early,
        "final_train_acc": last["train_acc"],
        "final_train_loss": last["train_loss"],
        "final_val_acc": last["val_acc"],
    }


def _metrics_so_far(history: list[dict[str, Any]]) -> dict[str, Any]:
    """What a run stopped before its test evaluation (pruned) established: its best epoch so far."""
    if not history:
        return {}
    best = max(history, key=lambda epoch: epoch["val_acc"])
    return {"best_val_acc": best["val_acc"], "best_epoch": best["epoch"], "epochs": len(history)}


def git_commit(source_dir: Path | None = None) -> str | None:
    """The project's git commit when it runs from a checkout, else None."""
    import subprocess

    source_dir = source_dir or Path(__file__).resolve().parent
    try:
        command = ["git", "rev-parse", "HEAD"]
        completed = subprocess.run(command, cwd=source_dir, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() or None
