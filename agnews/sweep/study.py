"""The Optuna study an agnews search works on (conf/hparams_search/, agnews.sweep.search): opening it (one line
for a storage that is no study database, or one an older Optuna made), the rules a search must keep before it
adds trials, and, in each job, reporting every epoch to the job's trial so that the study's pruner can stop a
hopeless trial early.

A study may be worked on by several commands at once (each in the same sweep folder, or in one of its own,
sharing `hydra.sweeper.storage`): what they must not do at the same moment (create a fresh SQLite study,
check and record its settings, ask for a batch of trials) happens under `study_lock`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from agnews.config import NOT_PART_OF_THE_RUN, AppConfig, flatten, to_plain_dict
from agnews.locks import file_lock
from agnews.storage import sqlite_file
from agnews.sweep import refuse
from agnews.train import Pruned

log = logging.getLogger(__name__)

STUDY_SWEEPER = "agnews.sweep.search.StudySweeper"  # hydra.sweeper._target_ of hydra/sweeper=optuna_study
SETTINGS_ATTR = "agnews.settings"  # the study's user attribute: the settings every trial shares (not searched)
PRUNERS = "optuna.pruners.*"  # what a search may instantiate from its config (Hydra 1.4's execution whitelist)
SAMPLERS = "optuna.samplers.*"


def require_optuna(arguments: Sequence[str]) -> None:
    """Stop with one line naming the extra when the command asks for a search and Optuna is missing. Called
    before Hydra composes the config, which would fail less clearly."""
    asked = [arg for arg in arguments if arg.startswith(("hparams_search=", "hydra/sweeper=optuna_study"))]
    if not asked:
        return
    try:
        found = importlib.util.find_spec("optuna") is not None
    except ImportError:
        found = False
    if not found:
        refuse(f'{asked[0]} needs the optuna package: pip install -e ".[optuna]"')


def failed_objective(sweeper: Mapping[str, Any]) -> float:
    """What a failed or diverged job returns to an optimising sweeper that reads the task's return value
    (Nevergrad's, Hydra's Optuna plugin): the worst value for its direction, else NaN (the basic sweeper ignores
    it). agnews' own search reads each job's results.json instead."""
    direction = sweeper.get("direction")
    optim = sweeper.get("optim") or {}
    if isinstance(direction, str):
        maximize = direction.lower() == "maximize"
    elif "maximize" in optim:
        maximize = bool(optim["maximize"])
    else:
        return math.nan
    return -math.inf if maximize else math.inf


@contextlib.contextmanager
def study_lock(storage: str | None, study_name: str | None) -> Iterator[None]:
    """Held by one command at a time: creating a SQLite study (Optuna's table migrations break when two
    processes run them on one fresh file), checking its settings, asking for trials (so a batch gets
    consecutive trial numbers, which are its job numbers). A lock file beside a SQLite storage; other storages
    (a database server) serialise creation themselves, and a command then asks one trial per job."""
    path = sqlite_file(storage)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)  # SQLite cannot create the folder of its file
    with file_lock(path.with_name(f"{path.name}.lock"), f"the Optuna study {study_name!r} in {path}"):
        yield


def open_study(
    storage: str | None, study_name: str | None, direction: str, sampler: Any = None, pruner: Any = None
) -> Any:
    """The study, created if it does not exist yet; refused (one line) when the storage is no study database,
    or one an older Optuna made (how to upgrade it)."""
    import optuna

    path = sqlite_file(storage)
    if path is not None and path.is_file() and path.stat().st_size and not _is_optuna_database(path):
        refuse(
            f"{path} is not an Optuna study database (it holds no Optuna tables); nothing was launched, and it was "
            "left as it is. Move it away, or point hydra.sweeper.storage elsewhere"
        )
    with study_lock(storage, study_name):
        try:
            return optuna.create_study(
                study_name=study_name,
                storage=storage,
                sampler=sampler,
                pruner=pruner,
                direction=direction,
                load_if_exists=True,
            )
        except Exception as error:  # SQLAlchemy's DatabaseError, Optuna's schema RuntimeError, ...
            refuse(_unusable(storage, error))


def _is_optuna_database(path: Path) -> bool:
    """Whether a SQLite file holds Optuna's tables: Optuna would add its own to any other database."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError:
        return False
    return {"studies", "trials"} <= tables


def _unusable(storage: str | None, error: Exception) -> str:
    path = sqlite_file(storage)
    text = " ".join(str(error).split())
    if "optuna storage upgrade" in text:  # a study an older Optuna made (Optuna 2 for agnews before 2026-12)
        return (
            f"{path or storage} holds a study made by an older Optuna, which Optuna "
            f"{importlib.metadata.version('optuna')} cannot read; nothing was launched. Upgrade it with "
            f"`optuna storage upgrade --storage {storage}` (older Optuna versions can no longer read it then), "
            "or start another study in another hydra.sweep.dir"
        )
    what = f"{path} is not an Optuna study database" if path is not None else f"{storage} cannot be opened"
    first = text[:300] or type(error).__name__
    return f"{what} ({first}); nothing was launched. Move it away, or point hydra.sweeper.storage elsewhere"


def check_search(config: Any) -> None:
    """Refuse a search that would go wrong before any trial: selecting on the test split, no trials, or a study
    nobody can continue (no storage or name: a new one every time, numbered from 0 into the same folder)."""
    sweeper = config.hydra.sweeper
    if str(config.get("data", {}).get("validation")) == "test":
        refuse(
            "data.validation=test would make the search choose its trials on the test split; "
            "use data.validation=held_out (the default)"
        )
    if sweeper.get("n_trials") is not None and int(sweeper.n_trials) < 1:
        refuse(f"hydra.sweeper.n_trials={sweeper.n_trials}: a search needs at least one trial")
    if sweeper.get("n_jobs") is not None and int(sweeper.n_jobs) < 1:
        refuse(f"hydra.sweeper.n_jobs={sweeper.n_jobs}: a search runs at least one trial at a time")


def check_folder(sweep_dir: Path, study: Any, storage: str | None, study_name: str | None = None) -> None:
    """Refuse a sweep folder holding job folders that are not the study's trials (`study`, None for one that does
    not exist yet): job N is trial N, so new trials would be numbered into them."""
    known = {trial.number for trial in study.get_trials(deepcopy=False)} if study is not None else set()
    numbered = sorted(int(child.name) for child in sweep_dir.glob("*/") if child.name.isdigit())
    strangers = [number for number in numbered if number not in known]
    if strangers:
        listed = ", ".join(map(str, strangers[:5])) + (" ..." if len(strangers) > 5 else "")
        refuse(
            f"{sweep_dir} already holds job folders {listed} that study {study_name!r} in {storage} does not "
            "count as its trials, and new trials would be numbered into them; nothing was launched. Choose another "
            "hydra.sweep.dir, or restore the study's storage."
        )


def shared_settings(app: AppConfig, searched: set[str]) -> dict[str, Any]:
    """The settings every trial of a study must share: the run's config but for the searched keys and what does
    not change what a run computes (how jobs run)."""
    return {
        key: value
        for key, value in flatten(to_plain_dict(app)).items()
        if key not in searched and key not in NOT_PART_OF_THE_RUN and not key.startswith("logger.")
    }


def check_same_settings(study: Any, settings: dict[str, Any], sweep_dir: Path) -> None:
    """Refuse to add trials whose shared settings differ from those the study's trials were made with (their
    accuracies would not be comparable, yet the study would rank them together); record them on a new study.
    Called under study_lock, so two commands starting a fresh study cannot each record their own."""
    recorded = study.user_attrs.get(SETTINGS_ATTR)
    if recorded is None:
        if not study.get_trials(deepcopy=False):
            study.set_user_attr(SETTINGS_ATTR, json.dumps(settings, sort_keys=True))
        return
    earlier = json.loads(recorded)
    differences = [
        f"{key}: {earlier.get(key)!r} -> {settings.get(key)!r}"
        for key in sorted(earlier.keys() | settings.keys())
        if earlier.get(key) != settings.get(key)
    ]
    if differences:
        refuse(
            f"this command's settings differ from those of the study's earlier trials in {sweep_dir} "
            f"({'; '.join(differences[:5])}), so its trials would not be comparable with theirs; nothing was "
            "launched. Rerun with the earlier settings (only hydra.sweeper.n_trials and how jobs run may change), "
            "or start another study in another hydra.sweep.dir."
        )


class TrialPruning:
    """In a search's job: reports the best validation accuracy so far after every epoch to the job's own trial
    (job N is trial N) and raises `Pruned` when the study's pruner says the trial is hopeless."""

    def __init__(self, storage: str, study_name: str, trial_number: int, pruner: Any):
        import optuna

        backend = optuna.storages.RDBStorage(storage)
        self.study = optuna.load_study(study_name=study_name, storage=backend, pruner=pruner)
        trial_id = backend.get_trial_id_from_study_id_trial_number(
            backend.get_study_id_from_name(study_name), trial_number
        )
        self.trial = optuna.trial.Trial(self.study, trial_id)
        self.pruner = type(pruner).__name__

    def after_epoch(self, history: list[dict[str, Any]]) -> None:
        best = max(epoch["val_acc"] for epoch in history)
        epoch = int(history[-1]["epoch"])
        self.trial.report(best, step=epoch)
        if self.trial.should_prune():
            raise Pruned(
                f"pruned after epoch {epoch} by the study's {self.pruner} (best validation accuracy so far "
                f"{100 * best:.2f} %)"
            )


def trial_pruning(hydra_config: Any) -> TrialPruning | None:
    """The pruning of this job's trial when it runs in a search whose pruner can stop trials, else None."""
    from hydra.utils import instantiate

    sweeper = hydra_config.sweeper
    if sweeper.get("_target_") != STUDY_SWEEPER or not sweeper.get("pruner") or not sweeper.get("storage"):
        return None
    pruner = instantiate(sweeper.pruner, _execution_whitelist_=PRUNERS)
    import optuna

    if isinstance(pruner, optuna.pruners.NopPruner):
        return None
    return TrialPruning(str(sweeper.storage), str(sweeper.study_name), int(hydra_config.job.num), pruner)
