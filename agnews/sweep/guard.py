"""FolderGuard, the Hydra callback that guards run and sweep folders before Hydra writes into them.

Hydra writes `.hydra/` into a run folder and `multirun.yaml` into a sweep folder before agnews runs, so a
command that agnews would refuse (a second sweep into a busy folder, a resume whose jobs differ from the
folder's) has already rewritten the other command's files by the time the run could object. This
callback objects first: it claims the folder for the launching command (atomically, see
locks.FolderClaim) and, for Hydra's basic sweeper, composes every planned job (sweep.plan) and asks the
run folder's rule (run_folder.decide) about each. A refusal is one message and exit status 2, with nothing
written. It also gives the launch its id (sweep.plan.mark_launch) and plans how its jobs share this machine's
cores and GPUs (sweep.launchers.plan_resources).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from agnews.config import AppConfig, to_app_config
from agnews.locks import FolderClaim, SharedFolderClaim, claim_folder
from agnews.results import BASIC_SWEEPER, RESULTS_FILE
from agnews.run_folder import Action, decide
from agnews.storage import AgnewsError, resolve_cache_dir
from agnews.sweep import guarded, record_launched, refuse, refuse_on_error, refused, start_launch
from agnews.sweep.launchers import plan_resources
from agnews.sweep.plan import compose_job, mark_launch, planned_jobs, without_hydra
from agnews.sweep.study import STUDY_SWEEPER

log = logging.getLogger(__name__)

MAX_LISTED = 8
# Launchers that run jobs on this machine: the devices their jobs name must exist here.
LOCAL_LAUNCHERS = (
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
)


class FolderGuard(Callback):
    def __init__(self) -> None:
        self._claim: FolderClaim | SharedFolderClaim | None = None

    # Launchers (joblib, submitit) pickle Hydra's callbacks into their workers; the claim belongs to the
    # launching process and stays there.
    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._claim = None

    @guarded
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        start_launch()
        run_dir = Path(config.hydra.run.dir)
        from agnews.devices import check_device  # torch: only where a run is launched

        app = refuse_on_error(lambda: to_app_config(without_hydra(config)))
        refuse_on_error(lambda: check_device(app.trainer))  # a single run runs here
        self._claim = refuse_on_error(
            lambda: claim_folder(run_dir, "run directory", "choose another with hydra.run.dir=PATH")
        )
        problem = _links_out(run_dir, hydra_files=_hydra_files(config)) or _refusal(run_dir, app, DataKeys())
        if problem:
            refuse(f"{run_dir} {problem}")

    @guarded
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        start_launch()
        sweep_dir = Path(config.hydra.sweep.dir)
        # Commands of agnews' search may work on one study in one sweep folder together (each job in its own
        # folder, numbered by its trial); any other sweep has the folder to itself.
        shared = config.hydra.sweeper.get("_target_") == STUDY_SWEEPER
        self._claim = refuse_on_error(
            lambda: claim_folder(sweep_dir, "sweep folder", "choose another with hydra.sweep.dir=PATH", shared)
        )
        mark_launch(config)
        if problem := _links_out(sweep_dir, files=(MULTIRUN_FILE,)):
            refuse(f"{sweep_dir} {problem}")
        if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
            # An optimising sweeper picks jobs as it goes, each claiming its own folder; Hydra's files in the
            # folders it may number its jobs into are checked now.
            for job_dir in sorted(path for path in sweep_dir.iterdir() if path.is_dir()):
                if problem := _links_out(job_dir, hydra_files=_hydra_files(config)):
                    refuse(f"{job_dir} {problem}")
            batch = config.hydra.sweeper.get("n_jobs") if shared else None  # agnews' search: trials at once
            plan_resources(config, int(batch) if batch else None)
            return
        problems = []
        planned: dict[str, str] = {}  # job folder (relative to the sweep) -> the first job's label
        jobs = planned_jobs(config)
        varying = [index for index in range(len(jobs[0])) if len({job[index] for job in jobs}) > 1] if jobs else []
        from agnews.devices import check_device  # torch: only where a run is launched

        runs_here = config.hydra.launcher.get("_target_") in LOCAL_LAUNCHERS
        subdir_setting = OmegaConf.to_container(config.hydra.sweep)["subdir"]  # as given: ${hydra.job.num} ...
        data_keys = DataKeys()
        for number, overrides in enumerate(jobs):
            job_config = compose_job(config, overrides, number)
            job_dir = sweep_dir / str(job_config.hydra.sweep.subdir)
            swept = " ".join(overrides[index] for index in varying)
            label = f"job {number}" + (f" ({swept})" if swept else "")
            where = job_dir.resolve()  # '0/..' is the sweep folder itself, 'a/../b' is 'b'
            if where == sweep_dir.resolve() or not where.is_relative_to(sweep_dir.resolve()):
                problems.append(
                    f"{label} would run in {job_dir}, not in a folder inside the sweep folder (hydra.sweep.subdir="
                    f"{subdir_setting}): give each job its own folder, e.g. the default ${{hydra.job.num}}"
                )
                continue
            subdir = where.relative_to(sweep_dir.resolve()).as_posix()
            if subdir in planned:
                problems.append(
                    f"{label} and {planned[subdir]} would both run in {job_dir} (hydra.sweep.subdir="
                    f"{subdir_setting}): give each job its own folder, e.g. the default ${{hydra.job.num}}"
                )
                continue
            planned[subdir] = label
            try:
                app = to_app_config(without_hydra(job_config))
                if runs_here:
                    check_device(app.trainer)
            except AgnewsError as error:
                problems.append(f"{label}: {error}")
                continue
            problem = _links_out(job_dir, hydra_files=_hydra_files(config)) or _refusal(job_dir, app, data_keys)
            if problem:
                problems.append(f"{label}: {job_dir} {problem}")
        if problems:
            listed = problems[:MAX_LISTED]
            if len(problems) > MAX_LISTED:
                listed.append(f"... and {len(problems) - MAX_LISTED} more")
            refuse(f"nothing was launched, nothing in {sweep_dir} was changed:\n  " + "\n  ".join(listed))
        record_launched(set(planned))
        plan_resources(config, len(jobs))
        recorded = {path.parent.relative_to(sweep_dir).as_posix() for path in sweep_dir.glob(f"**/{RESULTS_FILE}")}
        others = sorted(recorded - set(planned), key=lambda name: (len(name), name))
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
        # Hydra 1.4 ends a launch also after a refusal: then a folder the claim made goes with it.
        if self._claim is not None:
            self._claim.abandon() if refused() else self._claim.release()
            self._claim = None


class DataKeys:
    """The prepared-data key of each data config a launch's jobs point at, computed once each and only for
    jobs whose folder holds a run to compare with."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}

    def of(self, app: AppConfig) -> str:
        from agnews.data.prepare import data_key

        settings = repr(app.data)
        if settings not in self._keys:
            self._keys[settings] = data_key(app.data, resolve_cache_dir(app.data.cache_dir))
        return self._keys[settings]


def _refusal(run_dir: Path, app: AppConfig, data_keys: DataKeys) -> str | None:
    """Why `app` may not run in `run_dir` (the run folder's rule), or None when it may."""
    try:
        decision = decide(run_dir, app, data_key=lambda: data_keys.of(app), verify_outputs=False)
    except AgnewsError as error:  # the data it would be compared with cannot be found or read
        return f"holds a run that cannot be compared with this config's data: {error}"
    return decision.reason if decision.action is Action.refuse and decision.blocks_launch else None


HYDRA_FILES_DIR = ".hydra"  # Hydra writes config.yaml, hydra.yaml and overrides.yaml here
MULTIRUN_FILE = "multirun.yaml"


def _hydra_files(config: DictConfig) -> str | None:
    """The folder of a job where Hydra writes config.yaml, hydra.yaml and overrides.yaml (hydra.output_subdir,
    .hydra by default; null: none)."""
    subdir = config.hydra.get("output_subdir")
    return None if subdir is None else str(subdir)


def _links_out(folder: Path, files: tuple[str, ...] = (), hydra_files: str | None = HYDRA_FILES_DIR) -> str | None:
    """A symbolic link where Hydra will write (its config files in `hydra_files`, a job's log, `files`), which
    would make it write outside the folder; None when there is none. Hydra opens them without checking."""
    if not folder.is_dir():
        return None
    candidates = [*(folder / name for name in files), *folder.glob("*.log")]
    if hydra_files is not None:
        config_dir = folder / hydra_files
        candidates += [config_dir, *(config_dir.iterdir() if config_dir.is_dir() else ())]
    for path in candidates:
        if path.is_symlink():
            return (
                f"holds {path.relative_to(folder)}, a symbolic link to {os.readlink(path)}: Hydra would write "
                "through it, outside the folder. Remove the link, or choose another folder"
            )
    return None
