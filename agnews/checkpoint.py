"""Files that let a run continue or be used later: `checkpoint.pt` (a TrainState's `state_dict()`, the
config and the data it trains on, rewritten after every epoch, removed when the run ends) and
`model.pt` (the best-validation weights with the config that built them and the sha256 of the vocab
they index; with `vocab.txt` beside it, all that prediction needs).

Both are loaded with `torch.load(weights_only=True)`: plain containers and tensors, never arbitrary
pickled objects. Both carry a sha256 of their content, checked on load, so a flipped byte inside a
tensor is refused rather than trained on or predicted with. Files written before checksums existed
still load.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

from agnews.config import config_differences
from agnews.storage import AgnewsError, atomic_write

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "agnews-checkpoint/1"
MODEL_FORMAT = "agnews-model/1"
CHECKSUM_KEY = "sha256"


def content_digest(value: Any) -> str:
    """sha256 over a nested structure of dicts, lists, tensors and scalars: keys, types, shapes and
    every tensor byte."""
    digest = hashlib.sha256()

    def feed(node: Any) -> None:
        if isinstance(node, torch.Tensor):
            tensor = node.detach().cpu().contiguous()
            digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)};".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(node, dict):
            digest.update(f"dict {len(node)};".encode())
            for key in sorted(node, key=repr):
                digest.update(f"{key!r}:".encode())
                feed(node[key])
        elif isinstance(node, list | tuple):
            digest.update(f"{type(node).__name__} {len(node)};".encode())
            for item in node:
                feed(item)
        else:
            digest.update(f"{type(node).__name__} {node!r};".encode())

    feed(value)
    return digest.hexdigest()


def save(path: Path, content: dict[str, Any]) -> None:
    """Write `content` with its checksum, atomically."""
    with atomic_write(path, "wb") as handle:
        torch.save({**content, CHECKSUM_KEY: content_digest(content)}, handle)


def read(path: Path, expected_format: str, device: torch.device, remedy: str) -> dict[str, Any]:
    """The content of a checkpoint or model file, checked, or an error naming it and saying `remedy`."""
    kind = "model" if expected_format == MODEL_FORMAT else "checkpoint"
    try:
        content = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # truncated, corrupt, or not a torch file: all mean the same to the user
        raise AgnewsError(f"{path} cannot be read ({type(error).__name__}: {error}); {remedy}") from error
    if not isinstance(content, dict) or content.get("format") != expected_format:
        raise AgnewsError(f"{path} is not an agnews {kind} file (format {expected_format!r}); {remedy}")
    recorded = content.pop(CHECKSUM_KEY, None)
    if recorded is None:
        log.debug("%s has no checksum (written by an older agnews)", path)
    elif recorded != content_digest(content):
        raise AgnewsError(f"{path} is damaged: its content does not match the checksum written with it; {remedy}")
    return content


def save_checkpoint(path: Path, training: dict[str, Any], config: dict[str, Any], data_key: str) -> None:
    save(path, {"format": CHECKPOINT_FORMAT, "config": config, "data_key": data_key, **training})


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """A checkpoint's content, checked against its checksum; the caller checks that its config and data key
    (content["config"], content["data_key"]) are the run's (run_folder.other_run) before using it."""
    return read(path, CHECKPOINT_FORMAT, device, "delete it to start that run over")


def verify_model(path: Path, vocab_sha256: str | None, config: dict[str, Any] | None = None) -> str | None:
    """What is wrong with a run's model.pt (unreadable, damaged, made for another vocab or by another config than
    the run recorded, such as another job's model.pt copied over it), or None."""
    try:
        content = read(path, MODEL_FORMAT, torch.device("cpu"), "")
    except AgnewsError as error:
        return str(error).removesuffix("; ")
    recorded = content.get("vocab_sha256")
    if recorded is not None and vocab_sha256 is not None and recorded != vocab_sha256:
        return f"{path} was trained with another vocab than the run recorded"
    if config is not None and (differences := config_differences(content.get("config") or {}, config)):
        return f"{path} was made by another config than the run recorded ({'; '.join(differences[:3])})"
    return None


def save_model(
    path: Path,
    config: dict[str, Any],
    weights: dict[str, torch.Tensor],
    best_epoch: int,
    class_names: list[str],
    vocab_sha256: str,
) -> None:
    save(
        path,
        {
            "format": MODEL_FORMAT,
            "config": config,
            "state_dict": weights,
            "best_epoch": best_epoch,
            "class_names": class_names,
            "vocab_sha256": vocab_sha256,
        },
    )
