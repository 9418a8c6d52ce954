"""Shared fixtures. Tests never touch the network: downloads go to a server on 127.0.0.1 that serves
files the test itself wrote."""

from __future__ import annotations

import os

# Tiny models gain nothing from threads, and on a busy 2-core machine torch's OpenMP threads spin against
# each other and make the suite 10x slower. Set before torch is imported; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import csv
import functools
import http.server
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclass
class LocalServer:
    root: Path  # files written here are served at `url`
    url: str  # "http://127.0.0.1:PORT", no trailing slash
    requests: list[str]  # paths requested so far, to check that a cached file is not fetched again


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[LocalServer]:
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield LocalServer(root=root, url=f"http://127.0.0.1:{server.server_port}", requests=requests)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def unreachable_url() -> str:
    """A URL on a loopback port that nothing listens on: connection refused, as when offline."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the default cache at tmp_path so no test reads or writes the user's real cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("AGNEWS_CACHE_DIR", str(cache))
    return cache


# Tiny AG-News-format data: each class has its own topic words, so a model can learn something in one epoch.
TOPIC_WORDS = (
    ("war", "minister", "election", "embassy", "troops"),
    ("game", "team", "season", "coach", "league"),
    ("stocks", "profit", "market", "shares", "bank"),
    ("software", "space", "internet", "computer", "nasa"),
)
FILLER_WORDS = ("the", "a", "on", "after", "report", "says", "new", "today")


def write_ag_news_csv(path: Path, rows_per_class: int, seed: int) -> None:
    import random

    rng = random.Random(seed)
    lines = []
    for index in range(rows_per_class * 4):
        label = index % 4
        title = " ".join(rng.choice(TOPIC_WORDS[label] + FILLER_WORDS) for _ in range(rng.randint(2, 6)))
        description = " ".join(rng.choice(TOPIC_WORDS[label] + FILLER_WORDS) for _ in range(rng.randint(3, 15)))
        lines.append(f'"{label + 1}","{title.title()}","{description}."\n')
    path.write_text("".join(lines), encoding="utf-8")


@pytest.fixture
def topic_words() -> list[str]:
    """Every class's topic words, the vocabulary a synthetic GloVe file should cover."""
    return [word for topic in TOPIC_WORDS for word in topic]


@pytest.fixture
def make_ag_news(tmp_path: Path) -> Callable[..., Path]:
    """make_ag_news(name, train_per_class, test_per_class): a data.dir under tmp_path with topic-word rows."""

    def make(name: str = "ag_news", train_per_class: int = 40, test_per_class: int = 10) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        write_ag_news_csv(folder / "train.csv", rows_per_class=train_per_class, seed=1)
        write_ag_news_csv(folder / "test.csv", rows_per_class=test_per_class, seed=2)
        return folder

    return make


@pytest.fixture
def ag_news_dir(make_ag_news) -> Path:
    """A data.dir with 160 train and 40 test rows."""
    return make_ag_news()


def _tiny_config(data_dir: Path, **changes: Any):
    from agnews.config import AppConfig, DataConfig, EmbeddingConfig, ModelConfig, OptimizerConfig, TrainerConfig

    sections = {"data": DataConfig, "embedding": EmbeddingConfig, "model": ModelConfig, "optimizer": OptimizerConfig}
    sections["trainer"] = TrainerConfig
    fields: dict[str, Any] = {
        "data": {"dir": str(data_dir), "val_fraction": 0.25},
        "trainer": {"epochs": 2, "batch_size": 16, "progress_bar": False},
        "embedding": {"name": "learned"},
        "model": {"name": "small"},
        "optimizer": {"name": "sgd"},
    }
    for key, value in changes.items():
        fields[key] = {**fields.get(key, {}), **value} if key in sections and isinstance(value, dict) else value
    return AppConfig(
        **{key: sections[key](**value) if isinstance(value, dict) else value for key, value in fields.items()}
    )


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root: the working directory of commands run as a user would."""
    return REPO


@pytest.fixture(scope="session")
def config_factory() -> Callable[..., Any]:
    """config_factory(data_dir, **changes): the AppConfig of a tiny run (2 epochs of batch 16, a quarter of
    train held out, no progress bar). A dict for a section updates it (trainer={"epochs": 3}); a config
    object or a plain value replaces it (optimizer=OptimizerConfig(lr=1.0), seed=1, resume=True)."""
    return _tiny_config


@pytest.fixture
def tiny_config(ag_news_dir: Path, config_factory) -> Callable[..., Any]:
    """tiny_config(**changes): config_factory on ag_news_dir."""
    return functools.partial(config_factory, ag_news_dir)


@pytest.fixture(scope="session")
def ag_news_csv() -> Callable[..., None]:
    """ag_news_csv(path, rows_per_class, seed): write an AG-News-format CSV of topic-word rows."""
    return write_ag_news_csv


def _sweep_args(data_dir: Path, sweep_dir: Path, *extra: str) -> list[str]:
    return [
        "--multirun",
        f"data.dir={data_dir}",
        "data.val_fraction=0.25",
        "trainer.epochs=1",
        "trainer.batch_size=16",
        "trainer.progress_bar=false",
        f"hydra.sweep.dir={sweep_dir}",
        *extra,
    ]


@pytest.fixture(scope="session")
def sweep_args() -> Callable[..., list[str]]:
    """sweep_args(data_dir, sweep_dir, *extra): a multirun command's arguments for tiny 1-epoch jobs."""
    return _sweep_args


def _read_summary(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def read_summary() -> Callable[[Path], list[dict]]:
    """read_summary(sweep_dir): summary.csv's rows as dicts of strings."""
    return _read_summary


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess]:
    """cli("agnews.run", *args, input=None, timeout=300): run a module of the project as a user would, from
    the repository root, without Hydra's full tracebacks."""

    def run(module: str, *args: str, input: str | None = None, timeout: int = 300, env: dict | None = None):
        environment = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
        command = [sys.executable, "-m", module, *map(str, args)]
        return subprocess.run(
            command, cwd=REPO, env=environment, input=input, capture_output=True, text=True, timeout=timeout
        )

    return run


def _stopped_run(arguments: list[str], when: Path, stop: int = 15) -> tuple[int, str]:
    command = [sys.executable, "-m", "agnews.run", *arguments]
    # As from a terminal: a test suite started in the background (`... &`, nohup) hands its children SIGINT ignored,
    # and Python then never turns Ctrl-C into KeyboardInterrupt; the run would train on and exit 0.
    run = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not when.exists():
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0][-2000:]
        time.sleep(0.05)
    run.send_signal(stop)
    output = run.communicate(timeout=60)[0]  # Hydra logs to stdout
    return run.returncode, output


@pytest.fixture(scope="session")
def stopped_run() -> Callable[..., tuple[int, str]]:
    """stopped_run(arguments, when, stop=SIGTERM): `python -m agnews.run *arguments` as a user would start it,
    sent signal `stop` once the file `when` exists (a checkpoint: mid-run); (exit status, its output)."""
    return _stopped_run


@pytest.fixture
def killed_run(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """killed_run(config, run_dir, epochs_done, launch_job=None): leave a run that died right after writing
    the checkpoint of epoch `epochs_done`, as a kill at that moment would (status 'interrupted', checkpoint.pt
    in place); `launch_job` as run_experiment takes it."""
    from agnews import checkpoint
    from agnews.experiment import run_experiment
    from agnews.results import CHECKPOINT_FILE

    def leave(config: Any, run_dir: Path, epochs_done: int, launch_job: str | None = None) -> None:
        real_save = checkpoint.save

        def save_then_die(path, content):
            real_save(path, content)
            if path.name == CHECKPOINT_FILE and len(content["history"]) == epochs_done:
                raise KeyboardInterrupt

        with monkeypatch.context() as patch:
            patch.setattr(checkpoint, "save", save_then_die)
            with pytest.raises(KeyboardInterrupt):
                run_experiment(config, run_dir, launch_job=launch_job)

    return leave


def _flip_a_tensor_byte(path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max((item for item in archive.infolist() if "/data/" in item.filename), key=lambda i: i.file_size)
    content = bytearray(path.read_bytes())
    header = info.header_offset  # the member's local header: 30 bytes, its name and extra field, then the data
    name_length = int.from_bytes(content[header + 26 : header + 28], "little")
    extra_length = int.from_bytes(content[header + 28 : header + 30], "little")
    content[header + 30 + name_length + extra_length + info.file_size // 2] ^= 0x40
    path.write_bytes(bytes(content))


@pytest.fixture(scope="session")
def flip_a_tensor_byte() -> Callable[[Path], None]:
    """flip_a_tensor_byte(path): change one byte inside a tensor of a torch file (its zip's data/ records),
    leaving the container valid, as a disk error would."""
    return _flip_a_tensor_byte
