"""AG News ready for training: tokenised and numericalised once per data version, then reused.

The encoded splits (token ids + offsets, see `text.EncodedTexts`) and the vocab are cached on disk under
`<cache>/prepared/<key>/`, the key hashing the CSVs' bytes and every setting that changes the encoding,
so a later process skips parsing and tokenising; within one process the arrays stay in memory for later
jobs of the same sweep. The validation hold-out is cut afterwards, since it is cheap and has its own seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agnews import data as ag_news
from agnews.batches import stratified_split
from agnews.config import DataConfig, Validation
from agnews.storage import file_lock, resolve_cache_dir
from agnews.text import EncodedTexts, Vocab, build_vocab, encode, tokenize_all

log = logging.getLogger(__name__)

# Part of every cache key: bump it whenever tokenisation or encoding changes what the arrays hold.
ENCODING_VERSION = "basic_english/1"


@dataclass(frozen=True)
class PreparedData:
    vocab: Vocab
    train: EncodedTexts
    val: EncodedTexts
    test: EncodedTexts


_encoded_in_memory: dict[str, tuple[Vocab, EncodedTexts, EncodedTexts]] = {}


def prepare_data(config: DataConfig, progress: bool = True) -> PreparedData:
    """Vocab (built on train) and the train/val/test splits as encoded texts."""
    cache_dir = resolve_cache_dir(config.cache_dir)
    paths = ag_news.locate_ag_news(config.dir, cache_dir, base_url=config.url, progress=progress)
    key = cache_key(paths, config)
    if key not in _encoded_in_memory:
        _encoded_in_memory[key] = _load_or_build(cache_dir / "prepared" / key, paths, config)
    vocab, train_all, test = _encoded_in_memory[key]
    if config.validation is Validation.test:
        log.warning("data.validation=test: lr steps and model selection use the test split, as the notebook did; "
                    "its test accuracy is optimistic")  # fmt: skip
        return PreparedData(vocab, train_all, test, test)
    train_indices, val_indices = stratified_split(train_all.labels, config.val_fraction, config.split_seed)
    return PreparedData(vocab, train_all.subset(train_indices), train_all.subset(val_indices), test)


def cache_key(paths: dict[str, Path], config: DataConfig) -> str:
    """A hash of the CSVs' contents and the encoding settings (not of paths: a copy hits the same entry)."""
    digest = hashlib.sha256(json.dumps([ENCODING_VERSION, config.min_freq, config.max_vocab_size]).encode())
    for name in ag_news.SPLITS:
        with open(paths[name], "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:20]


def _load_or_build(folder: Path, paths: dict[str, Path], config: DataConfig):
    if not folder.is_dir():
        # One process builds; others starting at the same moment wait here and then find the folder.
        with file_lock(folder.parent / f"{folder.name}.lock"):
            if not folder.is_dir():
                _build(folder, paths, config)
    started = time.perf_counter()
    vocab = Vocab.load(folder / "vocab.txt")
    train, test = (_load_encoded(folder / f"{name}.npz") for name in ag_news.SPLITS)
    log.info("Loaded prepared data from %s in %.2f s: vocab %d, train %d, test %d texts",
             folder, time.perf_counter() - started, len(vocab), len(train), len(test))  # fmt: skip
    return vocab, train, test


def _build(folder: Path, paths: dict[str, Path], config: DataConfig) -> None:
    """Parse, tokenise and encode, writing into a temporary folder renamed into place when complete."""
    started = time.perf_counter()
    splits = {name: ag_news.read_split(paths[name], name) for name in ag_news.SPLITS}
    train_tokens = tokenize_all(splits["train"].texts)
    vocab = build_vocab(train_tokens, config.min_freq, config.max_vocab_size)
    encoded = {
        "train": encode(train_tokens, splits["train"].labels, vocab),
        "test": encode(tokenize_all(splits["test"].texts), splits["test"].labels, vocab),
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        vocab.save(staging / "vocab.txt")
        for name, texts in encoded.items():
            # int32 ids halve the file; vocabularies stay far below 2**31 entries.
            np.savez(staging / f"{name}.npz", token_ids=texts.token_ids.astype(np.int32),
                     offsets=texts.offsets, labels=texts.labels)  # fmt: skip
        os.chmod(staging, 0o755)
        os.rename(staging, folder)  # atomic: a reader sees no folder or a complete one
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("Prepared %s in %.2f s (parse, tokenise, vocab %d, encode)", folder, time.perf_counter() - started,
             len(vocab))  # fmt: skip


def _load_encoded(path: Path) -> EncodedTexts:
    with np.load(path) as arrays:
        return EncodedTexts(
            token_ids=arrays["token_ids"].astype(np.int64),
            offsets=arrays["offsets"],
            labels=arrays["labels"],
        )


def clear_memory_cache() -> None:
    _encoded_in_memory.clear()
