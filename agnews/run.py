"""Entry point: `python -m agnews.run [overrides]` or `--multirun` sweeps. Composes the Hydra config,
converts it once to typed dataclasses, and hands them to `run_experiment`."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from agnews.config import AppConfig, register_configs
from agnews.experiment import run_experiment

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Returns the best validation accuracy, the value a Hydra sweeper optimises."""
    config: AppConfig = OmegaConf.to_object(cfg)
    hydra_config = HydraConfig.get()
    results = run_experiment(config, Path(hydra_config.runtime.output_dir), list(hydra_config.overrides.task))
    return float(results["metrics"].get("best_val_acc", float("nan")))


if __name__ == "__main__":
    main()
