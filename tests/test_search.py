"""Hyperparameter search with hparams_search=bilstm_glove50_optuna: real Optuna sweeps in a subprocess
whose study, job folders, summary.csv and report are read back; a rerun continues the study; a failed
trial never ends it."""

from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agnews.sweep.study import failed_objective


def test_a_failed_job_returns_the_worst_value_for_the_sweepers_direction():
    assert failed_objective({"direction": "maximize"}) == -math.inf
    assert failed_objective({"direction": "minimize"}) == math.inf
    assert failed_objective({"optim": {"maximize": True}}) == -math.inf  # Nevergrad
    assert failed_objective({"optim": {"maximize": False}}) == math.inf
    assert math.isnan(failed_objective({"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"}))


@pytest.fixture
def search_args(ag_news_dir, tmp_path, topic_words):
    """search_args(sweep_dir, trials, *extra): the preset on tiny data, its GloVe a small file of random
    vectors for the tiny data's words."""
    glove = tmp_path / "glove.6B.50d.txt"
    rng = np.random.default_rng(0)
    words = [*topic_words, "the", "a", "on", "."]
    glove.write_text("".join(w + " " + " ".join(f"{v:.4f}" for v in rng.normal(size=50)) + "\n" for w in words))

    def make(sweep_dir: Path, trials: int, *extra: str) -> list[str]:
        return [
            "hparams_search=bilstm_glove50_optuna",
            f"data.dir={ag_news_dir}",
            "data.val_fraction=0.25",
            f"embedding.path={glove}",
            "trainer.epochs=1",
            "trainer.batch_size=16",
            "trainer.progress_bar=false",
            f"hydra.sweep.dir={sweep_dir}",
            f"hydra.sweeper.n_trials={trials}",
            *extra,
        ]

    return make


def load_study(sweep_dir: Path):
    import optuna

    return optuna.load_study(study_name="bilstm_glove50", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")


SEARCHED = ("optimizer.lr", "model.hidden_size", "model.dropout", "model.embedding_dropout", "embedding.freeze")


def recorded_value(job_dir: Path, key: str):
    value = json.loads((job_dir / "results.json").read_text())["config"]
    for part in key.split("."):
        value = value[part]
    return value


@pytest.mark.slow
def test_a_rerun_adds_trials_to_the_study_in_new_job_folders(tmp_path, cli, search_args, read_summary):
    pytest.importorskip("optuna")
    sweep_dir = tmp_path / "search"
    first = cli("agnews.run", *search_args(sweep_dir, 3))
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(read_summary(sweep_dir)) == 3 and len(load_study(sweep_dir).trials) == 3
    first_jobs = {job: (sweep_dir / job / "results.json").read_text() for job in "012"}

    again = cli("agnews.run", *search_args(sweep_dir, 3))
    assert again.returncode == 0, again.stderr[-3000:]
    rows = read_summary(sweep_dir)
    study = load_study(sweep_dir)
    assert [row["job"] for row in rows] == ["0", "1", "2", "3", "4", "5"]
    assert [row["status"] for row in rows] == ["completed"] * 6
    assert [trial.number for trial in study.trials] == [0, 1, 2, 3, 4, 5]
    # the first command's jobs are untouched, and job N ran trial N's parameters
    assert {job: (sweep_dir / job / "results.json").read_text() for job in "012"} == first_jobs
    for trial in study.trials:
        job_dir = sweep_dir / str(trial.number)
        assert {key: recorded_value(job_dir, key) for key in SEARCHED} == pytest.approx(trial.params)
        metrics = json.loads((job_dir / "results.json").read_text())["metrics"]
        assert trial.value == pytest.approx(metrics["best_val_acc"])
    assert len({trial.params["model.dropout"] for trial in study.trials}) == 6  # no seed: new proposals
    for row in rows:  # the searched values are summary.csv's columns
        assert set(SEARCHED) <= set(row)

    report = cli("agnews.report", sweep_dir)
    assert report.returncode == 0, report.stderr[-3000:]
    best = max(study.trials, key=lambda trial: trial.value)
    first_row = report.stdout.splitlines()[1].split()
    assert first_row[0] == str(best.number)
    with open(sweep_dir / "report" / "report.csv", newline="") as handle:
        ranked = list(csv.DictReader(handle))
    assert len(ranked) == 6 and float(ranked[0]["best_val_acc"]) == pytest.approx(best.value)
    assert (sweep_dir / "report" / "val_acc_per_trial.png").read_bytes().startswith(b"\x89PNG")
    assert "Best trial:" in (sweep_dir / "report" / "report.md").read_text()


@pytest.mark.slow
def test_diverged_trials_are_recorded_and_the_study_goes_on(tmp_path, cli, search_args, read_summary):
    pytest.importorskip("optuna")
    sweep_dir = tmp_path / "search"
    # every batch's median loss exceeds this threshold, so every trial diverges
    completed = cli("agnews.run", *search_args(sweep_dir, 2, "trainer.divergence_threshold=0.000001"))
    assert completed.returncode == 1, completed.stderr[-3000:]  # some jobs did not complete, and it says so
    assert "Traceback" not in completed.stderr
    assert [row["status"] for row in read_summary(sweep_dir)] == ["diverged", "diverged"]
    study = load_study(sweep_dir)
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "COMPLETE"]
    assert [trial.value for trial in study.trials] == [-math.inf, -math.inf]


REFUSALS = {  # problem: (extra arguments, trials, what the message says)
    "folder the study does not know": ([], 1, "already holds job folders 0"),
    "test split": (["data.validation=test"], 1, "choose its trials on the test split"),
    "no trials": ([], 0, "hydra.sweeper.n_trials=0: a search needs at least one trial"),
    "storage that is no database": ([], 1, "optuna.db is not an Optuna study database ("),
}


@pytest.mark.slow
@pytest.mark.parametrize("problem", REFUSALS)
def test_a_search_that_would_go_wrong_is_refused_before_any_trial(tmp_path, cli, search_args, problem):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra (pip install -e '.[optuna]')")
    sweep_dir = tmp_path / "search"
    extra, trials, expected = REFUSALS[problem]
    if problem == "folder the study does not know":  # job folders left, but the study's storage is gone
        (sweep_dir / "0").mkdir(parents=True)
        (sweep_dir / "0" / "results.json").write_text("{}")
    if problem == "storage that is no database":
        sweep_dir.mkdir()
        (sweep_dir / "optuna.db").write_text("not a database\n")
    completed = cli("agnews.run", *search_args(sweep_dir, trials, *extra))
    assert completed.returncode == 2
    assert expected in completed.stderr and "Traceback" not in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr
    if problem == "storage that is no database":
        assert (sweep_dir / "optuna.db").read_text() == "not a database\n"
    else:
        assert not (sweep_dir / "optuna.db").exists()
    assert not (sweep_dir / "1").exists() and not (sweep_dir / "summary.csv").exists()


@pytest.mark.slow
def test_a_rerun_refuses_other_settings_and_is_not_failed_by_an_earlier_unfinished_trial(
    tmp_path, cli, search_args, read_summary
):
    pytest.importorskip("optuna")
    sweep_dir = tmp_path / "search"
    assert cli("agnews.run", *search_args(sweep_dir, 1)).returncode == 0
    refused = cli("agnews.run", *search_args(sweep_dir, 1, "seed=1"))  # another seed: not the same search
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "differ from those of the study's earlier trials" in refused.stderr and "seed: 0 -> 1" in refused.stderr
    assert len(load_study(sweep_dir).trials) == 1 and not (sweep_dir / "1").exists()

    results_file = sweep_dir / "0" / "results.json"
    killed = {**json.loads(results_file.read_text()), "status": "running"}  # as a SIGKILL mid-trial leaves it
    results_file.write_text(json.dumps(killed))
    again = cli("agnews.run", *search_args(sweep_dir, 1, "trainer.num_threads=1"))  # how jobs run may change
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Trials of earlier commands that did not complete (jobs 0)" in again.stdout + again.stderr
    assert [(row["job"], row["status"]) for row in read_summary(sweep_dir)] == [("0", "running"), ("1", "completed")]
    assert len(load_study(sweep_dir).trials) == 2


BLOCK_IMPORTS = """
import sys

class Block:  # as if optuna and its Hydra sweeper were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "optuna" or name.startswith("hydra_plugins.hydra_optuna_sweeper"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Block())
"""


@pytest.mark.slow
def test_a_search_without_its_packages_names_the_extra(tmp_path, cli, search_args):
    (tmp_path / "blocker").mkdir()
    (tmp_path / "blocker" / "sitecustomize.py").write_text(BLOCK_IMPORTS)
    sweep_dir = tmp_path / "search"
    completed = cli("agnews.run", *search_args(sweep_dir, 1), env={"PYTHONPATH": str(tmp_path / "blocker")})
    assert completed.returncode == 2
    expected = 'hparams_search=bilstm_glove50_optuna needs the hydra-optuna-sweeper package: pip install -e ".[optuna]"'
    assert expected in completed.stderr
    assert not sweep_dir.exists()


@pytest.mark.slow
def test_a_trial_stopped_by_sigterm_says_it_will_not_be_resumed(make_ag_news, tmp_path, repo, search_args):
    pytest.importorskip("optuna")
    sweep_dir = tmp_path / "search"
    arguments = [*search_args(sweep_dir, 1), "trainer.epochs=50", "trainer.patience=null"]
    search = subprocess.Popen(
        [sys.executable, "-m", "agnews.run", *arguments],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (sweep_dir / "0" / "checkpoint.pt").exists():
        assert search.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    search.send_signal(signal.SIGTERM)
    output = search.communicate(timeout=60)[0]
    assert search.returncode == 143, output[-2000:]
    assert "resume=true" not in output and "Traceback" not in output
    assert f"Stopped by SIGTERM. {sweep_dir / '0'} is recorded interrupted; a search never resumes its trials" in output
    assert "running the same command again adds new trials" in output
