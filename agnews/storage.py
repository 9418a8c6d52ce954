"""Files on disk: where caches live, writing so that a killed process never leaves a half-written file,
locks shared by parallel jobs, and claiming a run or sweep folder so that two commands never share one.

Every file this project writes goes through `atomic_write`: the bytes land in a temporary file in the
same directory, which is renamed over the target only once complete. A reader therefore sees either
the old file or the new one, never a prefix of it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import filelock

log = logging.getLogger(__name__)

CACHE_ENV_VAR = "AGNEWS_CACHE_DIR"
CLAIM_FILE = ".agnews.lock"  # held by the process that runs in a folder, for as long as it runs
OWNER_FILE = ".agnews.owner"  # who holds the claim: pid, host, start time (for the loser's message)
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


LOCK_TIMEOUT_ENV = "AGNEWS_LOCK_TIMEOUT"  # seconds a process waits for another's lock before giving up
DEFAULT_LOCK_TIMEOUT_S = 3600.0  # a whole glove.6B.zip download (822 MB) on a slow line fits
LOCK_NOTICE_S = 5.0  # waiting longer than this is said, with who holds the lock
LOCK_REMINDER_S = 300.0


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], what: str = "a cache entry") -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the block, across processes; `what` names
    what the lock guards, for the messages of a process that waits.

    Used around building a shared cache entry, so that jobs starting together (joblib workers, Slurm
    array jobs) wait for one builder instead of each redoing the work; the waiter then finds the entry.
    filelock uses flock where it works, Windows' own locks there, and a lock file where the filesystem
    has no flock (some network filesystems), so the lock holds wherever a cluster keeps its files. A lock
    dies with its process; a waiter says after LOCK_NOTICE_S who holds it (its pid, host and start, from
    `<lock>.owner`), and gives up after $AGNEWS_LOCK_TIMEOUT seconds (default one hour).
    """
    path = Path(path)
    owner_file = path.with_name(f"{path.name}.owner")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(path)
        _acquire_waiting(lock, path, owner_file, what)
    except OSError as error:
        fix = "point data.cache_dir (or $AGNEWS_CACHE_DIR) at a writable folder"
        raise explain_os_error(error, path, fix) from error
    with contextlib.suppress(AgnewsError):  # only for the messages of others who wait: a full disk fails later
        atomic_write_text(owner_file, json.dumps(_owner(what)) + "\n")
    try:
        yield
    finally:
        owner_file.unlink(missing_ok=True)  # before the lock goes, so it never names the next holder wrongly
        lock.release()


def lock_timeout() -> float:
    value = os.environ.get(LOCK_TIMEOUT_ENV, "")
    try:
        return float(value) if value else DEFAULT_LOCK_TIMEOUT_S
    except ValueError:
        raise AgnewsError(f"${LOCK_TIMEOUT_ENV}={value!r} is not a number of seconds") from None


def _acquire_waiting(lock: filelock.FileLock, path: Path, owner_file: Path, what: str) -> None:
    timeout = lock_timeout()
    started = time.monotonic()
    try:
        lock.acquire(timeout=min(LOCK_NOTICE_S, timeout))
        return
    except filelock.Timeout:
        pass
    log.warning(
        "Waiting for %s: another process (%s) holds %s while it builds it; waiting up to %s",
        what,
        _describe_owner(owner_file),
        path,
        _duration(timeout),
    )
    while (remaining := timeout - (time.monotonic() - started)) > 0:
        try:
            lock.acquire(timeout=min(LOCK_REMINDER_S, remaining))
            log.info("%s is ours after waiting %s", path, _duration(time.monotonic() - started))
            return
        except filelock.Timeout:
            log.warning(
                "Still waiting for %s (%s so far; held by %s)",
                what,
                _duration(time.monotonic() - started),
                _describe_owner(owner_file),
            )
    raise AgnewsError(
        f"gave up waiting for {what} after {_duration(timeout)}: {path} is held by {_describe_owner(owner_file)}. "
        f"If that process is stuck, stop it; or wait longer with {LOCK_TIMEOUT_ENV}=SECONDS"
    )


def _owner(what: str = "") -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"), "what": what}


def _describe_owner(owner_file: Path) -> str:
    """'pid 123 on host, since 2026-12-03 10:00:00' from an owner file, or 'owner unknown'."""
    try:
        owner = json.loads(owner_file.read_text(encoding="utf-8"))
        return f"pid {owner['pid']} on {owner['host']}, since {owner['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "owner unknown"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class FolderBusyError(AgnewsError):
    """Another process holds the folder's claim right now."""


class FolderClaim:
    """The claim a process holds on a run or sweep folder while it works there.

    Taking it is atomic (a non-blocking lock on `<folder>/.agnews.lock`): of two commands that reach the
    same folder, one wins and the other fails at once with FolderBusyError. The lock dies with its
    process, so a killed run leaves no stale claim. Claims are re-entrant within a process: the callback
    that claims a single run's folder before Hydra writes there and the run itself share one.
    """

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self._lock = filelock.FileLock(self.folder / CLAIM_FILE, is_singleton=True)

    def acquire(self, what: str = "folder", choose: str = "choose another folder") -> FolderClaim:
        """Claim the folder (`what` names it in messages, `choose` says how to pick another)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            already_ours = self._lock.is_locked
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            raise FolderBusyError(
                f"the {what} {self.folder} is in use by another agnews command ({self.owner()}); nothing of it "
                f"was touched. Wait for that command, or {choose}."
            ) from None
        except OSError as error:
            reason = error.strerror or str(error)
            raise AgnewsError(f"cannot write to the {what} {self.folder} ({reason}); {choose}") from error
        if not already_ours:
            atomic_write_text(self.folder / OWNER_FILE, json.dumps(_owner()) + "\n")
        return self

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> FolderClaim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def owner(self) -> str:
        return _describe_owner(self.folder / OWNER_FILE)


def claim_folder(folder: str | os.PathLike[str], what: str = "folder", choose: str = "choose another") -> FolderClaim:
    """Claim `folder` for this process (see FolderClaim); use as a context manager or release() it."""
    return FolderClaim(folder).acquire(what, choose)


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
