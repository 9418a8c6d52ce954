import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from agnews.config import Pooling
from agnews.model import LSTMClassifier, count_parameters


def forward_packed(model: LSTMClassifier, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The reference the model's padded-batch forward is held to: the padding-aware poolings through a packed
    sequence, which skips the pads entirely (not for pooling=last). token_ids [B, T] -> logits [B, C]."""
    embedded = model.embedding_dropout(model.embedding(token_ids))  # [B, T, E]
    # The backward direction of a BiLSTM then starts at each text's own last token, and h_n holds each text's
    # state after its last real token.
    packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
    packed_outputs, (h_n, _) = model.lstm(packed)
    if model.pooling is Pooling.last_valid:
        directions = 2 if model.lstm.bidirectional else 1  # h_n: [num_layers * D, B, H], the last layer last
        pooled = torch.cat(list(h_n[-directions:]), dim=-1)  # [B, D*H]
    else:
        outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=embedded.size(1))
        valid = (torch.arange(embedded.size(1))[None, :] < lengths.cpu()[:, None]).to(outputs.device).unsqueeze(-1)
        if model.pooling is Pooling.mean:
            pooled = (outputs * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)
        else:  # Pooling.max
            pooled = outputs.masked_fill(~valid, float("-inf")).amax(dim=1)
    return model.classifier(model.dropout(pooled))


def make_model(pooling: Pooling, bidirectional: bool = False, num_layers: int = 1) -> LSTMClassifier:
    torch.manual_seed(0)
    model = LSTMClassifier(50, 8, 16, 4, num_layers=num_layers, bidirectional=bidirectional, pooling=pooling)
    return model.eval()


def logits_of(model, texts: list[list[int]], extra_padding: int = 0) -> torch.Tensor:
    longest = max(len(text) for text in texts) + extra_padding
    token_ids = torch.tensor([text + [0] * (longest - len(text)) for text in texts])
    return model(token_ids, torch.tensor([len(text) for text in texts]))


@pytest.mark.parametrize("pooling", [Pooling.last_valid, Pooling.mean, Pooling.max])
@pytest.mark.parametrize(("bidirectional", "num_layers"), [(False, 1), (True, 2)])
def test_pooled_output_ignores_padding(pooling, bidirectional, num_layers):
    model = make_model(pooling, bidirectional, num_layers)
    text = [3, 9, 4, 7]
    alone = logits_of(model, [text])
    with_long_neighbour = logits_of(model, [text, list(range(1, 20))], extra_padding=5)[:1]
    torch.testing.assert_close(alone, with_long_neighbour)
    assert alone.shape == (1, 4)


def test_notebook_pooling_reads_the_padding():
    model = make_model(Pooling.last)
    text = [3, 9, 4, 7]
    assert not torch.allclose(logits_of(model, [text]), logits_of(model, [text], extra_padding=5))


def test_pretrained_embedding_frozen_or_fine_tuned():
    weights = torch.randn(50, 8)
    frozen = LSTMClassifier(50, 8, 16, 4, pretrained=weights, freeze_embedding=True)
    tuned = LSTMClassifier(50, 8, 16, 4, pretrained=weights, freeze_embedding=False)
    torch.testing.assert_close(frozen.embedding.weight, weights)
    assert not frozen.embedding.weight.requires_grad and tuned.embedding.weight.requires_grad
    total, trainable = count_parameters(frozen)
    assert total - trainable == 50 * 8
    with pytest.raises(ValueError, match="pretrained weights"):
        LSTMClassifier(51, 8, 16, 4, pretrained=weights)


# (lengths, T): mixed lengths with length 1, pads beyond the longest text, every text full, a batch of one.
BATCHES = {
    "mixed": ([6, 1, 3, 6, 2, 5, 4], 6),
    "padded_past_longest": ([3, 1, 2], 6),
    "all_full": ([5, 5, 5], 5),
    "single": ([4], 4),
}


def random_batch(lengths: list[int], steps: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """token_ids [B, T] right-padded with 0 (a real id too, as <pad> is in the vocabulary), lengths [B]."""
    generator = torch.Generator().manual_seed(seed)
    token_ids = torch.randint(1, 50, (len(lengths), steps), generator=generator)
    lengths = torch.tensor(lengths)
    token_ids[torch.arange(steps)[None, :] >= lengths[:, None]] = 0
    return token_ids, lengths


def logits_and_gradients(model, forward, token_ids, lengths) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    logits = forward(token_ids, lengths)
    # A loss that weighs every logit differently, so every gradient entry is exercised.
    weights = torch.linspace(-1, 1, logits.numel(), dtype=logits.dtype).view_as(logits)
    (logits * weights).sum().backward()
    return logits.detach(), {name: parameter.grad for name, parameter in model.named_parameters()}


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("pooling", [Pooling.last_valid, Pooling.mean, Pooling.max])
def test_unpacked_pooling_equals_packed_outputs_and_gradients(pooling, bidirectional, num_layers, batch):
    model = make_model(pooling, bidirectional, num_layers).double().train()  # dropout 0: train mode is exact
    token_ids, lengths = random_batch(*BATCHES[batch])
    logits, gradients = logits_and_gradients(model, model, token_ids, lengths)
    packed_logits, packed_gradients = logits_and_gradients(
        model, lambda *batch: forward_packed(model, *batch), token_ids, lengths
    )
    torch.testing.assert_close(logits, packed_logits, rtol=0, atol=1e-10)
    assert gradients.keys() == packed_gradients.keys()
    for name, gradient in gradients.items():
        assert gradient is not None, name
        torch.testing.assert_close(gradient, packed_gradients[name], rtol=0, atol=1e-10, msg=name)


@pytest.mark.parametrize("pooling", [Pooling.last_valid, Pooling.mean, Pooling.max])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_unpacked_pooling_with_dropout_equals_packed_in_eval_mode(pooling, bidirectional):
    torch.manual_seed(0)
    model = LSTMClassifier(50, 8, 16, 4, num_layers=2, bidirectional=bidirectional, dropout=0.5,
                           pooling=pooling, embedding_dropout=0.2).eval()  # fmt: skip
    token_ids, lengths = random_batch(*BATCHES["mixed"])
    with torch.no_grad():
        torch.testing.assert_close(model(token_ids, lengths), forward_packed(model, token_ids, lengths))


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_dropout_between_layers_only_in_training(bidirectional):
    """As nn.LSTM: dropout acts between layers in train mode, never after the last layer or in eval mode."""
    token_ids, lengths = random_batch(*BATCHES["mixed"])
    for num_layers, changes in [(1, False), (2, True)]:
        torch.manual_seed(0)
        model = LSTMClassifier(50, 8, 16, 4, num_layers=num_layers, bidirectional=bidirectional, dropout=0.5,
                               pooling=Pooling.mean)  # fmt: skip
        embedded = model.embedding(token_ids)
        with torch.no_grad():
            trained, evaluated = model.train()._pool(embedded, lengths), model.eval()._pool(embedded, lengths)
        assert not torch.allclose(trained, evaluated) if changes else torch.equal(trained, evaluated)


def test_unpacked_float32_matches_packed_on_long_mixed_batch():
    model = make_model(Pooling.max, bidirectional=True, num_layers=2).train()
    token_ids, lengths = random_batch([40, 1, 17, 33, 40, 2, 25, 9], 40)
    logits, gradients = logits_and_gradients(model, model, token_ids, lengths)
    packed_logits, packed_gradients = logits_and_gradients(
        model, lambda *batch: forward_packed(model, *batch), token_ids, lengths
    )
    torch.testing.assert_close(logits, packed_logits, rtol=0, atol=1e-6)
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, packed_gradients[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("pooling", [Pooling.last_valid, Pooling.mean, Pooling.max])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_forward_never_packs(pooling, bidirectional, monkeypatch):
    """The comparisons above would pass trivially if forward still went through the packed reference."""

    def no_packing(*args, **kwargs):
        raise AssertionError("forward packed the batch")

    monkeypatch.setattr(torch.nn.utils.rnn, "pack_padded_sequence", no_packing)
    monkeypatch.setattr(torch.nn.utils.rnn, "pack_sequence", no_packing)
    model = make_model(pooling, bidirectional, num_layers=2)
    assert model(*random_batch(*BATCHES["mixed"])).shape == (7, 4)


def test_parameter_names_are_nn_lstm_ones():
    """Saved model.pt / checkpoint.pt state dicts keep loading: the LSTM is still one nn.LSTM."""
    model = make_model(Pooling.max, bidirectional=True, num_layers=2)
    names = {name for name in model.state_dict() if name.startswith("lstm.")}
    expected = {f"lstm.{kind}_{part}_l{layer}{suffix}" for kind in ("weight", "bias") for part in ("ih", "hh")
                for layer in (0, 1) for suffix in ("", "_reverse")}  # fmt: skip
    assert names == expected
