"""The LSTM text classifier. `pooling=last` with one layer of 64 is the course notebook's model exactly;
the other poolings read only each text's real tokens.

Those run the LSTM on the right-padded batch rather than on a packed sequence (about twice as fast on the
CPU): the forward direction reads the batch as it is, the backward direction each text reversed within its
own length, so both read a text's tokens before its pads. tests/test_model.py keeps the packed computation
as the reference it holds this faster path to (equal outputs and gradients)."""

from __future__ import annotations

import warnings

import torch
from torch import nn

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
        """token_ids: [B, T] right-padded; lengths: [B] real token counts (any device). Returns logits [B, C]."""
        embedded = self.embedding_dropout(self.embedding(token_ids))  # [B, T, E]
        if self.pooling is Pooling.last:
            outputs, _ = self.lstm(embedded)  # [B, T, D*H]
            return self.classifier(self.dropout(outputs[:, -1, :]))
        return self.classifier(self.dropout(self._pool(embedded, lengths)))

    def _pool(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The padding-aware poolings on the padded batch: embedded [B, T, E] -> pooled [B, D*H].

        Equal to the packed reference in tests/test_model.py (outputs and gradients), and about twice as fast on
        the CPU, where packed
        sequences are slow. Both directions get their text at positions 0..length-1 with the pads after it,
        so no real token's state ever depends on a pad.
        """
        lengths = lengths.to(embedded.device)  # the one host-to-device copy; every index is built from it
        if self.lstm.bidirectional:
            forward, backward_reversed = self._bidirectional_outputs(embedded, lengths)
            # backward_reversed[:, t] is the backward state at token length-1-t: the text's valid positions are
            # the same set, only in the other order, so the poolings read it without reversing it back.
            outputs = torch.cat([forward, backward_reversed], dim=-1)  # [B, T, 2H]
        else:
            # Forward only: the pads come after each text, so the valid positions' outputs are the packed ones.
            outputs, _ = self.lstm(embedded)  # [B, T, H]
        if self.pooling is Pooling.last_valid:
            # Position length-1: the forward state after the text's last token and the backward state after its
            # first, concatenated [forward, backward] as nn.LSTM's h_n orders them.
            rows = torch.arange(outputs.size(0), device=outputs.device)
            return outputs[rows, lengths - 1]  # [B, D*H]
        valid = torch.arange(outputs.size(1), device=outputs.device)[None, :] < lengths[:, None]
        valid = valid.unsqueeze(-1)  # [B, T, 1]
        if self.pooling is Pooling.mean:
            return (outputs * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)
        # Pooling.max. Adding -inf at the pads gives masked_fill's result, but its backward passes the gradient
        # through as it is, where masked_fill's backward is one more pass over [B, T, D*H].
        pad_bias = torch.zeros(valid.shape, dtype=outputs.dtype, device=outputs.device).masked_fill_(~valid, -torch.inf)
        return (outputs + pad_bias).amax(dim=1)

    def _bidirectional_outputs(
        self, embedded: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The last layer's (forward [B, T, H], backward_reversed [B, T, H]) without packing.

        The backward direction reads each text reversed within its own length (position t holds token
        length-1-t, pads stay after the text) so that, like the forward one, it reads the text before the pads;
        its outputs come back in that reversed order.

        Each layer and direction is one call of `torch.lstm` (the op nn.LSTM calls) on that direction's own
        parameters of self.lstm (`all_weights`): gradients flow straight into them, the parameter names and
        saved state dicts stay nn.LSTM's, and no second module holds aliases of them. (On CUDA, cuDNN copies
        each direction's slice of nn.LSTM's flat weight buffer per call, warning once that the weights are not
        one contiguous chunk: 4H(I+H+2) numbers per direction.)
        """
        batch, steps, _ = embedded.shape
        positions = torch.arange(steps, device=embedded.device)
        # Row b*T + t of a [B*T, F] view reads row b*T + reversed_steps[b, t]. The map is its own inverse (pads
        # map to themselves), so the same rows also turn the backward outputs back into text order.
        reversed_steps = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
        rows = (reversed_steps + steps * torch.arange(batch, device=embedded.device)[:, None]).reshape(-1)

        def reverse(x: torch.Tensor) -> torch.Tensor:  # [B, T, F] -> [B, T, F]
            return x.reshape(batch * steps, -1).index_select(0, rows).view(batch, steps, -1)

        zeros = embedded.new_zeros(1, batch, self.lstm.hidden_size)
        weights = self.lstm.all_weights  # [w_ih, w_hh, b_ih, b_hh] per layer and direction, forward first

        def run(x: torch.Tensor, layer: int, direction: int) -> torch.Tensor:  # [B, T, F] -> [B, T, H]
            with warnings.catch_warnings():
                # cuDNN copies one direction's slice of the flat weight buffer per call (4H(I+H+2) numbers, small
                # next to the activations) and warns that the weights are not one chunk: expected here.
                warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
                outputs, _, _ = torch.lstm(
                    x,
                    (zeros, zeros),
                    weights[2 * layer + direction],
                    has_biases=True,
                    num_layers=1,
                    dropout=0.0,
                    train=self.training,
                    bidirectional=False,
                    batch_first=True,
                )
            return outputs

        forward, backward_reversed = run(embedded, 0, 0), run(reverse(embedded), 0, 1)
        for layer in range(1, self.lstm.num_layers):
            # nn.LSTM's dropout between layers: one mask on the layer's output, which both directions then read.
            layer_input = torch.cat([forward, reverse(backward_reversed)], dim=-1)  # [B, T, 2H]
            layer_input = nn.functional.dropout(layer_input, self.lstm.dropout, self.training)
            forward, backward_reversed = run(layer_input, layer, 0), run(reverse(layer_input), layer, 1)
        return forward, backward_reversed


def build_model(
    model: ModelConfig,
    embedding: EmbeddingConfig,
    vocab_size: int,
    num_classes: int,
    pretrained: torch.Tensor | None = None,
    sparse_embedding: bool = False,
) -> LSTMClassifier:
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
