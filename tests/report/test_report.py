"""The report on hand-written result trees: numbers against hand-computed statistics, the markdown
against a literal, valid PNGs, incomplete runs counted and named, and clear errors for wrong folders."""

from __future__ import annotations

import itertools
import json
import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
import yaml

from agnews.report.__main__ import main
from agnews.report.findings import render_markdown
from agnews.report.stats import load_runs, summarize, t_quantile_975
from agnews.report.sweep import find_latest_sweep

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_job(
    sweep: Path,
    job: int,
    embedding: str,
    seed: int,
    test_acc: float | None = None,
    *,
    status: str = "completed",
    error: str | None = None,
    extra: tuple[str, ...] = (),
    val_accs: tuple[float, ...] = (0.5, 0.6),
    epoch_times: tuple[float, ...] = (2.0, 4.0),
    data_key: str = "6eace1b2c3d4e5f6a7b8",
) -> Path:
    """A job folder as training leaves it; status 'unfinished' writes only .hydra/ (killed before results)."""
    job_dir = sweep / str(job)
    overrides = [f"embedding={embedding}", f"seed={seed}", *extra]
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if status == "unfinished":
        return job_dir
    dim = {"learned": 32, "learned100": 100}.get(embedding) or int(embedding.removeprefix("glove"))
    model = next((item.split("=")[1] for item in extra if item.startswith("model=")), "small")
    history = [
        {"epoch": epoch, "val_acc": acc, "epoch_time_s": time}
        for epoch, (acc, time) in enumerate(zip(val_accs, epoch_times, strict=True), start=1)
    ]
    results = {
        "format": "agnews-results/1",
        "status": status,
        "error": error,
        "config": {
            "seed": seed,
            "embedding": {"name": embedding, "kind": "learned" if "learned" in embedding else "glove", "dim": dim},
            "model": {"name": model, "hidden_size": 64},
            "optimizer": {"name": "sgd", "lr": 5.0},
        },
        "overrides": overrides,
        "metrics": {} if test_acc is None else {"test_acc": test_acc, "best_val_acc": test_acc + 0.01},
        "history": history,
        "run_id": f"{sweep.name}-{job}",
        "sweep": {"dir": str(sweep), "job": job, "sweeper": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"},
        "data": {"key": data_key},
    }
    (job_dir / "results.json").write_text(json.dumps(results))
    return job_dir


def write_sweep(sweep: Path, accuracies: dict[str, list[float]], start: int = 0) -> Path:
    """Completed jobs, one per accuracy, seeds 0, 1, ... per embedding."""
    job = start
    for embedding, values in accuracies.items():
        for seed, acc in enumerate(values):
            write_job(sweep, job, embedding, seed, acc)
            job += 1
    return sweep


def row(summary: pd.DataFrame, embedding: str, **others: str) -> pd.Series:
    mask = summary.embedding == embedding
    for key, value in others.items():
        mask &= summary[key] == value
    (index,) = summary.index[mask]
    return summary.loc[index]


def test_t_quantile_matches_tables():
    for df, expected in [(1, 12.706), (2, 4.303), (3, 3.182), (9, 2.262), (10, 2.228), (30, 2.042)]:
        assert t_quantile_975(df) == pytest.approx(expected, abs=5e-4)
    # beyond the table: the expansion, against values from tables of the t distribution
    for df, expected in [(31, 2.0395), (40, 2.0211), (60, 2.0003), (120, 1.9799), (10_000, 1.9602)]:
        assert t_quantile_975(df) == pytest.approx(expected, abs=1e-4)
    values = [t_quantile_975(df) for df in range(1, 200)]
    assert all(a > b for a, b in itertools.pairwise(values))  # no jump where the table ends
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_summary_numbers_equal_hand_computed(tmp_path):
    sweep = write_sweep(tmp_path / "s", {"learned": [0.80, 0.83, 0.81], "glove50": [0.86, 0.85], "glove300": [0.9]})
    write_job(sweep, 10, "glove100", 0, 0.88, epoch_times=(3.0, 5.0))
    write_job(sweep, 11, "glove100", 1, 0.84, epoch_times=(1.0, 1.0))
    summary = summarize(load_runs([sweep]))

    assert list(summary.embedding) == ["learned", "glove50", "glove100", "glove300"]
    learned = row(summary, "learned")
    values = [0.80, 0.83, 0.81]
    mean, sd = statistics.mean(values), statistics.stdev(values)
    assert learned.n == 3
    assert learned.test_acc_mean == pytest.approx(mean)
    assert learned.test_acc_sd == pytest.approx(sd)
    assert learned.test_acc_ci_low == pytest.approx(mean - 4.302653 * sd / math.sqrt(3), abs=1e-6)
    assert learned.test_acc_ci_high == pytest.approx(mean + 4.302653 * sd / math.sqrt(3), abs=1e-6)
    assert learned.best_val_acc_mean == pytest.approx(mean + 0.01)
    assert learned.delta_vs_learned == pytest.approx(0.0)

    glove100 = row(summary, "glove100")
    assert glove100.test_acc_sd == pytest.approx(statistics.stdev([0.88, 0.84]))
    assert glove100.test_acc_ci_high == pytest.approx(0.86 + 12.706205 * statistics.stdev([0.88, 0.84]) / math.sqrt(2))
    assert glove100.delta_vs_learned == pytest.approx(0.86 - mean)
    assert glove100.epoch_time_s_mean == pytest.approx((4.0 + 1.0) / 2)  # mean over runs of each run's mean
    assert glove100.embedding_dim == 100

    glove300 = row(summary, "glove300")  # one seed: a mean but no spread
    assert glove300.n == 1 and glove300.test_acc_mean == pytest.approx(0.9)
    assert math.isnan(glove300.test_acc_sd) and math.isnan(glove300.test_acc_ci_low)


def test_no_learned_runs_leaves_delta_blank(tmp_path):
    summary = summarize(load_runs([write_sweep(tmp_path / "s", {"glove50": [0.8, 0.9]})]))
    assert summary.delta_vs_learned.isna().all()


def test_markdown_is_exact(tmp_path):
    sweep = write_sweep(tmp_path / "s", {"learned": [0.80, 0.82], "glove50": [0.85, 0.87]})
    write_job(sweep, 4, "glove50", 2, status="failed", error="RuntimeError: out of memory\ntraceback")
    runs = load_runs([sweep])
    # learned: mean 81, sd 1.41421 pp, half-width 12.7062 * 1.41421 / sqrt(2) = 12.71 pp
    expected = f"""\
# AG News sweep report

5 runs from `{sweep}`. Test accuracy over seeds: mean, sample standard deviation (sd) and 95 % Student-t interval of the mean. n counts completed runs; sd and the difference from learned embeddings are in percentage points (pp).

| embedding | n | test acc (%) | sd (pp) | 95 % CI (%) | best val acc (%) | vs learned (pp) | epoch (s) | failed | diverged | unfinished |
| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| learned | 2 | 81.00 | 1.41 | [68.29, 93.71] | 82.00 | +0.00 | 3.0 | 0 | 0 | 0 |
| glove50 | 2 | 86.00 | 1.41 | [73.29, 98.71] | 87.00 | +5.00 | 3.0 | 1 | 0 | 0 |

## Findings

- Best: glove50, 86.00 % mean test accuracy over 2 seeds, 95 % CI 73.29–98.71 %.
- GloVe beats learned embeddings: the best, glove50, by 5.00 percentage points (86.00 % vs 81.00 %); 1 of 1 GloVe sizes beat learned. Their 95 % intervals overlap, so the gap is within the seed-to-seed spread.
- Only one GloVe size was run (glove50), so this sweep cannot show the effect of size.
- 1 of 5 runs did not complete (1 failed, 0 diverged, 0 unfinished): counted in the table, left out of the means, listed below.

## Runs that did not complete

- job 4 (glove50, seed 2): failed: RuntimeError: out of memory

![val acc per epoch](val_acc_per_epoch.png)
"""  # noqa: E501
    assert render_markdown(summarize(runs), runs, [tmp_path / "val_acc_per_epoch.png"]) == expected


def test_incomplete_runs_are_counted_and_named(tmp_path):
    sweep = write_sweep(tmp_path / "s", {"learned": [0.8, 0.82], "glove50": [0.85]})
    write_job(sweep, 3, "glove50", 1, status="failed", error="RuntimeError: boom")
    write_job(sweep, 4, "glove100", 0, status="diverged", error="loss is nan")
    write_job(sweep, 5, "glove100", 1, status="running")
    write_job(sweep, 6, "learned", 2, status="unfinished")
    runs = load_runs([sweep])
    assert len(runs) == 7
    summary = summarize(runs).set_index("embedding")
    assert summary.loc["learned", ["n", "n_failed", "n_diverged", "n_unfinished"]].tolist() == [2, 0, 0, 1]
    assert summary.loc["glove50", ["n", "n_failed", "n_diverged", "n_unfinished"]].tolist() == [1, 1, 0, 0]
    # a group with no completed run keeps its row, with blank accuracies
    assert summary.loc["glove100", ["n", "n_failed", "n_diverged", "n_unfinished"]].tolist() == [0, 0, 1, 1]
    assert math.isnan(summary.loc["glove100", "test_acc_mean"])

    assert main([str(sweep)]) == 0
    markdown = (sweep / "report" / "report.md").read_text()
    assert "4 of 7 runs did not complete (1 failed, 1 diverged, 2 unfinished)" in markdown
    assert "- job 3 (glove50, seed 1): failed: RuntimeError: boom" in markdown
    assert "- job 4 (glove100, seed 0): diverged: loss is nan" in markdown
    assert "- job 5 (glove100, seed 1): unfinished (results.json still says running" in markdown
    assert "- job 6 (learned, seed 2): unfinished (no results.json)" in markdown


def test_main_writes_csv_markdown_and_valid_pngs(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "s", {"learned": [0.8, 0.82], "glove50": [0.85, 0.86], "glove100": [0.87, 0.9]})
    out = tmp_path / "out"
    assert main([str(sweep), "--out", str(out)]) == 0
    assert "glove100" in capsys.readouterr().out  # the terminal table
    table = pd.read_csv(out / "report.csv")
    assert list(table.embedding) == ["learned", "glove50", "glove100"]
    assert table.test_acc_mean.tolist() == pytest.approx([0.81, 0.855, 0.885])  # full precision, not rounded
    assert "| glove100 | 2 | 88.50 |" in (out / "report.md").read_text()
    assert "- All 6 runs completed." in (out / "report.md").read_text()
    for name in ("accuracy_vs_dim.png", "val_acc_per_epoch.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert f"]({name})" in (out / "report.md").read_text()
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_other_swept_field_gets_its_own_rows_and_baseline(tmp_path):
    sweep = tmp_path / "s"
    for job, (embedding, model, acc) in enumerate(
        [("learned", "small", 0.80), ("learned", "large", 0.84), ("glove50", "small", 0.83), ("glove50", "large", 0.85)]
    ):
        write_job(sweep, job, embedding, 0, acc, extra=(f"model={model}", "optimizer.lr=0.5"))
    summary = summarize(load_runs([sweep]))
    assert "model" in summary.columns and "optimizer.lr" not in summary.columns  # lr is the same everywhere
    assert row(summary, "glove50", model="small").delta_vs_learned == pytest.approx(0.03)
    assert row(summary, "glove50", model="large").delta_vs_learned == pytest.approx(0.01)
    assert main([str(sweep)]) == 0
    assert (sweep / "report" / "accuracy_vs_dim.png").read_bytes()[:8] == PNG_SIGNATURE


def test_default_is_the_newest_sweep_under_root(tmp_path, monkeypatch):
    root = tmp_path / "multirun"
    newest = write_sweep(root / "2026-12-01" / "11-30-00", {"learned": [0.8]})
    write_sweep(root / "2026-12-01" / "10-00-00", {"learned": [0.7]})  # written last: mtimes do not decide
    write_sweep(root / "2026-11-30" / "23-59-59", {"learned": [0.6]})
    (root / "2026-12-02" / "08-00-00").mkdir(parents=True)  # newer, but holds no jobs
    assert find_latest_sweep(root) == newest
    monkeypatch.chdir(tmp_path)  # --root defaults to ./multirun
    assert main([]) == 0
    assert pd.read_csv(newest / "report" / "report.csv").test_acc_mean.tolist() == pytest.approx([0.8])


def test_several_sweeps_merge(tmp_path):
    first = write_sweep(tmp_path / "multirun" / "2026-12-01" / "10-00-00", {"learned": [0.80, 0.82]})
    second = write_sweep(tmp_path / "multirun" / "2026-12-02" / "09-00-00", {"learned": [0.84], "glove50": [0.9]})
    assert main([str(second), str(first), str(first)]) == 0  # a sweep given twice counts once
    report = second / "report"  # the newest given sweep
    table = pd.read_csv(report / "report.csv").set_index("embedding")
    assert table.loc["learned", "n"] == 3
    assert table.loc["learned", "test_acc_mean"] == pytest.approx(statistics.mean([0.80, 0.82, 0.84]))
    assert table.loc["glove50", "n"] == 1
    assert f"`{second}`, `{first}`" in (report / "report.md").read_text()


def foreign(tmp_path: Path) -> Path:
    (tmp_path / "d" / "notes").mkdir(parents=True)
    (tmp_path / "d" / "readme.txt").write_text("hello")
    return tmp_path / "d"


def hydra_only(tmp_path: Path) -> Path:  # another project's multirun: job folders, no results.json
    (tmp_path / "d" / "0" / ".hydra").mkdir(parents=True)
    return tmp_path / "d"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing", "does not exist"),
        (lambda tmp: (tmp / "d").mkdir() or tmp / "d", "no job folders"),
        (foreign, "no job folders"),
        (hydra_only, "1 job folders but no results.json"),
    ],
    ids=["missing", "empty", "foreign", "hydra-only"],
)
def test_wrong_folder_exits_nonzero_naming_it(tmp_path, capsys, make, message):
    folder = make(tmp_path)
    assert main([str(folder)]) == 2
    error = capsys.readouterr().err
    assert str(folder) in error and message in error and "expected" in error
    assert not (folder / "report").exists()


def test_root_without_sweeps_exits_nonzero(tmp_path, capsys):
    assert main(["--root", str(tmp_path / "multirun")]) == 2
    assert f"No sweep under {tmp_path / 'multirun'}" in capsys.readouterr().err


def test_multirun_root_given_as_sweep_points_at_a_sweep(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "multirun" / "2026-12-01" / "10-00-00", {"learned": [0.8]})
    assert main([str(tmp_path / "multirun")]) == 2
    assert f"e.g. {sweep}" in capsys.readouterr().err


def test_unreadable_results_names_the_file(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "s", {"learned": [0.8]})
    (sweep / "1" / ".hydra").mkdir(parents=True)
    (sweep / "1" / "results.json").write_text('{"format": "agnews-results/1", "status": ')
    assert main([str(sweep)]) == 2
    assert str(sweep / "1" / "results.json") in capsys.readouterr().err


def test_no_pretrained_runs_skips_the_dimension_plot(tmp_path, caplog):
    sweep = write_sweep(tmp_path / "s", {"learned": [0.8, 0.81]})
    with caplog.at_level("INFO", logger="agnews.report.plots"):
        assert main([str(sweep)]) == 0
    assert "skipping accuracy_vs_dim.png" in caplog.text
    assert not (sweep / "report" / "accuracy_vs_dim.png").exists()
    assert (sweep / "report" / "val_acc_per_epoch.png").read_bytes()[:8] == PNG_SIGNATURE
    assert "No completed pretrained-embedding run to compare." in (sweep / "report" / "report.md").read_text()


def test_report_package_does_not_import_torch():
    code = (
        "import importlib, pkgutil, sys, agnews.report\n"
        "names = [m.name for m in pkgutil.iter_modules(agnews.report.__path__, 'agnews.report.')]\n"
        "assert 'agnews.report.__main__' in names and len(names) >= 6, names\n"
        "[importlib.import_module(name) for name in names]\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_each_model_is_compared_with_its_own_learned_embedding(tmp_path):
    sweep = tmp_path / "sweep"
    runs = [
        ("learned", "small", 0.70),
        ("glove50", "small", 0.80),
        ("learned100", "bilstm_max", 0.88),
        ("glove50", "bilstm_max", 0.90),
    ]
    for job, (embedding, model, accuracy) in enumerate(runs):
        write_job(sweep, job, embedding, 0, accuracy, extra=(f"model={model}",))
    summary = summarize(load_runs([sweep])).set_index(["embedding", "model"])
    assert summary.loc[("glove50", "small"), "delta_vs_learned"] == pytest.approx(0.10)
    assert summary.loc[("glove50", "bilstm_max"), "delta_vs_learned"] == pytest.approx(0.02)
    assert list(summary.index) == [
        ("learned", "small"),
        ("learned100", "bilstm_max"),
        ("glove50", "bilstm_max"),
        ("glove50", "small"),
    ]


def test_a_glove_size_that_never_completed_is_named_as_such(tmp_path):
    sweep = tmp_path / "sweep"
    write_job(sweep, 0, "learned", 0, 0.80)
    write_job(sweep, 1, "glove50", 0, 0.85)
    write_job(sweep, 2, "glove300", 0, status="failed", error="download refused")
    text = render_markdown(summarize(runs := load_runs([sweep])), runs)
    assert "Only glove50 completed, so the effect of the GloVe size is unknown." in text


def test_settings_that_do_not_change_results_never_split_groups(tmp_path):
    sweep = tmp_path / "sweep"
    write_job(sweep, 0, "glove50", 0, 0.90, extra=("trainer.num_threads=1",))
    write_job(sweep, 1, "glove50", 1, 0.92)  # another thread count, same computation
    summary = summarize(load_runs([sweep]))
    assert len(summary) == 1 and summary.n.iloc[0] == 2


def write_practica1(sweep: Path, accuracies: dict[str, list[float]]) -> Path:
    """Jobs as +experiment=practica1 leaves them: 'glove50_frozen' is named glove50 with embedding.freeze."""
    job = 0
    for option, values in accuracies.items():
        for seed, acc in enumerate(values):
            job_dir = write_job(sweep, job, option.removesuffix("_frozen"), seed, acc)
            results = json.loads((job_dir / "results.json").read_text())
            results["config"]["embedding"]["freeze"] = option.endswith("_frozen")
            results["overrides"] = [f"embedding={option}", f"seed={seed}"]
            (job_dir / "results.json").write_text(json.dumps(results))
            job += 1
    return sweep


def test_frozen_and_fine_tuned_glove_each_get_rows_a_baseline_and_words(tmp_path):
    sweep = write_practica1(
        tmp_path / "practica1",
        {
            "learned": [0.70, 0.72, 0.74],
            "glove50_frozen": [0.80, 0.81, 0.82],
            "glove50": [0.88, 0.89, 0.90],
            "glove100_frozen": [0.83, 0.84, 0.85],
            "glove100": [0.885, 0.895, 0.905],
        },
    )
    summary = summarize(load_runs([sweep]))
    assert list(summary.columns[:2]) == ["embedding", "embedding.freeze"]
    assert len(summary) == 5
    frozen50 = row(summary, "glove50", **{"embedding.freeze": "true"})
    assert frozen50.test_acc_mean == pytest.approx(0.81)
    assert frozen50.delta_vs_learned == pytest.approx(0.81 - 0.72)  # the learned row is every GloVe row's baseline
    assert row(summary, "glove100", **{"embedding.freeze": "false"}).delta_vs_learned == pytest.approx(0.895 - 0.72)

    assert main([str(sweep)]) == 0
    markdown = (sweep / "report" / "report.md").read_text()
    assert "Best: glove100 fine-tuned, 89.50 % mean test accuracy over 3 seeds" in markdown
    assert "GloVe beats learned embeddings: the best, glove100 fine-tuned, by 17.50 percentage points" in markdown
    assert "4 of 4 GloVe settings (size, frozen or fine-tuned) beat learned" in markdown
    assert (
        "Fine-tuning glove50 instead of keeping it frozen gains 8.00 percentage points (89.00 % vs 81.00 %). "
        "Their 95 % intervals do not overlap" in markdown
    )
    assert "Frozen GloVe: Among GloVe sizes glove100 is best (glove50 81.00 %, glove100 84.00 %)." in markdown
    assert "Fine-tuned GloVe: Among GloVe sizes glove100 is best" in markdown
    assert (sweep / "report" / "accuracy_vs_dim.png").read_bytes()[:8] == PNG_SIGNATURE


# --- each run counted once, runs on other data never pooled ------------------------------------------------


def test_a_copied_job_folder_is_counted_once_and_named(tmp_path, capsys, caplog):
    sweep = write_sweep(tmp_path / "s", {"learned": [0.80, 0.82]})
    other = write_sweep(tmp_path / "t", {"learned": [0.70]})
    shutil.copytree(sweep / "0", sweep / "2")  # cp -r S/0 S/2
    shutil.copytree(other / "0", sweep / "3")  # a job of another sweep copied in
    assert main([str(sweep)]) == 0
    table = pd.read_csv(sweep / "report" / "report.csv").set_index("embedding")
    assert table.loc["learned", "n"] == 2
    assert table.loc["learned", "test_acc_mean"] == pytest.approx(0.81)
    markdown = (sweep / "report" / "report.md").read_text()
    assert f"- {sweep}/2: copy of job 0 (the same run: its results.json has that run id)" in markdown
    assert f"- {sweep}/3: copied in from {other} job 0 (its results.json records that, not this sweep)" in markdown
    assert f"{sweep}/2 is not counted: copy of job 0" in caplog.text

    assert main(["--summary", str(sweep)]) == 0  # the sweep's own jobs completed
    summary = pd.read_csv(sweep / "summary.csv", dtype=str)
    assert list(summary.status) == ["completed", "completed", "copy", "copy"]

    assert main([str(sweep), str(other), "--out", str(tmp_path / "both")]) == 0  # the copied-in run counts once
    table = pd.read_csv(tmp_path / "both" / "report.csv").set_index("embedding")
    assert table.loc["learned", "n"] == 3


def test_a_sweep_moved_elsewhere_is_no_copy_of_itself(tmp_path):
    sweep = write_sweep(tmp_path / "cluster" / "s", {"learned": [0.80, 0.82]})
    moved = tmp_path / "laptop" / "s"
    shutil.copytree(sweep, moved)  # every job still records the cluster's path
    assert main([str(moved)]) == 0
    assert pd.read_csv(moved / "report" / "report.csv").set_index("embedding").loc["learned", "n"] == 2
    assert main([str(moved), str(sweep), "--out", str(tmp_path / "both")]) == 0  # the same runs twice count once
    assert pd.read_csv(tmp_path / "both" / "report.csv").set_index("embedding").loc["learned", "n"] == 2


def test_runs_on_other_data_never_share_a_row(tmp_path):
    first = write_sweep(tmp_path / "multirun" / "2026-12-01" / "10-00-00", {"learned": [0.80, 0.82]})
    second = tmp_path / "multirun" / "2026-12-02" / "09-00-00"
    for job, acc in enumerate([0.60, 0.62]):  # the same data.dir, its CSVs edited in between
        write_job(second, job, "learned", job, acc, data_key="36d4170a9b8c7d6e5f40")
    assert main([str(second), str(first)]) == 0
    table = pd.read_csv(second / "report" / "report.csv", dtype={"data.key": str})
    assert sorted(zip(table["data.key"], table.n, strict=True)) == [("36d4170a", 2), ("6eace1b2", 2)]
    assert sorted(table.test_acc_mean.round(4)) == [0.61, 0.81]


def test_a_folder_of_single_runs_gets_no_summary_csv(tmp_path, capsys, caplog):
    folder = tmp_path / "outputs" / "2026-12-01"
    for name, acc in (("10-00-00", 0.8), ("11-00-00", 0.82)):
        job_dir = write_job(folder, 0, "learned", 0, acc)
        results = json.loads((job_dir / "results.json").read_text())
        results.update(sweep=None, run_id=name)
        (job_dir / "results.json").write_text(json.dumps(results))
        job_dir.rename(folder / name)
    assert main(["--summary", str(folder)]) == 2
    assert f"{folder} holds 2 single runs, not the jobs of a sweep" in capsys.readouterr().err
    assert not (folder / "summary.csv").exists()
    caplog.set_level("INFO")
    assert main([str(folder)]) == 0
    assert f"{folder} is not a sweep: it holds 2 single runs, reported side by side" in caplog.text


def test_a_results_json_written_before_reads_as_before(tmp_path):
    """Counts and times at the top level, no run id, no kind or data recorded: how agnews wrote results.json
    until 2026-12."""
    sweep = tmp_path / "s"
    for job, (embedding, acc) in enumerate([("learned", 0.8), ("glove50", 0.9)]):
        job_dir = write_job(sweep, job, embedding, 0, acc)
        results = json.loads((job_dir / "results.json").read_text())
        for key in ("run_id", "data"):
            results.pop(key)
        results.update(num_parameters=1000 + job, wall_time_s=12.5, started_at=f"2026-11-30T10:0{job}:00+00:00")
        (job_dir / "results.json").write_text(json.dumps(results))
    assert main(["--summary", str(sweep)]) == 0
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary.num_parameters) == [1000, 1001] and list(summary.wall_time_s) == [12.5, 12.5]
    table = summarize(load_runs([sweep]))
    assert list(table.embedding_label) == ["learned", "GloVe"] and list(table.pretrained) == [False, True]


def test_a_sweep_moved_then_extended_in_place_has_no_copies(tmp_path, caplog):
    """Jobs 0 and 1 recorded the folder the sweep was made in; job 2 ran after the sweep was moved, in the new
    place. All three ran where they are."""
    made = write_sweep(tmp_path / "made-here", {"learned": [0.80, 0.82]})
    moved = tmp_path / "moved-here"
    made.rename(moved)
    write_job(moved, 2, "learned", 2, 0.84)
    assert main(["--summary", str(moved)]) == 0
    assert list(pd.read_csv(moved / "summary.csv").status) == ["completed"] * 3
    assert "not counted" not in caplog.text


def test_jobs_on_different_data_in_one_sweep_are_said(tmp_path, caplog):
    sweep = write_sweep(tmp_path / "s", {"learned": [0.80]})
    write_job(sweep, 1, "learned", 1, 0.6, data_key="36d4170a9b8c7d6e5f40")  # train.csv edited while it ran
    assert main(["--summary", str(sweep)]) == 0
    assert "The jobs trained on 2 different versions of the data" in caplog.text


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path, repo):
    sweep = write_sweep(tmp_path / "s", {"learned": [0.80, 0.82], "glove50": [0.85, 0.87]})
    done = subprocess.run(
        f"{sys.executable} -m agnews.report {sweep} | head -c 1", shell=True, cwd=repo, capture_output=True, text=True
    )
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
