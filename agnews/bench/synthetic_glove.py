"""A GloVe-format file of made-up vectors, as large as the real one, so that the benchmark and the GPU check
measure a 300-d, 400,000-word load where glove.6B.zip cannot be downloaded."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def write_synthetic_glove(words: list[str], dim: int, rows: int, folder: Path, seed: int = 0) -> Path:
    """A GloVe-format text file of `words` plus made-up words up to `rows` lines, with random vectors."""
    # Upper case: basic_english lowercases, so made-up words never shadow a vocab word.
    words = words + [f"SYN{i}" for i in range(max(0, rows - len(words)))]
    # Formatting 120M floats one by one takes minutes; picking from 2,001 pre-formatted values takes seconds.
    table = [f"{value / 1000:.3f}" for value in range(-1000, 1001)]
    rng = np.random.default_rng(seed)
    path = folder / f"synthetic.{dim}d.txt"
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for start in range(0, len(words), 8192):
            chunk = words[start : start + 8192]
            picks = rng.integers(0, len(table), size=(len(chunk), dim)).tolist()  # [chunk, dim]
            handle.write(
                "".join(f"{w} {' '.join(table[i] for i in row)}\n" for w, row in zip(chunk, picks, strict=True))
            )
    log.info("Wrote a synthetic GloVe file: %d words x %d d at %s", len(words), dim, path)
    return path
