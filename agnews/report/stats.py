"""The report's statistics: a sweep's runs as a table, and test accuracy per embedding (and per value of
any other swept setting) over seeds, with mean, spread and a 95 % Student-t interval.

It reads only what runs recorded about themselves (results.json, through report.sweep), so it works on a
sweep copied off a cluster. No torch here.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from agnews.report.sweep import holds_single_runs, proposed_by_sweeper, read_sweep, swept_keys
from agnews.results import SUMMARY_METRICS, JobRecord, RunStatus
from agnews.storage import AgnewsError

log = logging.getLogger(__name__)

# One row per job from load_runs; any further column is another setting the jobs vary (model, optimizer.lr).
RUN_COLUMNS = (
    "sweep",
    "job",
    "searched",  # an optimising sweeper proposed its settings (report.search)
    "status",
    "error",
    "embedding",
    "embedding_dim",
    "embedding_kind",  # the kind's name (agnews.embeddings), as the run recorded it
    "embedding_label",  # how the report names the kind: GloVe
    "pretrained",  # False: trained from scratch, the baseline pretrained kinds are compared with
    "seed",
    *SUMMARY_METRICS,  # test_acc, best_val_acc, ... as summary.csv lists them (results.RUN_METRICS)
    "epoch_time_s",  # mean over the run's epochs
    "val_acc_history",
)

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


def _row(sweep_dir: Path, job: JobRecord, keys: list[str]) -> dict[str, Any]:
    """One run row: its labels, status and the numbers the report uses."""
    embedding = job.config.get("embedding") if isinstance(job.config.get("embedding"), dict) else {}
    kind = job.embedding_kind
    epoch_times = [e["epoch_time_s"] for e in job.history if isinstance(e.get("epoch_time_s"), int | float)]
    seed = job.label("seed")
    return {
        "sweep": str(sweep_dir),
        "job": job.job,
        "searched": proposed_by_sweeper(job),
        "status": job.status,
        "error": job.error,
        "embedding": job.label("embedding") or "unknown",
        "embedding_dim": embedding.get("dim"),
        "embedding_kind": kind.get("name"),
        "embedding_label": kind.get("label"),
        "pretrained": kind.get("pretrained"),
        "seed": seed,
        **{name: job.metrics.get(name) for name in SUMMARY_METRICS},
        "epoch_time_s": statistics.fmean(epoch_times) if epoch_times else None,
        "val_acc_history": [epoch.get("val_acc") for epoch in job.history],
        # "-": a key one merged sweep varies that another never set (+experiment), so those jobs form one
        # group with a printable name instead of NaN, which never equals itself.
        **{key: job.label(key) or "-" for key in keys},
    }


def load_runs(sweep_dirs: Iterable[Path]) -> pd.DataFrame:
    """One row per job of all the sweeps: RUN_COLUMNS, then one column per other setting the jobs vary."""
    unique: dict[Path, Path] = {}  # a sweep given twice is read once
    for sweep_dir in sweep_dirs:
        unique.setdefault(Path(sweep_dir).resolve(), Path(sweep_dir))
    jobs = []
    for sweep_dir in unique.values():
        found = read_sweep(sweep_dir)
        if holds_single_runs(found):
            log.info("%s is not a sweep: it holds %d single runs, reported side by side", sweep_dir, len(found))
        jobs += [(sweep_dir, job) for job in found]
    jobs = _count_runs_once(jobs)
    for sweep_dir, job in jobs:
        if job.status == RunStatus.copy:
            log.warning("%s/%s is not counted: %s", sweep_dir, job.job, job.error)
    unreadable = [job.error for _, job in jobs if job.status == RunStatus.unreadable]
    if unreadable:  # its numbers are unknown: a report without them would be wrong, not just incomplete
        raise AgnewsError("; ".join(unreadable))
    keys = [key for key in swept_keys([job for _, job in jobs]) if key not in RUN_COLUMNS]
    runs = pd.DataFrame([_row(sweep_dir, job, keys) for sweep_dir, job in jobs], columns=[*RUN_COLUMNS, *keys])
    for column in ("embedding_dim", *SUMMARY_METRICS, "epoch_time_s"):
        runs[column] = pd.to_numeric(runs[column], errors="coerce")
    runs["seed"] = pd.to_numeric(runs.seed, errors="coerce").astype("Int64")
    no_acc = runs[(runs.status == RunStatus.completed) & runs.test_acc.isna()]
    for _, run in no_acc.iterrows():
        log.warning("%s/%s is completed but has no test_acc; it is left out of the means", run.sweep, run.job)
    return runs


def _count_runs_once(jobs: list[tuple[Path, JobRecord]]) -> list[tuple[Path, JobRecord]]:
    """A run found in several of the sweeps given (a sweep folder copied, and both reported) counts in the
    first; its other folders become copies (each sweep already marked its own, report.sweep.mark_copies)."""
    first: dict[str, str] = {}
    counted = []
    for sweep_dir, job in jobs:
        if job.run_id and job.status != RunStatus.copy:
            if job.run_id in first:
                job = replace(job, status=RunStatus.copy.value, error=f"copy of {first[job.run_id]} (the same run)")
            else:
                first[job.run_id] = f"{sweep_dir}/{job.job}"
        counted.append((sweep_dir, job))
    return counted


def grouping_keys(runs: pd.DataFrame) -> list[str]:
    """Embedding, then every other setting the runs vary (seeds are what a group averages over)."""
    return ["embedding", *(column for column in runs.columns if column not in RUN_COLUMNS)]


def _natural(value: Any) -> tuple[int, float, str]:
    if pd.isna(value):
        return 2, 0.0, ""
    try:
        return 0, float(value), ""
    except (TypeError, ValueError):
        return 1, 0.0, str(value)


def groups(runs: pd.DataFrame, keys: list[str]) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    """The runs grouped by `keys` (embedding first), in report order: embeddings trained from scratch first
    (the baselines), then each pretrained kind by its label, each by dimension; unrecorded kinds last."""

    def order(item: tuple[tuple[Any, ...], pd.DataFrame]) -> tuple[Any, ...]:
        (name, *others), group = item
        first = group.iloc[0]
        kind = (
            (2, "", 0.0)
            if pd.isna(first.pretrained)
            else (int(bool(first.pretrained)), str(first.embedding_label), _natural(first.embedding_dim)[1])
        )
        return (*kind, str(name), *map(_natural, others))

    return sorted(runs.groupby(keys, dropna=False, sort=False), key=order)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """The pivot: one row per embedding (and per value of any other swept field), accuracies as fractions."""
    keys = grouping_keys(runs)
    runs = runs[runs.status != RunStatus.copy]  # counted in their own folder
    rows = []
    for values, group in groups(runs, keys):
        completed = group[group.status == RunStatus.completed]
        accuracies = completed.test_acc.dropna().tolist()
        mean, sd, half_width = mean_interval(accuracies)
        failed, diverged, pruned = (
            int((group.status == status).sum()) for status in (RunStatus.failed, RunStatus.diverged, RunStatus.pruned)
        )
        rows.append(
            {
                **dict(zip(keys, values, strict=True)),
                **{column: _first(group[column]) for column in ("embedding_kind", "embedding_label", "pretrained")},
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
                "n_unfinished": len(group) - len(completed) - failed - diverged - pruned,
                "n_pruned": pruned,  # stopped by a search's pruner: not a failure, not in the mean
            }
        )
    baseline: dict[tuple[str, ...], float] = {}
    for row in rows:  # in report order: the smallest embedding trained from scratch is the baseline
        if is_pretrained(row) is False:
            baseline.setdefault(_others(row, keys), row["test_acc_mean"])
    for row in rows:
        row["delta_vs_learned"] = row["test_acc_mean"] - baseline.get(_others(row, keys), math.nan)
    return pd.DataFrame(rows)


def is_pretrained(row: Any) -> bool | None:
    """Whether a row's embedding kind is pretrained; None when its runs did not record their kind."""
    value = row["pretrained"]
    return None if value is None or pd.isna(value) else bool(value)


def _first(column: pd.Series) -> Any:
    return column.dropna().iloc[0] if column.notna().any() else None


FREEZE = "embedding.freeze"  # a grouping key when a sweep has pretrained vectors frozen and fine-tuned (practica1)


def block_keys(keys: list[str]) -> list[str]:
    """The grouping keys that are not the embedding or one of its settings: rows that share them are
    compared with each other and with their baseline trained from scratch."""
    return [key for key in keys[1:] if not key.startswith("embedding.")]


def embedding_label(row: Any, keys: list[str]) -> str:
    """The embedding's name, with 'frozen' or 'fine-tuned' where a sweep has pretrained vectors both ways."""
    if FREEZE not in keys or is_pretrained(row) is not True:
        return str(row["embedding"])
    return f"{row['embedding']} {'frozen' if str(row[FREEZE]).lower() == 'true' else 'fine-tuned'}"


def _others(row: Any, keys: list[str]) -> tuple[str, ...]:
    """The row's values of the block keys, as strings (NaN never equals NaN)."""
    return tuple(str(row[key]) for key in block_keys(keys))


def baseline_rows(block: pd.DataFrame) -> pd.DataFrame:
    """The baseline trained from scratch among rows that share their other swept values (at most one row)."""
    return block[block.pretrained.eq(False)].head(1)


def pretrained_kinds(block: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) for each pretrained kind among the rows, in report order."""
    rows = block[block.pretrained.eq(True)]
    return [(label, rows[rows.embedding_label == label]) for label in dict.fromkeys(rows.embedding_label)]


def summary_keys(summary: pd.DataFrame) -> list[str]:
    """The grouping columns of a summary: embedding, then the other swept fields."""
    return list(summary.columns[: summary.columns.get_loc("embedding_kind")])
