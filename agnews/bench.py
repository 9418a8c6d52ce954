"""How much faster is the project's pipeline than the course notebook's? Both train on the same texts with
the same model sizes, batch size and learning rate; blocks alternate (reference, project, reference, ...)
so machine noise hits both, and the table reports medians.

    python -m agnews.bench data.dir=/path/to/ag_news embedding=glove50 [--json] [--batches N] [--rounds R]
    python -m agnews.bench embedding=glove300 --synthetic-glove   # a made-up 400k-row GloVe file, no download

The project side calls the real `prepare_data`, `LSTMClassifier`, `train_one_epoch` and `evaluate`, so it
measures whatever they do today. The reference side re-creates the notebook: a DataLoader whose collate_fn
tokenises every text on every epoch and pads with `pad_sequence`; for GloVe it looks every token's vector
up in Python (torchtext's `get_vecs_by_tokens`) and feeds [B, T, E] to an LSTM without nn.Embedding.
"""

from __future__ import annotations

import argparse
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
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

from agnews.batches import stratified_split
from agnews.config import AppConfig, EmbeddingKind, Pooling, register_configs
from agnews.data import CLASS_NAMES, load_ag_news
from agnews.embeddings import WordVectors, load_glove
from agnews.experiment import prepare_data, prepare_embedding
from agnews.model import build_model
from agnews.storage import AgnewsError, resolve_cache_dir
from agnews.text import PAD_INDEX, UNK_INDEX, Vocab, basic_english
from agnews.train import build_optimizer, can_use_sparse_embedding, evaluate, select_device, train_one_epoch

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
REFERENCE = "reference (notebook re-creation)"
PROJECT = "project"


def compose_config(overrides: list[str]) -> AppConfig:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    register_configs()
    # No progress bars by default: they would interleave with the log; an override can turn them back on.
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose("config", overrides=["trainer.progress_bar=false", *overrides]))


def write_synthetic_glove(words: list[str], dim: int, rows: int, folder: Path, seed: int = 0) -> Path:
    """A GloVe-format text file of `words` plus made-up words up to `rows` lines, with random vectors."""
    # Upper case: basic_english lowercases, so made-up words never shadow a vocab word.
    words = words + [f"SYN{i}" for i in range(max(0, rows - len(words)))]
    # Formatting 120M floats one by one takes minutes; picking from 2,001 pre-formatted values takes seconds.
    table = [f"{value / 1000:.3f}" for value in range(-1000, 1001)]
    rng = np.random.default_rng(seed)
    path = folder / f"synthetic.{dim}d.txt"
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for start in range(0, len(words), 8192):
            chunk = words[start : start + 8192]
            picks = rng.integers(0, len(table), size=(len(chunk), dim)).tolist()  # [chunk, dim]
            handle.write(
                "".join(f"{w} {' '.join(table[i] for i in row)}\n" for w, row in zip(chunk, picks, strict=True))
            )
    log.info("Wrote a synthetic GloVe file: %d words x %d d at %s", len(words), dim, path)
    return path


# --- the reference: the notebook's pipeline, re-created ------------------------------------------------


class NotebookGloVe:
    """torchtext's `Vectors` lookup: per token a dict lookup and a vector, unknown words a new zero vector."""

    def __init__(self, glove: WordVectors):
        self.stoi = glove.index
        self.vectors = torch.tensor(np.asarray(glove.vectors))  # [400k, E], in memory as torchtext held it
        self.dim = glove.dim

    def __getitem__(self, token: str) -> torch.Tensor:
        if token in self.stoi:
            return self.vectors[self.stoi[token]]
        return torch.zeros(self.dim)  # unk_init=torch.Tensor.zero_

    def get_vecs_by_tokens(self, tokens: list[str]) -> torch.Tensor:
        return torch.stack([self[token] for token in tokens])  # [L, E]


def notebook_collate(batch, vocab: Vocab, glove: NotebookGloVe | None = None):
    """The notebook's collate_fn, run every batch of every epoch: (labels [B], ids [B, T] or vectors [B, T, E])."""
    labels, texts = [], []
    for label, text in batch:
        labels.append(label)
        tokens = basic_english(text)
        if glove is None:
            texts.append(torch.tensor(vocab.lookup_indices(tokens), dtype=torch.int64))
        else:  # an empty text would make torch.stack fail; give it one unknown (zero) vector
            texts.append(glove.get_vecs_by_tokens(tokens or ["<unk>"]))
    # Pads to the longest text of this (unsorted) batch. GloVe pads with zero vectors, ids with <pad>.
    padded = pad_sequence(texts, batch_first=True, padding_value=PAD_INDEX if glove is None else 0.0)
    return torch.tensor(labels, dtype=torch.int64), padded


class NotebookLSTM(nn.Module):
    """[nn.Embedding ->] LSTM -> Linear on lstm_out[:, -1, :]. vocab_size=None: the notebook's GloVe model,
    which takes [B, T, E] vectors and so never fine-tunes them."""

    def __init__(self, vocab_size: int | None, embedding_dim: int, hidden_size: int, num_layers: int,
                 bidirectional: bool, dropout: float, num_classes: int):  # fmt: skip
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim) if vocab_size else None
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                            dropout=dropout if num_layers > 1 else 0.0, batch_first=True)  # fmt: skip
        self.fc = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(inputs) if self.embedding is not None else inputs  # [B, T, E]
        outputs, _ = self.lstm(embedded)  # [B, T, D*H]
        return self.fc(outputs[:, -1, :])  # [B, C]


def notebook_train(model, loader, optimizer, grad_clip: float | None, device: torch.device) -> None:
    model.train()
    correct = 0
    for labels, inputs in loader:
        labels, inputs = labels.to(device), inputs.to(device)
        optimizer.zero_grad()
        logits = model(inputs)
        loss = nn.functional.cross_entropy(logits, labels)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        correct += (logits.argmax(1) == labels).sum().item()  # the notebook's per-batch accuracy (a sync)


@torch.no_grad()
def notebook_evaluate(model, loader, device: torch.device) -> None:
    model.eval()
    correct = 0
    for labels, inputs in loader:
        labels, inputs = labels.to(device), inputs.to(device)
        correct += (model(inputs).argmax(1) == labels).sum().item()


# --- the bench -----------------------------------------------------------------------------------------


def run_bench(config: AppConfig, batches: int | None, rounds: int, glove_rows: int | None) -> dict:
    """Medians of `rounds` interleaved blocks per pipeline. glove_rows: use a synthetic GloVe file that long."""
    device = select_device(config.trainer.device)
    torch.manual_seed(config.seed)
    data = prepare_data(config.data, progress=False)
    # The same texts for both: the first n of the project's train split (and of test), as raw pairs too.
    n = len(data.train) if batches is None else min(len(data.train), batches * config.trainer.batch_size)
    train, test = data.train.subset(np.arange(n)), data.test.subset(np.arange(min(n, len(data.test))))
    train_pairs, test_pairs = raw_pairs(config, len(train), len(test))
    check_same_texts(train_pairs, train, data.vocab)
    check_same_texts(test_pairs, test, data.vocab)
    with tempfile.TemporaryDirectory(prefix="agnews-bench-", ignore_cleanup_errors=True) as tmp:
        embedding, cache_dir = config.embedding, resolve_cache_dir(config.data.cache_dir)
        if glove_rows is not None:  # its cache (480 MB at 300 d) goes to the temp dir, not the user's cache
            path = write_synthetic_glove(data.vocab.itos[2:], embedding.dim, glove_rows, Path(tmp))
            embedding, cache_dir = dataclasses.replace(embedding, path=str(path)), Path(tmp)
        matrix = prepare_embedding(embedding, data.vocab, cache_dir, config.seed, progress=False)
        glove = None
        if embedding.kind is EmbeddingKind.glove:  # the same vectors, from load_glove's cache by now
            glove = NotebookGloVe(load_glove(embedding.dim, cache_dir, embedding.path, embedding.urls, False))

    sizes = dict(embedding_dim=embedding.dim, hidden_size=config.model.hidden_size, num_layers=config.model.num_layers,
                 bidirectional=config.model.bidirectional, dropout=config.model.dropout)  # fmt: skip
    # The project's model exactly as a run builds it (sparse embedding gradients with plain SGD included).
    pretrained = None if matrix is None else torch.from_numpy(matrix.weights)
    sparse = can_use_sparse_embedding(config.optimizer)
    project = build_model(config.model, embedding, len(data.vocab), len(CLASS_NAMES), pretrained, sparse).to(device)
    project_optimizer = build_optimizer(project, config.optimizer)
    reference = NotebookLSTM(len(data.vocab) if glove is None else None, num_classes=len(CLASS_NAMES), **sizes)
    reference = reference.to(device)
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=config.optimizer.lr)
    if config.optimizer.name.value != "sgd" or config.model.pooling is not Pooling.last:
        log.warning("The reference keeps the notebook's SGD and last-step pooling; the project uses %s and %s",
                    config.optimizer.name.value, config.model.pooling.value)  # fmt: skip

    collate = functools.partial(notebook_collate, vocab=data.vocab, glove=glove)
    batch_size, clip, generator = config.trainer.batch_size, config.optimizer.grad_clip, torch.Generator()
    generator.manual_seed(config.seed)  # the notebook's shuffle, repeatable
    train_loader = DataLoader(train_pairs, batch_size, shuffle=True, collate_fn=collate, generator=generator)
    test_loader = DataLoader(test_pairs, batch_size, shuffle=False, collate_fn=collate)
    rng = np.random.default_rng(config.seed)
    blocks = {  # pipeline: (train one epoch, evaluate)
        REFERENCE: (lambda: notebook_train(reference, train_loader, reference_optimizer, clip, device),
                    lambda: notebook_evaluate(reference, test_loader, device)),
        PROJECT: (lambda: train_one_epoch(project, train, project_optimizer, config.trainer, clip, device, rng),
                  lambda: evaluate(project, test, batch_size, device, config.trainer.bucket_by_length)),
    }  # fmt: skip
    times = time_rounds(blocks, rounds, device)

    pipelines = {
        name: {"train_samples_per_s": len(train) / statistics.median(measured["train_s"]),
               "eval_samples_per_s": len(test) / statistics.median(measured["eval_s"]), **measured}
        for name, measured in times.items()
    }  # fmt: skip
    ratio = {what: pipelines[PROJECT][f"{what}_samples_per_s"] / pipelines[REFERENCE][f"{what}_samples_per_s"]
             for what in ("train", "eval")}  # fmt: skip
    # ru_maxrss: KiB on Linux, bytes on macOS. Process-wide: both pipelines, the data and the GloVe table.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    model, optimizer = config.model, config.optimizer
    return {
        "device": str(device), "torch_threads": torch.get_num_threads(), "torch_version": torch.__version__,
        "embedding": embedding.name, "embedding_dim": embedding.dim, "synthetic_glove_rows": glove_rows,
        "model": model.name, "hidden_size": model.hidden_size, "num_layers": model.num_layers,
        "pooling": model.pooling.value, "batch_size": batch_size, "optimizer": optimizer.name.value,
        "lr": optimizer.lr, "grad_clip": clip, "train_texts": len(train), "eval_texts": len(test), "rounds": rounds,
        "pipelines": pipelines, "ratio": ratio, "process_peak_rss_mib": rss,
    }  # fmt: skip


def time_rounds(blocks: dict, rounds: int, device: torch.device) -> dict[str, dict]:
    """Run reference, project, reference, project, ...: bursts of machine noise then hit both pipelines."""
    cuda = device.type == "cuda"
    times = {name: {"train_s": [], "eval_s": [], "peak_memory_mib": None, "resident_mib": None} for name in blocks}
    for round_number in range(1, rounds + 1):
        for name, (train_block, eval_block) in blocks.items():
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)  # so each pipeline's peak is its own
                # Both models stay on the device throughout; say how much of the peak they already hold.
                times[name]["resident_mib"] = torch.cuda.memory_allocated(device) / 2**20
            times[name]["train_s"].append(timed(train_block, device))
            times[name]["eval_s"].append(timed(eval_block, device))
            if cuda:
                peak = torch.cuda.max_memory_allocated(device) / 2**20
                times[name]["peak_memory_mib"] = max(peak, times[name]["peak_memory_mib"] or 0.0)
            log.info("round %d/%d, %s: train %.2f s, eval %.2f s", round_number, rounds, name,
                     times[name]["train_s"][-1], times[name]["eval_s"][-1])  # fmt: skip
    return times


def raw_pairs(config: AppConfig, n_train: int, n_test: int) -> tuple[list, list]:
    """(label, text) pairs of the first texts of the project's train split, and of its test split."""
    splits = load_ag_news(config.data.dir, resolve_cache_dir(config.data.cache_dir), config.data.url, progress=False)
    # prepare_data holds out validation texts this way; check_same_texts catches it if that ever changes.
    train_indices, _ = stratified_split(splits["train"].labels, config.data.val_fraction, config.data.split_seed)
    train, test = splits["train"], splits["test"]
    train_pairs = [(int(train.labels[i]), train.texts[i]) for i in train_indices[:n_train]]
    return train_pairs, [(int(test.labels[i]), test.texts[i]) for i in range(n_test)]


def check_same_texts(pairs: list, encoded, vocab: Vocab) -> None:
    for index, (label, text) in enumerate(pairs):
        ids = vocab.lookup_indices(basic_english(text)) or [UNK_INDEX]
        if label != encoded.labels[index] or ids != encoded.ids_of(index).tolist():
            raise AgnewsError(f"bench: text {index} differs between the pipelines; prepare_data changed its split?")


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
        memory = f"{p['peak_memory_mib']:,.0f} MiB ({p['resident_mib']:,.0f} resident: both models)" if cuda else ""
        rows.append((name, f"{p['train_samples_per_s']:,.0f}", f"{p['eval_samples_per_s']:,.0f}", memory))
    rows.append(("ratio project/reference", f"{r['ratio']['train']:.2f}x", f"{r['ratio']['eval']:.2f}x", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    synthetic = f", synthetic {r['synthetic_glove_rows']:,}-row GloVe" if r["synthetic_glove_rows"] else ""
    memory = "peak memory: torch.cuda.max_memory_allocated per pipeline, reset between; " if cuda else ""
    return "\n".join([
        f"device {r['device']} (torch threads: {r['torch_threads']}), torch {r['torch_version']}, embedding "
        f"{r['embedding']} ({r['embedding_dim']} d{synthetic}), model {r['model']} ({r['num_layers']} x "
        f"{r['hidden_size']}, pooling {r['pooling']}), batch {r['batch_size']}, {r['optimizer']} lr {r['lr']:g}",
        f"{r['train_texts']:,} train / {r['eval_texts']:,} eval texts, {r['rounds']} interleaved rounds, medians",
        "", *lines, "",
        f"{memory}peak RSS (process-wide, both pipelines and all data): {r['process_peak_rss_mib']:,.0f} MiB",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agnews.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. embedding=glove50 model=small")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--batches", type=int, default=100, help="train batches per block; 0 = all texts")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved blocks per pipeline")
    parser.add_argument("--synthetic-glove", action="store_true", help="random GloVe file of the config's dim")
    parser.add_argument("--glove-rows", type=int, default=400_000, help="rows of the synthetic GloVe file")
    args = parser.parse_intermixed_args(argv)
    if args.batches < 0 or args.rounds < 1 or args.glove_rows < 1:
        parser.error("--batches must be >= 0, --rounds and --glove-rows >= 1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[%(asctime)s][%(name)s] %(message)s")

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        config = compose_config(args.overrides)
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        print(f"Error in the overrides: {error}", file=sys.stderr)
        return 2
    if args.synthetic_glove and config.embedding.kind is not EmbeddingKind.glove:
        parser.error("--synthetic-glove needs a GloVe embedding, e.g. embedding=glove300")
    try:
        result = run_bench(config, args.batches or None, args.rounds, args.glove_rows if args.synthetic_glove else None)
    except AgnewsError as error:
        log.error("%s", error)
        return 1
    print(json.dumps(result) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
