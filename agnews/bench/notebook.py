"""The course notebook's pipeline, re-created as the reference `agnews.bench` times the project against: a
DataLoader whose collate_fn tokenises every text on every epoch and pads each batch with `pad_sequence`;
for GloVe it looks every token's vector up in Python (torchtext's `get_vecs_by_tokens`) and feeds
[B, T, E] to an LSTM without nn.Embedding; evaluation pads batches the same way."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from agnews.data.ag_news import read_split
from agnews.data.glove import WordVectors
from agnews.data.prepare import PreparedData
from agnews.data.text import PAD_INDEX, UNK_INDEX, EncodedTexts, Vocab, basic_english
from agnews.storage import AgnewsError


class NotebookGloVe:
    """torchtext's `Vectors` lookup: per token a dict lookup and a vector, unknown words a new zero vector."""

    def __init__(self, glove: WordVectors):
        self.stoi = glove.index
        self.vectors = torch.tensor(np.asarray(glove.vectors))  # [400k, E], in memory as torchtext held it
        self.dim = glove.dim

    def __getitem__(self, token: str) -> torch.Tensor:
        if token in self.stoi:
            return self.vectors[self.stoi[token]]
        return torch.zeros(self.dim)  # unk_init=torch.Tensor.zero_

    def get_vecs_by_tokens(self, tokens: list[str]) -> torch.Tensor:
        return torch.stack([self[token] for token in tokens])  # [L, E]


def notebook_collate(batch, vocab: Vocab, glove: NotebookGloVe | None = None):
    """The notebook's collate_fn, run every batch of every epoch: (labels [B], ids [B, T] or vectors [B, T, E])."""
    labels, texts = [], []
    for label, text in batch:
        labels.append(label)
        tokens = basic_english(text)
        if glove is None:
            texts.append(torch.tensor(vocab.lookup_indices(tokens), dtype=torch.int64))
        else:  # an empty text would make torch.stack fail; give it one unknown (zero) vector
            texts.append(glove.get_vecs_by_tokens(tokens or ["<unk>"]))
    # Pads to the longest text of this (unsorted) batch. GloVe pads with zero vectors, ids with <pad>.
    padded = pad_sequence(texts, batch_first=True, padding_value=PAD_INDEX if glove is None else 0.0)
    return torch.tensor(labels, dtype=torch.int64), padded


class NotebookLSTM(nn.Module):
    """[nn.Embedding ->] LSTM -> Linear on lstm_out[:, -1, :]. vocab_size=None: the notebook's GloVe model,
    which takes [B, T, E] vectors and so never fine-tunes them."""

    def __init__(
        self,
        vocab_size: int | None,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
        num_classes: int,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim) if vocab_size else None
        self.lstm = nn.LSTM(
            embedding_dim,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.fc = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(inputs) if self.embedding is not None else inputs  # [B, T, E]
        outputs, _ = self.lstm(embedded)  # [B, T, D*H]
        return self.fc(outputs[:, -1, :])  # [B, C]


def notebook_train(model, loader, optimizer, grad_clip: float | None, device: torch.device) -> None:
    model.train()
    correct = 0
    for labels, inputs in loader:
        labels, inputs = labels.to(device), inputs.to(device)
        optimizer.zero_grad()
        logits = model(inputs)
        loss = nn.functional.cross_entropy(logits, labels)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        correct += (logits.argmax(1) == labels).sum().item()  # the notebook's per-batch accuracy (a sync)


@torch.no_grad()
def notebook_evaluate(model, loader, device: torch.device) -> None:
    model.eval()
    correct = 0
    for labels, inputs in loader:
        labels, inputs = labels.to(device), inputs.to(device)
        correct += (model(inputs).argmax(1) == labels).sum().item()


def raw_pairs(data: PreparedData, n_train: int, n_test: int) -> tuple[list, list]:
    """(label, text) pairs of the first texts of the project's train split, and of its test split, read from
    the CSVs `data` was prepared from."""
    train, test = (read_split(data.paths[name], name) for name in ("train", "test"))
    train_pairs = [(int(train.labels[i]), train.texts[i]) for i in data.train_rows[:n_train]]
    return train_pairs, [(int(test.labels[i]), test.texts[i]) for i in range(n_test)]


def check_same_texts(pairs: list, encoded: EncodedTexts, vocab: Vocab) -> None:
    """Both pipelines must see the same texts; a disagreement means the bench compares nothing."""
    for index, (label, text) in enumerate(pairs):
        ids = vocab.lookup_indices(basic_english(text)) or [UNK_INDEX]
        if label != encoded.labels[index] or ids != encoded.ids_of(index).tolist():
            raise AgnewsError(f"bench: text {index} differs between the pipelines; prepare_data changed its split?")
