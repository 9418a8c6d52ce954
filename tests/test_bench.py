"""The bench runs end to end on tiny data, and its reference collate is the notebook's. No timing asserts:
speed is what the bench itself measures."""

from __future__ import annotations

import json
import re

import pytest
import torch

from agnews.bench.notebook import NotebookGloVe, notebook_collate
from agnews.bench.speed import format_table, main
from agnews.data.glove import WordVectors
from agnews.data.text import Vocab

# Tiny runs: one round, two batches of 16; the synthetic GloVe file stays at a few hundred rows.
FAST = ["--rounds", "1", "--batches", "2", "trainer.batch_size=16", "trainer.device=cpu"]


@pytest.fixture(autouse=True)
def one_thread():
    # On a busy shared CPU, torch's default of one thread per core makes the LSTM many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("overrides", "options"),
    [(["embedding=learned"], []), (["embedding=glove50"], ["--synthetic-glove", "--glove-rows", "300"])],
)
def test_bench_prints_a_table_with_a_ratio(ag_news_dir, capsys, overrides, options):
    assert main([f"data.dir={ag_news_dir}", *overrides, *FAST, *options]) == 0
    table = capsys.readouterr().out
    assert "reference (notebook re-creation)" in table
    assert "ratio project/reference" in table
    assert "x" in table.split("ratio project/reference")[1].split("\n")[0]


def test_bench_json_has_every_pipeline_and_the_limit(ag_news_dir, capsys):
    argv = [f"data.dir={ag_news_dir}", "embedding=glove100", "--json", "--synthetic-glove", "--glove-rows", "50"]
    assert main([*argv, *FAST]) == 0
    result = json.loads(capsys.readouterr().out)
    limit = "limit (bare loop over batches built before timing)"
    assert set(result["pipelines"]) == {"reference (notebook re-creation)", "project", limit}
    for pipeline in result["pipelines"].values():
        assert pipeline["train_samples_per_s"] > 0 and pipeline["eval_samples_per_s"] > 0
    assert result["ratio"]["train"] > 0 and result["ratio"]["eval"] > 0
    project, bare = result["pipelines"]["project"], result["pipelines"][limit]
    assert result["project_of_limit"]["train"] == project["train_samples_per_s"] / bare["train_samples_per_s"]
    assert (result["train_texts"], result["embedding_dim"], result["device"]) == (32, 100, "cpu")


def test_bench_rejects_a_bad_override(ag_news_dir, capsys):
    assert main([f"data.dir={ag_news_dir}", "model=huge", *FAST]) != 0
    assert "huge" in capsys.readouterr().err


VOCAB = Vocab(["<pad>", "<unk>", "the", ".", "market", "rose", "stocks", ","])


def test_reference_collate_pads_token_ids_as_the_notebook():
    # basic_english: lowercase, "." and "," spaced out; "fell" and "again" are not in the vocab (<unk> = 1).
    batch = [(2, "The market rose."), (0, "Stocks fell, the market."), (3, "rose")]
    labels, ids = notebook_collate(batch, VOCAB)
    assert labels.tolist() == [2, 0, 3]
    assert ids.dtype == torch.int64
    assert ids.tolist() == [
        [2, 4, 5, 3, 0, 0],
        [6, 1, 7, 2, 4, 3],
        [5, 0, 0, 0, 0, 0],
    ]


def test_reference_collate_looks_glove_vectors_up_per_token():
    vectors = torch.arange(6, dtype=torch.float32).reshape(3, 2).numpy()  # "the" [0, 1], "market" [2, 3], ...
    glove = NotebookGloVe(WordVectors(["the", "market", "stocks"], vectors))
    labels, inputs = notebook_collate([(1, "The market fell"), (0, "Stocks")], VOCAB, glove)
    assert labels.tolist() == [1, 0]
    # [B=2, T=3, E=2]: "fell" is unknown -> zeros (torchtext's unk_init), and padding is zero vectors.
    assert inputs.tolist() == [[[0.0, 1.0], [2.0, 3.0], [0.0, 0.0]], [[4.0, 5.0], [0.0, 0.0], [0.0, 0.0]]]


def test_table_shows_per_pipeline_cuda_memory():
    # The CUDA branch, which CPU-only CI never runs for real: peaks per pipeline, labelled.
    pipeline = {
        "train_samples_per_s": 1000.0,
        "eval_samples_per_s": 4000.0,
        "peak_memory_mib": 812.4,
        "resident_mib": 60.0,
    }
    result = {
        "device": "cuda:0",
        "torch_threads": 8,
        "torch_version": "2.x",
        "embedding": "glove300",
        "embedding_dim": 300,
        "synthetic_glove_rows": 400_000,
        "model": "small",
        "hidden_size": 64,
        "num_layers": 1,
        "pooling": "last",
        "batch_size": 64,
        "optimizer": "sgd",
        "lr": 5.0,
        "train_texts": 6400,
        "eval_texts": 6400,
        "rounds": 5,
        "pipelines": {"reference (notebook re-creation)": pipeline, "project": pipeline, "limit (bare)": pipeline},
        "ratio": {"train": 1.0, "eval": 1.0},
        "project_of_limit": {"train": 0.97, "eval": 1.0},
        "process_peak_rss_mib": 2000.0,
    }
    table = format_table(result)
    assert "812 MiB (60 resident: all models)" in table
    assert "max_memory_allocated per pipeline" in table and "1.00x" in table
    assert re.search(r"project / limit +97\.0 %", table)


def test_gpu_check_says_there_is_no_gpu_and_exits_0(ag_news_dir, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["--gpu-check", f"data.dir={ag_news_dir}"]) == 0
    assert "No CUDA device here" in capsys.readouterr().out


def test_gpu_check_measures_real_runs_when_told_to_use_the_cpu(ag_news_dir, capsys, isolated_cache):
    argv = ["--gpu-check", "--json", "--glove-rows", "300", f"data.dir={ag_news_dir}", "trainer.device=cpu"]
    assert main([*argv, "trainer.batch_size=16", "data.val_fraction=0.25"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [row["what"] for row in result["rows"]] == [
        "notebook model (small, learned)",
        "recipe bilstm_glove50, fp16",
        "recipe bilstm_glove50, fp32",
        "notebook model, glove300 synthetic",
    ]
    statuses = {row["what"]: row["status"] for row in result["rows"]}
    assert statuses["recipe bilstm_glove50, fp16"] == "failed"  # float16 needs CUDA: refused, not faked
    for row in result["rows"]:
        if row["status"] == "completed":
            assert row["epochs"] >= 1 and row["samples_per_s"] > 0 and 0 <= row["test_acc"] <= 1
    assert not list(isolated_cache.rglob("*300d*"))  # the synthetic GloVe's cache went with its temporary file


@pytest.mark.slow
def test_the_sweep_benchmark_puts_launchers_and_thread_counts_side_by_side(ag_news_dir, cli):
    overrides = [f"data.dir={ag_news_dir}", "data.val_fraction=0.25", "trainer.epochs=1", "trainer.batch_size=16"]
    done = cli("agnews.bench.sweeps", *overrides, "seed=0,1", "--busy", "0", "--threads", "1", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines if line.startswith("0 ")][:2] == [["0", "basic"], ["0", "local"]]
    assert "identical" in done.stdout  # the same seeds and threads per job: the same accuracies
    assert "unset (agnews chooses)" in done.stdout and "trainer.num_threads" in done.stdout
