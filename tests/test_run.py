"""Runs end to end: one run in-process on tiny data, and real multiruns in a subprocess."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from agnews.config import EmbeddingConfig
from agnews.experiment import run_experiment
from agnews.results import HISTORY_COLUMNS, RESULTS_FORMAT, RUN_METRICS


def test_one_run_writes_complete_results(ag_news_dir, tmp_path, tiny_config):
    run_dir = tmp_path / "run"
    results = run_experiment(tiny_config(), run_dir, ["trainer.epochs=2"])

    saved = json.loads((run_dir / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["format"] == RESULTS_FORMAT and saved["status"] == "completed" and saved["error"] is None
    assert saved["overrides"] == ["trainer.epochs=2"]
    assert saved["config"]["model"]["pooling"] == "last" and saved["config"]["seed"] == 0
    metrics = saved["metrics"]
    assert metrics["epochs"] == 2 and 1 <= metrics["best_epoch"] <= 2
    assert 0.0 <= metrics["test_acc"] <= 1.0
    assert metrics["best_val_acc"] == max(epoch["val_acc"] for epoch in saved["history"])
    assert [epoch["epoch"] for epoch in saved["history"]] == [1, 2]
    assert metrics["num_parameters"] > 0 and saved["device"] == "cpu" and metrics["wall_time_s"] > 0
    assert set(metrics) == {metric.name for metric in RUN_METRICS}  # every metric in one place, each once
    assert not {"num_parameters", "num_trainable_parameters", "wall_time_s", "setup_time_s"} & set(saved)
    with open(run_dir / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(HISTORY_COLUMNS) and len(rows) == 2
    assert float(rows[1]["val_acc"]) == saved["history"][1]["val_acc"]
    assert (run_dir / "vocab.txt").read_text().startswith("<pad>\n<unk>\n")


def test_same_seed_gives_identical_metrics_on_cpu(ag_news_dir, tmp_path, tiny_config):
    first = run_experiment(tiny_config(), tmp_path / "a")
    second = run_experiment(tiny_config(), tmp_path / "b")
    assert first["history"][-1]["train_loss"] == second["history"][-1]["train_loss"]
    assert first["metrics"]["test_acc"] == second["metrics"]["test_acc"]
    other_seed = run_experiment(tiny_config(seed=1), tmp_path / "c")
    assert other_seed["history"][-1]["train_loss"] != first["history"][-1]["train_loss"]


def write_glove_txt(path: Path, words: list[str], dim: int) -> None:
    rng = np.random.default_rng(0)
    lines = [word + " " + " ".join(f"{value:.5f}" for value in rng.normal(size=dim)) for word in words]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_glove_run_reports_coverage(ag_news_dir, tmp_path, topic_words, tiny_config):
    glove = tmp_path / "glove.6B.50d.txt"
    write_glove_txt(glove, [*topic_words, "the", ".", "not-in-the-data"], 50)
    embedding = EmbeddingConfig(name="glove50", kind="glove", dim=50, path=str(glove), freeze=True)
    results = run_experiment(tiny_config(embedding=embedding), tmp_path / "run")
    assert results["status"] == "completed"
    coverage = results["embedding_coverage"]
    assert coverage["found"] == 22  # the topic words, "the" and "." appear in the tiny data; nothing else is in GloVe
    assert coverage["total"] > coverage["found"]
    frozen = results["metrics"]["num_parameters"] - results["metrics"]["num_trainable_parameters"]
    assert frozen == 50 * (coverage["total"] + 2)


def test_fine_tuning_never_changes_the_glove_matrix_later_jobs_start_from(
    ag_news_dir, tmp_path, topic_words, tiny_config
):
    glove = tmp_path / "glove.6B.50d.txt"
    write_glove_txt(glove, [*topic_words, "the"], 50)
    embedding = EmbeddingConfig(name="glove50", kind="glove", dim=50, path=str(glove))
    config = tiny_config(embedding=embedding)
    first = run_experiment(config, tmp_path / "first")
    second = run_experiment(config, tmp_path / "second")  # same process: reuses the cached matrix
    # It started from the same GloVe weights, not from the ones the first run tuned.
    assert [e["train_loss"] for e in second["history"]] == [e["train_loss"] for e in first["history"]]


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher",
    [
        [],
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.num_threads=1"],
        ["hydra/launcher=submitit_local"],
        ["hydra/launcher=local"],
    ],
    ids=["basic", "joblib", "submitit_local", "local"],
)
def test_multirun_writes_summary_with_one_row_per_job(ag_news_dir, tmp_path, launcher, cli, read_summary, sweep_args):
    sweep_dir = tmp_path / "sweep"
    completed = cli("agnews.run", *sweep_args(ag_news_dir, sweep_dir, "seed=0,1"), *launcher)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = read_summary(sweep_dir)
    assert [(row["seed"], row["status"]) for row in rows] == [("0", "completed"), ("1", "completed")]
    assert "seed" in rows[0] and "trainer.epochs" not in rows[0]  # swept overrides are columns, fixed ones not
    for row in rows:
        results = json.loads((sweep_dir / row["job"] / "results.json").read_text())
        assert float(row["test_acc"]) == results["metrics"]["test_acc"]
        assert float(row["best_val_acc"]) == results["metrics"]["best_val_acc"]
        assert row["epochs"] == "1"
    # A line as each job ends, wherever it ran, and one at the end.
    output = completed.stdout + completed.stderr
    assert re.search(
        r"Job [01] completed \| 1/2 done: 1 completed, 0 failed, 0 diverged \| \d+:\d\d elapsed, about", output
    )
    assert re.search(r"Job [01] completed \| 2/2 done: 2 completed, 0 failed, 0 diverged \| \d+:\d\d elapsed\n", output)
    assert "Sweep ended: 2/2 jobs ended (2 completed, 0 failed, 0 diverged) in " in output
    assert f"summary: {sweep_dir / 'summary.csv'}" in output


@pytest.mark.slow
def test_bad_override_exits_non_zero_with_hydras_message(ag_news_dir, tmp_path, cli):
    completed = cli("agnews.run", "embedding.dimm=3", f"data.dir={ag_news_dir}", f"hydra.run.dir={tmp_path / 'run'}")
    assert completed.returncode != 0
    assert "Key 'dimm' not in 'EmbeddingConfig'" in completed.stderr
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.slow
def test_failed_job_is_recorded_and_the_sweep_goes_on(ag_news_dir, tmp_path, cli, read_summary, sweep_args):
    sweep_dir = tmp_path / "sweep"
    args = [arg for arg in sweep_args(ag_news_dir, sweep_dir) if not arg.startswith("data.dir")]
    completed = cli("agnews.run", *args, f"data.dir={tmp_path / 'missing'},{ag_news_dir}")
    assert completed.returncode == 1
    rows = read_summary(sweep_dir)
    assert [row["status"] for row in rows] == ["failed", "completed"]
    assert "missing" in rows[0]["error"] and "train.csv" in rows[0]["error"]
    assert "1 of 2 jobs did not complete" in completed.stderr + completed.stdout
    assert "Job 0 failed | 1/2 done: 0 completed, 1 failed, 0 diverged" in completed.stderr + completed.stdout


@pytest.mark.slow
def test_single_run_with_bad_input_shows_the_message_not_a_traceback(tmp_path, cli):
    run_dir = tmp_path / "run"
    completed = cli("agnews.run", f"data.dir={tmp_path / 'missing'}", f"hydra.run.dir={run_dir}")
    assert completed.returncode == 1
    output = completed.stdout + completed.stderr
    assert "train.csv" in output and "Traceback" not in output
    assert json.loads((run_dir / "results.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_added_unknown_key_is_refused_not_dropped(ag_news_dir, tmp_path, cli):
    completed = cli(
        "agnews.run", "+embedding.dimension=64", f"data.dir={ag_news_dir}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert completed.returncode == 2
    assert "Unknown config keys embedding.dimension" in completed.stdout + completed.stderr
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.slow
def test_agnews_own_code_raises_no_warnings(ag_news_dir, tmp_path, cli):
    """Hydra 1.4 and OmegaConf 2.4 deprecate what 1.3 code did (version_base, ConfigStore entries stored twice,
    register_new_resolver, instantiate without an execution whitelist, implicit int -> str): none is left in
    agnews, on a single run or a sweep of parallel jobs."""
    tiny = [f"data.dir={ag_news_dir}", "data.val_fraction=0.25", "trainer.epochs=1", "trainer.progress_bar=false"]
    env = {"PYTHONWARNINGS": "always"}
    single = cli("agnews.run", *tiny, f"hydra.run.dir={tmp_path / 'run'}", env=env)
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.num_threads=1"]
    sweep = cli(
        "agnews.run", "--multirun", *tiny, "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}", *parallel, env=env
    )
    for done in (single, sweep):
        assert done.returncode == 0, done.stderr[-3000:]
        output = done.stdout + done.stderr
        assert "Warning" not in output, [line for line in output.splitlines() if "Warning" in line]
