"""One training run from a typed config: prepare data (once per process), build the model, train,
evaluate on test with the best-validation weights, and record everything in the run directory."""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agnews import checkpoint
from agnews import data as ag_news
from agnews.config import AppConfig, EmbeddingConfig, EmbeddingKind, OovInit, to_plain_dict
from agnews.embeddings import EmbeddingMatrix, build_embedding_matrix, load_glove
from agnews.model import build_model, count_parameters
from agnews.prepare import prepare_data
from agnews.results import RESULTS_FORMAT, RunStatus, git_commit, read_run_results, write_run_results
from agnews.storage import AgnewsError, resolve_cache_dir
from agnews.text import Vocab
from agnews.train import DivergedError, FitResult, can_use_sparse_embedding, evaluate, fit, select_device

log = logging.getLogger(__name__)


# Consecutive jobs of a sweep in one process (basic and joblib launchers reuse workers) usually share
# the embedding and differ in seed: keep the last matrix built. Only one, as a glove300 matrix for a full
# AG News vocab is over 100 MB. The key holds everything the matrix depends on.
_last_embedding: dict[tuple, EmbeddingMatrix] = {}


def prepare_embedding(config: EmbeddingConfig, vocab: Vocab, cache_dir: Path, seed: int, progress: bool = True):
    """The GloVe matrix for `vocab` (an EmbeddingMatrix), or None for learned embeddings."""
    if config.kind is EmbeddingKind.learned:
        return None
    oov_seed = seed if config.oov is OovInit.random else None
    key = (config.dim, config.path, str(cache_dir), tuple(config.urls), config.oov, id(vocab), oov_seed)
    if key not in _last_embedding:
        glove = load_glove(config.dim, cache_dir, path=config.path, urls=config.urls, progress=progress)
        _last_embedding.clear()
        _last_embedding[key] = build_embedding_matrix(vocab.itos, glove, config.oov, seed=seed)
    return _last_embedding[key]  # build_embedding_matrix logged its coverage


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def run_experiment(config: AppConfig, run_dir: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Train and evaluate one configuration; results.json in `run_dir` tracks the run from its start.

    With `config.resume`, a run already completed in `run_dir` with the same config is returned as it
    is, and a killed or failed one continues from its last checkpoint.
    """
    plain_config = to_plain_dict(config)
    previous = _previous_run(run_dir, plain_config, config.resume)
    if previous is not None and previous["status"] == RunStatus.completed:
        log.info("Skipping %s: completed earlier with the same config (test acc %.2f%%)", run_dir,
                 100 * previous["metrics"]["test_acc"])  # fmt: skip
        (run_dir / checkpoint.CHECKPOINT_FILE).unlink(missing_ok=True)
        return previous
    started = time.perf_counter()
    if config.trainer.num_threads is not None:
        torch.set_num_threads(config.trainer.num_threads)
    device = select_device(config.trainer.device)
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "status": RunStatus.running.value,
        "error": None,
        "config": plain_config,
        "overrides": list(overrides or []),
        "metrics": {},
        "history": [],
        "embedding_coverage": None,
        "torch_version": torch.__version__,
        "device": str(device),
        "git_commit": git_commit(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        write_run_results(run_dir, results)
    except OSError as error:
        raise AgnewsError(f"cannot write to the run directory {run_dir} ({error}); choose a writable one "
                          "with hydra.run.dir=PATH (or hydra.sweep.dir=PATH for a sweep)") from error  # fmt: skip
    try:
        _train_and_test(config, run_dir, device, results, started)
    except DivergedError as error:
        results.update(status=RunStatus.diverged.value, error=str(error))
        log.error("Run diverged: %s", error)
    except BaseException as error:
        results.update(status=RunStatus.failed.value, error=f"{type(error).__name__}: {error}")
        raise
    finally:
        results["wall_time_s"] = time.perf_counter() - started
        results["metrics"]["wall_time_s"] = results["wall_time_s"]
        results["metrics"]["num_parameters"] = results.get("num_parameters")
        results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_run_results(run_dir, results)
    (run_dir / checkpoint.CHECKPOINT_FILE).unlink(missing_ok=True)  # the run ended: nothing left to resume
    return results


def _previous_run(run_dir: Path, plain_config: dict[str, Any], resume: bool) -> dict[str, Any] | None:
    """What an earlier run left in run_dir (its results), or None; refuses to touch it unless resuming
    the same config."""
    previous = read_run_results(run_dir)
    if previous is None and not (run_dir / checkpoint.CHECKPOINT_FILE).exists():
        return None
    status = previous["status"] if previous else "killed before its first results"
    if not resume:
        raise AgnewsError(
            f"{run_dir} already holds a run ({status}). Pass resume=true to skip it if it completed or continue "
            "it from its last checkpoint, or choose a new hydra.run.dir / hydra.sweep.dir."
        )
    differences = checkpoint.config_differences(previous["config"], plain_config) if previous else []
    if differences:
        raise AgnewsError(
            f"{run_dir} holds a run of another config ({'; '.join(differences[:5])}); it is left untouched. "
            "Resume with the original settings, or run the new config into a new directory."
        )
    return previous


def _train_and_test(
    config: AppConfig, run_dir: Path, device: torch.device, results: dict[str, Any], started: float
) -> None:
    """The run itself; fills `results` (metrics, history, sizes) as it goes. `started`: perf_counter at start."""
    seed_everything(config.seed)
    data = prepare_data(config.data, progress=config.trainer.progress_bar)
    data.vocab.save(run_dir / "vocab.txt")
    cache_dir = resolve_cache_dir(config.data.cache_dir)
    matrix = prepare_embedding(config.embedding, data.vocab, cache_dir, config.seed, config.trainer.progress_bar)
    if matrix is not None:
        results["embedding_coverage"] = {"found": matrix.found, "total": matrix.total}
    pretrained = None if matrix is None else torch.from_numpy(matrix.weights)
    num_classes = len(ag_news.CLASS_NAMES)
    sparse = can_use_sparse_embedding(config.optimizer)
    model = build_model(config.model, config.embedding, len(data.vocab), num_classes, pretrained, sparse).to(device)
    total, trainable = count_parameters(model)
    results.update(num_parameters=total, num_trainable_parameters=trainable)
    log.info("Model: %d parameters (%d trainable) on %s", total, trainable, device)

    checkpoint_path = run_dir / checkpoint.CHECKPOINT_FILE
    resume_from = None
    if config.resume and checkpoint_path.exists():
        resume_from = checkpoint.load(checkpoint_path, checkpoint.CHECKPOINT_FORMAT, results["config"], device)
        results["resumed_after_epoch"] = len(resume_from["history"])

    def on_epoch_end(progress: FitResult, snapshot) -> None:
        results["history"] = progress.history
        if config.trainer.checkpoint:
            content = {"format": checkpoint.CHECKPOINT_FORMAT, "config": results["config"], **snapshot()}
            checkpoint.save(checkpoint_path, content)
        write_run_results(run_dir, results)

    results["setup_time_s"] = time.perf_counter() - started  # data, embedding and model ready: first batch next
    fitted = fit(model, data.train, data.val, config.trainer, config.optimizer, device, config.seed,
                 resume_from=resume_from, on_epoch_end=on_epoch_end)  # fmt: skip
    results["history"] = fitted.history
    model.load_state_dict(fitted.best_state)
    checkpoint.save(run_dir / checkpoint.MODEL_FILE, {
        "format": checkpoint.MODEL_FORMAT, "config": results["config"], "state_dict": fitted.best_state,
        "best_epoch": fitted.best_epoch, "class_names": list(ag_news.CLASS_NAMES),
    })  # fmt: skip
    test_loss, test_acc = evaluate(model, data.test, config.trainer.batch_size, device,
                                   config.trainer.bucket_by_length, config.trainer.precision)  # fmt: skip
    last = fitted.history[-1]
    results["metrics"] = {
        "test_acc": test_acc,
        "test_loss": test_loss,
        "best_val_acc": fitted.best_val_acc,
        "best_epoch": fitted.best_epoch,
        "epochs": len(fitted.history),
        "stopped_early": fitted.stopped_early,
        "final_train_acc": last["train_acc"],
        "final_train_loss": last["train_loss"],
        "final_val_acc": last["val_acc"],
    }
    results["status"] = RunStatus.completed.value
    log.info("Test accuracy %.2f%% with the weights of epoch %d (val %.2f%%)", 100 * test_acc,
             fitted.best_epoch, 100 * fitted.best_val_acc)  # fmt: skip
