"""Classify new texts with a finished run: `python -m agnews.predict RUN_DIR "Some headline"`.

Needs only the run directory's `model.pt` (config, class names, best-validation weights, GloVe rows
included) and `vocab.txt`; neither the training data nor the GloVe files. From a notebook:
`load_predictor(run_dir).predict(texts)` gives the class probabilities, one row per text.

A text's prediction never depends on the other texts it is given with: texts run in batches of equal
length, so none is padded (the notebook's `pooling=last` reads the LSTM output after a batch's padding),
exactly as a run's evaluation batches them: `--file test.csv` measures the run's own `test_acc`.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from agnews import checkpoint
from agnews.config import AppConfig, ConfigError, config_from_record
from agnews.data.ag_news import read_split
from agnews.data.batches import Batches, equal_length_batches
from agnews.data.text import Vocab, decode_utf8, encode, tokenize_all
from agnews.devices import select_device
from agnews.locks import CLAIM_FILE
from agnews.model import LSTMClassifier, build_model
from agnews.results import MODEL_FILE, RESULTS_FILE, RUN_FILES, VOCAB_FILE, read_run_results
from agnews.storage import AgnewsError, atomic_write_text, create_text
from agnews.tables import text_table

log = logging.getLogger(__name__)

# What to do about a run directory without model.pt, by its results.json status.
_NO_MODEL_HINTS = {
    "running": "the run is still going, or was killed: wait for it to finish, or continue it with resume=true",
    "failed": "the run failed before saving a model: fix the error and rerun it",
    "diverged": "the run diverged before saving a model: rerun it with a lower optimizer.lr",
    "completed": "model.pt was deleted or the run predates model files: rerun it",
}


@dataclass
class Predictor:
    model: LSTMClassifier  # in eval mode, on `device`
    vocab: Vocab
    config: AppConfig  # the config the run trained with
    class_names: tuple[str, ...]
    device: torch.device

    @torch.inference_mode()
    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, float32 [N, num_classes], row i for texts[i]."""
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts; wrap a single text in a list")
        encoded = encode(tokenize_all(texts), np.zeros(len(texts), dtype=np.int64), self.vocab)
        probabilities = np.zeros((len(texts), len(self.class_names)), dtype=np.float32)
        batches = equal_length_batches(encoded.lengths)  # as evaluate() batches them: no text is padded
        for indices, (token_ids, lengths, _) in zip(batches, Batches(encoded, batches), strict=True):
            logits = self.model(token_ids.to(self.device), lengths).float()  # [B, C]
            probabilities[indices] = torch.softmax(logits, dim=1).cpu().numpy()
        return probabilities


def load_predictor(run_dir: str | Path, device: str = "cpu") -> Predictor:
    """The best model of the run in `run_dir`, ready to predict on `device` (`auto`: cuda, mps, then cpu)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is not a folder" if run_dir.exists() else "does not exist"
        raise AgnewsError(f"run directory {run_dir} {what}; pass the folder of one run (outputs/DATE/TIME)")
    model_path = run_dir / MODEL_FILE
    if not model_path.is_file():
        raise AgnewsError(_no_model_message(run_dir))
    torch_device = select_device(device)
    remedy = "rerun the training run to recreate it"
    content = checkpoint.read(model_path, checkpoint.MODEL_FORMAT, torch_device, remedy)
    missing = [key for key in ("config", "state_dict", "class_names") if key not in content]
    if missing or "embedding.weight" not in content["state_dict"]:
        raise AgnewsError(f"{model_path} is an incomplete model file (missing {missing or 'embedding.weight'})")
    try:
        config = config_from_record(content["config"])
    except ConfigError as error:
        raise AgnewsError(f"{model_path}: {error}") from None

    vocab = Vocab.load(run_dir / VOCAB_FILE)
    state = content["state_dict"]
    rows = state["embedding.weight"].shape[0]
    if len(vocab) != rows:
        raise AgnewsError(
            f"{run_dir / 'vocab.txt'} has {len(vocab)} tokens but the model's embedding has {rows} "
            "rows: the vocab is not the one this model was trained with"
        )
    recorded = content.get("vocab_sha256")  # absent in model files written before it was recorded
    if recorded is not None and recorded != vocab.digest:
        raise AgnewsError(
            f"{run_dir / 'vocab.txt'} is not the vocab this model was trained with (same size, other "
            "tokens or order: its sha256 differs from the one in model.pt); restore the run's own "
            "vocab.txt"
        )
    class_names = tuple(content["class_names"])
    # pretrained=None: a plain nn.Embedding, which load_state_dict fills with the saved (GloVe) rows.
    model = build_model(config.model, config.embedding, len(vocab), len(class_names))
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise AgnewsError(f"{model_path}: the weights do not fit the model its config describes ({error})") from error
    model.to(torch_device).eval()
    log.info(
        "Loaded %s: %s pooling, best epoch %s, vocab %d, on %s",
        model_path,
        config.model.pooling,
        content.get("best_epoch"),
        len(vocab),
        torch_device,
    )
    return Predictor(model, vocab, config, class_names, torch_device)


def _no_model_message(run_dir: Path) -> str:
    try:
        results = read_run_results(run_dir)
    except AgnewsError as error:
        return f"{run_dir} has no {MODEL_FILE}, and its results.json is unreadable ({error})"
    if results is not None:
        status = results.get("status")
        hint = _NO_MODEL_HINTS.get(status, "rerun it")
        error = f" ({results['error']})" if results.get("error") else ""
        return f"{run_dir} has no {MODEL_FILE}: its results.json says status {status!r}{error}; {hint}"
    jobs = sorted(path.parent.name for path in run_dir.glob(f"*/{MODEL_FILE}"))
    if jobs:
        return (
            f"{run_dir} has no {MODEL_FILE}: it looks like a sweep folder; pass one of its job "
            f"folders, e.g. {run_dir / jobs[0]}"
        )
    return f"{run_dir} has no {MODEL_FILE} and no results.json: it is not a run directory"


def read_lines(source: str) -> list[str]:
    """One text per line from a file, or from stdin when `source` is "-". Blank lines are refused: they
    are usually a mistake, and silently dropping them would shift the output rows against the input."""
    name = "stdin" if source == "-" else source
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as error:
        raise AgnewsError(f"{name}: cannot read it ({error.strerror})") from error
    text = decode_utf8(data, name, "; re-save the input as UTF-8")
    # Any newline convention (\n, \r\n, a classic Mac's \r), but not str.splitlines(), which also breaks
    # at \x0b, \x1c, \u2028 ... that a headline may hold.
    lines = re.split(r"\r\n|\r|\n", text)
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start an empty one
    if not lines:
        raise AgnewsError(f"{name} is empty; give one text per line")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise AgnewsError(f"{name}, line {number} is empty; remove it (one text per line, no blank lines)")
    return lines


def read_labelled(source: str) -> tuple[list[str], np.ndarray]:
    """(texts, class indices [N]) from AG News CSV rows, text = title + " " + description as in training."""
    if source != "-":
        split = read_split(Path(source), "input")
        return split.texts, split.labels
    # read_split parses files; stdin goes through a temporary one, its name swapped back in errors.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stdin.csv"
        path.write_bytes(sys.stdin.buffer.read())
        try:
            split = read_split(path, "input")
        except AgnewsError as error:
            raise AgnewsError(str(error).replace(str(path), "stdin")) from None
    return split.texts, split.labels


def format_csv(
    texts: Sequence[str], probabilities: np.ndarray, class_names: Sequence[str], true_labels: np.ndarray | None = None
) -> str:
    """CSV with a header; labels are AG News numbers (1 = the first class), as in the data files."""
    header = ["text", "predicted_label", "predicted_class", *(f"p_{name}" for name in class_names)]
    lines = [csv_line(header + (["true_label"] if true_labels is not None else []))]
    for index, (text, row) in enumerate(zip(texts, probabilities, strict=True)):
        best = int(row.argmax())
        cells = [text, best + 1, class_names[best], *(f"{p:.6f}" for p in row)]
        lines.append(csv_line(cells + ([int(true_labels[index]) + 1] if true_labels is not None else [])))
    return "".join(lines)


def csv_line(cells: Sequence[object]) -> str:
    """One CSV record ending in \n, with every field that holds a \r or \n quoted: Python's csv writer quotes
    only the characters of its line terminator, so with "\n" it would leave a bare \r that readers take for
    a line break."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue().removesuffix("\r\n") + "\n"


def format_table(texts: Sequence[str], probabilities: np.ndarray, class_names: Sequence[str]) -> str:
    """An aligned table for the terminal: text (shortened), predicted class, one column per class."""
    rows = [["text", "predicted", *class_names]]
    for text, row in zip(texts, probabilities, strict=True):
        shown = text if len(text) <= 60 else text[:57] + "..."
        rows.append([shown, class_names[int(row.argmax())], *(f"{p:.3f}" for p in row)])
    return text_table(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agnews.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run's folder, holding model.pt and vocab.txt")
    parser.add_argument("texts", nargs="*", help="texts to classify (printed as a table)")
    parser.add_argument("--file", help="one text per line, or AG News CSV rows; - reads stdin. Writes CSV")
    parser.add_argument("--csv", action="store_true", help="--file is AG News CSV (default when it ends in .csv)")
    parser.add_argument("--out", type=Path, help="write the CSV here (atomically) instead of to stdout")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists (never a run's own file)")
    parser.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, mps, ...")
    args = parser.parse_intermixed_args(argv)
    if args.texts and args.file is not None:
        parser.error("give texts or --file, not both")
    if not args.texts and args.file is None:
        parser.error("give texts to classify, or --file PATH (- for stdin)")
    if args.csv and args.file is None:
        parser.error("--csv applies to --file input")
    labelled = args.file is not None and (args.csv or args.file.lower().endswith(".csv"))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        true_labels = None
        if labelled:
            texts, true_labels = read_labelled(args.file)
        elif args.file is not None:
            texts = read_lines(args.file)
        else:
            texts = args.texts
            for number, text in enumerate(texts, start=1):
                if not text.strip():
                    raise AgnewsError(f"text {number} on the command line is empty")
        _check_out(args.out, args.run_dir, args.file, args.overwrite)
        predictor = load_predictor(args.run_dir, args.device)
        probabilities = predictor.predict(texts)
        if true_labels is not None:
            correct = int((probabilities.argmax(axis=1) == true_labels).sum())
            log.info(
                "Accuracy %.2f%% (%d of %d rows of %s)",
                100 * correct / len(texts),
                correct,
                len(texts),
                "stdin" if args.file == "-" else args.file,
            )
        if args.file is None and args.out is None:
            print(format_table(texts, probabilities, predictor.class_names))
            return 0
        output = format_csv(texts, probabilities, predictor.class_names, true_labels)
        if args.out is None:
            sys.stdout.write(output)
        else:
            _write_out(args.out, output, args.overwrite)
            log.info("Wrote %d predictions to %s", len(texts), args.out)
    except AgnewsError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    return 0


def _check_out(out: Path | None, run_dir: Path, input_file: str | None, overwrite: bool) -> None:
    """Refuse an --out that is a run folder's own file (this run's or any other's) or the input being read,
    whatever --overwrite says, and an existing file unless --overwrite."""
    if out is None:
        return
    target = out.resolve()
    if target.name in RUN_FILES and (target.parent == run_dir.resolve() or (target.parent / RESULTS_FILE).exists()):
        raise AgnewsError(
            f"--out {out} is the own {target.name} of the run in {out.parent}; write the predictions elsewhere"
        )
    if input_file not in (None, "-") and target == Path(input_file).resolve():
        raise AgnewsError(f"--out {out} is the input file --file reads; write the predictions elsewhere")
    if target.is_dir():
        raise AgnewsError(f"--out {out} is a folder; name a file to write the predictions to")
    if out.exists() and not overwrite:
        raise AgnewsError(f"--out {out} exists; pass --overwrite to replace it, or write the predictions elsewhere")
    if out.exists() and (folder := _agnews_folder(target.parent)) is not None:
        raise AgnewsError(
            f"--out {out} is a file of the agnews run or sweep folder {folder} (its record, a tracker's store, "
            "Hydra's files ...), which --overwrite never replaces; write the predictions elsewhere"
        )


def _agnews_folder(folder: Path) -> Path | None:
    """The run or sweep folder (one an agnews command claimed, or a run's) that `folder` is, or is directly
    in (.hydra/), else None."""
    for candidate in (folder, folder.parent):
        if (candidate / CLAIM_FILE).exists() or (candidate / RESULTS_FILE).exists():
            return candidate
    return None


def _write_out(out: Path, text: str, overwrite: bool) -> None:
    if overwrite:
        atomic_write_text(out, text)
        return
    try:
        create_text(out, text)
    except FileExistsError:  # made while we predicted
        raise AgnewsError(
            f"--out {out} exists; pass --overwrite to replace it, or write the predictions elsewhere"
        ) from None


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BrokenPipeError:  # `... | head`: the reader left; nothing to say, as for any command-line tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
