"""The Hydra callback (conf/config.yaml: hydra.callbacks.tracking) that readies tracking in the launching
process, before any job runs: a logger whose package is missing stops the command with one line naming
the extra, and a sweep's MLflow store is created once, so that parallel jobs only ever open an existing
one (creating it concurrently breaks it; see mlflow_logger)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from agnews.config import LoggerConfig, LoggerName
from agnews.tracking.tracker import MissingExtraError, require_packages

log = logging.getLogger(__name__)


def logger_config(config: DictConfig) -> LoggerConfig | None:
    """The composed config's typed `logger` section, or None when it does not convert (the run reports why)."""
    try:
        logger = OmegaConf.to_object(config.logger)
    except Exception:
        return None
    return logger if isinstance(logger, LoggerConfig) else None


class TrackingCallback(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check(logger_config(config))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        logger = logger_config(config)
        _check(logger)
        if logger is not None and logger.name is LoggerName.mlflow:
            from agnews.tracking.mlflow_logger import open_experiment

            store_dir = Path(config.hydra.sweep.dir).absolute()
            try:
                open_experiment(logger, store_dir)
            except Exception as error:  # each job tries again, and goes on untracked if it fails too
                log.warning("Could not prepare the MLflow store for %s: %s", store_dir, error)


def _check(logger: LoggerConfig | None) -> None:
    if logger is None or logger.name is LoggerName.none:
        return
    try:
        require_packages(logger.name)
    except MissingExtraError as error:
        # Hydra turns an exception in a callback into a warning and goes on; SystemExit stops it.
        print(f"agnews: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
