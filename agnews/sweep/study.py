"""Hyperparameter search through Hydra's optimising sweepers (conf/hparams_search/, the Optuna sweeper).

Three things the sweepers do not do for agnews:
- a job that failed or diverged must still return a number the sweeper accepts: hydra-optuna-sweeper 1.3
  crashes the whole study on NaN (it tells Optuna the trial both completed and failed), so such a job
  returns the worst value for the study's direction (`failed_objective`);
- a study stored in its sweep folder is continued by running the same command again, but the sweeper
  numbers every command's jobs from 0, so the second command's trial 0 would land in the first command's
  job folder 0. `StudyCallback` makes job numbers continue from the study's trial count (job N = trial N)
  and refuses a folder whose jobs the study does not know;
- its study's SQLite file needs an existing folder (FolderGuard creates the sweep folder, this callback
  the folder of a storage elsewhere), and the search must never select on the test split.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from agnews.storage import sqlite_file
from agnews.sweep import refuse

log = logging.getLogger(__name__)

OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def require_optuna(arguments: Sequence[str]) -> None:
    """Stop with one line naming the extra when the command asks for the Optuna sweeper and it is missing.
    Called before Hydra composes the config: Hydra's own error ("Could not find 'hydra/sweeper/optuna'")
    does not say what to install."""
    asked = [arg for arg in arguments if arg.startswith(("hparams_search=", "hydra/sweeper=optuna"))]
    if not asked:
        return
    for module, package in (("hydra_plugins.hydra_optuna_sweeper", "hydra-optuna-sweeper"), ("optuna", "optuna")):
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            refuse(f'{asked[0]} needs the {package} package: pip install -e ".[optuna]"')


def failed_objective(sweeper: Mapping[str, Any]) -> float:
    """What a failed or diverged job returns to the sweeper `sweeper` (its hydra.sweeper config): -inf when
    it maximises (Optuna's direction, Nevergrad's optim.maximize), +inf when it minimises, else NaN (the
    basic sweeper ignores the value). Never NaN to an optimiser: Optuna's sweeper crashes on it."""
    direction = sweeper.get("direction")
    optim = sweeper.get("optim") or {}
    if isinstance(direction, str):
        maximize = direction.lower() == "maximize"
    elif "maximize" in optim:
        maximize = bool(optim["maximize"])
    else:
        return math.nan  # no single direction (basic sweeper; a multi-objective study wants a list anyway)
    return -math.inf if maximize else math.inf


def trials_so_far(storage: Any, study_name: str | None) -> int:
    """How many trials the study `study_name` in `storage` holds (0 if there is no such study yet)."""
    if storage is None or study_name is None:
        return 0  # in-memory, or a new randomly named study every time
    path = sqlite_file(storage)
    if path is not None and not path.exists():
        return 0  # not created yet; asking would create it here
    import optuna

    try:
        summaries = optuna.study.get_all_study_summaries(storage=storage)
    except Exception as error:  # SQLAlchemy's DatabaseError for a file that is no database, Optuna's own ...
        what = f"{path} is not an Optuna study database" if path is not None else f"{storage} cannot be opened"
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        refuse(f"{what} ({first}); nothing was launched. Move it away, or point hydra.sweeper.storage elsewhere")
    return next((summary.n_trials for summary in summaries if summary.study_name == study_name), 0)


def _continue_job_numbers() -> bool:
    """Make hydra-optuna-sweeper number a command's jobs from the study's trial count instead of 0.

    Its OptunaSweeperImpl.setup() sets job_idx = 0, and each batch launches jobs job_idx, job_idx + 1, ...
    for trials asked in the same order, so starting job_idx at the study's trial count makes job N trial N.
    Returns False when the sweeper is not installed."""
    try:
        from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
    except ImportError:
        return False
    setup = OptunaSweeperImpl.setup
    if getattr(setup, "agnews_continues", False):
        return True

    def setup_continuing(self: Any, **kwargs: Any) -> None:
        setup(self, **kwargs)
        if not hasattr(self, "job_idx"):
            log.warning("This hydra-optuna-sweeper has no job_idx: job numbers may restart at 0")
        self.job_idx = trials_so_far(self.storage, self.study_name)

    setup_continuing.agnews_continues = True  # type: ignore[attr-defined]
    OptunaSweeperImpl.setup = setup_continuing
    return True


class StudyCallback(Callback):
    """Hydra callback (conf/config.yaml: hydra.callbacks.study); does nothing unless the sweeper is Optuna's."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = config.hydra.sweeper
        if sweeper.get("_target_") != OPTUNA_SWEEPER:
            return
        if str(config.get("data", {}).get("validation")) == "test":
            refuse(
                "data.validation=test would make the search choose its trials on the test split; "
                "use data.validation=held_out (the default)"
            )
        n_trials = sweeper.get("n_trials")
        if isinstance(n_trials, int) and n_trials < 1:
            refuse(f"hydra.sweeper.n_trials={n_trials}: a search needs at least one trial")
        path = sqlite_file(sweeper.get("storage"))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)  # SQLite cannot create the folder of its file
        start = trials_so_far(sweeper.get("storage"), sweeper.get("study_name"))
        continuing = _continue_job_numbers()
        first = start if continuing else 0
        _check_folder(Path(config.hydra.sweep.dir), first, sweeper)
        if start:
            _check_same_settings(config, Path(config.hydra.sweep.dir), set(sweeper.get("params") or {}))
            log.info("Continuing study %s (%d trials so far): jobs from %d on", sweeper.get("study_name"), start, first)


def _check_folder(sweep_dir: Path, first: int, sweeper: DictConfig) -> None:
    """Refuse a sweep folder holding job folders the new trials would be numbered into."""
    numbered = [int(child.name) for child in sweep_dir.glob("*/") if child.name.isdigit()]
    taken = sorted(number for number in numbered if number >= first)
    if not taken:
        return
    study = f"study {sweeper.get('study_name')!r} in {sweeper.get('storage')}"
    if sweeper.get("storage") is None or sweeper.get("study_name") is None:
        study = "a study without storage or study_name (a new one every time)"
    refuse(
        f"{sweep_dir} already holds job folders {', '.join(map(str, taken[:5]))}{' ...' if len(taken) > 5 else ''} "
        f"that {study} does not count as its trials, and new trials would be numbered into them; nothing was "
        "launched. Choose another hydra.sweep.dir, or restore the study's storage."
    )


def _check_same_settings(config: DictConfig, sweep_dir: Path, searched: set[str]) -> None:
    """Refuse to add trials whose fixed settings (all but the searched ones) differ from those the study's
    earlier trials recorded: their accuracies would not be comparable, yet the study would rank them together."""
    from agnews.config import ConfigError, config_differences, to_app_config, to_plain_dict
    from agnews.report.sweep import find_job_dirs
    from agnews.results import read_job
    from agnews.sweep.plan import without_hydra

    earlier = next((job for job in map(read_job, find_job_dirs(sweep_dir)) if job.config), None)
    if earlier is None:
        return
    try:
        current = to_plain_dict(to_app_config(without_hydra(config)))
    except ConfigError:
        return  # each trial reports its config error
    differences = [
        difference
        for difference in config_differences(earlier.config, current)
        if difference.partition(":")[0] not in searched
    ]
    if differences:
        refuse(
            f"this command's settings differ from those of the study's earlier trials in {sweep_dir} (job "
            f"{earlier.job}: {'; '.join(differences[:5])}), so its trials would not be comparable with theirs; "
            "nothing was launched. Rerun with the earlier settings (only hydra.sweeper.n_trials and how jobs run "
            "may change), or start another study in another hydra.sweep.dir."
        )
