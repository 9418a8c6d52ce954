"""AG News ready for training: tokenised and numericalised once per data version, then reused.

The encoded splits (token ids + offsets, see `text.EncodedTexts`) and the vocab are cached on disk under
`<cache>/prepared/<key>/`, the key hashing the CSVs' bytes and every setting that changes the encoding,
so a later process skips parsing and tokenising; within one process the arrays stay in memory for later
jobs of the same sweep. The validation hold-out is cut afterwards, since it is cheap and has its own seed.

A cache entry is trusted only after it checks out against its `manifest.json` (written last: each file's
size and sha256); a damaged entry is rebuilt, with a warning naming it.
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

from agnews.config import DataConfig, Validation
from agnews.data import ag_news
from agnews.data.batches import stratified_split
from agnews.data.text import EncodedTexts, Vocab, build_vocab, encode, tokenize_all
from agnews.locks import file_lock
from agnews.storage import AgnewsError, atomic_write_text, explain_os_error, file_sha256

log = logging.getLogger(__name__)

# Part of every cache key: bump it whenever tokenisation or encoding changes what the arrays hold.
ENCODING_VERSION = "basic_english/2"  # 2: texts cut at data.max_tokens
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "agnews-prepared/1"
FEW_TEXTS_PER_CLASS = 100  # fewer training texts than this in a class: warn that results will be noisy


@dataclass(frozen=True)
class PreparedData:
    key: str  # identifies the data: the CSVs' contents and the encoding settings (recorded by every run)
    vocab: Vocab
    train: EncodedTexts
    val: EncodedTexts
    test: EncodedTexts
    paths: dict[str, Path]  # the CSVs it came from
    train_rows: np.ndarray  # int64 [len(train)]: the row of the train CSV each training text is


class DamagedCacheError(Exception):
    """A cache entry that does not match its manifest."""


_encoded_in_memory: dict[str, tuple[Vocab, EncodedTexts, EncodedTexts]] = {}


def prepare_data(config: DataConfig, cache_dir: Path, progress: bool = True) -> PreparedData:
    """Vocab (built on train) and the train/val/test splits as encoded texts."""
    paths = ag_news.locate_ag_news(config.dir, cache_dir, base_url=config.url, progress=progress)
    key = cache_key(paths, config)
    if key not in _encoded_in_memory:
        _encoded_in_memory[key] = _load_or_build(cache_dir / "prepared" / key, paths, config)
    vocab, train_all, test = _encoded_in_memory[key]
    if config.validation is Validation.test:
        log.warning(
            "data.validation=test: lr steps and model selection use the test split, as the notebook did; "
            "its test accuracy is optimistic"
        )
        rows = np.arange(len(train_all))
        return PreparedData(key, vocab, train_all, test, test, paths, rows)
    train_rows, val_rows = stratified_split(train_all.labels, config.val_fraction, config.split_seed)
    if len(val_rows) == 0:
        raise AgnewsError(
            f"data.val_fraction={config.val_fraction} of the {len(train_all)} texts in {paths['train']} holds out "
            "no text, so there would be nothing to validate on: use more training rows or a larger data.val_fraction"
        )
    train = train_all.subset(train_rows)
    _warn_about_classes(train, paths["train"], config)
    return PreparedData(key, vocab, train, train_all.subset(val_rows), test, paths, train_rows)


def data_key(config: DataConfig, cache_dir: Path) -> str:
    """The key of the data `config` points at, without preparing it (see PreparedData.key)."""
    return cache_key(ag_news.locate_ag_news(config.dir, cache_dir, base_url=config.url, progress=False), config)


def _warn_about_classes(train: EncodedTexts, path: Path, config: DataConfig) -> None:
    counts = np.bincount(train.labels, minlength=len(ag_news.CLASS_NAMES))
    for label, count in enumerate(counts):
        name = f"class {label + 1} ({ag_news.CLASS_NAMES[label]})"
        if count == 0:
            log.warning("%s has no texts of %s: the model cannot learn that class", path, name)
        elif count < FEW_TEXTS_PER_CLASS:
            log.warning(
                "only %d training texts of %s remain after data.val_fraction=%g holds out validation: "
                "expect noisy results",
                count,
                name,
                config.val_fraction,
            )


def cache_key(paths: dict[str, Path], config: DataConfig) -> str:
    """A hash of the CSVs' contents and the encoding settings (not of paths: a copy hits the same entry)."""
    settings = [ENCODING_VERSION, config.min_freq, config.max_vocab_size, config.max_tokens]
    digest = hashlib.sha256(json.dumps(settings).encode())
    for name in ag_news.SPLITS:
        digest.update(bytes.fromhex(file_sha256(paths[name])))
    return digest.hexdigest()[:20]


def _load_or_build(folder: Path, paths: dict[str, Path], config: DataConfig):
    try:
        return _load(folder)
    except DamagedCacheError as error:
        if folder.exists():
            log.warning("prepared-data cache %s is damaged (%s); rebuilding it", folder, error)
    # One process builds; others starting at the same moment wait here and then find the entry.
    with file_lock(folder.parent / f"{folder.name}.lock", f"the prepared-data cache entry {folder}"):
        try:
            return _load(folder)  # built (or repaired) while we waited
        except DamagedCacheError:
            _remove_leftovers(folder)
            _build(folder, paths, config)
    try:
        return _load(folder)
    except DamagedCacheError as error:  # written and at once unreadable: the disk, not the data
        raise AgnewsError(f"prepared-data cache {folder} cannot be read back after writing it ({error})") from error


def _load(folder: Path) -> tuple[Vocab, EncodedTexts, EncodedTexts]:
    started = time.perf_counter()
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") != MANIFEST_FORMAT:
            raise DamagedCacheError(f"{MANIFEST} is not of format {MANIFEST_FORMAT}")
        for name, expected in manifest["files"].items():
            path = folder / name
            if path.stat().st_size != expected["size"] or file_sha256(path) != expected["sha256"]:
                raise DamagedCacheError(f"{name} does not match {MANIFEST}")
        vocab = Vocab.load(folder / "vocab.txt")
        train, test = (_load_encoded(folder / f"{name}.npz") for name in ag_news.SPLITS)
    except FileNotFoundError as error:
        raise DamagedCacheError(f"{Path(error.filename).name} is missing") from error
    except (OSError, ValueError, KeyError, TypeError, AgnewsError) as error:  # BadZipFile is an OSError
        raise DamagedCacheError(f"{type(error).__name__}: {error}") from error
    log.info(
        "Loaded prepared data from %s in %.2f s: vocab %d, train %d, test %d texts",
        folder,
        time.perf_counter() - started,
        len(vocab),
        len(train),
        len(test),
    )
    for name, count in manifest.get("truncated", {}).items():
        if count:
            log.info("%d %s texts were cut to data.max_tokens tokens", count, name)
    return vocab, train, test


def _remove_leftovers(folder: Path) -> None:
    """Under the entry's lock: a damaged entry and staging folders a killed builder left behind."""
    for stale in folder.parent.glob(f".{folder.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    if folder.exists():
        aside = folder.parent / f".{folder.name}.damaged-{os.getpid()}"
        os.rename(folder, aside)  # atomic: readers see the damaged entry or none, never a half-deleted one
        shutil.rmtree(aside, ignore_errors=True)


def _build(folder: Path, paths: dict[str, Path], config: DataConfig) -> None:
    """Parse, tokenise and encode, writing into a temporary folder renamed into place when complete."""
    started = time.perf_counter()
    splits = {name: ag_news.read_split(paths[name], name) for name in ag_news.SPLITS}
    tokens = {name: tokenize_all(split.texts) for name, split in splits.items()}
    vocab = build_vocab(tokens["train"], config.min_freq, config.max_vocab_size)
    if len(vocab) <= 2:
        log.warning(
            "data.min_freq=%d leaves a vocab of only <pad> and <unk>: every word is unknown to the model; "
            "lower data.min_freq",
            config.min_freq,
        )
    encoded = {name: encode(tokens[name], splits[name].labels, vocab, config.max_tokens) for name in ag_news.SPLITS}
    truncated = {}
    for name in ag_news.SPLITS:
        lengths = [len(text) for text in tokens[name]]
        truncated[name] = sum(length > (config.max_tokens or length) for length in lengths)
        if truncated[name]:
            log.warning(
                "%s: %d texts are longer than data.max_tokens=%d tokens and were cut (the longest has %d)",
                paths[name],
                truncated[name],
                config.max_tokens,
                max(lengths),
            )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        vocab.save(staging / "vocab.txt")
        for name, texts in encoded.items():
            # int32 ids halve the file; vocabularies stay far below 2**31 entries.
            np.savez(
                staging / f"{name}.npz",
                token_ids=texts.token_ids.astype(np.int32),
                offsets=texts.offsets,
                labels=texts.labels,
            )
        files = {path.name: {"size": path.stat().st_size, "sha256": file_sha256(path)} for path in staging.iterdir()}
        manifest = {"format": MANIFEST_FORMAT, "files": files, "truncated": truncated}
        atomic_write_text(staging / MANIFEST, json.dumps(manifest, indent=2) + "\n")  # last: marks completion
        os.chmod(staging, 0o755)
        os.rename(staging, folder)  # atomic: a reader sees no folder or a complete one
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError):
            raise explain_os_error(error, folder, "free some space, or point data.cache_dir at another disk") from error
        raise
    log.info(
        "Prepared %s in %.2f s (parse, tokenise, vocab %d, encode)", folder, time.perf_counter() - started, len(vocab)
    )


def _load_encoded(path: Path) -> EncodedTexts:
    with np.load(path) as arrays:
        return EncodedTexts(
            token_ids=arrays["token_ids"].astype(np.int64),
            offsets=arrays["offsets"],
            labels=arrays["labels"],
        )


def clear_memory_cache() -> None:
    _encoded_in_memory.clear()
