"""The report's plots, drawn with matplotlib's Agg renderer through the object API (Figure +
FigureCanvasAgg) rather than pyplot, so importing the report never switches a notebook's backend."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from agnews.report.stats import FREEZE, baseline_rows, block_keys, groups, pretrained_kinds, summary_keys
from agnews.results import RunStatus
from agnews.storage import atomic_write

log = logging.getLogger(__name__)


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=120)
    return path


def plot_accuracy_vs_dim(summary: pd.DataFrame, path: Path) -> Path | None:
    """Test accuracy vs embedding dimension for each pretrained kind (GloVe ...), with 95 % CI bars; the
    embedding trained from scratch as a line with its band."""
    keys = summary_keys(summary)
    done = summary[summary.n > 0]
    if not done.pretrained.eq(True).any():
        log.info("No completed pretrained-embedding run: skipping %s", path.name)
        return None
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    others = block_keys(keys)
    blocks = done.groupby(others, dropna=False, sort=False) if others else [((), done)]
    markers = {label: "os^Dv<>"[index % 7] for index, label in enumerate(dict.fromkeys(done.embedding_label.dropna()))}
    for index, (values, block) in enumerate(blocks):
        color, suffix = f"C{index}", "".join(f", {k}={v}" for k, v in zip(others, values, strict=True))
        for label, rows in pretrained_kinds(block):
            rows = rows.sort_values("embedding_dim")
            # One line per way of using the vectors when a sweep has both: solid fine-tuned, dotted frozen.
            ways = rows.groupby(rows[FREEZE].astype(str).str.lower(), sort=True) if FREEZE in keys else [("", rows)]
            for way, line in ways:
                error = 100 * (line.test_acc_ci_high - line.test_acc_mean).fillna(0.0)
                name = {"true": f"{label} frozen", "false": f"{label} fine-tuned"}.get(way, label)
                axes.errorbar(
                    line.embedding_dim,
                    100 * line.test_acc_mean,
                    yerr=error,
                    color=color,
                    linestyle=":" if way == "true" else "-",
                    marker=markers[label],
                    mfc="none" if way == "true" else color,
                    capsize=4,
                    label=f"{name}{suffix}",
                )
        for _, base in baseline_rows(block).iterrows():
            axes.axhline(100 * base.test_acc_mean, color=color, linestyle="--", label=f"learned ± 95 % CI{suffix}")
            if not pd.isna(base.test_acc_ci_low):
                axes.axhspan(100 * base.test_acc_ci_low, 100 * base.test_acc_ci_high, color=color, alpha=0.15)
    dims = sorted(done[done.pretrained.eq(True)].embedding_dim.unique())
    axes.set_xticks(dims, [f"{dim:g}" for dim in dims])
    axes.set(
        xlabel="embedding dimension",
        ylabel="test accuracy (%)",
        title="Test accuracy vs size of the pretrained vectors (mean over seeds, 95 % CI)",
    )
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def plot_val_acc_per_epoch(runs: pd.DataFrame, keys: list[str], path: Path) -> Path | None:
    """Validation accuracy per epoch, mean over the completed seeds of each embedding (and other group)."""
    done = runs[(runs.status == RunStatus.completed) & (runs.val_acc_history.map(len) > 0)]
    if done.empty:
        log.info("No completed run with a history: skipping %s", path.name)
        return None
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    # colour per embedding, line style per value of the other swept fields, so a legend of 10 reads
    colours, styles = {}, {}
    for values, group in groups(done, keys):
        colour = colours.setdefault(values[0], f"C{len(colours) % 10}")
        style = styles.setdefault(values[1:], ("-", "--", ":", "-.")[len(styles) % 4])
        # rows: runs, columns: epochs; a shorter history leaves NaN, which the mean skips
        curves = pd.DataFrame(group.val_acc_history.tolist(), dtype=float)
        label = ", ".join([str(values[0]), *(f"{k}={v}" for k, v in zip(keys[1:], values[1:], strict=True))])
        axes.plot(
            curves.columns + 1,
            100 * curves.mean(axis=0),
            color=colour,
            linestyle=style,
            marker=".",
            label=f"{label} (n={len(group)})",
        )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(xlabel="epoch", ylabel="validation accuracy (%)", title="Validation accuracy per epoch (mean over seeds)")
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)
