"""Entry point: `python -m agnews.run [overrides]` or `--multirun` sweeps. Composes the Hydra config,
converts it once to typed dataclasses, and hands them to `run_experiment`."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from agnews.config import AppConfig, ConfigError, config_source, register_configs, to_app_config
from agnews.experiment import Terminated, run_experiment
from agnews.gpu_slots import GPU_SLOTS, gpu_slot, parse_slots
from agnews.locks import FolderBusyError
from agnews.results import BASIC_SWEEPER, RunStatus, read_run_results
from agnews.storage import AgnewsError
from agnews.sweep.launchers import register_resolvers, require_launcher
from agnews.sweep.plan import launch_job, with_multirun_flag
from agnews.sweep.progress import note_job_end
from agnews.sweep.study import failed_objective, require_optuna, trial_pruning

log = logging.getLogger(__name__)

register_configs()
register_resolvers()


@contextlib.contextmanager
def sigterm_stops_the_run() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` while a run trains, unless someone else already handles SIGTERM (submitit
    does, to requeue a job) or this is not the main thread (where Python runs signal handlers)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# Hydra 1.4 instantiates only whitelisted targets (hydra.callbacks name agnews' own; Optuna's samplers and
# pruners are instantiated by agnews.sweep.search with their own whitelist).
@hydra.main(config_path=config_source(), config_name="config", execution_whitelist=["agnews.*"])
def main(cfg: DictConfig) -> float:
    """Returns the best validation accuracy, the value a Hydra sweeper optimises; for a run that failed or
    diverged, the worst value for the sweeper's direction (NaN for sweepers that ignore it)."""
    hydra_config = HydraConfig.get()
    in_sweep = hydra_config.mode == RunMode.MULTIRUN
    run_dir = Path(hydra_config.runtime.output_dir)
    sweep = None
    if in_sweep:
        sweep_dir = Path(hydra_config.runtime.cwd) / hydra_config.sweep.dir  # as the launching process sees it
        sweep = {"dir": str(sweep_dir), "job": hydra_config.job.num, "sweeper": hydra_config.sweeper.get("_target_")}
    started, status, ours = time.monotonic(), RunStatus.failed.value, True
    try:
        return _run_job(cfg, hydra_config, run_dir, sweep, in_sweep)
    except FolderBusyError as error:  # another command runs in the job's folder: nothing there is this job's
        ours = False
        log.error("Job failed: %s", error)
        return failed_objective(hydra_config.sweeper)
    finally:  # for the launch's progress lines, wherever this job runs (not in another command's folder)
        if in_sweep and ours:
            note_job_end(run_dir, launch_job(hydra_config), _ended_as(run_dir, status), time.monotonic() - started)


def _ended_as(run_dir: Path, default: str) -> str:
    """How the job ended, as its results.json says (a job refused before it recorded anything: `default`)."""
    try:
        results = read_run_results(run_dir)
    except AgnewsError:
        return RunStatus.unreadable.value
    return results["status"] if results else default


def _run_job(cfg: DictConfig, hydra_config: DictConfig, run_dir: Path, sweep: dict | None, in_sweep: bool) -> float:
    try:
        overrides = list(hydra_config.overrides.task)
        app = to_app_config(cfg)
        with sigterm_stops_the_run(), gpu_for_job(hydra_config, app, sweep) as app:
            pruning = trial_pruning(hydra_config) if in_sweep else None
            results = run_experiment(app, run_dir, overrides, sweep, launch_job(hydra_config), pruning)
    except (KeyboardInterrupt, Terminated) as stopped:
        how = "Stopped by SIGTERM" if isinstance(stopped, Terminated) else "Interrupted"
        if sweep is not None and sweep["sweeper"] != BASIC_SWEEPER:
            log.error(
                "%s. %s is recorded interrupted; a search never resumes its trials: the study counts this one as "
                "failed, and running the same command again adds new trials.",
                how,
                run_dir,
            )
        else:
            log.error(
                "%s. %s keeps the epochs finished so far: run the same command with resume=true to continue from "
                "the last one.",
                how,
                run_dir,
            )
        sys.exit(143 if isinstance(stopped, Terminated) else 130)
    except Exception as error:
        # results.json already says failed. In a sweep, the other jobs still run and the summary callback
        # reports this one; alone, a user-fixable error is shown as its message, not a traceback.
        if in_sweep:
            if isinstance(error, FolderBusyError):
                raise
            log.error("Job failed: %s", error, exc_info=not isinstance(error, AgnewsError))
            return failed_objective(hydra_config.sweeper)
        if not isinstance(error, AgnewsError):
            raise
        log.error("%s", error)
        sys.exit(2 if isinstance(error, ConfigError) else 1)
    if not in_sweep:
        print(f"Run folder: {run_dir}")
        if results["status"] != RunStatus.completed:
            sys.exit(1)
    if results["status"] != RunStatus.completed:  # agnews' search reads results.json; other sweepers this
        return failed_objective(hydra_config.sweeper)
    return float(results["metrics"]["best_val_acc"])


@contextlib.contextmanager
def gpu_for_job(hydra_config: DictConfig, app: AppConfig, sweep: dict | None) -> Iterator[AppConfig]:
    """`app` on the GPU slot this job holds, when its launch runs several jobs at once on GPUs (agnews.gpu_slots:
    e.g. 8 small jobs on 2 devices, 4 each); else `app` as it is."""
    slots = parse_slots(str(hydra_config.job.env_set.get(GPU_SLOTS, "")))
    if sweep is None or slots is None or app.trainer.device not in ("auto", "cuda"):
        yield app
        return
    with gpu_slot(Path(sweep["dir"]), *slots) as device:
        log.info("GPU slot on cuda:%d (%d devices x %d jobs each)", device, *slots)
        yield replace(app, trainer=replace(app.trainer, device=f"cuda:{device}"))


if __name__ == "__main__":
    require_launcher(sys.argv[1:])
    require_optuna(sys.argv[1:])
    sys.argv[1:] = with_multirun_flag(sys.argv[1:])
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C reaching the launching process of a parallel sweep (joblib, Ray)
        print(
            "agnews: interrupted: the jobs keep the epochs they finished; run the same command with resume=true "
            "to continue them",
            file=sys.stderr,
        )
        sys.exit(130)
