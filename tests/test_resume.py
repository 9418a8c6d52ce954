"""Runs that survive: checkpoints, resume after a kill, refusing foreign or changed runs."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from agnews import checkpoint, experiment
from agnews.config import OptimizerConfig, OptimizerName, Precision
from agnews.devices import check_precision
from agnews.experiment import run_experiment
from agnews.results import CHECKPOINT_FILE, MODEL_FILE
from agnews.storage import AgnewsError


def test_resumed_run_computes_what_an_uninterrupted_one_does(
    ag_news_dir, tmp_path, monkeypatch, tiny_config, killed_run
):
    uninterrupted = run_experiment(tiny_config(trainer={"epochs": 3}), tmp_path / "whole")
    assert not (tmp_path / "whole" / CHECKPOINT_FILE).exists()  # removed once the run ended

    killed_run(tiny_config(trainer={"epochs": 3}), tmp_path / "killed", epochs_done=2)
    assert (tmp_path / "killed" / CHECKPOINT_FILE).exists()
    resumed = run_experiment(replace(tiny_config(trainer={"epochs": 3}), resume=True), tmp_path / "killed")

    assert resumed["status"] == "completed" and resumed["resumed_after_epoch"] == 2
    assert [epoch["epoch"] for epoch in resumed["history"]] == [1, 2, 3]
    for key in ("train_loss", "train_acc", "val_acc", "lr"):
        assert [e[key] for e in resumed["history"]] == [e[key] for e in uninterrupted["history"]]
    assert resumed["metrics"]["test_acc"] == uninterrupted["metrics"]["test_acc"]


def test_completed_run_is_skipped_on_resume(ag_news_dir, tmp_path, monkeypatch, tiny_config):
    first = run_experiment(tiny_config(trainer={"epochs": 1}), tmp_path / "run")
    monkeypatch.setattr(experiment, "fit", lambda *args, **kwargs: pytest.fail("a completed run was retrained"))
    # Settings that do not change results may differ on resume.
    resumed = tiny_config(trainer={"epochs": 1, "progress_bar": True, "log_interval": 7}, resume=True)
    again = run_experiment(resumed, tmp_path / "run")
    assert again["started_at"] == first["started_at"] and again["metrics"] == json.loads(json.dumps(first["metrics"]))


@pytest.mark.parametrize(
    "damage", ["model truncated", "model deleted", "model byte flipped", "vocab edited", "another run's model"]
)
def test_a_completed_run_whose_files_are_damaged_is_rerun_not_skipped(
    tmp_path, tiny_config, caplog, flip_a_tensor_byte, damage
):
    from agnews.predict import load_predictor

    caplog.set_level("INFO")
    run_dir = tmp_path / "run"
    first = run_experiment(tiny_config(trainer={"epochs": 1}), run_dir)
    model, vocab = run_dir / MODEL_FILE, run_dir / "vocab.txt"
    if damage == "model truncated":
        model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    elif damage == "model deleted":
        model.unlink()
        (run_dir / CHECKPOINT_FILE).write_bytes(b"left by someone")  # from scratch means without it too
    elif damage == "another run's model":  # valid, checksummed, the same vocab: but seed 1's weights
        run_experiment(tiny_config(trainer={"epochs": 1}, seed=1), tmp_path / "other")
        model.write_bytes((tmp_path / "other" / MODEL_FILE).read_bytes())
    elif damage == "model byte flipped":
        flip_a_tensor_byte(model)
    else:
        vocab.write_text(vocab.read_text().replace("\nthe\n", "\nteh\n"))
    damaged = vocab if damage == "vocab edited" else model

    again = run_experiment(tiny_config(trainer={"epochs": 1}, resume=True), run_dir)
    assert (
        f"{run_dir} completed earlier, but {damaged}" in caplog.text and "running it again from scratch" in caplog.text
    )
    assert "Skipping" not in caplog.text
    assert again["status"] == "completed" and again["metrics"]["test_acc"] == first["metrics"]["test_acc"]
    load_predictor(run_dir)  # usable again

    caplog.clear()  # intact now: the next resume skips it
    run_experiment(tiny_config(trainer={"epochs": 1}, resume=True), run_dir)
    assert "Skipping" in caplog.text


def test_existing_run_is_never_touched_without_resume(ag_news_dir, tmp_path, tiny_config):
    run_experiment(tiny_config(trainer={"epochs": 1}), tmp_path / "run")
    before = (tmp_path / "run" / "results.json").read_bytes()
    with pytest.raises(AgnewsError, match=r"already holds a run.*resume=true"):
        run_experiment(tiny_config(trainer={"epochs": 1}), tmp_path / "run")
    assert (tmp_path / "run" / "results.json").read_bytes() == before


def test_only_the_job_that_recorded_a_run_continues_it_without_resume(tmp_path, tiny_config, killed_run):
    config = tiny_config(trainer={"epochs": 3})
    killed_run(config, tmp_path / "run", epochs_done=1, launch_job="launch-a/0")
    before = (tmp_path / "run" / "results.json").read_bytes()
    for other in (None, "launch-b/0", "launch-a/1"):  # a single run, a new launch, another job of the launch
        with pytest.raises(AgnewsError, match=r"already holds a run \(interrupted\)"):
            run_experiment(config, tmp_path / "run", launch_job=other)
    assert (tmp_path / "run" / "results.json").read_bytes() == before

    requeued = run_experiment(config, tmp_path / "run", launch_job="launch-a/0")  # the same job, run again
    assert requeued["status"] == "completed" and requeued["resumed_after_epoch"] == 1
    assert [epoch["epoch"] for epoch in requeued["history"]] == [1, 2, 3]
    assert requeued["launch_job"] == "launch-a/0"


def test_changed_config_is_not_mixed_with_old_results(ag_news_dir, tmp_path, tiny_config):
    run_experiment(tiny_config(trainer={"epochs": 1}), tmp_path / "run")
    changed = replace(tiny_config(trainer={"epochs": 1}), resume=True, seed=7)
    with pytest.raises(AgnewsError, match=r"another config \(seed: 0 -> 7\)"):
        run_experiment(changed, tmp_path / "run")


def test_checkpoint_from_another_config_is_refused_not_loaded(tmp_path, tiny_config, killed_run):
    killed_run(tiny_config(trainer={"epochs": 3}), tmp_path / "run", epochs_done=1)
    (tmp_path / "run" / "results.json").unlink()  # only the checkpoint is left
    other = tiny_config(trainer={"epochs": 3}, resume=True, optimizer={"lr": 1.0})
    with pytest.raises(
        AgnewsError, match=r"checkpoint.pt was made by a run of another config \(optimizer.lr: 5.0 -> 1.0"
    ):
        run_experiment(other, tmp_path / "run")


def test_corrupt_checkpoint_gets_a_clear_error(tmp_path, tiny_config, killed_run):
    killed_run(tiny_config(trainer={"epochs": 3}), tmp_path / "run", epochs_done=1)
    path = tmp_path / "run" / CHECKPOINT_FILE
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(AgnewsError, match=r"checkpoint\.pt cannot be read.*delete it"):
        run_experiment(replace(tiny_config(trainer={"epochs": 3}), resume=True), tmp_path / "run")


def test_run_directory_that_cannot_be_written(ag_news_dir, tmp_path, tiny_config):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the run directory should be")
    with pytest.raises(AgnewsError, match=r"cannot write to the run directory.*hydra\.run\.dir"):
        run_experiment(tiny_config(trainer={"epochs": 1}), blocker / "run")


def test_early_stopping_stops_and_keeps_the_best_epoch(ag_news_dir, tmp_path, tiny_config):
    frozen = OptimizerConfig(name=OptimizerName.adam, lr=1e-12, grad_clip=None)  # val accuracy cannot improve
    config = replace(tiny_config(trainer={"epochs": 6, "patience": 2}), optimizer=frozen)
    results = run_experiment(config, tmp_path / "run")
    assert results["metrics"]["stopped_early"] is True
    assert results["metrics"]["best_epoch"] == 1 and len(results["history"]) == 3


def test_diverging_run_is_recorded_as_such(ag_news_dir, tmp_path, tiny_config):
    exploding = {"lr": float("inf"), "grad_clip": None}  # the first step makes the weights NaN
    results = run_experiment(tiny_config(trainer={"epochs": 3}, optimizer=exploding), tmp_path / "run")
    assert results["status"] == "diverged" and "loss became" in results["error"]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "diverged"


def test_bfloat16_autocast_trains_or_is_refused_with_the_reason(tmp_path, tiny_config):
    config = tiny_config(trainer={"epochs": 1, "precision": Precision.bf16})
    try:  # some CPUs lack oneDNN's bfloat16 LSTM kernels
        check_precision(Precision.bf16, torch.device("cpu"))
    except AgnewsError:
        with pytest.raises(AgnewsError, match=r"cannot run the LSTM in bfloat16.*trainer\.precision=fp32"):
            run_experiment(config, tmp_path / "run")
        return
    results = run_experiment(config, tmp_path / "run")
    assert results["status"] == "completed" and results["history"][0]["train_loss"] > 0


def test_best_model_file_loads_safely(ag_news_dir, tmp_path, tiny_config):
    results = run_experiment(tiny_config(trainer={"epochs": 2}), tmp_path / "run")
    saved = torch.load(tmp_path / "run" / MODEL_FILE, weights_only=True)
    assert saved["format"] == checkpoint.MODEL_FORMAT and saved["best_epoch"] == results["metrics"]["best_epoch"]
    assert saved["config"] == results["config"]


def read_history(job_dir: Path) -> list[dict]:
    try:
        return json.loads((job_dir / "results.json").read_text())["history"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return []


@pytest.mark.slow
def test_sweep_killed_with_sigkill_resumes_to_every_job_complete_once(tmp_path, make_ag_news, repo):
    data_dir = make_ag_news("data", train_per_class=600, test_per_class=50)  # epochs long enough to kill inside
    sweep_dir = tmp_path / "sweep"
    args = [
        sys.executable,
        "-m",
        "agnews.run",
        "--multirun",
        f"data.dir={data_dir}",
        "trainer.epochs=8",
        "trainer.batch_size=16",
        "trainer.progress_bar=false",
        f"hydra.sweep.dir={sweep_dir}",
        "seed=0,1",
    ]
    sweep = subprocess.Popen(args, cwd=repo, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while len(read_history(sweep_dir / "1")) < 2:  # job 0 is complete, job 1 mid-way
        assert sweep.poll() is None, sweep.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "job 1 never reached its second epoch"
        time.sleep(0.05)
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.wait()
    before_kill = read_history(sweep_dir / "1")
    assert json.loads((sweep_dir / "1" / "results.json").read_text())["status"] == "running"
    assert not (sweep_dir / "summary.csv").exists()

    resumed = subprocess.run([*args, "resume=true"], cwd=repo, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Skipping" in resumed.stderr + resumed.stdout  # job 0 was not retrained
    job1 = json.loads((sweep_dir / "1" / "results.json").read_text())
    assert job1["status"] == "completed"
    assert 2 <= job1["resumed_after_epoch"] < 8
    assert [epoch["epoch"] for epoch in job1["history"]] == list(range(1, 9))
    kept = job1["resumed_after_epoch"]
    assert job1["history"][:kept] == before_kill[:kept]  # the finished epochs were continued, not redone
    summary = (sweep_dir / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and all(",completed," in line for line in summary[1:])
    assert not list(sweep_dir.glob("*/checkpoint.pt"))


def test_a_checkpoint_written_before_checksums_and_data_keys_still_resumes(tmp_path, tiny_config, killed_run):
    run_dir = tmp_path / "run"
    killed_run(tiny_config(trainer={"epochs": 3}), run_dir, epochs_done=1)
    path = run_dir / CHECKPOINT_FILE
    content = torch.load(path, weights_only=True)
    for added_later in ("sha256", "data_key"):
        del content[added_later]
    torch.save(content, path)  # as agnews wrote it before: no checksum, no data key
    results = json.loads((run_dir / "results.json").read_text())
    del results["data"]
    (run_dir / "results.json").write_text(json.dumps(results))

    resumed = run_experiment(tiny_config(trainer={"epochs": 3}, resume=True), run_dir)
    assert resumed["status"] == "completed" and resumed["resumed_after_epoch"] == 1
