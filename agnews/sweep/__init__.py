"""What runs in Hydra's launching process, before and after a command's jobs: the folder guard and the launch
check (guard, plan), summary.csv when a sweep ends (summary), the Optuna search's study (study), the tracking
extras and shared MLflow store (tracking), and the launcher presets' resolvers (launchers). The only code
besides the entry point (agnews.run) and the config schemas that imports Hydra.

One way to refuse a launch: `refuse(message)`, one line on stderr and exit status 2. Hydra turns an exception
raised in a callback into a warning and goes on, so a refusal is a SystemExit.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from agnews.storage import AgnewsError

T = TypeVar("T")


def refuse(message: str) -> NoReturn:
    """Stop the command before (or instead of) what it asked for: `agnews: error: <message>`, exit status 2."""
    print(f"agnews: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def refuse_on_error(make: Callable[[], T]) -> T:
    """make(), or a refusal with the message of the AgnewsError it raised."""
    try:
        return make()
    except AgnewsError as error:
        refuse(str(error))
