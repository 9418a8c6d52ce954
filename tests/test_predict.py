"""Prediction from a finished run: the reloaded model predicts what the trained one did, independently of
batch company, from model.pt and vocab.txt alone; the CLI's outputs and its errors."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agnews import experiment
from agnews.config import AppConfig, EmbeddingConfig, Pooling
from agnews.data.ag_news import read_split
from agnews.data.text import UNK_INDEX, Vocab, tokenize_all
from agnews.predict import format_csv, load_predictor, main
from agnews.storage import AgnewsError

PROG_ERROR = "python -m agnews.predict: error: "
COLUMNS = ["text", "predicted_label", "predicted_class", "p_World", "p_Sports", "p_Business", "p_Sci/Tech"]


def train(config: AppConfig, run_dir: Path) -> tuple[dict, torch.nn.Module]:
    """Run the experiment and keep the model it trained (holding the best-validation weights at the end)."""
    built = []
    real_build = experiment.build_model
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            experiment, "build_model", lambda *args, **kwargs: built.append(real_build(*args, **kwargs)) or built[-1]
        )
        results = experiment.run_experiment(config, run_dir)
    assert results["status"] == "completed"
    return results, built[0]


@torch.no_grad()
def alone_probabilities(model: torch.nn.Module, vocab: Vocab, texts: list[str]) -> np.ndarray:
    """What the in-process model gives each text fed to it on its own (no padding at all)."""
    model.eval()
    rows = []
    for tokens in tokenize_all(texts):
        ids = torch.tensor([vocab.lookup_indices(tokens) or [UNK_INDEX]])  # [1, T]
        rows.append(torch.softmax(model(ids, torch.tensor([ids.shape[1]])), dim=1)[0].numpy())
    return np.stack(rows)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, ag_news_csv) -> Path:
    folder = tmp_path_factory.mktemp("ag_news")
    ag_news_csv(folder / "train.csv", rows_per_class=30, seed=1)
    ag_news_csv(folder / "test.csv", rows_per_class=10, seed=2)
    return folder


def predict_config(config_factory, data_dir: Path, pooling: Pooling, cache_dir: Path | None = None, **changes):
    """A tiny run's config for a model to predict with (no checkpoints: nothing resumes here)."""
    data = {"cache_dir": str(cache_dir) if cache_dir else None}
    return config_factory(data_dir, data=data, trainer={"checkpoint": False}, model={"pooling": pooling}, **changes)


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory, config_factory) -> dict:
    """pooling -> (run_dir, results, in-process model), one tiny run each for `last` and `max`."""
    root, cache = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("cache")
    trained = {}
    for pooling in (Pooling.last, Pooling.max):
        results, model = train(predict_config(config_factory, data_dir, pooling, cache), root / pooling.value)
        trained[pooling] = (root / pooling.value, results, model)
    return trained


@pytest.fixture
def last_run(runs) -> Path:
    return runs[Pooling.last][0]


@pytest.mark.parametrize("pooling", [Pooling.last, Pooling.max])
def test_reloaded_model_predicts_what_the_trained_model_did(runs, data_dir, pooling):
    run_dir, results, model = runs[pooling]
    test = read_split(data_dir / "test.csv", "test")
    predictor = load_predictor(run_dir)
    assert predictor.model is not model and predictor.model.pooling is pooling
    probabilities = predictor.predict(test.texts)
    expected = alone_probabilities(model, Vocab.load(run_dir / "vocab.txt"), test.texts)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert (probabilities.argmax(axis=1) == expected.argmax(axis=1)).all()
    # Evaluation and prediction batch texts the same way: the run's test accuracy, to the last digit.
    correct = int((probabilities.argmax(axis=1) == test.labels).sum())
    assert correct / len(test) == results["metrics"]["test_acc"]


@pytest.mark.parametrize("pooling", [Pooling.last, Pooling.max])
def test_predict_on_the_test_file_reports_the_runs_own_test_accuracy(runs, data_dir, pooling, caplog):
    run_dir, results, _ = runs[pooling]
    with caplog.at_level("INFO"):
        assert main([str(run_dir), "--file", str(data_dir / "test.csv"), "--out", str(run_dir / "p.csv")]) == 0
    assert f"Accuracy {100 * results['metrics']['test_acc']:.2f}% (" in caplog.text


def test_probabilities_are_distributions(last_run):
    probabilities = load_predictor(last_run).predict(["Stocks rally", "Nasa launches new space software", ";;"])
    assert probabilities.shape == (3, 4) and probabilities.dtype == np.float32
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert load_predictor(last_run).predict([]).shape == (0, 4)
    with pytest.raises(TypeError, match="list of texts"):
        load_predictor(last_run).predict("one text")


@pytest.mark.parametrize("pooling", [Pooling.last, Pooling.max])
def test_prediction_does_not_depend_on_the_other_texts(runs, data_dir, pooling):
    run_dir, _, model = runs[pooling]
    predictor = load_predictor(run_dir)
    short = "Team wins"
    texts = read_split(data_dir / "test.csv", "test").texts  # longer than `short`: it gets padded in a batch
    if pooling is Pooling.max:
        texts = texts * 7  # 280 texts: more than one batch of 256
    texts.insert(30, short)
    together = predictor.predict(texts)
    alone = predictor.predict([short])[0]
    np.testing.assert_allclose(together[30], alone, atol=1e-6)
    # and every row is the row of its own text, put back in input order after the length-sorted batches
    np.testing.assert_allclose(together, alone_probabilities(model, predictor.vocab, texts), atol=1e-5)
    if pooling is Pooling.last:
        # The reason `last` runs one text at a time: in a padded batch its answer would change.
        ids = torch.tensor([predictor.vocab.lookup_indices(tokenize_all([short])[0]) + [0] * 20])
        with torch.no_grad():
            padded = torch.softmax(model(ids, torch.tensor([2])), dim=1)[0].numpy()
        assert not np.allclose(padded, alone, atol=1e-4)


def test_cli_prints_a_table_for_texts(last_run, capsys):
    texts = ["Stocks and shares rally as bank profit soars", "Coach says the team is ready for the season"]
    assert main([str(last_run), *texts]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["text", "predicted", "World", "Sports", "Business", "Sci/Tech"]
    predicted = load_predictor(last_run).predict(texts).argmax(axis=1)
    names = ["World", "Sports", "Business", "Sci/Tech"]
    for line, text, label in zip(lines[1:], texts, predicted, strict=True):
        assert line.startswith(text) and line[len(text) :].split()[0] == names[label]


def read_csv_text(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_file_with_one_text_per_line_writes_csv(last_run, tmp_path):
    texts = ["Troops leave the embassy", "Bank shares fall, market says", "Nasa: new space computer"]
    source = tmp_path / "texts.txt"
    source.write_text("\r\n".join(texts) + "\r\n", encoding="utf-8")
    out = tmp_path / "out" / "predictions.csv"
    assert main([str(last_run), "--file", str(source), "--out", str(out)]) == 0
    rows = read_csv_text(out.read_text(encoding="utf-8"))
    assert list(rows[0]) == COLUMNS and [row["text"] for row in rows] == texts
    expected = load_predictor(last_run).predict(texts)
    for row, probabilities in zip(rows, expected, strict=True):
        assert int(row["predicted_label"]) == probabilities.argmax() + 1
        assert row["predicted_class"] == COLUMNS[3 + probabilities.argmax()].removeprefix("p_")
        np.testing.assert_allclose([float(row[name]) for name in COLUMNS[3:]], probabilities, atol=1e-6)


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["", "--overwrite"])
@pytest.mark.parametrize(
    "target",
    ["results.json", "model.pt", "vocab.txt", "another run's model.pt", "another run's results.json", "the input"],
)
def test_out_never_overwrites_a_run_or_the_input(runs, last_run, tmp_path, capsys, target, overwrite):
    source = tmp_path / "texts.txt"
    source.write_text("Troops leave the embassy\n", encoding="utf-8")
    other_run = next(run_dir for run_dir, _, _ in runs.values() if run_dir != last_run)
    if target == "the input":
        out = source
    elif target.startswith("another run's "):
        out = other_run / target.removeprefix("another run's ")
    else:
        out = last_run / target
    before = out.read_bytes()
    assert main([str(last_run), "--file", str(source), "--out", str(out), *overwrite]) == 2
    assert "write the predictions elsewhere" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_out_replaces_an_existing_file_only_when_asked(last_run, tmp_path, capsys):
    source, out = tmp_path / "texts.txt", tmp_path / "predictions.csv"
    source.write_text("Troops leave the embassy\n", encoding="utf-8")
    out.write_text("a file of the user's\n")
    assert main([str(last_run), "--file", str(source), "--out", str(out)]) == 2
    assert f"--out {out} exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert out.read_text() == "a file of the user's\n"
    assert main([str(last_run), "--file", str(source), "--out", str(out), "--overwrite"]) == 0
    assert [row["text"] for row in read_csv_text(out.read_text())] == ["Troops leave the embassy"]


@pytest.mark.parametrize("file", ["sweep/summary.csv", "sweep/0/.hydra/config.yaml", "sweep/0/mlflow.db"])
def test_overwrite_never_replaces_a_file_of_a_run_or_sweep_folder(last_run, tmp_path, capsys, file):
    source = tmp_path / "texts.txt"
    source.write_text("Troops leave the embassy\n", encoding="utf-8")
    (tmp_path / "sweep" / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "sweep" / ".agnews.lock").touch()  # a folder an agnews command claimed
    (tmp_path / "sweep" / "0" / "results.json").write_text("{}")  # a run's folder
    out = tmp_path / file
    out.write_text("keep me\n")
    assert main([str(last_run), "--file", str(source), "--out", str(out), "--overwrite"]) == 2
    assert "which --overwrite never replaces; write the predictions elsewhere" in capsys.readouterr().err
    assert out.read_text() == "keep me\n"


@pytest.mark.parametrize("newline", ["\r", "\r\n", "\n"], ids=["CR (classic Mac)", "CRLF", "LF"])
def test_every_newline_convention_splits_texts(last_run, tmp_path, newline):
    texts = ["Troops leave the embassy", "Bank shares fall", "Nasa: new space computer"]
    source, out = tmp_path / "texts.txt", tmp_path / "predictions.csv"
    source.write_bytes(newline.join(texts).encode() + newline.encode())
    assert main([str(last_run), "--file", str(source), "--out", str(out)]) == 0
    assert [row["text"] for row in read_csv_text(out.read_bytes().decode("utf-8"))] == texts


def test_a_carriage_return_inside_a_text_is_quoted_in_the_csv(last_run):
    texts = ["Troops leave\rthe embassy", "Bank shares fall"]
    output = format_csv(texts, load_predictor(last_run).predict(texts), ["World", "Sports", "Business", "Sci/Tech"])
    assert '"Troops leave\rthe embassy"' in output
    assert [row["text"] for row in csv.DictReader(io.StringIO(output, newline=""))] == texts


@pytest.mark.parametrize("as_csv", ["by extension", "--csv"])
def test_ag_news_csv_input_reports_labels_and_accuracy(runs, data_dir, tmp_path, capsys, caplog, as_csv):
    run_dir, _, _ = runs[Pooling.max]
    source = data_dir / "test.csv"
    if as_csv == "--csv":
        source = tmp_path / "rows.txt"
        shutil.copy(data_dir / "test.csv", source)
    caplog.set_level("INFO")
    assert main([str(run_dir), "--file", str(source), *(["--csv"] if as_csv == "--csv" else [])]) == 0
    rows = read_csv_text(capsys.readouterr().out)
    test = read_split(data_dir / "test.csv", "test")
    assert list(rows[0]) == [*COLUMNS, "true_label"] and len(rows) == len(test) == 40
    assert [row["text"] for row in rows] == test.texts  # title + " " + description, as in training
    assert [int(row["true_label"]) for row in rows] == list(test.labels + 1)
    correct = sum(row["predicted_label"] == row["true_label"] for row in rows)
    assert f"Accuracy {100 * correct / 40:.2f}% ({correct} of 40 rows of {source})" in caplog.text


def stdin_of(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_stdin_input(last_run, monkeypatch, capsys, data_dir):
    stdin_of(monkeypatch, b"Stocks rally\nGame on\n")
    assert main([str(last_run), "--file", "-"]) == 0
    rows = read_csv_text(capsys.readouterr().out)
    assert [row["text"] for row in rows] == ["Stocks rally", "Game on"] and list(rows[0]) == COLUMNS

    stdin_of(monkeypatch, (data_dir / "test.csv").read_bytes())
    assert main([str(last_run), "--file", "-", "--csv"]) == 0
    assert len(read_csv_text(capsys.readouterr().out)) == 40

    stdin_of(monkeypatch, b'"1","a","b"\n"7","c","d"\n')
    assert main([str(last_run), "--file", "-", "--csv"]) == 2
    assert "stdin, line 2: label '7' is not an integer 1..4" in capsys.readouterr().err


def test_cli_in_a_subprocess_reads_stdin(last_run, cli, repo):
    done = cli("agnews.predict", last_run, "--file", "-", input="Stocks rally\nNasa launch\n", timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(read_csv_text(done.stdout)) == 2

    command = [sys.executable, "-m", "agnews.predict", str(last_run), "--file", "-"]
    bad = subprocess.run(command, input=b"fine\n\xff\xfe bad\n", cwd=repo, capture_output=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr.decode()
    assert f"{PROG_ERROR}stdin, line 2: bytes" in bad.stderr.decode()


def broken_copy(run_dir: Path, tmp_path: Path, breaks: str) -> Path:
    """A copy of a finished run with one thing wrong; returns the path to pass as RUN_DIR."""
    copy = tmp_path / "broken"
    shutil.copytree(run_dir, copy)
    if breaks == "no model":
        (copy / "model.pt").unlink()
        results = json.loads((copy / "results.json").read_text())
        (copy / "results.json").write_text(json.dumps({**results, "status": "running"}))
    elif breaks == "foreign model":
        torch.save({"weights": torch.zeros(3)}, copy / "model.pt")
    elif breaks == "short vocab":
        lines = (copy / "vocab.txt").read_text().splitlines()
        (copy / "vocab.txt").write_text("\n".join(lines[:-3]) + "\n")
    elif breaks == "missing":
        return tmp_path / "no-such-run"
    return copy


@pytest.mark.parametrize(
    ("breaks", "message"),
    [
        ("no model", r"broken has no model.pt: its results.json says status 'running'; .*resume=true"),
        ("foreign model", r"broken/model.pt is not an agnews model file"),
        ("short vocab", r"broken/vocab.txt has \d+ tokens but the model's embedding has \d+ rows"),
        ("missing", r"run directory .*no-such-run does not exist"),
    ],
)
def test_bad_run_directories_are_explained(last_run, tmp_path, capsys, breaks, message):
    run_dir = broken_copy(last_run, tmp_path, breaks)
    with pytest.raises(AgnewsError, match=message):
        load_predictor(run_dir)
    assert main([str(run_dir), "some text"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(PROG_ERROR) and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"first\n\nthird\n", r"texts.txt, line 2 is empty; remove it"),
        (b"first\n   \n", r"texts.txt, line 2 is empty; remove it"),
        (b"first\nsecond\ncaf\xe9\n", r"texts.txt, line 3: bytes b'\\xe9' are not UTF-8"),
        (b"", r"texts.txt is empty"),
    ],
)
def test_bad_text_files_are_refused_with_their_line(last_run, tmp_path, capsys, content, message):
    source = tmp_path / "texts.txt"
    source.write_bytes(content)
    assert main([str(last_run), "--file", str(source)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(PROG_ERROR) and "Traceback" not in err
    assert __import__("re").search(message, err), err


def test_a_glove_run_predicts_without_glove_or_data(ag_news_dir, tmp_path, topic_words, isolated_cache, config_factory):
    glove = tmp_path / "glove.6B.50d.txt"
    rng = np.random.default_rng(0)
    glove.write_text(
        "".join(f"{word} {' '.join(f'{v:.4f}' for v in rng.normal(size=50))}\n" for word in [*topic_words, "the", "."]),
        encoding="utf-8",
    )
    embedding = EmbeddingConfig(name="glove50", kind="glove", dim=50, path=str(glove), freeze=True)
    config = predict_config(config_factory, ag_news_dir, Pooling.max, embedding=embedding)
    _, model = train(config, tmp_path / "run")
    texts = ["Troops and minister at the embassy", "Nasa space software"]
    vocab = Vocab.load(tmp_path / "run" / "vocab.txt")
    expected = alone_probabilities(model, vocab, texts)
    for gone in (glove, ag_news_dir, isolated_cache):
        shutil.rmtree(gone) if gone.is_dir() else gone.unlink()

    predictor = load_predictor(tmp_path / "run")
    np.testing.assert_allclose(predictor.predict(texts), expected, atol=1e-6)
    # the GloVe rows came from model.pt, not from a fresh embedding
    assert torch.equal(predictor.model.embedding.weight, model.embedding.weight)
    assert main([str(tmp_path / "run"), *texts]) == 0
    assert not os.path.exists(glove)


def test_a_model_file_written_before_checksums_still_loads(last_run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(last_run, old)
    content = torch.load(old / "model.pt", weights_only=True)
    for added_later in ("sha256", "vocab_sha256"):
        del content[added_later]
    torch.save(content, old / "model.pt")
    texts = ["Stocks rally as oil falls", "Nasa launches a probe"]
    np.testing.assert_array_equal(load_predictor(old).predict(texts), load_predictor(last_run).predict(texts))
