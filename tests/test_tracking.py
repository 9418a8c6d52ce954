"""Tracking (logger=tensorboard / mlflow / wandb): what a run logged is read back with each tool's own reader
and compared with the run's results.json; a failed job shows as failed; a missing package or a broken store
never costs a run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agnews.config import LoggerConfig, LoggerName, compose, config_differences, flatten
from agnews.experiment import run_experiment
from agnews.sweep.tracking import unreachable_server
from agnews.tracking.facts import EPOCH_METRICS, run_key
from agnews.tracking.mlflow_logger import quiet_mlflow
from agnews.tracking.tracker import MissingExtraError, require_packages
from agnews.tracking.wandb_logger import quiet_wandb

TENSORBOARD = LoggerConfig(name=LoggerName.tensorboard)


def results_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def sweep_args(data_dir: Path, sweep_dir: Path, logger: str, launcher: str) -> list[str]:
    """A 2-job sweep whose job 0 fails (its data folder is missing) after tracking started; job 1 completes."""
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.num_threads=1"]
    return [
        "--multirun",
        f"data.dir={data_dir.parent / 'missing'},{data_dir}",
        "data.val_fraction=0.25",
        "trainer.epochs=2",
        "trainer.batch_size=16",
        "trainer.progress_bar=false",
        f"logger={logger}",
        f"hydra.sweep.dir={sweep_dir}",
        *(parallel if launcher == "joblib" else []),
    ]


# --- configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["none", "tensorboard", "mlflow", "wandb"])
def test_logger_options_compose(option):
    from omegaconf import OmegaConf

    config = OmegaConf.to_object(compose([f"logger={option}"]))
    assert config.logger.name == LoggerName(option)
    assert config.logger.tracking_uri is None and config.logger.project is None


@pytest.mark.parametrize("project", ["", "team/agnews", "a:b", "x" * 129])
def test_a_project_wandb_would_refuse_is_refused_naming_the_key(project):
    with pytest.raises(ValueError, match=r"logger\.project=.*W&B project name"):
        LoggerConfig(name=LoggerName.wandb, project=project)


@pytest.mark.parametrize("uri", ["file:///tmp/mlruns", "/tmp/mlruns", "mlruns"])
def test_the_deprecated_file_store_is_refused_naming_the_key(uri):
    with pytest.raises(ValueError, match=r"logger\.tracking_uri=.*file store"):
        LoggerConfig(name=LoggerName.mlflow, tracking_uri=uri)


def test_an_unreachable_server_is_named_and_a_listening_one_is_not(unreachable_url):
    assert "cannot connect to 127.0.0.1" in unreachable_server(unreachable_url)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert unreachable_server(f"http://127.0.0.1:{server.getsockname()[1]}") is None
    assert unreachable_server("sqlite:////tmp/mlflow.db") is None and unreachable_server("databricks") is None


@pytest.mark.slow
def test_an_unreachable_mlflow_server_stops_the_command_at_once(ag_news_dir, tmp_path, cli, unreachable_url):
    pytest.importorskip("mlflow")
    started = time.monotonic()
    where = f"hydra.run.dir={tmp_path / 'run'}"
    completed = cli(
        "agnews.run", where, f"data.dir={ag_news_dir}", "logger=mlflow", f"logger.tracking_uri={unreachable_url}"
    )
    # MLflow's client alone would retry for about two minutes before the run went on untracked.
    assert time.monotonic() - started < 60
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert f"logger.tracking_uri={unreachable_url}: cannot connect" in completed.stderr
    assert "logger=none" in completed.stderr
    assert not (tmp_path / "run" / "results.json").exists()


def test_the_logger_never_splits_results_or_blocks_a_resume():
    saved = {"logger": {"name": "none"}, "seed": 0}
    current = {"logger": {"name": "mlflow", "tracking_uri": "http://host:5000"}, "seed": 0}
    assert config_differences(saved, current) == []


def test_mlflow_telemetry_is_off_unless_the_user_set_it(monkeypatch):
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    quiet_mlflow()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")  # the user's choice stands
    quiet_mlflow()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"


def test_wandb_is_offline_unless_the_user_chose_a_mode(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    quiet_wandb()
    assert os.environ["WANDB_MODE"] == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")  # the user's choice stands
    quiet_wandb()
    assert os.environ["WANDB_MODE"] == "online"


# --- a missing package ---------------------------------------------------------------------------------


def test_a_missing_package_fails_before_any_data_is_read(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    config = tiny_config(logger=LoggerConfig(name=LoggerName.mlflow))
    config.data.dir = str(tmp_path / "no-such-data")  # reading data would fail with another message
    expected = r'logger=mlflow needs the mlflow package.*pip install -e "\.\[mlflow\]"'
    with pytest.raises(MissingExtraError, match=expected):
        run_experiment(config, tmp_path / "run")
    assert not (tmp_path / "run" / "results.json").exists()


def test_a_missing_wandb_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(MissingExtraError, match=r'logger=wandb needs the wandb package.*pip install -e "\.\[wandb\]"'):
        require_packages(LoggerName.wandb)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["single", "sweep"])
def test_a_missing_package_stops_the_command_before_any_job(ag_news_dir, tmp_path, cli, mode):
    shadow = tmp_path / "shadow" / "tensorboard"  # a tensorboard whose import fails, as when it is not installed
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'tensorboard'\")\n")
    folder = tmp_path / "out"
    where = ["--multirun", f"hydra.sweep.dir={folder}", "seed=0,1"] if mode == "sweep" else [f"hydra.run.dir={folder}"]
    environment = {"PYTHONPATH": str(shadow.parent)}
    completed = cli("agnews.run", *where, f"data.dir={ag_news_dir}", "logger=tensorboard", env=environment)
    assert completed.returncode == 2
    assert "logger=tensorboard needs the tensorboard package" in completed.stderr
    assert 'pip install -e ".[tensorboard]"' in completed.stderr and "Traceback" not in completed.stderr
    assert not list(folder.rglob("results.json"))


# --- TensorBoard ---------------------------------------------------------------------------------------


def read_events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def read_hparams(events) -> tuple[dict, int | None]:
    """(the session's hyperparameters, its end status) from the HParams plugin's records."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    hparams, status = {}, None
    for content in events.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.WhichOneof("data") == "session_start_info":
            hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in data.session_start_info.hparams.items()}
        elif data.WhichOneof("data") == "session_end_info":
            status = data.session_end_info.status
    return hparams, status


def scalars(events, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in events.Scalars(tag)]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_tensorboard_holds_each_jobs_curves_hparams_and_status(ag_news_dir, tmp_path, cli, launcher):
    pytest.importorskip("tensorboard")
    from tensorboard.plugins.hparams import api_pb2

    sweep_dir = tmp_path / "sweep"
    completed = cli("agnews.run", *sweep_args(ag_news_dir, sweep_dir, "tensorboard", launcher))
    assert completed.returncode == 1, completed.stderr[-3000:]  # job 0 failed, and the sweep says so
    results = results_of(sweep_dir / "1")
    events = read_events(sweep_dir / "1")
    for key, tag in (("val_acc", "val/acc"), ("train_loss", "train/loss"), ("lr", "train/lr")):
        logged = scalars(events, tag)
        assert [step for step, _ in logged] == [1, 2]
        assert [value for _, value in logged] == pytest.approx([epoch[key] for epoch in results["history"]])
    assert scalars(events, "test/acc")[0][1] == pytest.approx(results["metrics"]["test_acc"])
    assert scalars(events, "model/parameters")[0][1] == results["metrics"]["num_parameters"]
    hparams, status = read_hparams(events)
    assert status == api_pb2.STATUS_SUCCESS
    flat = flatten(results["config"])
    assert hparams["seed"] == 0 and hparams["model.hidden_size"] == flat["model.hidden_size"]
    assert hparams["data.dir"] == str(ag_news_dir) and hparams["optimizer.name"] == flat["optimizer.name"]

    failed = read_events(sweep_dir / "0")  # tracking started before its data read failed
    assert results_of(sweep_dir / "0")["status"] == "failed"
    assert read_hparams(failed)[1] == api_pb2.STATUS_FAILURE
    assert "failed" in str(failed.Tensors("status/text_summary")[0].tensor_proto.string_val[0])


def test_a_resumed_run_logs_each_epoch_once(tmp_path, tiny_config, killed_run):
    pytest.importorskip("tensorboard")
    config = tiny_config(trainer={"epochs": 3}, logger=TENSORBOARD)
    run_dir = tmp_path / "run"
    killed_run(config, run_dir, epochs_done=1)
    config.resume = True
    results = run_experiment(config, run_dir)
    assert results["resumed_after_epoch"] == 1
    logged = scalars(read_events(run_dir), "val/acc")
    assert [step for step, _ in logged] == [1, 2, 3]
    assert [value for _, value in logged] == pytest.approx([epoch["val_acc"] for epoch in results["history"]])


def test_tracking_cost_is_measured_and_logged(tmp_path, tiny_config, caplog):
    pytest.importorskip("tensorboard")
    caplog.set_level("INFO", logger="agnews.tracking.tracker")
    run_experiment(tiny_config(logger=TENSORBOARD), tmp_path / "run")
    line = next(record.getMessage() for record in caplog.records if record.getMessage().startswith("Tracking"))
    assert "s to start" in line and "ms per epoch" in line and "% of an epoch" in line
    assert scalars(read_events(tmp_path / "run"), "perf/tracking_s_per_epoch")[0][1] > 0


# --- MLflow --------------------------------------------------------------------------------------------


def mlflow_client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_mlflow_holds_one_run_per_job_in_the_sweeps_experiment(ag_news_dir, tmp_path, cli, launcher):
    pytest.importorskip("mlflow")
    sweep_dir = tmp_path / "sweep"
    completed = cli("agnews.run", *sweep_args(ag_news_dir, sweep_dir, "mlflow", launcher), timeout=400)
    assert completed.returncode == 1, completed.stderr[-3000:]
    client = mlflow_client(f"sqlite:///{sweep_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(str(sweep_dir))
    runs = {run.data.tags["job"]: run for run in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["0", "1"]

    good, results = runs["1"], results_of(sweep_dir / "1")
    assert good.info.status == "FINISHED" and good.data.tags["status"] == "completed"
    config = flatten(results["config"])
    assert good.data.params == {key: v if isinstance(v, str) else json.dumps(v) for key, v in config.items()}
    history = client.get_metric_history(good.info.run_id, "val/acc")
    assert [(m.step, m.value) for m in history] == [(e["epoch"], e["val_acc"]) for e in results["history"]]
    assert good.data.metrics["test/acc"] == pytest.approx(results["metrics"]["test_acc"])
    assert good.data.metrics["model/parameters"] == results["metrics"]["num_parameters"]
    tags = good.data.tags
    assert tags["sweep"] == str(sweep_dir) and tags["run_dir"] == str(sweep_dir / "1")
    assert tags["git_commit"] == results["git_commit"]
    assert f"data.dir={ag_news_dir}" in tags["overrides"]
    assert good.info.run_name == tags["mlflow.runName"] and "logger=mlflow" not in good.info.run_name
    assert f"data.dir={ag_news_dir}" in good.info.run_name

    failed = runs["0"]
    assert failed.info.status == "FAILED" and failed.data.tags["status"] == "failed"
    assert "missing" in failed.data.tags["error"]


def test_a_broken_store_costs_a_warning_not_the_run(tmp_path, tiny_config, caplog):
    pytest.importorskip("mlflow")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be\n")
    logger = LoggerConfig(name=LoggerName.mlflow, tracking_uri=f"sqlite:///{blocker / 'mlflow.db'}")
    results = run_experiment(tiny_config(logger=logger), tmp_path / "run")
    assert results["status"] == "completed" and results_of(tmp_path / "run")["status"] == "completed"
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any("mlflow tracking failed at start" in message for message in warnings)


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["run", "it's run"])  # a quote cannot go into MLflow's filter strings
def test_a_resumed_run_continues_its_mlflow_run(tmp_path, tiny_config, killed_run, folder):
    pytest.importorskip("mlflow")
    config = tiny_config(trainer={"epochs": 3}, logger=LoggerConfig(name=LoggerName.mlflow))
    run_dir = tmp_path / folder
    killed_run(config, run_dir, epochs_done=1)
    client = mlflow_client(f"sqlite:///{run_dir / 'mlflow.db'}")
    (killed,) = client.search_runs([client.get_experiment_by_name(str(run_dir)).experiment_id])
    assert killed.info.status == "KILLED" and killed.data.tags["status"] == "interrupted"

    config.resume = True
    results = run_experiment(config, run_dir)
    (resumed,) = client.search_runs([client.get_experiment_by_name(str(run_dir)).experiment_id])
    assert resumed.info.run_id == killed.info.run_id and resumed.info.status == "FINISHED"
    history = client.get_metric_history(resumed.info.run_id, "val/acc")
    assert [(m.step, m.value) for m in history] == [(e["epoch"], e["val_acc"]) for e in results["history"]]


@pytest.mark.slow
def test_commands_creating_one_sqlite_store_at_once_keep_every_experiment(tmp_path, repo):
    """Two sweeps with one logger.tracking_uri=sqlite:///... start together: MLflow's migrations of a fresh store
    run once, under a lock beside it (without it: "duplicate column name", a lost run)."""
    pytest.importorskip("mlflow")
    store = tmp_path / "one.db"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from agnews.config import LoggerConfig, LoggerName\n"
        "from agnews.tracking.mlflow_logger import open_experiment\n"
        "import mlflow, sqlalchemy, alembic  # imported before the start line, so all race at once\n"
        "time.sleep(max(0.0, float(sys.argv[1]) - time.time()))\n"
        f"config = LoggerConfig(name=LoggerName.mlflow, tracking_uri={f'sqlite:///{store}'!r})\n"
        "client, experiment = open_experiment(config, Path(sys.argv[2]))\n"
        "print('experiment', experiment)\n"
    )
    start = time.time() + 8  # after every interpreter has imported MLflow
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(start), str(tmp_path / f"sweep{index}")],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        )
        for index in range(3)
    ]
    outputs = [(racer.wait(timeout=120), *racer.communicate()) for racer in racers]
    assert [code for code, _, _ in outputs] == [0, 0, 0], [err[-1500:] for _, _, err in outputs]
    names = {experiment.name for experiment in mlflow_client(f"sqlite:///{store}").search_experiments()}
    assert {str(tmp_path / f"sweep{index}") for index in range(3)} <= names


# --- Weights & Biases ----------------------------------------------------------------------------------

WANDB = LoggerConfig(name=LoggerName.wandb)


@pytest.fixture
def wandb_home(tmp_path, monkeypatch) -> Path:
    """Offline W&B whose own folders (settings, cache, service log, artifacts) are in tmp_path, not the
    user's; W&B's service is stopped afterwards, so the next test's starts with that test's folders."""
    wandb = pytest.importorskip("wandb")
    home = tmp_path / "wandb-home"
    monkeypatch.setenv("WANDB_MODE", "offline")
    for variable, folder in (
        ("WANDB_DIR", "dir"),
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
    ):
        monkeypatch.setenv(variable, str(home / folder))
    yield home
    wandb.teardown()


def wandb_files(run_dir: Path) -> list[Path]:
    return list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))


def read_wandb_run(path: Path) -> dict:
    """One .wandb file as W&B's own reader sees it: `wandb leet inspect --json` prints each record of the
    transaction log as a JSON line (wandb-core reads the file; no network). Returns the run record (id,
    name, group, project, start time), the config, the history rows, the summary (its updates in order)
    and the exit code."""
    command = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)]
    printed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    run, history, summary, exit_code = {}, [], {}, None
    for line in printed.splitlines():
        record = json.loads(line)
        kind, content = record["type"], record.get(record["type"], {})
        if kind == "run":
            run = content
        elif kind == "history":
            history.append(content["item"])
        elif kind == "summary":
            summary.update(content.get("update", {}))
        elif kind == "exit":
            exit_code = content.get("exit_code", 0)  # protobuf's JSON leaves out zeros
    config = {key: value for key, value in run["config"]["update"].items() if key != "_wandb"}
    return {"run": run, "config": config, "history": history, "summary": summary, "exit_code": exit_code}


def read_wandb_runs(run_dir: Path) -> list[dict]:
    """Every W&B run file in a run folder (one per attempt), oldest first."""
    return sorted(map(read_wandb_run, wandb_files(run_dir)), key=lambda found: found["run"]["start_time"])


def logged_epochs(found: dict, key: str) -> list[tuple[int, float]]:
    return [(row["_step"], row[EPOCH_METRICS[key]]) for row in found["history"]]


def recorded_epochs(results: dict, key: str) -> list[tuple[int, float]]:
    return [(epoch["epoch"], pytest.approx(epoch[key])) for epoch in results["history"]]


def test_wandb_holds_the_runs_config_curves_final_metrics_and_status(tmp_path, tiny_config, wandb_home):
    import wandb

    run_dir = tmp_path / "run"
    results = run_experiment(tiny_config(logger=WANDB), run_dir)
    assert wandb.run is None  # no global run was left to leak into the next job
    (found,) = read_wandb_runs(run_dir)
    run = found["run"]
    assert run["run_id"] == run_key(run_dir) and run["project"] == "agnews"
    assert run["display_name"] == "run" and not run.get("run_group")  # a single run: no sweep to group by
    assert flatten(found["config"]) == flatten(results["config"])
    for key in ("val_acc", "train_loss", "lr", "samples_per_s"):
        assert logged_epochs(found, key) == recorded_epochs(results, key)
    summary = found["summary"]
    assert summary["test/acc"] == pytest.approx(results["metrics"]["test_acc"])
    assert summary["model/parameters"] == results["metrics"]["num_parameters"] and summary["best_epoch"] == 2
    assert summary["status"] == "completed" and found["exit_code"] == 0
    assert summary["run_dir"] == str(run_dir) and summary["git_commit"] == results["git_commit"]
    # W&B wrote the run into the run folder; outside it only its service log, and that into WANDB_CACHE_DIR.
    outside = [path.relative_to(wandb_home) for path in wandb_home.rglob("*") if path.is_file()]
    assert all(path.parts[:3] == ("cache", "wandb", "logs") for path in outside), outside


def test_a_failed_run_ends_failed_in_wandb(tmp_path, tiny_config, wandb_home):
    config = tiny_config(logger=WANDB)
    config.data.dir = str(tmp_path / "missing")  # tracking starts, then reading the data fails
    with pytest.raises(Exception, match="missing"):
        run_experiment(config, tmp_path / "run")
    assert results_of(tmp_path / "run")["status"] == "failed"
    (found,) = read_wandb_runs(tmp_path / "run")
    assert found["summary"]["status"] == "failed" and "missing" in found["summary"]["error"]
    assert found["exit_code"] == 1 and found["history"] == []


def test_a_resumed_run_continues_its_wandb_run_with_every_epoch_once(tmp_path, tiny_config, killed_run, wandb_home):
    config = tiny_config(trainer={"epochs": 3}, logger=WANDB)
    run_dir = tmp_path / "run"
    killed_run(config, run_dir, epochs_done=1)
    config.resume = True
    results = run_experiment(config, run_dir)
    killed, resumed = read_wandb_runs(run_dir)
    assert killed["run"]["run_id"] == resumed["run"]["run_id"] == run_key(run_dir)
    assert killed["summary"]["status"] == "interrupted" and killed["exit_code"] == 1
    # Offline, the resumed attempt is a second file of the same W&B run, which `wandb sync` uploads after the
    # first, replacing its history: it holds every epoch, each once.
    assert logged_epochs(resumed, "val_acc") == recorded_epochs(results, "val_acc")
    assert [row["_step"] for row in resumed["history"]] == [1, 2, 3]
    assert resumed["summary"]["status"] == "completed" and resumed["exit_code"] == 0


@pytest.mark.parametrize("blocked", ["unwritable", "a file named wandb"])
def test_a_run_folder_wandb_cannot_write_costs_a_warning_not_the_run(
    tmp_path, tiny_config, wandb_home, monkeypatch, caplog, blocked
):
    import tempfile

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if blocked == "unwritable":  # as W&B sees it (tests may run as root, which any folder lets write)
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != run_dir and real_access(path, mode))
    else:
        (run_dir / "wandb").write_text("a file where W&B's folder should be\n")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-temp"))  # where W&B would fall back to
    (tmp_path / "system-temp").mkdir()
    started = time.monotonic()
    results = run_experiment(tiny_config(logger=WANDB), run_dir)
    assert results["status"] == "completed" and time.monotonic() - started < 60
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any("wandb tracking failed at start" in message for message in warnings)
    assert not list((tmp_path / "system-temp").rglob("*.wandb"))


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_wandb_groups_a_sweeps_jobs_one_run_each(ag_news_dir, tmp_path, cli, wandb_home, launcher):
    sweep_dir = tmp_path / "sweep"
    completed = cli("agnews.run", *sweep_args(ag_news_dir, sweep_dir, "wandb", launcher))
    assert completed.returncode == 1, completed.stderr[-3000:]  # job 0 failed, and the sweep says so
    (failed,), (good,) = read_wandb_runs(sweep_dir / "0"), read_wandb_runs(sweep_dir / "1")
    assert failed["run"]["run_group"] == good["run"]["run_group"] == str(sweep_dir)
    assert failed["run"]["run_id"] != good["run"]["run_id"]
    assert f"data.dir={ag_news_dir}" in good["run"]["display_name"]
    assert "logger=wandb" not in good["run"]["display_name"]
    results = results_of(sweep_dir / "1")
    assert logged_epochs(good, "val_acc") == recorded_epochs(results, "val_acc")
    assert good["summary"]["test/acc"] == pytest.approx(results["metrics"]["test_acc"])
    assert good["summary"]["status"] == "completed" and good["exit_code"] == 0
    assert good["summary"]["sweep"] == str(sweep_dir) and good["summary"]["job"] == "1"
    assert failed["summary"]["status"] == "failed" and failed["exit_code"] == 1
    assert "wandb:" not in completed.stdout + completed.stderr  # W&B stays silent


def test_the_private_writer_tensorboard_sessions_need_is_still_there():
    """TensorBoardTracker writes a live HParams session through SummaryWriter._get_file_writer (private): fail here,
    plainly, if torch changes it."""
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    assert callable(getattr(SummaryWriter, "_get_file_writer", None))
