"""The sweep report: test accuracy per embedding over seeds (mean, spread, 95 % interval), the same as
markdown with a few sentences saying what the numbers show, and two plots.

    python -m agnews.report                                   # the newest sweep under ./multirun
    python -m agnews.report multirun/2026-12-01/11-30-00 multirun/2026-12-02/09-00-00 --out report/

It reads only what runs leave behind (results.json, .hydra/overrides.yaml), so it works on a sweep
copied off a cluster. No torch: it must start fast and run where torch is not installed.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

# Agg through the object API instead of matplotlib.use("Agg") + pyplot: same renderer, but importing
# the report does not switch the backend of a notebook or GUI session that imports it too.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from agnews.results import RESULTS_FILE, SUMMARY_FILE, RunStatus, find_job_dirs, read_job_overrides, read_run_results
from agnews.storage import AgnewsError, atomic_write, atomic_write_text

log = logging.getLogger(__name__)

EMBEDDING_ORDER = ("learned", "glove50", "glove100", "glove200", "glove300")  # then others alphabetically
BASELINE = "learned"
# One row per job from load_runs; any further column is an override key of some job (e.g. optimizer.lr).
RUN_COLUMNS = (
    "sweep", "job", "status", "error", "embedding", "embedding_dim", "embedding_kind", "model", "optimizer",
    "seed", "test_acc", "best_val_acc", "epoch_time_s", "val_acc_history",
)  # fmt: skip
EXPECTED = "a sweep folder such as multirun/<date>/<time>/ holding job folders 0/, 1/, ... with results.json"

# t(0.975, df) for df = 1..30, from mpmath's regularized incomplete beta. Beyond 30 the Cornish-Fisher
# expansion below is within 3e-8 of the exact value, so no scipy is needed.
_T975 = (
    12.70620474, 4.30265273, 3.182446305, 2.776445105, 2.570581836, 2.446911851, 2.364624252, 2.306004135,
    2.262157163, 2.228138852, 2.20098516, 2.17881283, 2.160368656, 2.144786688, 2.131449546, 2.119905299,
    2.109815578, 2.10092204, 2.093024054, 2.085963447, 2.079613845, 2.073873068, 2.06865761, 2.063898562,
    2.059538553, 2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456,
)  # fmt: skip
_Z975 = 1.959963984540054  # the normal 97.5 % quantile


def t_quantile_975(df: int) -> float:
    """Student's t 97.5 % quantile: the multiplier of sd/sqrt(n) in a 95 % two-sided interval."""
    if df < 1:
        raise ValueError(f"a t quantile needs df >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z, v = _Z975, float(df)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4)
    )


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean, sample sd (ddof=1) and half-width of the 95 % t interval; sd and half-width NaN for n < 2."""
    if not values:
        return math.nan, math.nan, math.nan
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    sd = statistics.stdev(values)
    return mean, sd, t_quantile_975(len(values) - 1) * sd / math.sqrt(len(values))


def _has_jobs(folder: Path) -> bool:
    return folder.is_dir() and bool(find_job_dirs(folder))


def find_latest_sweep(root: Path) -> Path:
    """The newest <root>/<date>/<time>/ sweep by folder names (Hydra's zero-padded names sort in time
    order, unlike mtimes after a copy), among folders that hold job folders."""
    root = Path(root)
    sweeps = [sweep for day in sorted(root.glob("*/")) for sweep in day.glob("*/") if _has_jobs(sweep)]
    if not sweeps:
        raise AgnewsError(f"No sweep under {root}: expected {root}/<date>/<time>/ folders holding job folders")
    return max(sweeps, key=lambda sweep: (sweep.parent.name, sweep.name))


def _sweep_jobs(sweep_dir: Path) -> list[Path]:
    """The sweep's job folders, or an error saying what the folder holds instead."""
    if not sweep_dir.is_dir():
        raise AgnewsError(
            f"{sweep_dir} {'is not a folder' if sweep_dir.exists() else 'does not exist'}: expected {EXPECTED}"
        )
    jobs = find_job_dirs(sweep_dir)
    if not any((job / RESULTS_FILE).exists() for job in jobs):
        found = f"{len(jobs)} job folders but no {RESULTS_FILE} in any" if jobs else "no job folders"
        if (sweep_dir / SUMMARY_FILE).exists():
            found += f" (only {SUMMARY_FILE})"
        hint = ""
        inner = [sub for sub in [*sweep_dir.glob("*/"), *sweep_dir.glob("*/*/")] if _has_jobs(sub)]
        if inner:  # a multirun root or a date folder: point at a sweep inside it
            hint = f"; it contains sweeps, e.g. {max(inner, key=lambda sub: (sub.parent.name, sub.name))}"
        raise AgnewsError(f"{sweep_dir} is not an agnews sweep: found {found}, expected {EXPECTED}{hint}")
    return jobs


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _config_value(config: dict[str, Any], key: str) -> str | None:
    """An override key's value in a run's resolved config, spelled as in an override: a group key
    (model) gives the option's name, so runs that did not override it still get a value to group on."""
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, dict):
        value = value.get("name")
    return None if value is None else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


def _load_job(sweep_dir: Path, job_dir: Path) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """One run row, the job's overrides and its resolved config."""
    try:
        overrides = read_job_overrides(job_dir)
    except (OSError, yaml.YAMLError) as error:
        raise AgnewsError(f"Cannot read {job_dir / '.hydra' / 'overrides.yaml'}: {error}") from error
    try:
        results = read_run_results(job_dir) or {"status": RunStatus.unfinished.value}
    except OSError as error:
        raise AgnewsError(f"Cannot read {job_dir / RESULTS_FILE}: {error}") from error
    config, metrics = _dict(results.get("config")), _dict(results.get("metrics"))
    embedding = _dict(config.get("embedding"))
    history = [epoch for epoch in results.get("history") or [] if isinstance(epoch, dict)]
    epoch_times = [epoch["epoch_time_s"] for epoch in history if isinstance(epoch.get("epoch_time_s"), int | float)]
    row = {
        "sweep": str(sweep_dir),
        "job": job_dir.name,
        "status": str(results.get("status", RunStatus.unfinished.value)),
        "error": results.get("error") or "",
        # Config first; a job that never wrote results.json has only its overrides to say what it was.
        "embedding": embedding.get("name") or overrides.get("embedding") or "unknown",
        "embedding_dim": embedding.get("dim"),
        "embedding_kind": embedding.get("kind"),
        "model": _dict(config.get("model")).get("name") or overrides.get("model"),
        "optimizer": _dict(config.get("optimizer")).get("name") or overrides.get("optimizer"),
        "seed": config.get("seed", overrides.get("seed")),
        "test_acc": metrics.get("test_acc"),
        "best_val_acc": metrics.get("best_val_acc"),
        "epoch_time_s": statistics.fmean(epoch_times) if epoch_times else None,
        "val_acc_history": [epoch.get("val_acc") for epoch in history],
    }
    return row, overrides, config


def load_runs(sweep_dirs: Iterable[Path]) -> pd.DataFrame:
    """One row per job of all the sweeps (RUN_COLUMNS, then the jobs' override keys)."""
    unique: dict[Path, Path] = {}  # a sweep given twice is read once
    for sweep_dir in sweep_dirs:
        unique.setdefault(Path(sweep_dir).resolve(), Path(sweep_dir))
    rows, overrides, configs = [], [], []
    for sweep_dir in unique.values():
        for job_dir in _sweep_jobs(sweep_dir):
            row, job_overrides, config = _load_job(sweep_dir, job_dir)
            rows.append(row)
            overrides.append(job_overrides)
            configs.append(config)
    extra_keys = sorted({key for job in overrides for key in job} - set(RUN_COLUMNS))
    for row, job_overrides, config in zip(rows, overrides, configs, strict=True):
        # A key swept in one merged sweep but not another: the other's value is its config default.
        row.update({key: job_overrides.get(key, _config_value(config, key)) for key in extra_keys})
    runs = pd.DataFrame(rows, columns=[*RUN_COLUMNS, *extra_keys])
    for column in ("embedding_dim", "test_acc", "best_val_acc", "epoch_time_s"):
        runs[column] = pd.to_numeric(runs[column], errors="coerce")
    runs["seed"] = pd.to_numeric(runs.seed, errors="coerce").astype("Int64")  # override strings for unfinished jobs
    no_acc = runs[(runs.status == RunStatus.completed) & runs.test_acc.isna()]
    for _, run in no_acc.iterrows():
        log.warning("%s/%s is completed but has no test_acc; it is left out of the means", run.sweep, run.job)
    return runs


def swept_keys(runs: pd.DataFrame) -> list[str]:
    """Fields besides embedding and seed whose value differs between jobs: each value gets its own rows."""
    candidates = ["model", "optimizer", *(column for column in runs.columns if column not in RUN_COLUMNS)]
    return [key for key in candidates if runs[key].astype(str).nunique() > 1]


def _natural(value: Any) -> tuple[int, float, str]:
    if pd.isna(value):
        return 2, 0.0, ""
    try:
        return 0, float(value), ""
    except (TypeError, ValueError):
        return 1, 0.0, str(value)


def _groups(runs: pd.DataFrame, keys: list[str]) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    """The runs grouped by `keys` (embedding first), in report order."""
    embedding_rank = {name: rank for rank, name in enumerate(EMBEDDING_ORDER)}

    def order(item: tuple[tuple[Any, ...], pd.DataFrame]) -> tuple[Any, ...]:
        name, *others = item[0]
        return (embedding_rank.get(name, len(EMBEDDING_ORDER)), str(name), *map(_natural, others))

    return sorted(runs.groupby(keys, dropna=False, sort=False), key=order)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """The pivot: one row per embedding (and per value of any other swept field), accuracies as fractions."""
    keys = ["embedding", *swept_keys(runs)]
    rows = []
    for values, group in _groups(runs, keys):
        completed = group[group.status == RunStatus.completed]
        accuracies = completed.test_acc.dropna().tolist()
        mean, sd, half_width = mean_interval(accuracies)
        failed, diverged = (int((group.status == status).sum()) for status in (RunStatus.failed, RunStatus.diverged))
        rows.append(
            {
                **dict(zip(keys, values, strict=True)),
                "embedding_kind": group.embedding_kind.dropna().iloc[0] if group.embedding_kind.notna().any() else None,
                "embedding_dim": group.embedding_dim.dropna().iloc[0] if group.embedding_dim.notna().any() else None,
                "n": len(accuracies),
                "test_acc_mean": mean,
                "test_acc_sd": sd,
                "test_acc_ci_low": mean - half_width,
                "test_acc_ci_high": mean + half_width,
                "best_val_acc_mean": completed.best_val_acc.mean(),
                "delta_vs_learned": math.nan,
                "epoch_time_s_mean": completed.epoch_time_s.mean(),
                "n_failed": failed,
                "n_diverged": diverged,
                # running = killed or still going; unfinished = never wrote results.json
                "n_unfinished": len(group) - len(completed) - failed - diverged,
            }
        )
    baseline = {_others(row, keys): row["test_acc_mean"] for row in rows if row["embedding"] == BASELINE}
    for row in rows:
        row["delta_vs_learned"] = row["test_acc_mean"] - baseline.get(_others(row, keys), math.nan)
    return pd.DataFrame(rows)


def _others(row: Any, keys: list[str]) -> tuple[str, ...]:
    """The row's values of the swept fields besides embedding, as strings (NaN never equals NaN)."""
    return tuple(str(row[key]) for key in keys[1:])


def summary_keys(summary: pd.DataFrame) -> list[str]:
    """The grouping columns of a summary: embedding, then the other swept fields."""
    return list(summary.columns[: summary.columns.get_loc("embedding_kind")])


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
    return table


def markdown_table(table: pd.DataFrame, text_columns: int) -> str:
    """A pipe table: the first `text_columns` left-aligned, the numbers right-aligned."""
    align = [":---" if index < text_columns else "---:" for index in range(len(table.columns))]
    rows = [list(table.columns), align, *(list(row) for row in table.itertuples(index=False))]
    return "\n".join("| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows)


def _name(row: pd.Series, keys: list[str]) -> str:
    others = ", ".join(f"{key}={row[key]}" for key in keys[1:])
    return f"{row['embedding']} ({others})" if others else str(row["embedding"])


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


def _glove_vs_learned(learned: pd.DataFrame, glove: pd.DataFrame, prefix: str) -> list[str]:
    if learned.empty or glove.empty:
        missing = "learned-embedding run, so there is no baseline" if learned.empty else "GloVe run to compare"
        return [f"{prefix}No completed {missing}."] if len(learned) + len(glove) else []
    base, top = learned.iloc[0], glove.loc[glove.test_acc_mean.idxmax()]
    gap = 100 * (top.test_acc_mean - base.test_acc_mean)
    accuracies = f"{_pct(top.test_acc_mean)} % vs {_pct(base.test_acc_mean)} %"
    if gap > 0:
        wins = int((glove.test_acc_mean > base.test_acc_mean).sum())
        text = (
            f"{prefix}GloVe beats learned embeddings: the best, {top.embedding}, by {gap:.2f} percentage points "
            f"({accuracies}); {wins} of {len(glove)} GloVe sizes beat learned."
        )
    else:
        text = (
            f"{prefix}Learned embeddings match or beat every GloVe size: the best, {top.embedding}, "
            f"trails by {-gap:.2f} percentage points ({accuracies})."
        )
    return [text + SPREAD[_overlap(top, base)]]


def _glove_sizes(glove: pd.DataFrame, prefix: str) -> list[str]:
    if len(glove) < 2:
        return (
            [f"{prefix}Only {glove.embedding.iloc[0]} completed, so the effect of the GloVe size is unknown."]
            if len(glove)
            else []
        )
    by_dim = glove.sort_values("embedding_dim")
    top = glove.loc[glove.test_acc_mean.idxmax()]
    sizes = ", ".join(f"{row.embedding} {_pct(row.test_acc_mean)} %" for _, row in by_dim.iterrows())
    text = f"{prefix}Among GloVe sizes {top.embedding} is best ({sizes})."
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
    blocks = done.groupby(keys[1:], dropna=False, sort=False) if keys[1:] else [((), done)]
    for values, block in blocks:
        prefix = "For " + ", ".join(f"{key}={value}" for key, value in zip(keys[1:], values, strict=True)) + ": "
        prefix = prefix if keys[1:] else ""
        glove = block[block.embedding_kind == "glove"]
        sentences += _glove_vs_learned(block[block.embedding == BASELINE], glove, prefix)
        sentences += _glove_sizes(glove, prefix)
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
    for run in runs[runs.status != RunStatus.completed].to_dict("records"):
        seed = "seed unknown" if pd.isna(run["seed"]) else f"seed {run['seed']}"
        what = ", ".join([str(run["embedding"]), *(f"{key}={run[key]}" for key in keys[1:]), seed])
        error = (str(run["error"]).strip().splitlines() or [""])[0]
        where = f"{run['sweep']}/{run['job']}" if several else f"job {run['job']}"
        lines.append(
            f"{where} ({what}): {STATUS_TEXT.get(run['status'], run['status'])}{': ' + error if error else ''}"
        )
    return lines


def render_markdown(summary: pd.DataFrame, runs: pd.DataFrame, plots: Sequence[Path] = ()) -> str:
    keys = summary_keys(summary)
    sweeps = ", ".join(f"`{sweep}`" for sweep in dict.fromkeys(runs.sweep))
    lines = [
        "# AG News sweep report",
        "",
        f"{len(runs)} runs from {sweeps}. Test accuracy over seeds: mean, sample standard deviation (sd) and "
        "95 % Student-t interval of the mean. n counts completed runs; sd and the difference from learned "
        "embeddings are in percentage points (pp).",
        "",
        markdown_table(format_table(summary), len(keys)),
        "",
        "## Findings",
        "",
        *(f"- {sentence}" for sentence in findings(summary)),
    ]
    incomplete = incomplete_runs(runs, keys)
    if incomplete:
        lines += ["", "## Runs that did not complete", "", *(f"- {line}" for line in incomplete)]
    lines += [item for plot in plots for item in ("", f"![{plot.stem.replace('_', ' ')}]({plot.name})")]
    return "\n".join(lines) + "\n"


def write_markdown(summary: pd.DataFrame, runs: pd.DataFrame, path: Path, plots: Sequence[Path] = ()) -> Path:
    atomic_write_text(path, render_markdown(summary, runs, plots))
    return path


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=120)
    return path


def plot_accuracy_vs_dim(summary: pd.DataFrame, path: Path) -> Path | None:
    """Test accuracy vs GloVe dimension with 95 % CI bars; learned embeddings as a line with its band."""
    keys = summary_keys(summary)
    done = summary[summary.n > 0]
    if not (done.embedding_kind == "glove").any():
        log.info("No completed GloVe run: skipping %s", path.name)
        return None
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    blocks = done.groupby(keys[1:], dropna=False, sort=False) if keys[1:] else [((), done)]
    for index, (values, block) in enumerate(blocks):
        color, suffix = f"C{index}", "".join(f", {k}={v}" for k, v in zip(keys[1:], values, strict=True))
        glove = block[block.embedding_kind == "glove"].sort_values("embedding_dim")
        error = 100 * (glove.test_acc_ci_high - glove.test_acc_mean).fillna(0.0)
        axes.errorbar(
            glove.embedding_dim,
            100 * glove.test_acc_mean,
            yerr=error,
            color=color,
            marker="o",
            capsize=4,
            label=f"GloVe{suffix}",
        )
        for _, base in block[block.embedding == BASELINE].iterrows():
            axes.axhline(100 * base.test_acc_mean, color=color, linestyle="--", label=f"learned ± 95 % CI{suffix}")
            if not pd.isna(base.test_acc_ci_low):
                axes.axhspan(100 * base.test_acc_ci_low, 100 * base.test_acc_ci_high, color=color, alpha=0.15)
    dims = sorted(done[done.embedding_kind == "glove"].embedding_dim.unique())
    axes.set_xticks(dims, [f"{dim:g}" for dim in dims])
    axes.set(
        xlabel="GloVe dimension",
        ylabel="test accuracy (%)",
        title="Test accuracy vs GloVe size (mean over seeds, 95 % CI)",
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
    for values, group in _groups(done, keys):
        colour = colours.setdefault(values[0], f"C{len(colours) % 10}")
        style = styles.setdefault(values[1:], ("-", "--", ":", "-.")[len(styles) % 4])
        # rows: runs, columns: epochs; a shorter history leaves NaN, which the mean skips
        curves = pd.DataFrame(group.val_acc_history.tolist(), dtype=float)
        label = ", ".join([str(values[0]), *(f"{k}={v}" for k, v in zip(keys[1:], values[1:], strict=True))])
        axes.plot(curves.columns + 1, 100 * curves.mean(axis=0), color=colour, linestyle=style, marker=".",
                  label=f"{label} (n={len(group)})")  # fmt: skip
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(xlabel="epoch", ylabel="validation accuracy (%)", title="Validation accuracy per epoch (mean over seeds)")
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agnews.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dirs", nargs="*", type=Path, help="sweep folders, merged (default: newest under --root)")
    parser.add_argument("--out", type=Path, help="output folder (default: <newest given sweep>/report)")
    parser.add_argument("--root", type=Path, default=Path("multirun"), help="where to look for the newest sweep")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        sweeps = args.sweep_dirs or [find_latest_sweep(args.root)]
        runs = load_runs(sweeps)
        summary = summarize(runs)
        out = args.out or max(sweeps, key=lambda s: (s.resolve().parent.name, s.resolve().name)) / "report"
        atomic_write_text(out / "report.csv", summary.to_csv(index=False))
        keys = summary_keys(summary)
        plots = [
            plot_accuracy_vs_dim(summary, out / "accuracy_vs_dim.png"),
            plot_val_acc_per_epoch(runs, keys, out / "val_acc_per_epoch.png"),
        ]
        write_markdown(summary, runs, out / "report.md", [plot for plot in plots if plot is not None])
    except AgnewsError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    print(format_table(summary).to_string(index=False))
    log.info("Wrote %s (report.md, report.csv and plots) from %d runs", out, len(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
