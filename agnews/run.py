"""Entry point: `python -m agnews.run [overrides]` or `--multirun` sweeps. Composes the Hydra config,
converts it once to typed dataclasses, and hands them to `run_experiment`."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from agnews.config import ConfigError, config_source, register_configs, to_app_config
from agnews.experiment import Terminated, run_experiment
from agnews.results import BASIC_SWEEPER, RunStatus
from agnews.storage import AgnewsError
from agnews.sweep.launchers import register_resolvers, require_launcher
from agnews.sweep.plan import launch_job, with_multirun_flag
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
    try:
        overrides = list(hydra_config.overrides.task)
        with sigterm_stops_the_run():
            pruning = trial_pruning(hydra_config) if in_sweep else None
            results = run_experiment(to_app_config(cfg), run_dir, overrides, sweep, launch_job(hydra_config), pruning)
    except (KeyboardInterrupt, Terminated) as stopped:
        how = "Stopped by SIGTERM" if isinstance(stopped, Terminated) else "Interrupted"
        if sweep is not None and sweep["sweeper"] != BASIC_SWEEPER:
            log.error(
                "%s. %s is recorded interrupted; a search never resumes its trials: this one stays unfinished in "
                "the study, and running the same command again adds new trials.",
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
