"""What runs in Hydra's launching process, before and after a command's jobs: the folder guard and the launch
check (guard, plan), how jobs share the machine (launchers), the lines that say how far a sweep has got
(progress), summary.csv when a sweep ends (summary), agnews' Optuna sweeper and its study (search, study; the
study's pruning runs in each job), and the tracking extras and shared MLflow store (tracking). The only code
besides the entry point (agnews.run) and the config schemas that imports Hydra.

One way to refuse a launch: `refuse(message)`, one line on stderr and exit status 2. Hydra turns an exception
raised in a callback into a warning and goes on, so a refusal is a SystemExit, and a callback step that must
happen is `guarded`.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from agnews.storage import AgnewsError

T = TypeVar("T")


_refused = False
_launched: set[str] = set()  # the job folders this command launched, relative to the sweep folder


def start_launch() -> None:
    """A command starts its launch (FolderGuard, the first callback): nothing refused or launched yet. One
    launching process makes one launch; tests that simulate several in one process start each."""
    global _refused
    _refused = False
    _launched.clear()


def refuse(message: str) -> NoReturn:
    """Stop the command before (or instead of) what it asked for: `agnews: error: <message>`, exit status 2."""
    global _refused
    _refused = True
    print(f"agnews: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def refused() -> bool:
    """Whether this command refused its launch: Hydra 1.4 still calls the callbacks' on_multirun_end then,
    which must then change nothing."""
    return _refused


def guarded(step: Callable[..., None]) -> Callable[..., None]:
    """For a callback's step that must happen (a check before launching, the summary after): Hydra turns an
    exception raised in a callback into a warning and goes on, so a bug there would let a launch go unchecked,
    or end a sweep with status 0. Here it stops the command instead, with the traceback logged."""

    @functools.wraps(step)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            step(*args, **kwargs)
        except Exception as error:
            logging.getLogger(step.__module__).exception("%s failed", step.__qualname__)
            refuse(f"{step.__qualname__} failed ({type(error).__name__}: {error}); nothing more was done")

    return run


def refuse_on_error(make: Callable[[], T]) -> T:
    """make(), or a refusal with the message of the AgnewsError it raised."""
    try:
        return make()
    except AgnewsError as error:
        refuse(str(error))


def record_launched(jobs: set[str]) -> None:
    """The launch check notes the job folders it planned, and a search the trials it launched: summary.csv lists
    every job of the folder, but these decide the command's exit status (other commands' trials, earlier or still
    running, do not; a planned job whose folder holds another command's run, or nothing, fails it)."""
    _launched.update(jobs)


def launched_jobs() -> set[str]:
    return set(_launched)
