"""The training loop: a plain PyTorch epoch loop with the notebook's SGD recipe or Adam(W)."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from agnews.batches import iterate_batches
from agnews.config import LrDecay, OptimizerConfig, OptimizerName, Precision, TrainerConfig
from agnews.storage import AgnewsError
from agnews.text import EncodedTexts

log = logging.getLogger(__name__)


class DivergedError(AgnewsError):
    """The training loss became NaN or infinite."""


def select_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; anything else is a torch device string."""
    if name != "auto":
        try:
            return torch.device(name)
        except RuntimeError as error:
            hint = "try auto, cpu, cuda, cuda:1 or mps"
            raise AgnewsError(f"trainer.device={name!r} is not a torch device: {hint}") from error
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def can_use_sparse_embedding(config: OptimizerConfig) -> bool:
    """Plain SGD (the notebook's) updates only the rows a batch touched when given sparse gradients, which
    is exactly what the dense update does to them, without writing a [vocab_size, E] gradient every step.
    Momentum and weight decay move untouched rows too, so they keep dense gradients."""
    return config.name is OptimizerName.sgd and config.momentum == 0 and config.weight_decay == 0


def clip_gradients(model: nn.Module, max_norm: float) -> None:
    """torch's clip_grad_norm_, extended to sparse embedding gradients (which it rejects)."""
    grads = [parameter.grad for parameter in model.parameters() if parameter.grad is not None]
    if not any(grad.is_sparse for grad in grads):
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        return
    # A sparse gradient may list a row more than once; coalescing sums those, giving the dense norm.
    norms = [torch.linalg.vector_norm(grad.coalesce().values() if grad.is_sparse else grad) for grad in grads]
    total_norm = torch.linalg.vector_norm(torch.stack(norms))
    scale = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
    for grad in grads:
        grad.mul_(scale)


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    if config.name is OptimizerName.sgd:
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.name is OptimizerName.adam:
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The dtype autocast runs matrix work in, or None for plain float32."""
    if precision is Precision.auto:
        return torch.float16 if device.type == "cuda" else None
    return {Precision.fp32: None, Precision.bf16: torch.bfloat16, Precision.fp16: torch.float16}[precision]


def make_grad_scaler(trainer: TrainerConfig, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling keeps float16 gradients from underflowing; a disabled scaler passes everything through."""
    enabled = device.type == "cuda" and autocast_dtype(trainer.precision, device) is torch.float16
    return torch.amp.GradScaler(device.type, enabled=enabled)


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    # Pinned host memory lets the copy overlap with the GPU still working on the previous batch.
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def train_one_epoch(
    model: nn.Module,
    data: EncodedTexts,
    optimizer: torch.optim.Optimizer,
    trainer: TrainerConfig,
    grad_clip: float | None,
    device: torch.device,
    rng: np.random.Generator,
    description: str = "train",
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[float, float]:
    """One pass over `data` in shuffled batches; returns (mean loss, accuracy) over the epoch."""
    model.train()
    scaler = scaler or make_grad_scaler(trainer, device)
    dtype = autocast_dtype(trainer.precision, device)
    loss_sum, correct, seen = 0.0, 0, 0
    num_batches = math.ceil(len(data) / trainer.batch_size)
    batches = iterate_batches(data, trainer.batch_size, rng, trainer.bucket_by_length)
    # disable=None: tqdm shows the bar on a terminal only, so Slurm logs and joblib workers stay clean.
    show = None if trainer.progress_bar else True
    progress = tqdm(batches, total=num_batches, desc=description, leave=False, disable=show)
    for step, (token_ids, lengths, labels) in enumerate(progress, start=1):
        token_ids, labels = _to_device(token_ids, device), _to_device(labels, device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(token_ids, lengths)  # [B, C]
        loss = nn.functional.cross_entropy(logits.float(), labels)
        if not torch.isfinite(loss):
            raise DivergedError(f"training loss became {loss.item()} at batch {step} of {description}")
        scaler.scale(loss).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            clip_gradients(model, grad_clip)
        scaler.step(optimizer)
        scaler.update()

        loss_sum += loss.item() * len(labels)
        correct += (logits.argmax(dim=1) == labels).sum().item()
        seen += len(labels)
        if step % trainer.log_interval == 0:
            log.info("%s | batch %d/%d | loss %.4f | acc %.2f%%", description, step, num_batches,
                     loss_sum / seen, 100 * correct / seen)  # fmt: skip
    return loss_sum / seen, correct / seen


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: EncodedTexts,
    batch_size: int,
    device: torch.device,
    bucket_by_length: bool,
    precision: Precision = Precision.auto,
) -> tuple[float, float]:
    """(mean loss, accuracy) of `model` on `data`."""
    model.eval()
    dtype = autocast_dtype(precision, device)
    loss_sum, correct = 0.0, 0
    for token_ids, lengths, labels in iterate_batches(data, batch_size, None, bucket_by_length):
        token_ids, labels = _to_device(token_ids, device), _to_device(labels, device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(token_ids, lengths).float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(dim=1) == labels).sum().item()
    return loss_sum / len(data), correct / len(data)


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per epoch, results.HISTORY_COLUMNS
    best_epoch: int = 0
    best_val_acc: float = -1.0
    best_state: dict[str, torch.Tensor] | None = None  # the weights of the best-validation epoch
    stopped_early: bool = False


def fit(
    model: nn.Module,
    train_data: EncodedTexts,
    val_data: EncodedTexts,
    trainer: TrainerConfig,
    optimizer_config: OptimizerConfig,
    device: torch.device,
    seed: int,
    resume_from: dict[str, Any] | None = None,
    on_epoch_end: Callable[[FitResult, Callable[[], dict[str, Any]]], None] | None = None,
) -> FitResult:
    """Train for `trainer.epochs` (or until `trainer.patience` epochs bring no better val accuracy),
    keeping the weights of the best-validation epoch.

    resume_from: a training state from an earlier `snapshot()` to continue from. on_epoch_end gets the
    result so far and `snapshot`, which returns that state; restoring every RNG makes a resumed run
    compute exactly what an uninterrupted one would.
    """
    optimizer = build_optimizer(model, optimizer_config)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=optimizer_config.lr_gamma)
    scaler = make_grad_scaler(trainer, device)
    rng = np.random.default_rng(seed)  # batch order; torch's own RNG (init, dropout) is seeded by the caller
    result = FitResult()
    if resume_from is not None:
        model.load_state_dict(resume_from["model"])
        optimizer.load_state_dict(resume_from["optimizer"])
        scheduler.load_state_dict(resume_from["scheduler"])
        scaler.load_state_dict(resume_from["scaler"])
        rng.bit_generator.state = resume_from["batch_rng"]
        torch.set_rng_state(resume_from["torch_rng"].cpu())
        if device.type == "cuda" and resume_from.get("cuda_rng"):
            torch.cuda.set_rng_state_all([state.cpu() for state in resume_from["cuda_rng"]])
        result = FitResult(resume_from["history"], resume_from["best_epoch"], resume_from["best_val_acc"],
                           resume_from["best_state"])  # fmt: skip
        log.info("Resuming after epoch %d of %d", len(result.history), trainer.epochs)

    def snapshot() -> dict[str, Any]:
        return {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "batch_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
            "history": result.history, "best_epoch": result.best_epoch, "best_val_acc": result.best_val_acc,
            "best_state": result.best_state,
        }  # fmt: skip

    for epoch in range(len(result.history) + 1, trainer.epochs + 1):
        if trainer.patience is not None and epoch - 1 - result.best_epoch >= trainer.patience:
            result.stopped_early = True
            log.info("Stopping early: no better val accuracy for %d epochs (best: epoch %d)",
                     trainer.patience, result.best_epoch)  # fmt: skip
            break
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        description = f"epoch {epoch}/{trainer.epochs}"
        train_loss, train_acc = train_one_epoch(
            model, train_data, optimizer, trainer, optimizer_config.grad_clip, device, rng, description, scaler
        )
        epoch_time = time.perf_counter() - started
        val_loss, val_acc = evaluate(model, val_data, trainer.batch_size, device, trainer.bucket_by_length,
                                     trainer.precision)  # fmt: skip
        result.history.append(
            {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
             "val_acc": val_acc, "lr": lr, "epoch_time_s": epoch_time, "samples_per_s": len(train_data) / epoch_time}
        )  # fmt: skip
        if val_acc > result.best_val_acc:
            result.best_epoch, result.best_val_acc = epoch, val_acc
            result.best_state = copy.deepcopy(model.state_dict())
        if optimizer_config.lr_decay is LrDecay.train_beats_val and train_acc > val_acc:
            scheduler.step()
        log.info(
            "%s | train loss %.4f acc %.2f%% | val loss %.4f acc %.2f%% | lr %g | %.1f s, %.0f samples/s",
            description, train_loss, 100 * train_acc, val_loss, 100 * val_acc, lr, epoch_time,
            result.history[-1]["samples_per_s"],
        )  # fmt: skip
        if on_epoch_end is not None:
            on_epoch_end(result, snapshot)
    return result
