"""The LSTM text classifier. `pooling=last` with one layer of 64 is the course notebook's model exactly;
the other poolings read only each text's real tokens."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from agnews.config import EmbeddingConfig, ModelConfig, Pooling


class LSTMClassifier(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        num_classes: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: Pooling = Pooling.last,
        embedding_dropout: float = 0.0,
        pretrained: torch.Tensor | None = None,  # [vocab_size, embedding_dim] initial embedding weights
        freeze_embedding: bool = False,
        sparse_embedding: bool = False,  # gradient rows for the batch's tokens only, not all [vocab_size, E]
    ):
        super().__init__()
        self.pooling = Pooling(pooling)
        if pretrained is not None:
            if tuple(pretrained.shape) != (vocab_size, embedding_dim):
                raise ValueError(f"pretrained weights {tuple(pretrained.shape)} != ({vocab_size}, {embedding_dim})")
            # A copy: from_pretrained would otherwise train the caller's tensor in place (and with it a
            # matrix shared by later jobs of the sweep).
            self.embedding = nn.Embedding.from_pretrained(
                pretrained.detach().float().clone(), freeze=freeze_embedding, sparse=sparse_embedding
            )
        else:
            # No padding_idx, as the notebook: with pooling=last the LSTM reads pads, so their vector is learned.
            self.embedding = nn.Embedding(vocab_size, embedding_dim, sparse=sparse_embedding)
        self.lstm = nn.LSTM(
            embedding_dim,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """token_ids: [B, T] right-padded; lengths: [B] real token counts (on the CPU). Returns logits [B, C]."""
        embedded = self.embedding_dropout(self.embedding(token_ids))  # [B, T, E]
        if self.pooling is Pooling.last:
            outputs, _ = self.lstm(embedded)  # [B, T, D*H]
            return self.classifier(self.dropout(outputs[:, -1, :]))
        return self.classifier(self.dropout(self._pool_packed(embedded, lengths)))

    def _pool_packed(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The padding-aware poolings through a packed sequence: embedded [B, T, E] -> pooled [B, D*H]."""
        # Packing skips the pads entirely: the backward direction of a BiLSTM then starts at each text's
        # own last token, and h_n holds each text's state after its last real token.
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_outputs, (h_n, _) = self.lstm(packed)
        if self.pooling is Pooling.last_valid:
            # h_n: [num_layers * D, B, H]; the last layer's directions are its final D entries.
            directions = 2 if self.lstm.bidirectional else 1
            return torch.cat(list(h_n[-directions:]), dim=-1)  # [B, D*H]

        outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=embedded.size(1))
        valid = torch.arange(embedded.size(1), device=lengths.device)[None, :] < lengths[:, None]
        valid = valid.to(outputs.device).unsqueeze(-1)  # [B, T, 1]
        if self.pooling is Pooling.mean:
            return (outputs * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)
        return outputs.masked_fill(~valid, float("-inf")).amax(dim=1)  # Pooling.max


def build_model(
    model: ModelConfig, embedding: EmbeddingConfig, vocab_size: int, num_classes: int,
    pretrained: torch.Tensor | None = None, sparse_embedding: bool = False,
) -> LSTMClassifier:  # fmt: skip
    """The classifier a config describes; `pretrained` ([vocab_size, embedding.dim]) seeds the embedding."""
    return LSTMClassifier(
        vocab_size=vocab_size,
        embedding_dim=embedding.dim,
        hidden_size=model.hidden_size,
        num_classes=num_classes,
        num_layers=model.num_layers,
        bidirectional=model.bidirectional,
        dropout=model.dropout,
        pooling=model.pooling,
        embedding_dropout=model.embedding_dropout,
        pretrained=pretrained,
        freeze_embedding=embedding.freeze,
        sparse_embedding=sparse_embedding,
    )


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(all, trainable) parameter counts."""
    total = sum(parameter.numel() for parameter in model.parameters())
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    return total, trainable
