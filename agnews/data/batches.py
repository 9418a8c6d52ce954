"""Batches from encoded splits: a stratified validation hold-out, length-bucketed shuffling for training,
equal-length batches for evaluation, and all of a pass's batches padded ahead with array indexing rather
than per-text Python work."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from agnews.data.text import PAD_INDEX, EncodedTexts


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_indices, val_indices): `fraction` of every class held out, chosen by `seed`; both sorted."""
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = round(len(members) * fraction)
        held_out.append(rng.permutation(members)[:count])
    val = np.sort(np.concatenate(held_out)) if held_out else np.zeros(0, dtype=np.int64)
    train = np.setdiff1d(np.arange(len(labels)), val, assume_unique=True)
    return train, val


def batch_indices(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None, bucket_by_length: bool
) -> list[np.ndarray]:
    """Index arrays, one per batch, covering every text exactly once.

    rng None: fixed order (evaluation). bucket_by_length: texts are sorted by length within pools of
    50 batches, so a batch holds texts of similar length; with an rng the pools are drawn from a fresh
    permutation and the batch order is shuffled, so every epoch still sees different batches.
    """
    order = rng.permutation(len(lengths)) if rng is not None else np.arange(len(lengths))
    if bucket_by_length:
        pool = batch_size * 50
        pools = np.split(order, range(pool, len(order), pool))
        order = np.concatenate([chunk[np.argsort(lengths[chunk], kind="stable")] for chunk in pools])
    batches = np.split(order, range(batch_size, len(order), batch_size))
    if rng is not None and bucket_by_length:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


EVAL_BATCH_SIZE = 256  # evaluation and prediction; no gradients are kept, so larger batches cost little memory


def equal_length_batches(lengths: np.ndarray, batch_size: int = EVAL_BATCH_SIZE) -> list[np.ndarray]:
    """Index arrays in which every text has the same length, so no text is padded and each text's output
    is what it would be alone, whatever the pooling (the notebook's `last` reads past padding). Evaluation
    and prediction share these batches: a run's test accuracy is what predict measures on the same file."""
    if len(lengths) == 0:
        return []
    order = np.argsort(lengths, kind="stable")
    runs = np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1)  # one run per distinct length
    return [chunk for run in runs for chunk in np.split(run, range(batch_size, len(run), batch_size))]


class Batches:
    """Every batch of a pass over a split, built ahead in three flat tensors, so a training step only takes
    views: no per-step numpy work, and on CUDA one pinned copy per pass instead of one per batch.

    Batch k is `token_ids[start:start + B*T].view(B, T)` (right-padded with <pad>), with `lengths` and
    `labels` rows `row:row + B`.
    """

    def __init__(self, data: EncodedTexts, batches: list[np.ndarray]):
        sizes = np.array([len(indices) for indices in batches], dtype=np.int64)  # [K]
        order = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)  # [N] texts in batch order
        lengths = data.lengths[order]  # [N]
        batch_of = np.repeat(np.arange(len(batches)), sizes)  # [N]
        longest = np.zeros(len(batches), dtype=np.int64)
        np.maximum.at(longest, batch_of, lengths)  # [K] each batch's T
        cells = sizes * longest  # [K] padded cells per batch
        starts = np.cumsum(cells) - cells  # [K] where each batch's cells begin
        rows = np.cumsum(sizes) - sizes  # [K] where each batch's rows begin
        # Text i of the pass starts at cell starts[b] + (i - rows[b]) * longest[b] of the flat array.
        text_start = starts[batch_of] + (np.arange(len(order)) - rows[batch_of]) * longest[batch_of]  # [N]
        flat = np.full(int(cells.sum()), PAD_INDEX, dtype=np.int64)
        within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # token j of its text
        flat[np.repeat(text_start, lengths) + within] = data.token_ids[np.repeat(data.offsets[order], lengths) + within]
        self.token_ids = torch.from_numpy(flat)
        self.lengths = torch.from_numpy(lengths)
        self.labels = torch.from_numpy(data.labels[order])
        self._layout = list(zip(starts.tolist(), rows.tolist(), sizes.tolist(), longest.tolist(), strict=True))

    def __len__(self) -> int:
        return len(self._layout)

    def pin_memory(self) -> Batches:
        """Page-locked copies (for asynchronous host-to-GPU copies), made once for the whole pass."""
        for name in ("token_ids", "lengths", "labels"):
            setattr(self, name, getattr(self, name).pin_memory())
        return self

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(token_ids [B, T], lengths [B], labels [B]) per batch, views into the flat tensors."""
        for start, row, size, longest in self._layout:
            token_ids = self.token_ids[start : start + size * longest].view(size, longest)
            yield token_ids, self.lengths[row : row + size], self.labels[row : row + size]
