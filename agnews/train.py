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
from agnews.config import LrDecay, OptimizerConfig, OptimizerName, TrainerConfig
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


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    if config.name is OptimizerName.sgd:
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.name is OptimizerName.adam:
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)


def train_one_epoch(
    model: nn.Module,
    data: EncodedTexts,
    optimizer: torch.optim.Optimizer,
    trainer: TrainerConfig,
    grad_clip: float | None,
    device: torch.device,
    rng: np.random.Generator,
    description: str = "train",
) -> tuple[float, float]:
    """One pass over `data` in shuffled batches; returns (mean loss, accuracy) over the epoch."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    num_batches = math.ceil(len(data) / trainer.batch_size)
    batches = iterate_batches(data, trainer.batch_size, rng, trainer.bucket_by_length)
    # disable=None: tqdm shows the bar on a terminal only, so Slurm logs and joblib workers stay clean.
    show = None if trainer.progress_bar else True
    progress = tqdm(batches, total=num_batches, desc=description, leave=False, disable=show)
    for step, (token_ids, lengths, labels) in enumerate(progress, start=1):
        token_ids, labels = token_ids.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        logits = model(token_ids, lengths)  # [B, C]
        loss = nn.functional.cross_entropy(logits, labels)
        if not torch.isfinite(loss):
            raise DivergedError(f"training loss became {loss.item()} at batch {step} of {description}")
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()

        loss_sum += loss.item() * len(labels)
        correct += (logits.argmax(dim=1) == labels).sum().item()
        seen += len(labels)
        if step % trainer.log_interval == 0:
            log.info("%s | batch %d/%d | loss %.4f | acc %.2f%%", description, step, num_batches,
                     loss_sum / seen, 100 * correct / seen)  # fmt: skip
    return loss_sum / seen, correct / seen


@torch.no_grad()
def evaluate(model: nn.Module, data: EncodedTexts, batch_size: int, device: torch.device, bucket_by_length: bool):
    """(mean loss, accuracy) of `model` on `data`."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for token_ids, lengths, labels in iterate_batches(data, batch_size, None, bucket_by_length):
        token_ids, labels = token_ids.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        logits = model(token_ids, lengths)
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(dim=1) == labels).sum().item()
    return loss_sum / len(data), correct / len(data)


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per epoch, results.HISTORY_COLUMNS
    best_epoch: int = 0
    best_val_acc: float = -1.0
    best_state: dict[str, torch.Tensor] | None = None  # the weights of the best-validation epoch


def fit(
    model: nn.Module,
    train_data: EncodedTexts,
    val_data: EncodedTexts,
    trainer: TrainerConfig,
    optimizer_config: OptimizerConfig,
    device: torch.device,
    seed: int,
    on_epoch_end: Callable[[FitResult], None] | None = None,
) -> FitResult:
    """Train for `trainer.epochs`, keeping the weights of the epoch with the best validation accuracy."""
    optimizer = build_optimizer(model, optimizer_config)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=optimizer_config.lr_gamma)
    rng = np.random.default_rng(seed)  # batch order; torch's own RNG (init, dropout) is seeded by the caller
    result = FitResult()
    for epoch in range(1, trainer.epochs + 1):
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        description = f"epoch {epoch}/{trainer.epochs}"
        train_loss, train_acc = train_one_epoch(
            model, train_data, optimizer, trainer, optimizer_config.grad_clip, device, rng, description
        )
        epoch_time = time.perf_counter() - started
        val_loss, val_acc = evaluate(model, val_data, trainer.batch_size, device, trainer.bucket_by_length)
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
            on_epoch_end(result)
    return result
