"""Embedding kinds: one definition each (agnews.embeddings) that the config, the run and the report all
read. A kind registered here, in the test alone, trains and gets its own row, words and line in the report."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from agnews.config import EmbeddingConfig
from agnews.data.glove import WordVectors
from agnews.embeddings import KINDS, EmbeddingKind, embedding_kind, register_kind
from agnews.experiment import run_experiment
from agnews.report.findings import findings
from agnews.report.plots import plot_accuracy_vs_dim
from agnews.report.stats import load_runs, summarize
from agnews.results import BASIC_SWEEPER


def test_the_built_in_kinds():
    assert embedding_kind("learned").pretrained is False
    glove = embedding_kind("glove")
    assert (glove.label, glove.pretrained, glove.dims) == ("GloVe", True, (50, 100, 200, 300))
    with pytest.raises(ValueError, match=r"kind='fasttext' is no embedding kind agnews knows: learned, glove"):
        embedding_kind("fasttext")


@pytest.fixture
def hashed_kind(topic_words):
    """A pretrained kind that exists only in this test: a fixed pseudo-random vector per word."""

    def vectors(config: EmbeddingConfig, cache_dir, progress) -> WordVectors:
        words = [*topic_words, "the", "a", "on", "."]
        rows = [
            np.random.default_rng(int(hashlib.sha256(word.encode()).hexdigest()[:8], 16)).normal(size=config.dim)
            for word in words
        ]
        return WordVectors(words, np.stack(rows).astype(np.float32))

    kind = register_kind(EmbeddingKind("hashed", "Hashed", pretrained=True, dims=(8, 16), vectors=vectors))
    yield kind
    del KINDS["hashed"]


def test_a_kind_registered_in_a_test_trains_and_gets_its_own_report_row(tmp_path, tiny_config, hashed_kind):
    with pytest.raises(ValueError, match=r"embedding\.dim=12: Hashed comes in 8, 16 dimensions"):
        EmbeddingConfig(name="hashed12", kind="hashed", dim=12)
    sweep = tmp_path / "sweep"
    embeddings = [
        EmbeddingConfig(name="learned", kind="learned", dim=16),
        EmbeddingConfig(name="hashed8", kind="hashed", dim=8),
        EmbeddingConfig(name="hashed16", kind="hashed", dim=16),
    ]
    for job, (embedding, seed) in enumerate((embedding, seed) for embedding in embeddings for seed in (0, 1)):
        record = {"dir": str(sweep), "job": job, "sweeper": BASIC_SWEEPER}
        config = tiny_config(embedding=embedding, seed=seed, trainer={"epochs": 1})
        results = run_experiment(config, sweep / str(job), [f"embedding={embedding.name}", f"seed={seed}"], record)
        assert results["status"] == "completed"
        assert results["embedding_kind"] == {
            "name": embedding.kind,
            "label": KINDS[embedding.kind].label,
            "pretrained": embedding.kind == "hashed",
        }
        if embedding.kind == "hashed":
            assert results["embedding_coverage"]["found"] > 0  # its vectors reached the model

    summary = summarize(load_runs([sweep]))
    assert list(summary.embedding) == ["learned", "hashed8", "hashed16"]
    assert list(summary.embedding_label) == ["learned", "Hashed", "Hashed"] and list(summary.n) == [2, 2, 2]
    sentences = " ".join(findings(summary))
    assert "Hashed beats learned embeddings" in sentences or "every Hashed size" in sentences
    assert "Among Hashed sizes" in sentences
    assert plot_accuracy_vs_dim(summary, tmp_path / "plot.png").read_bytes().startswith(b"\x89PNG")
