"""Locks between processes: a cache entry built by one process while others wait (`file_lock`), and the claim
a command holds on its run or sweep folder so that two commands never work in one (`claim_folder`). Every
lock dies with its process; whoever holds one is named in an owner file beside it, so a process that has to
wait, or is refused, says who it waits for.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import filelock

from agnews.storage import AgnewsError, atomic_write_text, explain_os_error

log = logging.getLogger(__name__)

CLAIM_FILE = ".agnews.lock"  # held by the process that runs in a folder, for as long as it runs
OWNER_FILE = ".agnews.owner"  # who holds the claim: pid, host, start time (for the loser's message)
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
    if not value:
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):  # filelock takes a negative timeout for 'wait forever'
        raise AgnewsError(f"${LOCK_TIMEOUT_ENV}={value!r}: give a positive number of seconds")
    return seconds


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
        self.created = False  # whether claiming it made the folder

    def acquire(self, what: str = "folder", choose: str = "choose another folder") -> FolderClaim:
        """Claim the folder (`what` names it in messages, `choose` says how to pick another)."""
        try:
            self.created = not self.folder.exists()
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

    def abandon(self) -> None:
        """Release the claim of a command that was refused, leaving no trace of it: a folder the claim made, and
        that holds nothing else, goes too."""
        _leave_no_trace(self.folder, self.created, alone=self._lock.is_locked, release=self.release)

    def __enter__(self) -> FolderClaim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def owner(self) -> str:
        return _describe_owner(self.folder / OWNER_FILE)


def _leave_no_trace(folder: Path, created: bool, alone: bool, release: Callable[[], None]) -> None:
    """A refused command's claim: its files go while it holds the folder alone, then the claim is released, and a
    folder the claim made goes too if nothing else is in it."""
    if created and alone:
        for name in (OWNER_FILE, CLAIM_FILE):
            (folder / name).unlink(missing_ok=True)
    release()
    if created:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty


class SharedFolderClaim:
    """A claim several commands may hold on one folder at once, which no exclusive FolderClaim can take while
    they do (and the reverse): searches that work on one study in one sweep folder, each job in its own folder
    numbered by its trial. A shared flock on the same `.agnews.lock`; where the platform has no flock
    (Windows), an exclusive claim instead."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self._fd: int | None = None
        self._exclusive: FolderClaim | None = None
        self.created = False  # whether claiming it made the folder

    def acquire(self, what: str = "folder", choose: str = "choose another folder") -> SharedFolderClaim:
        try:
            import fcntl
        except ImportError:
            self._exclusive = FolderClaim(self.folder).acquire(what, choose)
            return self
        try:
            self.created = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / CLAIM_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise AgnewsError(f"cannot write to the {what} {self.folder} ({error.strerror}); {choose}") from error
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderBusyError(
                f"the {what} {self.folder} is in use by another agnews command "
                f"({_describe_owner(self.folder / OWNER_FILE)}); nothing of it was touched. Wait for that "
                f"command, or {choose}."
            ) from None
        self._fd = fd
        atomic_write_text(self.folder / OWNER_FILE, json.dumps(_owner("shared")) + "\n")
        return self

    def release(self) -> None:
        if self._exclusive is not None:
            self._exclusive.release()
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def abandon(self) -> None:
        """Release the claim of a command that was refused. A folder the claim made goes too, unless another
        command shares it by now (then our shared lock cannot become an exclusive one)."""
        if self._exclusive is not None:
            self._exclusive.abandon()
            self._exclusive = None
            return
        alone = False
        if self.created and self._fd is not None:
            import fcntl

            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except BlockingIOError:
                pass
        _leave_no_trace(self.folder, self.created, alone=alone, release=self.release)

    def __enter__(self) -> SharedFolderClaim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim_folder(
    folder: str | os.PathLike[str], what: str = "folder", choose: str = "choose another", shared: bool = False
) -> FolderClaim | SharedFolderClaim:
    """Claim `folder` for this process (see FolderClaim, SharedFolderClaim); use as a context manager or
    release() it."""
    claim = SharedFolderClaim(folder) if shared else FolderClaim(folder)
    return claim.acquire(what, choose)
