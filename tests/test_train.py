import os
import sys

import numpy as np
import pytest
import torch

from agnews.config import OptimizerConfig, OptimizerName, Pooling, TrainerConfig
from agnews.data.text import EncodedTexts
from agnews.devices import select_device
from agnews.model import LSTMClassifier
from agnews.train import (
    DIVERGENCE_WINDOW,
    build_optimizer,
    can_use_sparse_embedding,
    clip_gradients,
    train_one_epoch,
)


def random_texts(count: int, vocab_size: int, seed: int) -> EncodedTexts:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 30, size=count)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    token_ids = rng.integers(0, vocab_size, size=offsets[-1])
    return EncodedTexts(token_ids=token_ids, offsets=offsets, labels=rng.integers(0, 4, size=count))


def train_epoch(model: LSTMClassifier, data: EncodedTexts, **trainer: object) -> None:
    """One epoch on the CPU with the notebook's SGD (lr 5, clip 0.1)."""
    config = OptimizerConfig(name=OptimizerName.sgd)
    settings = TrainerConfig(progress_bar=False, **trainer)
    optimizer = build_optimizer(model, config)
    train_one_epoch(model, data, optimizer, settings, config.grad_clip, torch.device("cpu"), np.random.default_rng(0))


def train_copy(sparse: bool, data: EncodedTexts) -> LSTMClassifier:
    torch.manual_seed(0)
    model = LSTMClassifier(500, 16, 8, 4, sparse_embedding=sparse)
    train_epoch(model, data, batch_size=16)
    return model


def test_sparse_embedding_gradients_train_exactly_as_dense_ones():
    data = random_texts(200, 500, seed=1)
    dense, sparse = train_copy(False, data), train_copy(True, data)
    for (name, a), (_, b) in zip(dense.named_parameters(), sparse.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_clip_gradients_matches_torch_on_sparse_and_dense():
    torch.manual_seed(0)
    tokens = torch.tensor([[1, 2, 2, 3], [3, 3, 4, 0]])  # repeated rows: the sparse gradient lists them twice
    grads = {}
    for sparse in (False, True):
        torch.manual_seed(0)
        model = LSTMClassifier(10, 4, 3, 4, sparse_embedding=sparse)
        model(tokens, torch.tensor([4, 4])).pow(2).sum().backward()
        clip_gradients(model, 0.01)
        grads[sparse] = [p.grad.to_dense() for p in model.parameters()]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads[True]]))
    assert total == pytest.approx(0.01, rel=1e-4)
    for dense_grad, sparse_grad in zip(grads[False], grads[True], strict=True):
        torch.testing.assert_close(dense_grad, sparse_grad)


def test_sparse_only_where_it_computes_the_same():
    assert can_use_sparse_embedding(OptimizerConfig(name=OptimizerName.sgd))
    assert not can_use_sparse_embedding(OptimizerConfig(name=OptimizerName.sgd, momentum=0.9))
    assert not can_use_sparse_embedding(OptimizerConfig(name=OptimizerName.sgd, weight_decay=1e-4))
    assert not can_use_sparse_embedding(OptimizerConfig(name=OptimizerName.adam, lr=1e-3))


def test_device_selection():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(Exception, match="not a torch device"):
        select_device("gpu-please")


HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__")


def test_a_training_step_never_waits_for_the_device(monkeypatch):
    """agnews' own code reads values back from the device only at divergence checks (one per window of
    DIVERGENCE_WINDOW batches) and at the epoch's end, never once per step: on a GPU each read would stall
    the host until the step finished."""
    reads = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if f"{os.sep}agnews{os.sep}" in caller and f"{os.sep}tests{os.sep}" not in caller:
                reads.append((_name, caller))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    data = random_texts(480, 500, seed=1)
    model = LSTMClassifier(500, 16, 8, 4, pooling=Pooling.max, bidirectional=True)
    steps = 480 // 4
    train_epoch(model, data, batch_size=4, log_interval=10_000)
    windows = -(-steps // DIVERGENCE_WINDOW)
    assert 0 < len(reads) <= windows + 2, reads  # one read per window, loss and accuracy at the end
