"""Where caches live, and writing files so that a killed process never leaves a half-written one.

Every file this project writes goes through `atomic_write`: the bytes land in a temporary file in the
same directory, which is renamed over the target only once complete. A reader therefore sees either
the old file or the new one, never a prefix of it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

CACHE_ENV_VAR = "AGNEWS_CACHE_DIR"


class AgnewsError(RuntimeError):
    """A problem the user can fix (bad input, missing file, no network); the message says how."""


def resolve_cache_dir(configured: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: the config's value, else $AGNEWS_CACHE_DIR, else the platform's user cache dir."""
    if configured:
        return Path(configured).expanduser()
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    # Imported here: pooch is only needed to find the platform default.
    import pooch

    return Path(pooch.os_cache("agnews"))


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; rename it to `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; give it the permissions open() would, so a shared cache stays readable.
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the block, across processes.

    Used around building a shared cache entry, so that jobs starting together (joblib workers, Slurm
    array jobs) wait for one builder instead of each redoing the work; the waiter then finds the entry.
    POSIX flock; where that is missing (Windows) the block runs unlocked, and the atomic renames still
    keep the cache consistent.
    """
    if sys.platform == "win32":
        yield
        return
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
