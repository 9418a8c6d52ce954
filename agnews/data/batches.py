"""Batches from encoded splits: a stratified validation hold-out, length-bucketed shuffling for training,
equal-length batches for evaluation, and padding done with array indexing rather than per-text Python work."""

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


def make_batch(data: EncodedTexts, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token_ids [B, T] right-padded with <pad>, lengths [B], labels [B]) as CPU int64 tensors."""
    lengths = data.lengths[indices]
    longest = int(lengths.max())
    positions = np.arange(longest)
    valid = positions[None, :] < lengths[:, None]  # [B, T]
    padded = np.full((len(indices), longest), PAD_INDEX, dtype=np.int64)
    padded[valid] = data.token_ids[(data.offsets[indices][:, None] + positions[None, :])[valid]]
    return torch.from_numpy(padded), torch.from_numpy(lengths), torch.from_numpy(data.labels[indices])


def iterate_batches(
    data: EncodedTexts, batch_size: int, rng: np.random.Generator | None = None, bucket_by_length: bool = True
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    for indices in batch_indices(data.lengths, batch_size, rng, bucket_by_length):
        yield make_batch(data, indices)
