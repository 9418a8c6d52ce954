"""The report of a hyperparameter search, on hand-written trials: ranked by validation accuracy instead of
one group per float, incomplete trials last and named, the plot a valid PNG; a grid sweep's floats still
group."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.image

from agnews.report.__main__ import main
from agnews.report.search import is_search
from agnews.report.stats import load_runs, summarize

OPTUNA = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
BASIC = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def write_trial(
    sweep: Path,
    job: int,
    lr: float,
    hidden: int,
    val_acc: float | None,
    test_acc: float | None,
    *,
    status: str = "completed",
    sweeper: str = OPTUNA,
    seed: int = 0,
) -> None:
    """A job folder as a trial leaves it: its sampled values among its overrides, as Optuna spells them."""
    job_dir = sweep / str(job)
    job_dir.mkdir(parents=True)
    history = [] if val_acc is None else [{"epoch": 1, "val_acc": val_acc - 0.02}, {"epoch": 2, "val_acc": val_acc}]
    results = {
        "format": "agnews-results/1",
        "status": status,
        "error": None if status == "completed" else "training loss became nan at batch 3 of epoch 1/2",
        "config": {
            "seed": seed,
            "embedding": {"name": "glove50", "kind": "glove", "dim": 50},
            "model": {"name": "bilstm_max_dropout50", "hidden_size": hidden},
            "optimizer": {"name": "adam", "lr": lr},
        },
        "overrides": [f"optimizer.lr={lr}", f"model.hidden_size={hidden}", f"seed={seed}"],
        "sweep": {"dir": str(sweep), "job": job, "sweeper": sweeper},
        "metrics": {} if test_acc is None else {"test_acc": test_acc, "best_val_acc": val_acc},
        "history": history,
    }
    (job_dir / "results.json").write_text(json.dumps(results))


def write_search(sweep: Path) -> Path:
    write_trial(sweep, 0, 0.0012345678901, 128, 0.90, 0.895)
    write_trial(sweep, 1, 0.000456789, 64, 0.92, 0.905)
    write_trial(sweep, 2, 0.0098765, 256, None, None, status="diverged")
    write_trial(sweep, 3, 0.0031, 128, 0.91, 0.915)
    return sweep


def test_trials_are_ranked_by_validation_accuracy_not_grouped_by_float(tmp_path, capsys):
    sweep = write_search(tmp_path / "search")
    assert is_search(load_runs([sweep]))
    assert main([str(sweep)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed[1:]] == ["1", "3", "0", "2"]  # best val first, diverged last
    assert printed[1].split()[1:5] == ["64", "0.000457", "92.00", "90.50"]

    with open(sweep / "report" / "report.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["trial"] for row in rows] == ["1", "3", "0", "2"]
    assert rows[0]["optimizer.lr"] == "0.000456789" and rows[0]["test_acc"] == "0.905"
    assert rows[3]["status"] == "diverged" and rows[3]["best_val_acc"] == ""

    markdown = (sweep / "report" / "report.md").read_text()
    assert (
        "- Best trial: 1 (model.hidden_size=64, optimizer.lr=0.000457), 92.00 % best validation accuracy, "
        "90.50 % test accuracy." in markdown
    )
    assert "- Completed trials reached 90.00–92.00 % best validation accuracy (median 91.00 %)." in markdown
    assert "## Trials that did not complete" in markdown and "job 2 (glove50" in markdown
    assert "diverged: training loss became nan" in markdown
    image = matplotlib.image.imread(sweep / "report" / "val_acc_per_trial.png")
    assert image.shape[0] > 100 and image.shape[1] > 100


def test_a_grid_sweeps_float_values_still_group_over_seeds(tmp_path):
    sweep = tmp_path / "grid"
    for job, (lr, seed) in enumerate([(0.001, 0), (0.001, 1), (0.01, 0), (0.01, 1)]):
        write_trial(sweep, job, lr, 128, 0.9 + job / 100, 0.89 + job / 100, sweeper=BASIC, seed=seed)
    runs = load_runs([sweep])
    assert not is_search(runs)
    summary = summarize(runs)
    assert summary["optimizer.lr"].tolist() == ["0.001", "0.01"] and summary.n.tolist() == [2, 2]


def test_a_search_merged_with_a_grid_sweep_is_reported_as_groups(tmp_path, capsys):
    search = write_search(tmp_path / "search")
    grid = tmp_path / "grid"
    write_trial(grid, 0, 0.001, 128, 0.91, 0.9117, sweeper=BASIC)
    assert not is_search(load_runs([search, grid]))
    assert main([str(search), str(grid), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "accuracy_vs_dim.png").exists()
