"""The run folder's rules: may a config run in a folder, and how. One function, `decide`, answers for the
single run, for every job of a sweep before it launches, and for a requeued or resumed job, so the three
always agree and word their refusals alike.

- fresh: nothing is there; start a new run.
- skip: a run completed there with the same config and data, and what it left is intact; nothing to do.
- rerun: a run completed there with the same config and data, but its model.pt or vocab.txt is missing or
  damaged; run it again from scratch (its checkpoint went when it completed).
- resume: continue the recorded run from its checkpoint (resume=true, or the job is the same launch's job
  run again: a cluster requeued it).
- refuse: never touch it; `reason` says why and what to do.

No torch at import: the launching process asks for every job of a sweep before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from agnews.config import AppConfig, config_differences, to_plain_dict
from agnews.results import CHECKPOINT_FILE, MODEL_FILE, RESULTS_FILE, VOCAB_FILE, RunStatus, read_run_results
from agnews.storage import AgnewsError, file_sha256


class Action(StrEnum):
    fresh = "fresh"
    skip = "skip"
    rerun = "rerun"
    resume = "resume"
    refuse = "refuse"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""  # why: the refusal's message, or what a rerun found damaged
    previous: dict[str, Any] | None = None  # the recorded results.json, when there is one
    # A refusal because the command does not fit the folder stops a whole sweep before it launches. One
    # because the folder's record is unreadable does not stop a resume: that job fails on its own, untouched,
    # and summary.csv lists it as unreadable beside the other jobs' results.
    blocks_launch: bool = True

    @property
    def requeued(self) -> bool:
        return self.action is Action.resume and self.reason == REQUEUED


REQUEUED = "this job's own earlier attempt (requeued)"
NEW_FOLDER = "choose a new hydra.run.dir / hydra.sweep.dir"


def decide(
    run_dir: Path,
    config: AppConfig,
    *,
    data_key: Callable[[], str] | None = None,
    launch_job: str | None = None,
    verify_outputs: bool = True,
) -> Decision:
    """How `config` may run in `run_dir`. `data_key()` gives the prepared-data key the config points at (called
    only when a recorded run must be compared with it; None skips that comparison). `launch_job` names the job
    of a multirun launch ('<launch id>/<job>'): a run it recorded itself continues without resume=true.
    `verify_outputs` checks a completed run's model.pt and vocab.txt before it is skipped."""
    run_dir = Path(run_dir)
    try:
        previous = read_run_results(run_dir)
    except AgnewsError as error:
        unreadable = f"holds a run whose {RESULTS_FILE} is unreadable ({error})"
        return Decision(Action.refuse, unreadable, blocks_launch=not config.resume)
    has_checkpoint = (run_dir / CHECKPOINT_FILE).exists()
    if previous is None and not has_checkpoint:
        return Decision(Action.fresh)
    requeued = launch_job is not None and previous is not None and previous.get("launch_job") == launch_job
    if not (config.resume or requeued):
        status = previous["status"] if previous else "killed before its first results"
        if status == RunStatus.running:
            status = "running when it was killed"
        return Decision(
            Action.refuse,
            f"already holds a run ({status}); it is left untouched. Pass resume=true to skip it if it completed or "
            f"continue it from its last checkpoint, or {NEW_FOLDER}",
            previous,
        )
    if previous is not None:
        mismatch = other_run(previous["config"], previous.get("data") or {}, config, data_key)
        if mismatch:
            return Decision(
                Action.refuse, f"holds a run {mismatch.what}; it is left untouched. {mismatch.remedy}", previous
            )
    if previous is not None and previous["status"] == RunStatus.completed:
        damage = damaged_outputs(run_dir, previous) if verify_outputs else None
        if damage:
            return Decision(Action.rerun, damage, previous)
        return Decision(Action.skip, "completed earlier with the same config and data", previous)
    return Decision(Action.resume, REQUEUED if requeued and not config.resume else "", previous)


@dataclass(frozen=True)
class Mismatch:
    what: str  # "of another config (...)" / "made on other data ..."
    remedy: str


def other_run(
    recorded_config: dict[str, Any],
    recorded_data: dict[str, Any],
    config: AppConfig,
    data_key: Callable[[], str] | None,
) -> Mismatch | None:
    """How a run recorded with `recorded_config` on `recorded_data` ({"key": ...}) is not `config`'s run on the
    data it points at now, or None when it is. Also what checkpoint.pt is checked with before it is loaded."""
    differences = config_differences(recorded_config, to_plain_dict(config))
    if differences:
        return Mismatch(
            f"of another config ({'; '.join(differences[:5])})",
            "Resume with the original settings, or run the new config into a new directory.",
        )
    recorded = recorded_data.get("key")
    if recorded is not None and data_key is not None and (current := data_key()) != recorded:
        return Mismatch(
            f"made on other data than data.dir/data.url now hold (prepared-data key {recorded} -> {current})",
            "Resuming would mix two datasets: restore the original files, or run into a new directory.",
        )
    return None


def damaged_outputs(run_dir: Path, previous: dict[str, Any]) -> str | None:
    """What is wrong with what a completed run left for later use (model.pt, vocab.txt), or None."""
    vocab, model = run_dir / VOCAB_FILE, run_dir / MODEL_FILE
    recorded_vocab = (previous.get("data") or {}).get("vocab_sha256")
    if not vocab.is_file():
        return f"{vocab} is missing"
    if recorded_vocab is not None and file_sha256(vocab) != recorded_vocab:
        return f"{vocab} is not the vocab the run recorded (its sha256 differs)"
    if not model.is_file():
        return f"{model} is missing"
    from agnews.checkpoint import verify_model  # torch, only for a run that would otherwise be skipped

    return verify_model(model, recorded_vocab, previous["config"])
