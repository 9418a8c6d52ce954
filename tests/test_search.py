"""Hyperparameter search with hparams_search=... (agnews' Optuna sweeper): real searches in a subprocess
whose study, job folders, summary.csv and report are read back; a rerun continues the study; a failed
trial never ends it; a pruner stops hopeless trials; two commands work on one study at once."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
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
    study = load_study(sweep_dir)  # failed in the study as in their folders, not a made-up worst value
    assert [trial.state.name for trial in study.trials] == ["FAIL", "FAIL"]
    assert [trial.value for trial in study.trials] == [None, None]
    assert not (sweep_dir / "optimization_results.yaml").exists()  # no best trial to write


REFUSALS = {  # problem: (extra arguments, trials, what the message says)
    "folder the study does not know": ([], 1, "already holds job folders 0"),
    "test split": (["data.validation=test"], 1, "choose its trials on the test split"),
    "no trials": ([], 0, "hydra.sweeper.n_trials=0: a search needs at least one trial"),
    "storage that is no database": ([], 1, "optuna.db is not an Optuna study database ("),
    "bad seed": (["seed=-1"], 1, "config error: seed must be in 0 .. 4294967295"),
}


@pytest.mark.slow
@pytest.mark.parametrize("problem", REFUSALS)
def test_a_search_that_would_go_wrong_is_refused_before_any_trial(tmp_path, cli, search_args, problem):
    pytest.importorskip("optuna", reason="the optuna extra (pip install -e '.[optuna]')")
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
    elif problem == "folder the study does not know":
        assert not (sweep_dir / "optuna.db").exists()
    else:  # a folder the refused command made goes with it
        assert not sweep_dir.exists(), sorted(path.name for path in sweep_dir.iterdir())
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
    assert "Trials of other commands that did not complete (jobs 0:" in again.stdout + again.stderr
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
    expected = 'hparams_search=bilstm_glove50_optuna needs the optuna package: pip install -e ".[optuna]"'
    assert expected in completed.stderr
    assert not sweep_dir.exists()


@pytest.mark.slow
def test_a_trial_stopped_by_sigterm_says_it_will_not_be_resumed(tmp_path, search_args, stopped_run):
    pytest.importorskip("optuna")
    sweep_dir = tmp_path / "search"
    arguments = [*search_args(sweep_dir, 1), "trainer.epochs=50", "trainer.patience=null"]
    returncode, output = stopped_run(arguments, sweep_dir / "0" / "checkpoint.pt")
    assert returncode == 143, output[-2000:]
    assert "resume=true" not in output and "Traceback" not in output
    assert f"Stopped by SIGTERM. {sweep_dir / '0'} is recorded interrupted; a search never resumes its trials" in output
    assert "the study counts this one as failed, and running the same command again adds new trials" in output
    assert [trial.state.name for trial in load_study(sweep_dir).trials] == ["FAIL"]  # not RUNNING forever


@pytest.mark.slow
def test_pruned_trials_stop_early_and_are_recorded_pruned_not_failed(tmp_path, cli, search_args, read_summary):
    pytest.importorskip("optuna")
    sweep_dir = tmp_path / "search"
    # A pruner that stops every trial after its warm-up epoch, so the outcome does not depend on the accuracies.
    threshold = [
        "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
        "+hydra.sweeper.pruner.lower=1.1",
        "+hydra.sweeper.pruner.n_warmup_steps=2",
    ]
    done = cli("agnews.run", *search_args(sweep_dir, 2, *threshold, "trainer.epochs=4", "trainer.patience=null"))
    assert done.returncode == 0, done.stderr[-3000:]  # pruning is how a search ends a trial, not a failure
    rows = read_summary(sweep_dir)
    assert [(row["status"], row["epochs"], row["test_acc"]) for row in rows] == [("pruned", "2", "")] * 2
    assert all(row["error"].startswith("pruned after epoch 2 by the study's ThresholdPruner") for row in rows)
    study = load_study(sweep_dir)
    assert [trial.state.name for trial in study.trials] == ["PRUNED", "PRUNED"]
    for trial in study.trials:  # each epoch reached the trial, as the job recorded it
        history = json.loads((sweep_dir / str(trial.number) / "results.json").read_text())["history"]
        running_best = [max(epoch["val_acc"] for epoch in history[: index + 1]) for index in range(len(history))]
        assert trial.intermediate_values == dict(enumerate(running_best, start=1))
    report = cli("agnews.report", sweep_dir)
    assert report.returncode == 0 and "2 of 2 trials were pruned" in (sweep_dir / "report" / "report.md").read_text()


@pytest.mark.slow
def test_two_commands_work_on_one_study_at_once(tmp_path, repo, search_args, read_summary):
    """Hydra's batches wait for their slowest trial (hydra#3091); a second command on the same study and folder
    keeps the machine busy instead. Trial N is job N whichever command ran it."""
    pytest.importorskip("optuna")
    sweep_dir = tmp_path / "search"
    commands = [
        subprocess.Popen(
            [sys.executable, "-m", "agnews.run", *search_args(sweep_dir, 2)],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [(command.wait(timeout=600), command.communicate()[1]) for command in commands]
    assert [code for code, _ in outputs] == [0, 0], [err[-2000:] for _, err in outputs]
    study = load_study(sweep_dir)
    assert sorted(trial.number for trial in study.trials) == [0, 1, 2, 3]
    assert all(trial.state.name == "COMPLETE" for trial in study.trials)
    for trial in study.trials:
        job_dir = sweep_dir / str(trial.number)
        assert {key: recorded_value(job_dir, key) for key in SEARCHED} == pytest.approx(trial.params)
        assert trial.value == pytest.approx(
            json.loads((job_dir / "results.json").read_text())["metrics"]["best_val_acc"]
        )
    assert [row["status"] for row in read_summary(sweep_dir)] == ["completed"] * 4


def test_a_study_an_older_optuna_made_is_refused_with_how_to_upgrade_it(tmp_path, capsys):
    """Optuna 5 cannot read an optuna.db that Optuna 2 made (agnews' searches before 2026-12) until it is upgraded;
    the study's alembic revision is set back to Optuna 2.10's, as such a file has it."""
    import sqlite3

    optuna = pytest.importorskip("optuna")
    from agnews.sweep.study import open_study

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="bilstm_glove50", storage=storage, direction="maximize")
    with sqlite3.connect(tmp_path / "optuna.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'v2.6.0.a'")
        connection.execute("UPDATE version_info SET library_version = '2.10.1'")
    with pytest.raises(SystemExit) as refused:
        open_study(storage, "bilstm_glove50", "maximize")
    assert refused.value.code == 2
    message = capsys.readouterr().err
    assert "holds a study made by an older Optuna" in message and "nothing was launched" in message
    assert f"Upgrade it with `optuna storage upgrade --storage {storage}`" in message


def test_a_database_of_something_else_is_refused_untouched(tmp_path, capsys):
    import sqlite3

    pytest.importorskip("optuna")
    from agnews.sweep.study import open_study

    with sqlite3.connect(tmp_path / "optuna.db") as connection:  # e.g. an MLflow store put there
        connection.execute("CREATE TABLE experiments (id INTEGER)")
    before = (tmp_path / "optuna.db").read_bytes()
    with pytest.raises(SystemExit):
        open_study(f"sqlite:///{tmp_path / 'optuna.db'}", "bilstm_glove50", "maximize")
    assert "is not an Optuna study database (it holds no Optuna tables)" in capsys.readouterr().err
    assert (tmp_path / "optuna.db").read_bytes() == before


@pytest.mark.parametrize(
    ("sampler", "pruner"),
    [("tpe", "none"), ("tpe_parallel", "median"), ("gp", "successive_halving"), ("random", "median")],
)
def test_sampler_and_pruner_presets_build_optuna_objects(sampler, pruner):
    optuna = pytest.importorskip("optuna")
    from hydra.utils import instantiate

    from agnews.config import compose
    from agnews.sweep.study import PRUNERS, SAMPLERS

    sweeper = compose(
        ["hparams_search=bilstm_glove50_optuna", f"hydra/sweeper/sampler={sampler}", f"hydra/sweeper/pruner={pruner}"],
        with_hydra=True,
    ).hydra.sweeper
    assert sweeper._target_ == "agnews.sweep.search.StudySweeper"
    sampler = instantiate(sweeper.sampler, _execution_whitelist_=SAMPLERS)
    pruner = instantiate(sweeper.pruner, _execution_whitelist_=PRUNERS)
    assert isinstance(sampler, optuna.samplers.BaseSampler) and isinstance(pruner, optuna.pruners.BasePruner)
    study = optuna.create_study(sampler=sampler, pruner=pruner, direction="maximize")  # they work, past startup
    space = {
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
        "freeze": optuna.distributions.CategoricalDistribution([False, True]),
    }
    for _ in range(7):
        trial = study.ask(space)
        trial.report(0.5, step=1)
        study.tell(trial, 0.9 - abs(trial.params["lr"] - 3e-3))


def test_the_search_sweeper_is_a_hydra_plugin():
    """Hydra 1.4 finds plugins through the entry point group hydra.plugins (pyproject.toml); a launch of the
    search would otherwise fail with 'Unknown plugin class'."""
    from hydra.core.plugins import Plugins

    from agnews.sweep.search import StudySweeper

    assert Plugins.instance().class_name_to_class["agnews.sweep.search.StudySweeper"] is StudySweeper


def test_a_sweep_preset_runs_without_typing_multirun():
    """Hydra 1.4 takes hydra.mode only from the primary config or the command line; the presets that are sweeps
    (+experiment=practica1, hparams_search=...) keep working without --multirun."""
    from agnews.sweep.plan import with_multirun_flag

    assert with_multirun_flag(["+experiment=practica1", "seed=1"]) == ["--multirun", "+experiment=practica1", "seed=1"]
    assert with_multirun_flag(["hparams_search=bilstm_glove50_pruned"])[0] == "--multirun"
    assert with_multirun_flag(["+experiment=bilstm_glove50"]) == ["+experiment=bilstm_glove50"]  # one run
    assert with_multirun_flag(["-m", "+experiment=practica1"]) == ["-m", "+experiment=practica1"]
