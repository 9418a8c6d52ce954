"""What a CUDA machine does with agnews, measured in a few minutes: `python -m agnews.bench --gpu-check
data.dir=PATH`. Real runs (run_experiment into a temporary folder) of the notebook model and the BiLSTM
recipe on the given data, the notebook model on a synthetic 400,000-row GloVe 300d file, and the recipe
in float16 and float32 for 2 epochs each; epoch times, samples/s, accuracies and peak GPU memory.

On a machine without CUDA it says so and measures nothing (exit 0); `trainer.device=cpu` runs the same
measurements on the CPU, as a dry run of the check itself.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from agnews.bench.synthetic_glove import write_synthetic_glove
from agnews.config import AppConfig, compose_config
from agnews.data.prepare import prepare_data
from agnews.devices import select_device
from agnews.experiment import run_experiment
from agnews.results import read_run_results
from agnews.storage import AgnewsError, resolve_cache_dir
from agnews.tables import text_table

log = logging.getLogger(__name__)

RECIPE = "+experiment=bilstm_glove50"
# (what, overrides, epochs): 7 epochs in all, the recipe's float16 run doubling as its epoch-time figure.
MEASUREMENTS = (
    ("notebook model (small, learned)", [], 2),
    ("recipe bilstm_glove50, fp16", [RECIPE, "trainer.precision=fp16"], 2),
    ("recipe bilstm_glove50, fp32", [RECIPE, "trainer.precision=fp32"], 2),
    ("notebook model, glove300 synthetic", ["embedding=glove300"], 1),
)


def gpu_check(overrides: list[str], glove_rows: int = 400_000) -> dict[str, Any] | None:
    """The measurements as a dict, or None when there is no CUDA device and the overrides do not name one."""
    base = compose_config(overrides)
    if base.trainer.device == "auto" and not torch.cuda.is_available():
        return None
    device = select_device(base.trainer.device)
    cuda = device.type == "cuda"
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="agnews-gpu-check-") as tmp:
        tmp = Path(tmp)
        synthetic = None
        for number, (what, extra, epochs) in enumerate(MEASUREMENTS):
            config = compose_config([*overrides, *extra, f"trainer.epochs={epochs}", "trainer.patience=null"])
            if config.embedding.dim == 300:
                # Its GloVe cache (keyed by the file's path, which is temporary) goes with the temporary folder,
                # or every check would leave a 458 MiB cache entry for a file that no longer exists.
                data = dataclasses.replace(config.data, cache_dir=str(tmp / "cache"))
                config = dataclasses.replace(config, data=data)
                synthetic = synthetic or _synthetic_glove(config, tmp, glove_rows)
                config = dataclasses.replace(config, embedding=dataclasses.replace(config.embedding, path=synthetic))
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            try:
                results = run_experiment(config, tmp / str(number))
            except AgnewsError as error:  # e.g. fp16 on a CPU dry run: the row says so, the others still run
                log.error("%s: %s", what, error)
                results = read_run_results(tmp / str(number)) or {"status": "failed", "history": [], "metrics": {}}
            peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
            rows.append(_row(what, config, results, peak))
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch_version": torch.__version__,
        "rows": rows,
        "total_s": time.perf_counter() - started,
    }


def _synthetic_glove(config: AppConfig, folder: Path, rows: int) -> str:
    vocab = prepare_data(config.data, resolve_cache_dir(config.data.cache_dir), progress=False).vocab
    return str(write_synthetic_glove(vocab.itos[2:], config.embedding.dim, rows, folder))


def _row(what: str, config: AppConfig, results: dict[str, Any], peak_mib: float | None) -> dict[str, Any]:
    history = results["history"]
    metrics = results["metrics"]
    return {
        "what": what,
        "status": results["status"],
        "precision": config.trainer.precision.value,
        "epochs": len(history),
        "epoch_time_s": statistics.median(epoch["epoch_time_s"] for epoch in history) if history else None,
        "samples_per_s": statistics.median(epoch["samples_per_s"] for epoch in history) if history else None,
        "best_val_acc": metrics.get("best_val_acc"),
        "test_acc": metrics.get("test_acc"),
        "peak_gpu_memory_mib": peak_mib,
    }


def format_report(result: dict[str, Any]) -> str:
    def number(value: float | None, template: str, scale: float = 1.0) -> str:
        return "" if value is None else template.format(scale * value)

    rows = [("measurement", "precision", "epochs", "epoch (s)", "samples/s", "best val acc", "test acc", "peak GPU")]
    for row in result["rows"]:
        rows.append(
            (
                row["what"] if row["status"] == "completed" else f"{row['what']} ({row['status']})",
                row["precision"],
                str(row["epochs"]),
                number(row["epoch_time_s"], "{:.2f}"),
                number(row["samples_per_s"], "{:,.0f}"),
                number(row["best_val_acc"], "{:.2f} %", 100),
                number(row["test_acc"], "{:.2f} %", 100),
                number(row["peak_gpu_memory_mib"], "{:,.0f} MiB"),
            )
        )
    header = f"{result['device_name']} ({result['device']}), torch {result['torch_version']}"
    footer = f"total {result['total_s']:.0f} s; epoch time and samples/s: medians over each run's epochs"
    return "\n".join([header, "", text_table(rows, right=range(2, 8)), "", footer])
