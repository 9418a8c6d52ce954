"""AG News: download the canonical CSVs once into the cache (or read a folder the user brings), then parse
them strictly into label arrays and texts.

The canonical files (the ones torchtext downloaded) are CSV without a header: `"label","title","description"`,
label 1..4, quotes inside fields doubled, line breaks inside the text written as a literal backslash + n.
We keep the text exactly as torchtext did, `title + " " + description` with the backslashes left in, so
vocabularies and accuracies stay comparable with the notebook this project replaces.

Parsing is strict: a bad row stops the run with the file and line named, because a silently skipped or
mis-split row would change the data every result depends on.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pooch
import requests

from agnews.config import AG_NEWS_BASE_URL
from agnews.data.text import decode_utf8
from agnews.locks import file_lock
from agnews.storage import AgnewsError

log = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = ("World", "Sports", "Business", "Sci/Tech")
SPLITS = ("train", "test")
CANONICAL_MD5 = {"train": "b1a00f826fdfbd249f79597b59e1dc12", "test": "d52ea96a97a2d943681189a97654912d"}

# Label as written in the file -> class index. One dict lookup per row keeps 120,000 rows well under a
# second; anything not found here takes the slow path, which either accepts it (" 2") or says what is wrong.
_LABELS = {str(number): number - 1 for number in range(1, len(CLASS_NAMES) + 1)}
_LABEL_CHOICES = ", ".join(f"{number}={name}" for number, name in enumerate(CLASS_NAMES, start=1))
_ROW_FORMAT = '"label","title","description" with label 1..4'
# The csv module refuses fields over 131,072 characters by default; a long text is data, not an error
# (data.max_tokens bounds what it costs later).
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

_OFFLINE_HINT = (
    "To work without the network, pass local files with data.dir=PATH (a folder holding train.csv and "
    "test.csv), or set data.url to a mirror that serves them."
)


class DataError(AgnewsError):
    """Bad or unreachable AG News data; the message names the file or URL (and line) and says what to do."""


# eq=False: a generated __eq__/__hash__ would compare numpy arrays, which raises; identity is what we want.
@dataclass(frozen=True, eq=False)
class Split:
    name: str  # "train" / "test"
    labels: np.ndarray  # int64 [N], class index 0..3 (the file's label minus one); read-only
    texts: list[str]  # [N], title + " " + description
    source: Path  # the CSV it came from

    def __len__(self) -> int:
        return len(self.texts)


def read_split(path: Path, name: str) -> Split:
    """Parse one AG News CSV. Every row is checked; the first bad one raises DataError naming its line.

    Blank lines are skipped (they hold no data). A header as first row (Kaggle's `Class Index,Title,
    Description`) is recognised and skipped.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; the {name} split must be a CSV of {_ROW_FORMAT}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {name} split ({exc.strerror})") from exc

    labels: list[int] = []
    texts: list[str] = []
    header: list[str] | None = None
    # newline="" leaves line endings to the csv module, which also counts physical lines in line_num,
    # so a record whose quoted text spans lines still leaves later line numbers right.
    reader = csv.reader(io.StringIO(_decode(data, path), newline=""), strict=True)
    end = 0  # last physical line of the previous record
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            label = _LABELS.get(row[0]) if row else None
            if label is None or len(row) != 3:
                if not row:
                    continue
                if not labels and header is None and _looks_like_header(row):
                    header = row
                    continue
                label = _check_row(row, _where(path, start, end))
            labels.append(label)
            texts.append(row[1] + " " + row[2])  # torchtext's " ".join(row[1:])
    except csv.Error as exc:
        raise DataError(
            f"{_where(path, end + 1, reader.line_num)}: not valid CSV ({exc}). A quote inside a field must be "
            'doubled (""), and every opened quote closed.'
        ) from exc

    if header is not None:
        log.debug("%s: skipped header row %s", path, header)
    if not labels:
        what = "only a header row" if header is not None else "no rows"
        raise DataError(f"{path}: the {name} split has {what}; expected rows of {_ROW_FORMAT}")
    label_array = np.array(labels, dtype=np.int64)
    # Splits are shared through the in-process cache; a job that changed them would change every later job.
    label_array.setflags(write=False)
    return Split(name=name, labels=label_array, texts=texts, source=path)


def _decode(data: bytes, path: Path) -> str:
    fix = (
        ". Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`, "
        "or 'CSV UTF-8' in a spreadsheet program)."
    )
    try:
        return decode_utf8(data, path, fix)
    except AgnewsError as error:
        raise DataError(str(error)) from None


def _looks_like_header(row: list[str]) -> bool:
    first = row[0].strip().lower()
    return _parse_int(first) is None and ("class" in first or "label" in first)


def _parse_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _check_row(row: list[str], where: str) -> int:
    """The slow path for a row the fast path rejected: its class index, or DataError saying what is wrong."""
    if len(row) != 3:
        preview = ",".join(row)
        preview = preview if len(preview) <= 80 else preview[:77] + "..."
        raise DataError(
            f"{where}: expected 3 fields (label, title, description), found {len(row)}: {preview!r}. "
            'A field holding a comma must be in double quotes, with quotes inside it doubled ("").'
        )
    number = _parse_int(row[0])
    if number is None or not 1 <= number <= len(CLASS_NAMES):
        raise DataError(f"{where}: label {row[0]!r} is not an integer 1..4 ({_LABEL_CHOICES}); fix or remove the row")
    return number - 1


def _where(path: Path, start: int, end: int) -> str:
    return f"{path}, line {start}" if start >= end else f"{path}, lines {start}-{end}"


def download_ag_news(
    cache_dir: Path,
    base_url: str = AG_NEWS_BASE_URL,
    md5: Mapping[str, str] = CANONICAL_MD5,
    progress: bool = True,
) -> dict[str, Path]:
    """Fetch {train,test}.csv into cache_dir/ag_news unless already there with the right md5.

    pooch downloads to a temporary file beside the target, checks the hash, and only then renames it into
    place, so an interrupted or wrong download is never cached. Files already present are hashed, not fetched.
    """
    folder = Path(cache_dir) / "ag_news"
    # One process downloads; others starting together wait, then find the files and only hash them.
    with _quiet_pooch(), file_lock(Path(cache_dir) / "locks" / "ag_news.lock", "the AG News download"):
        return {
            name: _retrieve(f"{base_url.rstrip('/')}/{name}.csv", md5[name], folder, f"{name}.csv", progress)
            for name in SPLITS
        }


def _retrieve(url: str, expected_md5: str, folder: Path, fname: str, progress: bool) -> Path:
    try:
        fetch = pooch.downloaders.choose_downloader(url, progressbar=progress)
    except ValueError as exc:  # a protocol pooch does not know
        raise DataError(f"cannot download {url}: {exc}. {_OFFLINE_HINT}") from exc
    downloaded: dict[str, str] = {}

    # pooch's mismatch error carries the actual hash only in its wording; record it ourselves.
    def download(url: str, output_file: str, pooch_instance: pooch.Pooch | None) -> None:
        log.info("downloading %s", url)
        fetch(url, output_file, pooch_instance)
        downloaded["md5"] = pooch.file_hash(output_file, alg="md5")

    try:
        name = pooch.retrieve(url, known_hash=f"md5:{expected_md5}", fname=fname, path=folder, downloader=download)
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "error"
        raise DataError(f"cannot download {url}: HTTP {status}. {_OFFLINE_HINT}") from exc
    except requests.exceptions.RequestException as exc:  # connection refused, no route, DNS, timeout
        raise DataError(f"cannot download {url}: {type(exc).__name__} (no network?). {_OFFLINE_HINT}") from exc
    except ValueError as exc:
        actual = downloaded.get("md5")
        if actual is None or actual == expected_md5:
            raise DataError(f"cannot download {url}: {exc}") from exc
        raise DataError(
            f"{url} served a file with md5 {actual}, expected {expected_md5}; it was not cached. "
            "data.url must serve the canonical AG News files; to use different files on purpose, "
            "pass them with data.dir=PATH (read as they are, without a checksum)."
        ) from exc
    return Path(name)


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    # pooch logs every fetch and hash at INFO; our own log lines say what matters.
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")
    try:
        yield
    finally:
        logger.setLevel(level)


def locate_ag_news(
    data_dir: str | Path | None,
    cache_dir: Path,
    base_url: str = AG_NEWS_BASE_URL,
    md5: Mapping[str, str] = CANONICAL_MD5,
    progress: bool = True,
) -> dict[str, Path]:
    """{split: CSV path}: the files in data_dir when given (checked to exist), else the downloaded ones."""
    # "" counts as not given, as an empty override on the command line (`data.dir=`) would be meant.
    if data_dir is not None and str(data_dir) != "":
        return _local_paths(Path(data_dir).expanduser())
    return download_ag_news(cache_dir, base_url, md5, progress)


def _local_paths(folder: Path) -> dict[str, Path]:
    paths = {name: folder / f"{name}.csv" for name in SPLITS}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise DataError(
            f"data.dir={folder}: missing {' and '.join(missing)}. The folder must hold train.csv and test.csv, "
            f"each with rows of {_ROW_FORMAT}; or leave data.dir unset to download AG News."
        )
    return paths
