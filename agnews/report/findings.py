"""The report in words: the summary as a display table, and sentences generated from its numbers
(which embedding is best, whether each pretrained kind such as GloVe beats learned embeddings, what its size
and fine-tuning change, whether the gaps exceed the seed-to-seed spread). Kinds are named as the runs recorded
them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from agnews.report.stats import FREEZE, baseline_rows, block_keys, embedding_label, pretrained_kinds, summary_keys
from agnews.results import RESULTS_FILE, RunStatus
from agnews.storage import atomic_write_text
from agnews.tables import markdown_table


def _pct(value: float, template: str = "{:.2f}") -> str:
    return "" if pd.isna(value) else template.format(100 * value)


def format_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as display strings: accuracies in %, spreads and differences in percentage points."""
    keys = summary_keys(summary)
    table = pd.DataFrame({key: summary[key].map(lambda value: "" if pd.isna(value) else str(value)) for key in keys})
    table["n"] = summary.n.astype(str)
    table["test acc (%)"] = summary.test_acc_mean.map(_pct)
    table["sd (pp)"] = summary.test_acc_sd.map(_pct)
    table["95 % CI (%)"] = [
        "" if pd.isna(low) else f"[{_pct(low)}, {_pct(high)}]"
        for low, high in zip(summary.test_acc_ci_low, summary.test_acc_ci_high, strict=True)
    ]
    table["best val acc (%)"] = summary.best_val_acc_mean.map(_pct)
    table["vs learned (pp)"] = summary.delta_vs_learned.map(lambda value: _pct(value, "{:+.2f}"))
    table["epoch (s)"] = summary.epoch_time_s_mean.map(lambda value: "" if pd.isna(value) else f"{value:.1f}")
    for count in ("failed", "diverged", "unfinished"):
        table[count] = summary[f"n_{count}"].astype(str)
    if summary.n_pruned.sum():  # only trials of a search are pruned
        table["pruned"] = summary.n_pruned.astype(str)
    return table


def _name(row: pd.Series, keys: list[str]) -> str:
    others = ", ".join(f"{key}={row[key]}" for key in block_keys(keys))
    label = embedding_label(row, keys)
    return f"{label} ({others})" if others else label


def _overlap(a: pd.Series, b: pd.Series) -> bool | None:
    """Whether two rows' 95 % intervals overlap; None when either has none (a single seed)."""
    if pd.isna(a.test_acc_ci_low) or pd.isna(b.test_acc_ci_low):
        return None
    return bool(a.test_acc_ci_low <= b.test_acc_ci_high and b.test_acc_ci_low <= a.test_acc_ci_high)


SPREAD = {
    None: " One side has a single seed and so no interval: seed noise cannot be ruled out.",
    True: " Their 95 % intervals overlap, so the gap is within the seed-to-seed spread.",
    False: " Their 95 % intervals do not overlap, so the gap exceeds the seed-to-seed spread.",
}


def _pretrained_vs_learned(
    learned: pd.DataFrame, pretrained: pd.DataFrame, label: str, prefix: str, keys: list[str]
) -> list[str]:
    """Whether a pretrained kind (its rows of the block, named `label`) beats the block's learned baseline."""
    if learned.empty or pretrained.empty:
        missing = "learned-embedding run, so there is no baseline" if learned.empty else f"{label} run to compare"
        return [f"{prefix}No completed {missing}."] if len(learned) + len(pretrained) else []
    base, top = learned.iloc[0], pretrained.loc[pretrained.test_acc_mean.idxmax()]
    gap = 100 * (top.test_acc_mean - base.test_acc_mean)
    accuracies = f"{_pct(top.test_acc_mean)} % vs {_pct(base.test_acc_mean)} %"
    kinds = "settings (size, frozen or fine-tuned)" if FREEZE in keys else "sizes"
    if gap > 0:
        wins = int((pretrained.test_acc_mean > base.test_acc_mean).sum())
        text = (
            f"{prefix}{label} beats learned embeddings: the best, {embedding_label(top, keys)}, by {gap:.2f} "
            f"percentage points ({accuracies}); {wins} of {len(pretrained)} {label} {kinds} beat learned."
        )
    else:
        text = (
            f"{prefix}Learned embeddings match or beat every {label} {kinds[:-1] if kinds == 'sizes' else 'setting'}: "
            f"the best, {embedding_label(top, keys)}, trails by {-gap:.2f} percentage points ({accuracies})."
        )
    return [text + SPREAD[_overlap(top, base)]]


def _frozen(rows: pd.DataFrame) -> pd.Series:
    return rows[FREEZE].astype(str).str.lower() == "true"


def _freezing(pretrained: pd.DataFrame, prefix: str) -> list[str]:
    """Per size of a pretrained kind run both ways: what fine-tuning the vectors changes against keeping them
    frozen."""
    sentences = []
    for _, rows in pretrained.groupby("embedding_dim", sort=True):
        frozen, tuned = rows[_frozen(rows)], rows[~_frozen(rows)]
        if frozen.empty or tuned.empty:
            continue
        frozen, tuned = frozen.iloc[0], tuned.iloc[0]
        gap = 100 * (tuned.test_acc_mean - frozen.test_acc_mean)
        sentences.append(
            f"{prefix}Fine-tuning {tuned.embedding} instead of keeping it frozen {'gains' if gap > 0 else 'loses'} "
            f"{abs(gap):.2f} percentage points ({_pct(tuned.test_acc_mean)} % vs {_pct(frozen.test_acc_mean)} %)."
            + SPREAD[_overlap(tuned, frozen)]
        )
    return sentences


def _sizes(pretrained: pd.DataFrame, label: str, prefix: str, tried: pd.DataFrame) -> list[str]:
    """Sentences on what the size of a pretrained kind (`label`) changes; `tried`: every row of that kind in
    the block, completed or not. Frozen and fine-tuned vectors each compare their own sizes."""
    if FREEZE in pretrained.columns:
        sentences = []
        for frozen in (False, True):
            rows, rows_tried = pretrained[_frozen(pretrained) == frozen], tried[_frozen(tried) == frozen]
            way = f"Frozen {label}: " if frozen else f"Fine-tuned {label}: "
            sentences += _sizes(rows.drop(columns=FREEZE), label, prefix + way, rows_tried.drop(columns=FREEZE))
        return sentences
    sizes_tried = len(tried)
    if len(pretrained) < 2:
        if not len(pretrained):
            return []
        name = pretrained.embedding.iloc[0]
        if sizes_tried == 1:
            return [f"{prefix}Only one {label} size was run ({name}), so this sweep cannot show the effect of size."]
        return [f"{prefix}Only {name} completed, so the effect of the {label} size is unknown."]
    by_dim = pretrained.sort_values("embedding_dim")
    top = pretrained.loc[pretrained.test_acc_mean.idxmax()]
    sizes = ", ".join(f"{row.embedding} {_pct(row.test_acc_mean)} %" for _, row in by_dim.iterrows())
    text = f"{prefix}Among {label} sizes {top.embedding} is best ({sizes})."
    rivals = [row for _, row in by_dim.iterrows() if row.embedding != top.embedding]
    overlaps = [_overlap(top, row) for row in rivals]
    if None in overlaps:
        text += " Some sizes have a single seed and so no interval: more seeds are needed to tell sizes apart."
    elif any(overlaps):
        close = ", ".join(row.embedding for row, overlap in zip(rivals, overlaps, strict=True) if overlap)
        text += f" Its 95 % interval overlaps those of {close}: these differences are within the seed-to-seed spread."
    else:
        text += " Its 95 % interval overlaps no other size's: its lead exceeds the seed-to-seed spread."
    return [text]


def findings(summary: pd.DataFrame) -> list[str]:
    """Plain-words sentences generated from the summary's numbers."""
    keys = summary_keys(summary)
    done = summary[summary.n > 0]
    if done.empty:
        return ["No run completed, so there is no accuracy to compare."]
    best = done.loc[done.test_acc_mean.idxmax()]
    interval = (
        ""
        if pd.isna(best.test_acc_ci_low)
        else f", 95 % CI {_pct(best.test_acc_ci_low)}–{_pct(best.test_acc_ci_high)} %"
    )
    sentences = [
        f"Best: {_name(best, keys)}, {_pct(best.test_acc_mean)} % mean test accuracy over {best.n} seeds{interval}."
    ]
    others = block_keys(keys)
    blocks = done.groupby(others, dropna=False, sort=False) if others else [((), done)]
    for values, block in blocks:
        prefix = "For " + ", ".join(f"{key}={value}" for key, value in zip(others, values, strict=True)) + ": "
        prefix = prefix if others else ""
        same_others = summary[others].astype(str).eq([str(v) for v in values]).all(axis=1)
        kinds = pretrained_kinds(summary[same_others])  # every kind the block ran, completed or not
        if not kinds and not baseline_rows(block).empty:
            sentences.append(f"{prefix}No completed pretrained-embedding run to compare.")
        for label, tried in kinds:
            rows = block[block.pretrained.eq(True) & (block.embedding_label == label)]
            sentences += _pretrained_vs_learned(baseline_rows(block), rows, label, prefix, keys)
            if FREEZE in keys:
                sentences += _freezing(rows, prefix)
            sentences += _sizes(rows, label, prefix, tried)
    counts = {name: int(summary[f"n_{name}"].sum()) for name in ("failed", "diverged", "unfinished")}
    if sum(counts.values()):
        total = int(summary.n.sum()) + sum(counts.values())
        detail = ", ".join(f"{count} {name}" for name, count in counts.items())
        sentences.append(
            f"{sum(counts.values())} of {total} runs did not complete ({detail}): "
            "counted in the table, left out of the means, listed below."
        )
    else:
        sentences.append(f"All {int(summary.n.sum())} runs completed.")
    return sentences


STATUS_TEXT = {
    RunStatus.running: "unfinished (results.json still says running: killed, or not done yet)",
    RunStatus.unfinished: f"unfinished (no {RESULTS_FILE})",
}


def incomplete_runs(runs: pd.DataFrame, keys: list[str]) -> list[str]:
    """A line per run that did not complete, saying which job it is and why."""
    several = runs.sweep.nunique() > 1
    lines = []
    for run in runs[~runs.status.isin([RunStatus.completed, RunStatus.pruned, RunStatus.copy])].to_dict("records"):
        seed = "seed unknown" if pd.isna(run["seed"]) else f"seed {run['seed']}"
        what = ", ".join([str(run["embedding"]), *(f"{key}={run[key]}" for key in keys[1:]), seed])
        error = (str(run["error"]).strip().splitlines() or [""])[0]
        where = f"{run['sweep']}/{run['job']}" if several else f"job {run['job']}"
        lines.append(
            f"{where} ({what}): {STATUS_TEXT.get(run['status'], run['status'])}{': ' + error if error else ''}"
        )
    return lines


def copied_folders(runs: pd.DataFrame) -> list[str]:
    """A line per folder that holds a run counted elsewhere (a copy), saying where."""
    return [f"{run.sweep}/{run.job}: {run.error}" for run in runs[runs.status == RunStatus.copy].itertuples()]


def render_markdown(summary: pd.DataFrame, runs: pd.DataFrame, plots: Sequence[Path] = ()) -> str:
    keys = summary_keys(summary)
    table = format_table(summary)
    sweeps = ", ".join(f"`{sweep}`" for sweep in dict.fromkeys(runs.sweep))
    lines = [
        "# AG News sweep report",
        "",
        f"{len(runs)} runs from {sweeps}. Test accuracy over seeds: mean, sample standard deviation (sd) and "
        "95 % Student-t interval of the mean. n counts completed runs; sd and the difference from learned "
        "embeddings are in percentage points (pp).",
        "",
        markdown_table([list(table.columns), *table.itertuples(index=False)], len(keys)),
        "",
        "## Findings",
        "",
        *(f"- {sentence}" for sentence in findings(summary)),
    ]
    incomplete = incomplete_runs(runs, keys)
    if incomplete:
        lines += ["", "## Runs that did not complete", "", *(f"- {line}" for line in incomplete)]
    if copies := copied_folders(runs):
        lines += ["", "## Folders counted once", "", *(f"- {line}" for line in copies)]
    lines += [item for plot in plots for item in ("", f"![{plot.stem.replace('_', ' ')}]({plot.name})")]
    return "\n".join(lines) + "\n"


def write_markdown(summary: pd.DataFrame, runs: pd.DataFrame, path: Path, plots: Sequence[Path] = ()) -> Path:
    atomic_write_text(path, render_markdown(summary, runs, plots))
    return path
