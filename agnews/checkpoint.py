"""Files that let a run continue or be used later: `checkpoint.pt` (everything to resume training after
a kill, rewritten after every epoch, removed when the run ends) and `model.pt` (the best-validation
weights with the config that built them; with `vocab.txt` beside it, all that prediction needs).

Both are loaded with `torch.load(weights_only=True)`: plain containers and tensors, never arbitrary
pickled objects.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from agnews.config import NOT_PART_OF_THE_RUN
from agnews.storage import AgnewsError, atomic_write

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
CHECKPOINT_FORMAT = "agnews-checkpoint/1"
MODEL_FORMAT = "agnews-model/1"


def comparable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The plain config (config.to_plain_dict) without the settings a resume may change."""

    def strip(node: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
        return {
            key: strip(value, (*path, key)) if isinstance(value, dict) else value
            for key, value in node.items()
            if ".".join((*path, key)) not in NOT_PART_OF_THE_RUN
        }

    return strip(config, ())


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key: saved -> current' for every setting that differs (ignoring what a resume may change)."""

    def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(node, dict):
            return {prefix: node}
        return {k: v for key, value in node.items() for k, v in flatten(value, f"{prefix}{key}.").items()}

    old, new = flatten(comparable_config(saved)), flatten(comparable_config(current))
    return [f"{key.rstrip('.')}: {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(old | new)
            if old.get(key) != new.get(key)]  # fmt: skip


def save(path: Path, content: dict[str, Any]) -> None:
    with atomic_write(path, "wb") as handle:
        torch.save(content, handle)


def read(path: Path, expected_format: str, device: torch.device, remedy: str) -> dict[str, Any]:
    """The content of a checkpoint or model file, or an error naming it and saying `remedy`."""
    kind = "model" if expected_format == MODEL_FORMAT else "checkpoint"
    try:
        content = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # truncated, corrupt, or not a torch file: all mean the same to the user
        raise AgnewsError(f"{path} cannot be read ({type(error).__name__}: {error}); {remedy}") from error
    if not isinstance(content, dict) or content.get("format") != expected_format:
        raise AgnewsError(f"{path} is not an agnews {kind} file (format {expected_format!r}); {remedy}")
    return content


def load(path: Path, expected_format: str, config: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Load a checkpoint or model file, refusing one made by another config before using any of it."""
    content = read(path, expected_format, device, "delete it to start over")
    differences = config_differences(content["config"], config)
    if differences:
        raise AgnewsError(
            f"{path} was made by a different config ({'; '.join(differences[:5])}); it is not loaded. "
            "Run with the original settings, or into a new directory."
        )
    return content
