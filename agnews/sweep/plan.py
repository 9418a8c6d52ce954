"""A launch's plan, read from the launching command's config: the jobs Hydra's basic sweeper will run, each
job's composed config, the keys the launch sweeps, and the launch's id.

Each multirun launch gets an id that every job's config carries (`hydra.job.env_set.AGNEWS_LAUNCH_ID`).
A job that a cluster runs again (submitit requeues a preempted or timed-out job with the same overrides)
finds its own earlier attempt in its folder by that id and continues it (run_folder.decide); a new launch
has a new id, so it still needs resume=true to touch an existing run.
"""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

LAUNCH_ID = "AGNEWS_LAUNCH_ID"  # the key in hydra.job.env_set (so also an environment variable in jobs)
SWEEP_PRESET_GROUPS = ("experiment", "hparams_search")  # config groups whose options may be whole sweeps


def mark_launch(config: DictConfig) -> None:
    """Give this launch an id that reaches every job, wherever and however often it runs: launchers build
    each job's config from hydra.overrides.hydra plus the job's overrides, in the job's own process."""
    with read_write(config.hydra.overrides):
        config.hydra.overrides.hydra.append(f"++hydra.job.env_set.{LAUNCH_ID}={uuid.uuid4().hex[:16]}")


def launch_id(config: DictConfig) -> str | None:
    """The id mark_launch gave the launch whose command's whole config is `config`; None if it has none."""
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
    # Private: Hydra has no public way to expand a sweep before it runs, and the guard must check every job
    # before Hydra writes anything (tests/test_structure.py fails loudly if Hydra changes it).
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    arguments += [str(item) for item in config.hydra.overrides.task]
    parsed = OverridesParser.create().parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def compose_job(config: DictConfig, overrides: list[str], number: int) -> DictConfig:
    from hydra.core.global_hydra import GlobalHydra

    job_config = GlobalHydra.instance().config_loader().load_sweep_config(config, list(overrides))
    with open_dict(job_config):
        job_config.hydra.job.id = str(number)  # as the basic launcher sets it (a string)
        job_config.hydra.job.num = number
    return job_config


def without_hydra(config: DictConfig) -> DictConfig:
    """The config the job's task function will get: Hydra's own node removed, as run_job does."""
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


def declared_sweep_keys(config: Any) -> list[str]:
    """The keys a launch sweeps: its `a=x,y` overrides and its sweeper's params (from the launching
    command's own config in memory, not from multirun.yaml on disk)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    parsed = OverridesParser.create().parse_overrides([str(item) for item in config.hydra.overrides.task])
    swept = {override.key_or_group.lstrip("+~") for override in parsed if override.is_sweep_override()}
    return sorted(swept | {str(key).lstrip("+~") for key in params})


def with_multirun_flag(arguments: list[str]) -> list[str]:
    """The command line with --multirun added when the config it composes is a sweep (a preset such as
    +experiment=practica1 or hparams_search=... sets hydra.mode=MULTIRUN) and the command does not say so: Hydra
    1.4 takes the mode only from the primary config or the command line, and refuses a preset that sets it."""
    overrides, searchpath = [], []
    rest = iter(arguments)
    for arg in rest:
        if arg in ("-cd", "--config-dir"):
            searchpath.append(next(rest, ""))
        elif arg.startswith("--config-dir="):
            searchpath.append(arg.partition("=")[2])
        elif arg.startswith("-"):
            return arguments  # already a sweep (-m), or a flag Hydra handles alone (--cfg, --help, -cn ...)
        else:
            overrides.append(arg)
    if not any(arg.partition("=")[0].lstrip("+~") in SWEEP_PRESET_GROUPS for arg in overrides):
        return arguments
    from agnews.config import compose

    if searchpath:  # a user's own presets (--config-dir) may hold the sweep preset
        overrides.append(f"hydra.searchpath=[{','.join(f'file://{Path(p).absolute()}' for p in searchpath)}]")
    from hydra.types import RunMode

    try:
        mode = compose(overrides, with_hydra=True).hydra.mode
    except Exception:  # a mistake in the arguments: Hydra reports it when it composes them itself
        return arguments
    return ["--multirun", *arguments] if mode == RunMode.MULTIRUN else arguments
