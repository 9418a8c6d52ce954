"""Entry point: `python -m agnews.run [overrides]` or `--multirun` sweeps. Composes the Hydra config,
converts it once to typed dataclasses, and hands them to `run_experiment`."""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from agnews.config import AppConfig, register_configs, unknown_keys
from agnews.experiment import run_experiment
from agnews.results import RunStatus
from agnews.storage import AgnewsError

log = logging.getLogger(__name__)

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Returns the best validation accuracy, the value a Hydra sweeper optimises (NaN if the run failed)."""
    config: AppConfig = OmegaConf.to_object(cfg)
    extra = unknown_keys(OmegaConf.to_container(cfg, resolve=True), config)
    if extra:
        log.error("Unknown config keys %s: agnews has no such settings (python -m agnews.run --cfg job lists them)",
                  ", ".join(extra))  # fmt: skip
        sys.exit(2)
    hydra_config = HydraConfig.get()
    in_sweep = hydra_config.mode == RunMode.MULTIRUN
    try:
        results = run_experiment(config, Path(hydra_config.runtime.output_dir), list(hydra_config.overrides.task))
    except Exception as error:
        # results.json already says failed. In a sweep, the other jobs still run and the summary callback
        # reports this one; alone, a user-fixable error is shown as its message, not a traceback.
        if in_sweep:
            log.error("Job failed: %s", error, exc_info=not isinstance(error, AgnewsError))
            return math.nan
        if isinstance(error, AgnewsError):
            log.error("%s", error)
            sys.exit(1)
        raise
    if results["status"] != RunStatus.completed and not in_sweep:
        sys.exit(1)
    return float(results["metrics"].get("best_val_acc", math.nan))


if __name__ == "__main__":
    main()
