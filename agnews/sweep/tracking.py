"""TrackingCallback (conf/config.yaml: hydra.callbacks.tracking) readies tracking in the launching
process, before any job runs: a logger whose package is missing, or an MLflow server that cannot be
reached, stops the command with one line naming what to do, and a sweep's MLflow store is created once,
so that parallel jobs only ever open an existing one (creating it concurrently breaks it; see
mlflow_logger)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from agnews.config import LoggerConfig, LoggerName
from agnews.sweep import guarded, refuse
from agnews.tracking.tracker import MissingExtraError, require_packages

log = logging.getLogger(__name__)

# How long the launching command waits for an MLflow server to accept a connection. MLflow's own client
# retries a refused connection for about two minutes before each job would give up and run untracked.
CONNECT_TIMEOUT_S = 5


def logger_config(config: DictConfig) -> LoggerConfig | None:
    """The composed config's typed `logger` section, or None when it does not convert (the run reports why)."""
    try:
        logger = OmegaConf.to_object(config.logger)
    except Exception:
        return None
    return logger if isinstance(logger, LoggerConfig) else None


class TrackingCallback(Callback):
    @guarded
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check(logger_config(config))

    @guarded
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
        refuse(str(error))
    if logger.name is LoggerName.mlflow and logger.tracking_uri:
        problem = unreachable_server(logger.tracking_uri)
        if problem:
            refuse(
                f"logger.tracking_uri={logger.tracking_uri}: {problem}; start the MLflow server or correct the "
                "URI, or track into the sweep folder (logger.tracking_uri=null) or not at all (logger=none)"
            )


def unreachable_server(uri: str) -> str | None:
    """Why an http(s) tracking server cannot be reached (None when it accepts a connection, or for other URIs)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as error:
        return f"cannot connect to {parts.hostname}:{port} ({error.strerror or error})"
