"""The training loop: a plain PyTorch epoch loop with the notebook's SGD recipe or Adam(W).

`TrainState` owns everything training needs to continue after a kill (model, optimizer, scheduler,
grad scaler, the batch-order RNG, history, the best epoch's weights); `state_dict()` is what
checkpoint.pt holds, and `load_state_dict()` makes a resumed run compute exactly what an uninterrupted
one would. `fit` runs epochs on a TrainState.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from agnews.config import LrDecay, OptimizerConfig, OptimizerName, Precision, TrainerConfig
from agnews.data.batches import Batches, batch_indices, equal_length_batches
from agnews.data.text import EncodedTexts
from agnews.devices import autocast_dtype
from agnews.storage import AgnewsError

log = logging.getLogger(__name__)

# Batches between divergence checks. The losses of a window stay on the device; a check costs one host
# sync, so a GPU is not stalled after every step. A window's median must exceed the threshold, so one
# bad batch never ends a run, a sustained stretch does.
DIVERGENCE_WINDOW = 50
CHANCE_LOSS = math.log(4)  # cross-entropy of a uniform guess over the 4 classes


class DivergedError(AgnewsError):
    """The training loss became non-finite, or stayed far above chance level."""


class Pruned(Exception):
    """A search stopped this run (its trial) after an epoch: its study's pruner found it hopeless. Not an error:
    the run is recorded `pruned`, with the epochs it trained."""


def make_grad_scaler(trainer: TrainerConfig, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling keeps float16 gradients from underflowing; a disabled scaler passes everything through."""
    enabled = device.type == "cuda" and autocast_dtype(trainer.precision, device) is torch.float16
    return torch.amp.GradScaler(device.type, enabled=enabled)


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
    if config.name is OptimizerName.adamw:
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"optimizer.name={config.name!r}: choose sgd, adam or adamw")


def prepared_batches(data: EncodedTexts, batches: list[np.ndarray], device: torch.device) -> Batches:
    """A pass's batches built ahead; pinned once for the pass when they go to a GPU, so each step's copy is
    asynchronous and nothing is pinned per batch."""
    prepared = Batches(data, batches)
    return prepared.pin_memory() if device.type == "cuda" else prepared


def _sum_dtype(device: torch.device) -> torch.dtype:
    # float64 sums on the device add exactly what the float64 Python sums of .item() values did; MPS has no
    # float64.
    return torch.float32 if device.type == "mps" else torch.float64


class DivergenceMonitor:
    """Keeps a window of batch losses on the device and checks them together (see DIVERGENCE_WINDOW)."""

    def __init__(self, threshold: float | None, device: torch.device, description: str):
        self.threshold, self.description = threshold, description
        self.losses = torch.zeros(DIVERGENCE_WINDOW, device=device)
        self.count = 0
        self.first_step = 1

    def add(self, loss: torch.Tensor, step: int) -> None:
        self.losses[self.count] = loss.detach()  # a device-side copy: no sync
        self.count += 1
        if self.count == DIVERGENCE_WINDOW:
            self.check(step)

    def check(self, step: int) -> None:
        """Raise DivergedError if the losses since the last check say so; one host sync."""
        if self.count == 0:
            return
        window = self.losses[: self.count]
        all_finite, median = torch.stack([torch.isfinite(window).all().float(), window.nanmedian()]).tolist()
        if not all_finite:
            offset = int(torch.nonzero(~torch.isfinite(window))[0])
            value = window[offset].item()
            raise DivergedError(
                f"training loss became {value} at batch {self.first_step + offset} of "
                f"{self.description}: lower optimizer.lr or set optimizer.grad_clip"
            )
        if self.threshold is not None and median > self.threshold:
            raise DivergedError(
                f"the median training loss of batches {self.first_step}-{step} of {self.description} is {median:.3g}, "
                f"above trainer.divergence_threshold={self.threshold:g} (chance level is ln 4 = {CHANCE_LOSS:.2f}): "
                "lower optimizer.lr or set optimizer.grad_clip"
            )
        self.count, self.first_step = 0, step + 1


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
    """One pass over `data` in shuffled batches; returns (mean loss, accuracy) over the epoch.

    Loss and accuracy are summed on the device, so a step never waits for the GPU; the host reads them at
    divergence checks, log lines and the epoch's end."""
    model.train()
    scaler = scaler or make_grad_scaler(trainer, device)
    dtype = autocast_dtype(trainer.precision, device)
    monitor = DivergenceMonitor(trainer.divergence_threshold, device, description)
    loss_sum = torch.zeros((), dtype=_sum_dtype(device), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    batches = prepared_batches(
        data, batch_indices(data.lengths, trainer.batch_size, rng, trainer.bucket_by_length), device
    )
    # disable=None: tqdm shows the bar on a terminal only, so Slurm logs and joblib workers stay clean.
    show = None if trainer.progress_bar else True
    progress = tqdm(batches, total=len(batches), desc=description, leave=False, disable=show)
    step = 0
    for step, (token_ids, lengths, labels) in enumerate(progress, start=1):
        token_ids, labels = token_ids.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(token_ids, lengths)  # [B, C]
        loss = nn.functional.cross_entropy(logits.float(), labels)
        scaler.scale(loss).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            clip_gradients(model, grad_clip)
        scaler.step(optimizer)
        scaler.update()

        monitor.add(loss, step)
        loss_sum += loss.detach().to(loss_sum.dtype) * len(labels)
        correct += (logits.argmax(dim=1) == labels).sum()
        seen += len(labels)
        if step % trainer.log_interval == 0:
            log.info(
                "%s | batch %d/%d | loss %.4f | acc %.2f%%",
                description,
                step,
                len(batches),
                loss_sum.item() / seen,
                100 * correct.item() / seen,
            )
    monitor.check(step)
    return loss_sum.item() / seen, correct.item() / seen


@torch.no_grad()
def evaluate(model: nn.Module, data: EncodedTexts, device: torch.device, precision: Precision = Precision.auto):
    """(mean loss, accuracy) of `model` on `data`, in equal-length batches: no text is padded, so the result
    does not depend on which texts share a batch (agnews.predict batches the same way)."""
    model.eval()
    dtype = autocast_dtype(precision, device)
    loss_sum = torch.zeros((), dtype=_sum_dtype(device), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for token_ids, lengths, labels in prepared_batches(data, equal_length_batches(data.lengths), device):
        token_ids, labels = token_ids.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(token_ids, lengths).float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").to(loss_sum.dtype)
        correct += (logits.argmax(dim=1) == labels).sum()
    return loss_sum.item() / len(data), correct.item() / len(data)


class TrainState:
    """Everything a run's training has built up; `state_dict()` / `load_state_dict()` give and take it
    as plain containers and tensors (checkpoint.pt's content)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer_config: OptimizerConfig,
        trainer: TrainerConfig,
        device: torch.device,
        seed: int,
    ):
        self.model = model
        self.optimizer = build_optimizer(model, optimizer_config)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=1, gamma=optimizer_config.lr_gamma)
        self.scaler = make_grad_scaler(trainer, device)
        self.batch_rng = np.random.default_rng(seed)  # batch order; torch's RNG (init, dropout) is seeded by the run
        self.device = device
        self.history: list[dict[str, Any]] = []  # one dict per epoch, results.HISTORY_COLUMNS
        self.best_epoch = 0
        self.best_val_acc = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None  # the weights of the best-validation epoch
        self.stopped_early = False

    def state_dict(self) -> dict[str, Any]:
        cuda = self.device.type == "cuda"
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "batch_rng": self.batch_rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if cuda else [],
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_val_acc": self.best_val_acc,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.batch_rng.bit_generator.state = state["batch_rng"]
        torch.set_rng_state(state["torch_rng"].cpu())
        if self.device.type == "cuda" and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all([rng.cpu() for rng in state["cuda_rng"]])
        self.history = list(state["history"])
        self.best_epoch, self.best_val_acc, self.best_state = (
            state["best_epoch"],
            state["best_val_acc"],
            state["best_state"],
        )


def fit(
    state: TrainState,
    train_data: EncodedTexts,
    val_data: EncodedTexts,
    trainer: TrainerConfig,
    optimizer_config: OptimizerConfig,
    on_epoch_end: Callable[[TrainState], None] | None = None,
) -> TrainState:
    """Train from where `state` stands for the remaining of `trainer.epochs` (or until `trainer.patience`
    epochs bring no better val accuracy), keeping the weights of the best-validation epoch."""
    model, optimizer, device = state.model, state.optimizer, state.device
    if state.history:
        log.info("Resuming after epoch %d of %d", len(state.history), trainer.epochs)
    for epoch in range(len(state.history) + 1, trainer.epochs + 1):
        if trainer.patience is not None and epoch - 1 - state.best_epoch >= trainer.patience:
            state.stopped_early = True
            log.info(
                "Stopping early: no better val accuracy for %d epochs (best: epoch %d)",
                trainer.patience,
                state.best_epoch,
            )
            break
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        description = f"epoch {epoch}/{trainer.epochs}"
        train_loss, train_acc = train_one_epoch(
            model,
            train_data,
            optimizer,
            trainer,
            optimizer_config.grad_clip,
            device,
            state.batch_rng,
            description,
            state.scaler,
        )
        epoch_time = time.perf_counter() - started
        val_loss, val_acc = evaluate(model, val_data, device, trainer.precision)
        state.history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "lr": lr,
                "epoch_time_s": epoch_time,
                "samples_per_s": len(train_data) / epoch_time,
            }
        )
        if val_acc > state.best_val_acc:
            state.best_epoch, state.best_val_acc = epoch, val_acc
            state.best_state = copy.deepcopy(model.state_dict())
        if optimizer_config.lr_decay is LrDecay.train_beats_val and train_acc > val_acc:
            state.scheduler.step()
        log.info(
            "%s | train loss %.4f acc %.2f%% | val loss %.4f acc %.2f%% | lr %g | %.1f s, %.0f samples/s",
            description,
            train_loss,
            100 * train_acc,
            val_loss,
            100 * val_acc,
            lr,
            epoch_time,
            state.history[-1]["samples_per_s"],
        )
        if on_epoch_end is not None:
            on_epoch_end(state)
    return state
