"""LSTM text classification on AG News with learned or GloVe 6B embeddings, swept with Hydra."""

__version__ = "0.1.0"
