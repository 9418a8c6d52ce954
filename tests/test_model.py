import pytest
import torch

from agnews.config import Pooling
from agnews.model import LSTMClassifier, count_parameters


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
