"""The Hydra callback that guards run and sweep folders before Hydra writes into them.

Hydra writes `.hydra/` into a run folder and `multirun.yaml` into a sweep folder before agnews runs, so a
command that agnews would refuse (a second sweep into a busy folder, a resume whose jobs differ from the
folder's) has already rewritten the other command's files by the time the run could object. This
callback objects first: it claims the folder for the launching command (atomically, see
storage.FolderClaim) and, for Hydra's basic sweeper, composes every planned job and checks it against
what the folder's runs recorded. A refusal is one message and exit status 2, with nothing written.

Each multirun launch also gets an id that every job's config carries (`hydra.job.env_set.AGNEWS_LAUNCH_ID`).
A job that a cluster runs again (submitit requeues a preempted or timed-out job with the same overrides)
finds its own earlier attempt in its folder by that id and continues it (experiment.run_experiment); a new
launch has a new id, so it still needs resume=true to touch an existing run.
"""

from __future__ import annotations

import copy
import logging
import sys
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from agnews.config import AppConfig, config_differences, to_app_config, to_plain_dict
from agnews.results import BASIC_SWEEPER, CHECKPOINT_FILE, RESULTS_FILE, read_run_results
from agnews.storage import AgnewsError, FolderClaim, claim_folder

log = logging.getLogger(__name__)

LAUNCH_ID = "AGNEWS_LAUNCH_ID"  # the key in hydra.job.env_set (so also an environment variable in jobs)
MAX_LISTED = 8


class FolderGuard(Callback):
    def __init__(self) -> None:
        self._claim: FolderClaim | None = None

    # Launchers (joblib, submitit) pickle Hydra's callbacks into their workers; the claim belongs to the
    # launching process and stays there.
    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._claim = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(config.hydra.run.dir)
        app = _refuse_on_error(lambda: to_app_config(without_hydra(config)))
        self._claim = _refuse_on_error(
            lambda: claim_folder(run_dir, "run directory", "choose another with hydra.run.dir=PATH")
        )
        problem = _conflict(run_dir, app)
        if problem:
            _refuse(f"{run_dir} {problem}")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        self._claim = _refuse_on_error(
            lambda: claim_folder(sweep_dir, "sweep folder", "choose another with hydra.sweep.dir=PATH")
        )
        _mark_launch(config)
        if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
            return  # an optimising sweeper picks jobs as it goes; each job still claims its own folder
        problems = []
        planned = set()
        jobs = planned_jobs(config)
        varying = [index for index in range(len(jobs[0])) if len({job[index] for job in jobs}) > 1] if jobs else []
        for number, overrides in enumerate(jobs):
            job_config = _compose_job(config, overrides, number)
            job_dir = sweep_dir / str(job_config.hydra.sweep.subdir)
            planned.add(job_dir.name)
            swept = " ".join(overrides[index] for index in varying)
            label = f"job {job_dir.name}" + (f" ({swept})" if swept else "")
            try:
                app = to_app_config(without_hydra(job_config))
            except AgnewsError as error:
                problems.append(f"{label}: {error}")
                continue
            problem = _conflict(job_dir, app)
            if problem:
                problems.append(f"{label}: {job_dir} {problem}")
        if problems:
            listed = problems[:MAX_LISTED]
            if len(problems) > MAX_LISTED:
                listed.append(f"... and {len(problems) - MAX_LISTED} more")
            _refuse(f"nothing was launched, nothing in {sweep_dir} was changed:\n  " + "\n  ".join(listed))
        recorded = {path.parent.name for path in sweep_dir.glob(f"*/{RESULTS_FILE}")}
        others = sorted(recorded - planned, key=lambda name: (len(name), name))
        if others:
            log.warning(
                "%s also holds jobs %s, which this command does not run; summary.csv lists them as they are",
                sweep_dir,
                ", ".join(others),
            )

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()

    def _release(self) -> None:
        if self._claim is not None:
            self._claim.release()
            self._claim = None


def _mark_launch(config: DictConfig) -> None:
    """Give this launch an id that reaches every job, wherever and however often it runs: launchers build
    each job's config from hydra.overrides.hydra plus the job's overrides, in the job's own process."""
    with read_write(config.hydra.overrides):
        config.hydra.overrides.hydra.append(f"++hydra.job.env_set.{LAUNCH_ID}={uuid.uuid4().hex[:16]}")


def launch_id(config: DictConfig) -> str | None:
    """The id _mark_launch gave the launch whose command's whole config is `config`; None if it has none."""
    prefix = f"++hydra.job.env_set.{LAUNCH_ID}="
    overrides = OmegaConf.select(config, "hydra.overrides.hydra", default=None) or []
    marks = [str(item).removeprefix(prefix) for item in overrides if str(item).startswith(prefix)]
    return marks[-1] if marks else None


def launch_job(hydra_config: DictConfig) -> str | None:
    """'<launch id>/<job number>' inside a job of a multirun launch; None outside one."""
    launch_id = hydra_config.job.env_set.get(LAUNCH_ID)
    return None if launch_id is None else f"{launch_id}/{hydra_config.job.num}"


def planned_jobs(config: DictConfig) -> list[list[str]]:
    """The override lists Hydra's basic sweeper will launch, in job-number order (its own expansion)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    arguments += [str(item) for item in config.hydra.overrides.task]
    parsed = OverridesParser.create().parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _compose_job(config: DictConfig, overrides: list[str], number: int) -> DictConfig:
    from hydra.core.global_hydra import GlobalHydra

    job_config = GlobalHydra.instance().config_loader().load_sweep_config(config, list(overrides))
    with open_dict(job_config):
        job_config.hydra.job.id = number
        job_config.hydra.job.num = number
    return job_config


def without_hydra(config: DictConfig) -> DictConfig:
    """The config the job's task function will get: Hydra's own node removed, as run_job does."""
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


def _conflict(run_dir: Path, app: AppConfig) -> str | None:
    """Why `app` may not run in `run_dir` ("already holds ..."), or None when it may."""
    try:
        previous = read_run_results(run_dir)
    except AgnewsError as error:
        if app.resume:  # the job itself fails without touching it, and summary.csv lists it as unreadable
            return None
        return f"holds a run whose {RESULTS_FILE} is unreadable ({error})"
    if previous is None:
        if (run_dir / CHECKPOINT_FILE).exists() and not app.resume:
            return "already holds a run (killed before its first results); pass resume=true to continue it"
        return None
    if not app.resume:
        return (
            f"already holds a run ({previous['status']}). Pass resume=true to skip it if it completed or continue it "
            "from its last checkpoint, or choose a new hydra.run.dir / hydra.sweep.dir"
        )
    differences = config_differences(previous["config"], to_plain_dict(app))
    if differences:
        return f"holds a run of another config ({'; '.join(differences[:5])}); resume with the original settings"
    return None


def _refuse_on_error(make: Any) -> Any:
    try:
        return make()
    except AgnewsError as error:
        _refuse(str(error))


def _refuse(message: str) -> None:
    # Hydra turns an exception in a callback into a warning and goes on; SystemExit stops it.
    print(f"agnews: error: {message}", file=sys.stderr)
    raise SystemExit(2)
