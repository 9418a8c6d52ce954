"""A user's mistake, or a machine that cannot do what was asked, gets one clear line that names the key,
file or folder and says what to do, a non-zero exit, and no Python traceback; nothing on disk is lost."""

import contextlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from agnews.experiment import run_experiment
from agnews.storage import AgnewsError, atomic_write_text


def one_clear_line(done: subprocess.CompletedProcess, expected_code: int, *phrases: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == expected_code, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for phrase in phrases:
        assert phrase in output, output[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "code", "phrases"),
    [
        (["trainer.batch_size=0"], 2, ["trainer.batch_size must be positive, got 0"]),
        (["trainer.epochs=-1"], 2, ["trainer.epochs must be positive, got -1"]),
        (["embedding=glove50", "embedding.dim=77"], 2, ["embedding.dim=77: GloVe comes in 50, 100, 200, 300"]),
        (["trainer.epochs=ten"], 1, ["Value 'ten' of type 'str' could not be converted to Integer"]),
        (["model=huge"], 1, ["Could not find 'model/huge'", "bilstm_max"]),
        (["seed=-1"], 2, ["seed must be in 0 .. 4294967295 (2**32 - 1), got -1"]),
        (["seed=4294967296"], 2, ["seed must be in 0 .. 4294967295"]),
        (["trainer.device=tpu"], 2, ["trainer.device='tpu' is not a device agnews trains on", "cuda:N or mps"]),
        (["trainer.device=cuda"], 2, ["device 'cuda': this machine has no CUDA GPU", "use device auto or cpu"]),
        (["trainer.device=mps"], 2, ["device 'mps': Apple's MPS is not available"]),
        (["trainer.precision=fp16"], 2, ["trainer.precision=fp16 needs a CUDA GPU", "trainer.precision=fp32"]),
    ],
    ids=[
        "batch_size=0",
        "epochs=-1",
        "glove dim 77",
        "epochs=ten",
        "model=huge",
        "seed=-1",
        "seed=2**32",
        "tpu",
        "cuda",
        "mps",
        "fp16 on cpu",
    ],
)
def test_bad_settings_are_one_line_and_leave_no_folder(ag_news_dir, tmp_path, cli, overrides, code, phrases):
    if "trainer.device=cuda" in overrides and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    if "trainer.device=mps" in overrides and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    done = cli("agnews.run", f"data.dir={ag_news_dir}", f"hydra.run.dir={tmp_path / 'run'}", *overrides)
    one_clear_line(done, code, *phrases)
    assert "base_model" not in done.stdout + done.stderr  # schema names stay out of option lists
    assert not (tmp_path / "run").exists()  # found before a run folder is made, so no 'failed' run is left


@pytest.mark.slow
def test_a_sweep_with_a_bad_job_launches_nothing(ag_news_dir, tmp_path, cli):
    done = cli(
        "agnews.run",
        "--multirun",
        f"data.dir={ag_news_dir}",
        f"hydra.sweep.dir={tmp_path / 's'}",
        "trainer.batch_size=16,0",
    )
    one_clear_line(done, 2, "job 1 (trainer.batch_size=0): config error: trainer.batch_size must be positive")
    assert not (tmp_path / "s").exists()  # not even the folder the refused command would have claimed


def file_in_the_way(tmp_path: Path) -> Path:
    """A regular file where a folder would have to be: nothing can be created below it, even by root."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker


@pytest.mark.slow
def test_unwritable_cache_and_run_folders_are_named(ag_news_dir, tmp_path, cli):
    blocker = file_in_the_way(tmp_path)
    cache = cli(
        "agnews.run",
        f"data.dir={ag_news_dir}",
        f"data.cache_dir={blocker / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "trainer.epochs=1",
    )
    one_clear_line(cache, 1, f"cannot write {blocker / 'cache'}", "data.cache_dir")
    run = cli("agnews.run", f"data.dir={ag_news_dir}", f"hydra.run.dir={blocker / 'run'}")
    one_clear_line(run, 2, f"cannot write to the run directory {blocker / 'run'}", "hydra.run.dir")


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not stop root")
def test_a_read_only_run_folder_is_named(tmp_path, tiny_config):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o555)
    try:
        with pytest.raises(AgnewsError, match=r"cannot write to the run directory"):
            run_experiment(tiny_config(), run_dir)
    finally:
        run_dir.chmod(0o755)


@contextlib.contextmanager
def tiny_disk(path: Path, size: str):
    """A tmpfs of `size` at `path` (root only; skipped elsewhere)."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_named_as_such(ag_news_dir, tmp_path, cli):
    with tiny_disk(tmp_path / "disk", "96k") as disk:
        run = cli("agnews.run", f"data.dir={ag_news_dir}", f"hydra.run.dir={disk / 'run'}", "trainer.epochs=2")
        one_clear_line(run, 1, "no space left on the device")
        recorded = json.loads((disk / "run" / "results.json").read_text())  # the last record written is whole
        assert recorded["status"] in ("running", "failed")
    with tiny_disk(tmp_path / "cache-disk", "16k") as disk:
        cache = cli(
            "agnews.run", f"data.dir={ag_news_dir}", f"data.cache_dir={disk}", f"hydra.run.dir={tmp_path / 'run2'}"
        )
        one_clear_line(cache, 1, f"cannot write {disk}", "no space left on the device")
        assert not [path for path in (disk / "prepared").iterdir() if not path.name.endswith(".lock")]


def test_torch_saying_unexpected_pos_is_a_full_disk(tmp_path, monkeypatch):
    # torch.save reports ENOSPC as "[enforce fail at inline_container.cc] . unexpected pos 128 vs 64".
    from agnews import checkpoint

    def full(content, handle):
        handle.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:778] . unexpected pos 128 vs 64")

    (tmp_path / "model.pt").write_bytes(b"the previous file")
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(AgnewsError, match=r"cannot write .*model\.pt: no space left on the device"):
        checkpoint.save(tmp_path / "model.pt", {"format": "x"})
    assert (tmp_path / "model.pt").read_bytes() == b"the previous file"
    assert not list(tmp_path.glob(".*.tmp"))


def test_enospc_while_writing_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("old")

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(AgnewsError, match=r"results\.json: no space left on the device; free some space"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_report_and_predict_outputs_that_cannot_be_written(ag_news_dir, tmp_path, tiny_config, cli):
    sweep = tmp_path / "sweep"
    run_experiment(tiny_config(trainer={"epochs": 1}), sweep / "0")
    (sweep / "report").write_text("a file where the report folder goes")
    report = cli("agnews.report", sweep)
    one_clear_line(report, 2, f"cannot write {sweep / 'report'}", "--out DIR")

    blocker = file_in_the_way(tmp_path)
    predict = cli("agnews.predict", sweep / "0", "Stocks rally", "--out", blocker / "out.csv")
    one_clear_line(predict, 2, f"cannot write {blocker / 'out.csv'}")


@pytest.mark.slow
def test_a_vocab_that_is_not_utf8_is_named_with_its_line(tmp_path, tiny_config, cli):
    run_dir = tmp_path / "run"
    run_experiment(tiny_config(trainer={"epochs": 1}), run_dir)
    vocab = run_dir / "vocab.txt"
    vocab.write_bytes(vocab.read_bytes().replace(b"the\n", b"th\xe9\n", 1))
    done = cli("agnews.predict", run_dir, "Stocks rally")
    one_clear_line(done, 2, f"{vocab}, line", "are not UTF-8")


@pytest.mark.slow
def test_a_train_split_too_small_to_validate_stops_before_training(tmp_path, cli):
    data = tmp_path / "tiny"
    data.mkdir()
    (data / "train.csv").write_text("".join(f'"{i % 4 + 1}","t","w{i}"\n' for i in range(8)))
    (data / "test.csv").write_text('"1","t","w"\n')
    done = cli("agnews.run", f"data.dir={data}", f"hydra.run.dir={tmp_path / 'run'}")
    one_clear_line(done, 1, "holds out no text", "data.val_fraction")
    assert json.loads((tmp_path / "run" / "results.json").read_text())["history"] == []
