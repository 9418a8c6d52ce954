"""How much faster is the project's pipeline than the course notebook's (re-created in agnews.bench.notebook)?
Both train on the same texts with the same model sizes, batch size and learning rate; blocks alternate
(reference, project, reference, ...) so machine noise hits both, and the table reports medians.

    python -m agnews.bench data.dir=/path/to/ag_news embedding=glove50 [--json] [--batches N] [--rounds R]
    python -m agnews.bench embedding=glove300 --synthetic-glove   # a made-up 400k-row GloVe file, no download
    python -m agnews.bench --gpu-check data.dir=/path/to/ag_news  # on a CUDA machine: see agnews.bench.gpu_check

The project side calls the real `prepare_data`, `LSTMClassifier`, `train_one_epoch` and `evaluate`, so it
measures whatever they do today. The reference side re-creates the notebook: a DataLoader whose collate_fn
tokenises every text on every epoch and pads with `pad_sequence`; for GloVe it looks every token's vector
up in Python (torchtext's `get_vecs_by_tokens`) and feeds [B, T, E] to an LSTM without nn.Embedding.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from agnews.bench.notebook import (
    NotebookGloVe,
    NotebookLSTM,
    check_same_texts,
    notebook_collate,
    notebook_evaluate,
    notebook_train,
    raw_pairs,
)
from agnews.bench.synthetic_glove import write_synthetic_glove
from agnews.config import AppConfig, Pooling, compose_config
from agnews.data.ag_news import CLASS_NAMES
from agnews.data.batches import batch_indices, equal_length_batches
from agnews.data.glove import load_glove
from agnews.data.prepare import prepare_data
from agnews.devices import autocast_dtype, select_device
from agnews.embeddings import GLOVE
from agnews.experiment import prepare_embedding
from agnews.model import build_model
from agnews.storage import AgnewsError, resolve_cache_dir
from agnews.tables import text_table
from agnews.train import (
    build_optimizer,
    can_use_sparse_embedding,
    clip_gradients,
    evaluate,
    make_grad_scaler,
    prepared_batches,
    train_one_epoch,
)

log = logging.getLogger(__name__)

REFERENCE = "reference (notebook re-creation)"
PROJECT = "project"
LIMIT = "limit (bare loop over batches built before timing)"


def run_bench(config: AppConfig, batches: int | None, rounds: int, glove_rows: int | None) -> dict:
    """Medians of `rounds` interleaved blocks per pipeline. glove_rows: use a synthetic GloVe file that long."""
    device = select_device(config.trainer.device)
    torch.manual_seed(config.seed)
    cache_dir = resolve_cache_dir(config.data.cache_dir)
    data = prepare_data(config.data, cache_dir, progress=False)
    # The same texts for both: the first n of the project's train split (and of test), as raw pairs too.
    n = len(data.train) if batches is None else min(len(data.train), batches * config.trainer.batch_size)
    train, test = data.train.subset(np.arange(n)), data.test.subset(np.arange(min(n, len(data.test))))
    train_pairs, test_pairs = raw_pairs(data, len(train), len(test))
    check_same_texts(train_pairs, train, data.vocab)
    check_same_texts(test_pairs, test, data.vocab)
    with tempfile.TemporaryDirectory(prefix="agnews-bench-", ignore_cleanup_errors=True) as tmp:
        embedding = config.embedding
        if glove_rows is not None:  # its cache (480 MB at 300 d) goes to the temp dir, not the user's cache
            path = write_synthetic_glove(data.vocab.itos[2:], embedding.dim, glove_rows, Path(tmp))
            embedding, cache_dir = dataclasses.replace(embedding, path=str(path)), Path(tmp)
        matrix = prepare_embedding(embedding, data.vocab, cache_dir, config.seed, progress=False)
        glove = None
        if embedding.kind == GLOVE.name:  # the same vectors, from load_glove's cache by now
            glove = NotebookGloVe(load_glove(embedding.dim, cache_dir, embedding.path, embedding.urls, False))

    sizes = dict(
        embedding_dim=embedding.dim,
        hidden_size=config.model.hidden_size,
        num_layers=config.model.num_layers,
        bidirectional=config.model.bidirectional,
        dropout=config.model.dropout,
    )
    # The project's model exactly as a run builds it (sparse embedding gradients with plain SGD included).
    pretrained = None if matrix is None else torch.from_numpy(matrix.weights)
    sparse = can_use_sparse_embedding(config.optimizer)
    project = build_model(config.model, embedding, len(data.vocab), len(CLASS_NAMES), pretrained, sparse).to(device)
    project_optimizer = build_optimizer(project, config.optimizer)
    bare = copy.deepcopy(project)
    bare_optimizer = build_optimizer(bare, config.optimizer)
    bare_train_batches = prepared_batches(
        train, batch_indices(train.lengths, config.trainer.batch_size, np.random.default_rng(config.seed), True), device
    )
    bare_test_batches = prepared_batches(test, equal_length_batches(test.lengths), device)
    reference = NotebookLSTM(len(data.vocab) if glove is None else None, num_classes=len(CLASS_NAMES), **sizes)
    reference = reference.to(device)
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=config.optimizer.lr)
    if config.optimizer.name.value != "sgd" or config.model.pooling is not Pooling.last:
        log.warning(
            "The reference keeps the notebook's SGD and last-step pooling; the project uses %s and %s",
            config.optimizer.name.value,
            config.model.pooling.value,
        )

    collate = functools.partial(notebook_collate, vocab=data.vocab, glove=glove)
    batch_size, clip, generator = config.trainer.batch_size, config.optimizer.grad_clip, torch.Generator()
    generator.manual_seed(config.seed)  # the notebook's shuffle, repeatable
    train_loader = DataLoader(train_pairs, batch_size, shuffle=True, collate_fn=collate, generator=generator)
    test_loader = DataLoader(test_pairs, batch_size, shuffle=False, collate_fn=collate)
    rng = np.random.default_rng(config.seed)
    blocks = {  # pipeline: (train one epoch, evaluate)
        REFERENCE: (
            lambda: notebook_train(reference, train_loader, reference_optimizer, clip, device),
            lambda: notebook_evaluate(reference, test_loader, device),
        ),
        PROJECT: (
            lambda: train_one_epoch(project, train, project_optimizer, config.trainer, clip, device, rng),
            lambda: evaluate(project, test, device),
        ),
        LIMIT: (
            lambda: bare_train(bare, bare_optimizer, bare_train_batches, config.trainer, clip, device),
            lambda: bare_evaluate(bare, bare_test_batches, config.trainer, device),
        ),
    }
    times = time_rounds(blocks, rounds, device)

    pipelines = {
        name: {
            "train_samples_per_s": len(train) / statistics.median(measured["train_s"]),
            "eval_samples_per_s": len(test) / statistics.median(measured["eval_s"]),
            **measured,
        }
        for name, measured in times.items()
    }
    ratio = {
        what: pipelines[PROJECT][f"{what}_samples_per_s"] / pipelines[REFERENCE][f"{what}_samples_per_s"]
        for what in ("train", "eval")
    }
    of_limit = {
        what: pipelines[PROJECT][f"{what}_samples_per_s"] / pipelines[LIMIT][f"{what}_samples_per_s"]
        for what in ("train", "eval")
    }
    # ru_maxrss: KiB on Linux, bytes on macOS. Process-wide: every pipeline, the data and the GloVe table.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    model, optimizer = config.model, config.optimizer
    return {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "embedding": embedding.name,
        "embedding_dim": embedding.dim,
        "synthetic_glove_rows": glove_rows,
        "model": model.name,
        "hidden_size": model.hidden_size,
        "num_layers": model.num_layers,
        "pooling": model.pooling.value,
        "batch_size": batch_size,
        "optimizer": optimizer.name.value,
        "lr": optimizer.lr,
        "grad_clip": clip,
        "train_texts": len(train),
        "eval_texts": len(test),
        "rounds": rounds,
        "pipelines": pipelines,
        "ratio": ratio,
        "project_of_limit": of_limit,
        "process_peak_rss_mib": rss,
    }


def bare_train(model, optimizer, batches, trainer, grad_clip: float | None, device: torch.device) -> None:
    """The limit: the project's training step (same model, optimizer, precision, clipping) with nothing around
    it, over batches built before timing started: no batching, no bookkeeping, no progress bar."""
    model.train()
    dtype = autocast_dtype(trainer.precision, device)
    scaler = make_grad_scaler(trainer, device)
    for token_ids, lengths, labels in batches:
        token_ids, labels = token_ids.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(token_ids, lengths)
        scaler.scale(torch.nn.functional.cross_entropy(logits.float(), labels)).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)
            clip_gradients(model, grad_clip)
        scaler.step(optimizer)
        scaler.update()


@torch.no_grad()
def bare_evaluate(model, batches, trainer, device: torch.device) -> None:
    model.eval()
    dtype = autocast_dtype(trainer.precision, device)
    for token_ids, lengths, _ in batches:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            model(token_ids.to(device, non_blocking=True), lengths)


def time_rounds(blocks: dict, rounds: int, device: torch.device) -> dict[str, dict]:
    """Run each pipeline in turn, round after round: bursts of machine noise then hit all of them."""
    cuda = device.type == "cuda"
    times = {name: {"train_s": [], "eval_s": [], "peak_memory_mib": None, "resident_mib": None} for name in blocks}
    for round_number in range(1, rounds + 1):
        for name, (train_block, eval_block) in blocks.items():
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)  # so each pipeline's peak is its own
                # Every model stays on the device throughout; say how much of the peak they already hold.
                times[name]["resident_mib"] = torch.cuda.memory_allocated(device) / 2**20
            times[name]["train_s"].append(timed(train_block, device))
            times[name]["eval_s"].append(timed(eval_block, device))
            if cuda:
                peak = torch.cuda.max_memory_allocated(device) / 2**20
                times[name]["peak_memory_mib"] = max(peak, times[name]["peak_memory_mib"] or 0.0)
            log.info(
                "round %d/%d, %s: train %.2f s, eval %.2f s",
                round_number,
                rounds,
                name,
                times[name]["train_s"][-1],
                times[name]["eval_s"][-1],
            )
    return times


def timed(block, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    block()
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # kernels still queued belong to this block
    return time.perf_counter() - started


def format_table(r: dict) -> str:
    cuda = r["device"].startswith("cuda")
    rows = [("pipeline", "train samples/s", "eval samples/s", "peak memory" if cuda else "")]
    for name, p in r["pipelines"].items():
        memory = f"{p['peak_memory_mib']:,.0f} MiB ({p['resident_mib']:,.0f} resident: all models)" if cuda else ""
        rows.append((name, f"{p['train_samples_per_s']:,.0f}", f"{p['eval_samples_per_s']:,.0f}", memory))
    rows.append(("ratio project/reference", f"{r['ratio']['train']:.2f}x", f"{r['ratio']['eval']:.2f}x", ""))
    of_limit = r["project_of_limit"]
    rows.append(("project / limit", f"{100 * of_limit['train']:.1f} %", f"{100 * of_limit['eval']:.1f} %", ""))
    synthetic = f", synthetic {r['synthetic_glove_rows']:,}-row GloVe" if r["synthetic_glove_rows"] else ""
    memory = "peak memory: torch.cuda.max_memory_allocated per pipeline, reset between; " if cuda else ""
    return "\n".join(
        [
            f"device {r['device']} (torch threads: {r['torch_threads']}), torch {r['torch_version']}, embedding "
            f"{r['embedding']} ({r['embedding_dim']} d{synthetic}), model {r['model']} ({r['num_layers']} x "
            f"{r['hidden_size']}, pooling {r['pooling']}), batch {r['batch_size']}, {r['optimizer']} lr {r['lr']:g}",
            f"{r['train_texts']:,} train / {r['eval_texts']:,} eval texts, {r['rounds']} interleaved rounds, medians",
            "",
            text_table(rows),
            "",
            f"{memory}peak RSS (process-wide: every pipeline and all data): {r['process_peak_rss_mib']:,.0f} MiB",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agnews.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. embedding=glove50 model=small")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--batches", type=int, default=100, help="train batches per block; 0 = all texts")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved blocks per pipeline")
    parser.add_argument("--synthetic-glove", action="store_true", help="random GloVe file of the config's dim")
    parser.add_argument("--glove-rows", type=int, default=400_000, help="rows of the synthetic GloVe file")
    parser.add_argument("--gpu-check", action="store_true", help="measure what a CUDA machine does (a few minutes)")
    args = parser.parse_intermixed_args(argv)
    if args.batches < 0 or args.rounds < 1 or args.glove_rows < 1:
        parser.error("--batches must be >= 0, --rounds and --glove-rows >= 1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[%(asctime)s][%(name)s] %(message)s")

    try:
        config = compose_config(args.overrides)
    except AgnewsError as error:
        print(f"Error in the overrides: {error}", file=sys.stderr)
        return 2
    if args.gpu_check:
        return _gpu_check(args)
    if args.synthetic_glove and config.embedding.kind != GLOVE.name:
        parser.error("--synthetic-glove needs a GloVe embedding, e.g. embedding=glove300")
    try:
        result = run_bench(config, args.batches or None, args.rounds, args.glove_rows if args.synthetic_glove else None)
    except AgnewsError as error:
        log.error("%s", error)
        return 1
    print(json.dumps(result) if args.json else format_table(result))
    return 0


def _gpu_check(args: argparse.Namespace) -> int:
    from agnews.bench.gpu_check import format_report, gpu_check

    try:
        result = gpu_check(args.overrides, args.glove_rows)
    except AgnewsError as error:
        log.error("%s", error)
        return 1
    if result is None:
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        print(
            f"No CUDA device here (torch {torch.__version__}, {built}): the GPU check measures nothing on this "
            "machine. trainer.device=cpu runs the same measurements on the CPU as a dry run."
        )
        return 0
    print(json.dumps(result) if args.json else format_report(result))
    return 0
