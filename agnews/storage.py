"""Files on disk: where caches live, writing so that a killed process never leaves a half-written file, and
checking what is read back (sha256). Locks and folder claims are in agnews.locks.

Every file this project writes goes through `atomic_write`: the bytes land in a temporary file in the
same directory, which is renamed over the target only once complete. A reader therefore sees either
the old file or the new one, never a prefix of it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

CACHE_ENV_VAR = "AGNEWS_CACHE_DIR"
TEMP_SUFFIX = ".tmp"

_SPACE_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_ACCESS_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}


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


def explain_os_error(error: OSError, path: str | os.PathLike[str], remedy: str = "") -> AgnewsError:
    """An AgnewsError saying what went wrong writing `path`, in words a user can act on."""
    if error.errno == errno.EFBIG:
        what = "the file is larger than this filesystem (or ulimit -f) allows"
        fix = remedy or "choose another folder"
    elif error.errno in _SPACE_ERRNOS:
        what = "no space left on the device"
        fix = remedy or "free some space or choose another folder"
    elif error.errno in _ACCESS_ERRNOS:
        what = "the folder is not writable"
        fix = remedy or "choose a writable folder"
    else:
        what = error.strerror or str(error)
        fix = remedy or "check the folder"
    return AgnewsError(f"cannot write {path}: {what}; {fix}")


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` is the way a write reports a full disk. torch.save says only 'unexpected pos'."""
    if isinstance(error, OSError):
        return error.errno in _SPACE_ERRNOS
    return isinstance(error, RuntimeError) and ("unexpected pos" in str(error) or "file write failed" in str(error))


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", overwrite: bool = True, **open_kwargs) -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; rename it to `path` only if the block succeeds.
    A full disk or an unwritable folder becomes an AgnewsError naming `path`; the old file stays. With
    `overwrite=False` the complete file is hard-linked to `path` instead, which fails with FileExistsError
    if `path` exists by then, however it got there."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as error:
        raise explain_os_error(error, path) from error
    try:
        # mkstemp makes the file 0600; give it the permissions open() would, so a shared cache stays readable.
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp_name, path)
        else:
            os.link(tmp_name, path)
            os.unlink(tmp_name)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(error, FileExistsError):
            raise
        if isinstance(error, RuntimeError) and is_disk_full(error):
            raise explain_os_error(OSError(errno.ENOSPC, "no space"), path) from error
        if isinstance(error, OSError):
            raise explain_os_error(error, path) from error
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def create_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a new file atomically, never replacing one that exists, even one made while this writes:
    FileExistsError then."""
    with atomic_write(path, "w", overwrite=False, encoding="utf-8", newline="") as handle:
        handle.write(text)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files a killed atomic_write left in `folder`. Only for a folder this process
    has claimed: nobody else can be writing there."""
    removed = []
    for path in folder.glob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def sqlite_file(url: object) -> Path | None:
    """The database file of a `sqlite:///path` URL (MLflow's and Optuna's storages; relative to the working
    folder), else None."""
    return Path(url.removeprefix("sqlite:///")) if isinstance(url, str) and url.startswith("sqlite:///") else None


_digests: dict[tuple[str, int, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The file's sha256 in hex; remembered per process while its size, mtime and inode stay the same."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _digests:
        with open(path, "rb") as handle:
            _digests[key] = hashlib.file_digest(handle, "sha256").hexdigest()
    return _digests[key]
