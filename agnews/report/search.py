"""The report of a hyperparameter search: runs whose settings an optimising sweeper proposed (Optuna's TPE
through `hparams_search=...`). Their swept values are points of a search, not levels: grouping by them
would make one group per float. So the trials are ranked by best validation accuracy, the value the search
maximised, shown with their test accuracy (measured once per trial, never seen by the search), and
plotted in the order they ran."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from agnews.report.findings import incomplete_runs
from agnews.report.stats import RUN_COLUMNS
from agnews.results import RunStatus
from agnews.storage import atomic_write, atomic_write_text
from agnews.tables import markdown_table

log = logging.getLogger(__name__)

TOP_TRIALS = 10  # printed and in report.md; report.csv has every trial


def is_search(runs: pd.DataFrame) -> bool:
    """Whether every run is a trial an optimising sweeper proposed (a search report, not a grouped one)."""
    return bool(len(runs)) and bool(runs.searched.all())


def trial_keys(runs: pd.DataFrame) -> list[str]:
    """The settings the search varied: the swept columns, with embedding first when it varies too."""
    keys = [column for column in runs.columns if column not in RUN_COLUMNS]
    return ["embedding", *keys] if runs.embedding.nunique() > 1 else keys


def rank_trials(runs: pd.DataFrame) -> pd.DataFrame:
    """Every trial, highest best validation accuracy first; trials without one last, in trial order. A folder
    copied from another trial's is not a trial."""
    runs = runs[runs.status != RunStatus.copy]
    several = runs.sweep.nunique() > 1
    pairs = zip(runs.sweep, runs.job, strict=True)
    ranked = runs.assign(
        trial=[f"{Path(sweep).name}/{job}" if several else job for sweep, job in pairs],
        number=pd.to_numeric(runs.job, errors="coerce"),
        epochs=runs.val_acc_history.map(len),
        # completed trials first, then pruned ones (stopped early: their accuracy is not a finished trial's)
        standing=runs.status.map({RunStatus.completed: 0, RunStatus.pruned: 1}).fillna(2),
    )
    order = ["standing", "best_val_acc", "sweep", "number"]
    return ranked.sort_values(order, ascending=[True, False, True, True], na_position="last")


def _short(value: object) -> str:
    """A swept value for display: floats to 3 significant digits, anything else as recorded."""
    try:
        number = float(str(value))
    except ValueError:
        return str(value)
    return str(value) if number.is_integer() and "." not in str(value) else f"{number:.3g}"


def _pct(value: float) -> str:
    return "" if pd.isna(value) else f"{100 * value:.2f}"


def format_trials(ranked: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The ranked trials as display strings."""
    table = pd.DataFrame({"trial": ranked.trial.astype(str)})
    for key in keys:
        table[key] = ranked[key].map(_short)
    table["best val acc (%)"] = ranked.best_val_acc.map(_pct)
    table["test acc (%)"] = ranked.test_acc.map(_pct)
    table["epochs"] = ranked.epochs.astype(str)
    table["status"] = ranked.status.astype(str)
    return table.reset_index(drop=True)


def search_findings(ranked: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    done = ranked[(ranked.status == RunStatus.completed) & ranked.best_val_acc.notna()]
    if done.empty:
        return ["No trial completed, so there is no accuracy to compare.", *_stopped(ranked)]
    best = done.iloc[0]
    settings = ", ".join(f"{key}={_short(best[key])}" for key in keys)
    sentences = [
        f"Best trial: {best.trial} ({settings}), {_pct(best.best_val_acc)} % best validation accuracy, "
        f"{_pct(best.test_acc)} % test accuracy.",
        f"Its validation accuracy is the highest of {len(done)} completed trials, so it flatters these settings; "
        "its test accuracy, which the search never saw, is the fair estimate.",
    ]
    if len(done) > 1:
        values = done.best_val_acc.tolist()
        sentences.append(
            f"Completed trials reached {_pct(min(values))}–{_pct(max(values))} % best validation accuracy "
            f"(median {_pct(statistics.median(values))} %)."
        )
    pruned = int((ranked.status == RunStatus.pruned).sum())
    if pruned:
        sentences.append(
            f"{pruned} of {len(ranked)} trials were pruned: the study's pruner stopped them after an epoch whose "
            "best validation accuracy was poor. They are ranked after the completed trials, by the accuracy they "
            "had reached, and have no test accuracy."
        )
    incomplete = int((~ranked.status.isin([RunStatus.completed, RunStatus.pruned])).sum())
    if incomplete:
        sentences.append(f"{incomplete} of {len(ranked)} trials did not complete: listed below, ranked last.")
    return sentences


def _stopped(ranked: pd.DataFrame) -> list[str]:
    pruned = int((ranked.status == RunStatus.pruned).sum())
    return [f"{pruned} of {len(ranked)} trials were pruned by the study's pruner."] if pruned else []


def render_search_markdown(ranked: pd.DataFrame, keys: Sequence[str], plots: Sequence[Path] = ()) -> str:
    table = format_trials(ranked.head(TOP_TRIALS), keys)
    sweeps = ", ".join(f"`{sweep}`" for sweep in dict.fromkeys(ranked.sweep))
    shown = f"the best {TOP_TRIALS} of " if len(ranked) > TOP_TRIALS else ""
    lines = [
        "# AG News hyperparameter search",
        "",
        f"{shown}{len(ranked)} trials from {sweeps}, ranked by best validation accuracy (the value the search "
        "maximised). Test accuracy is measured once per trial, with its best-validation weights, and never "
        "guided the search. report.csv lists every trial.",
        "",
        markdown_table([list(table.columns), *table.itertuples(index=False)], 1 + len(keys)),
        "",
        "## Findings",
        "",
        *(f"- {sentence}" for sentence in search_findings(ranked, keys)),
    ]
    incomplete = incomplete_runs(ranked, ["embedding", *[key for key in keys if key != "embedding"]])
    if incomplete:
        lines += ["", "## Trials that did not complete", "", *(f"- {line}" for line in incomplete)]
    lines += [item for plot in plots for item in ("", f"![{plot.stem.replace('_', ' ')}]({plot.name})")]
    return "\n".join(lines) + "\n"


def write_search_report(runs: pd.DataFrame, out: Path) -> tuple[pd.DataFrame, list[str]]:
    """report.csv (every trial, ranked), report.md and val_acc_per_trial.png in `out`; returns the
    display table of the best trials and the names of the files written."""
    keys = trial_keys(runs)
    ranked = rank_trials(runs)
    columns = ["trial", *keys, "status", "best_val_acc", "test_acc", "epochs", "epoch_time_s", "error"]
    atomic_write_text(out / "report.csv", ranked[columns].to_csv(index=False))
    plot = plot_val_acc_per_trial(ranked, out / "val_acc_per_trial.png")
    atomic_write_text(out / "report.md", render_search_markdown(ranked, keys, [plot] if plot else []))
    return format_trials(ranked.head(TOP_TRIALS), keys), ["report.md", "report.csv", *([plot.name] if plot else [])]


def plot_val_acc_per_trial(ranked: pd.DataFrame, path: Path) -> Path | None:
    """Best validation accuracy of each trial in the order the trials ran, the best so far as a line,
    test accuracy as hollow markers, and trials that did not complete as crosses at the bottom."""
    trials = ranked.sort_values(["sweep", "number"]).reset_index(drop=True)
    done = trials.status.eq(RunStatus.completed) & trials.best_val_acc.notna()
    if not done.any():
        log.info("No completed trial: skipping %s", path.name)
        return None
    # x: the trial number; the position in the search when merged sweeps each number from 0
    single = trials.sweep.nunique() == 1 and trials.number.notna().all()
    order = trials.number if single else pd.Series(trials.index + 1)
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    val = 100 * trials.best_val_acc.where(done)
    axes.plot(order[done], val[done], "o", color="C0", label="best validation accuracy")
    axes.step(order[done], val[done].cummax(), where="post", color="C0", alpha=0.5, label="best so far")
    axes.plot(order[done], 100 * trials.test_acc[done], "o", mfc="none", color="C1", label="test accuracy")
    pruned = trials.status.eq(RunStatus.pruned) & trials.best_val_acc.notna()
    if pruned.any():
        axes.plot(
            order[pruned], 100 * trials.best_val_acc[pruned], "v", color="grey", label="pruned: its best until stopped"
        )
    others = ~done & ~pruned
    if others.any():
        bottom = val[done].min() - 1
        axes.plot(order[others], [bottom] * int(others.sum()), "x", color="C3", label="failed, diverged or unfinished")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    xlabel = "trial" if single else "trial (in the order the sweeps ran)"
    axes.set(xlabel=xlabel, ylabel="accuracy (%)", title="Validation accuracy per trial")
    axes.grid(alpha=0.3)
    axes.legend()
    FigureCanvasAgg(figure)
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=120)
    return path
