"""A sweep's runs as a table, and the table the report shows: test accuracy per embedding (and per
value of any other swept field) over seeds, with mean, spread and a 95 % Student-t interval.

It reads only what runs leave behind (results.json, .hydra/overrides.yaml), so it works on a sweep
copied off a cluster. No torch here.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from agnews.config import NOT_PART_OF_THE_RUN
from agnews.results import RESULTS_FILE, SUMMARY_FILE, RunStatus, find_job_dirs, read_job_overrides, read_run_results
from agnews.storage import AgnewsError

log = logging.getLogger(__name__)

# Row order: these first, then other names alphabetically.
EMBEDDING_ORDER = ("learned", "learned100", "glove50", "glove100", "glove200", "glove300")
BASELINE_KIND = "learned"  # the baseline of each group: its learned-embedding row ("learned" if several)
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
        # A key neither overridden nor in the config (+experiment in another sweep) reads "-", so those
        # jobs form one group with a printable name instead of NaN, which never equals itself.
        row.update({key: job_overrides.get(key, _config_value(config, key)) or "-" for key in extra_keys})
    runs = pd.DataFrame(rows, columns=[*RUN_COLUMNS, *extra_keys])
    for column in ("embedding_dim", "test_acc", "best_val_acc", "epoch_time_s"):
        runs[column] = pd.to_numeric(runs[column], errors="coerce")
    runs["seed"] = pd.to_numeric(runs.seed, errors="coerce").astype("Int64")  # override strings for unfinished jobs
    no_acc = runs[(runs.status == RunStatus.completed) & runs.test_acc.isna()]
    for _, run in no_acc.iterrows():
        log.warning("%s/%s is completed but has no test_acc; it is left out of the means", run.sweep, run.job)
    return runs


def swept_keys(runs: pd.DataFrame) -> list[str]:
    """Fields besides embedding and seed whose value differs between jobs: each value gets its own rows.
    Settings that do not change results (trainer.num_threads, ...) never split runs."""
    overridden = (column for column in runs.columns if column not in RUN_COLUMNS and column not in NOT_PART_OF_THE_RUN)
    candidates = ["model", "optimizer", *overridden]
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
    baseline: dict[tuple[str, ...], float] = {}
    for row in rows:  # rows are in EMBEDDING_ORDER, so "learned" wins over other learned embeddings
        if row["embedding_kind"] == BASELINE_KIND:
            baseline.setdefault(_others(row, keys), row["test_acc_mean"])
    for row in rows:
        row["delta_vs_learned"] = row["test_acc_mean"] - baseline.get(_others(row, keys), math.nan)
    return pd.DataFrame(rows)


def _others(row: Any, keys: list[str]) -> tuple[str, ...]:
    """The row's values of the swept fields besides embedding, as strings (NaN never equals NaN)."""
    return tuple(str(row[key]) for key in keys[1:])


def baseline_rows(block: pd.DataFrame) -> pd.DataFrame:
    """The learned-embedding baseline among rows that share their other swept values (at most one row)."""
    return block[block.embedding_kind == BASELINE_KIND].head(1)


def summary_keys(summary: pd.DataFrame) -> list[str]:
    """The grouping columns of a summary: embedding, then the other swept fields."""
    return list(summary.columns[: summary.columns.get_loc("embedding_kind")])
