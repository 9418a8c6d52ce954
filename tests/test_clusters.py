"""Beyond one process: the launcher presets under conf/hydra/launcher/, a sweep on a local Ray cluster,
and a job that submitit requeues after a preemption continuing its own run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from agnews.config import compose
from agnews.sweep import launchers


def launcher_config(*overrides: str) -> dict:
    import agnews.run  # noqa: F401  (registers the schemas and the agnews.* resolvers, as a launch does)

    config = compose(list(overrides), with_hydra=True)
    return OmegaConf.to_container(config.hydra.launcher, resolve=True)


@pytest.mark.parametrize("preset", ["slurm_cpu", "slurm_gpu"])
def test_slurm_presets_reserve_the_threads_a_job_uses_and_take_overrides(preset):
    default = launcher_config(f"hydra/launcher={preset}")
    assert default["cpus_per_task"] == 1  # trainer.num_threads unset: one core, which torch then uses
    assert default["gpus_per_node"] == (1 if preset == "slurm_gpu" else None)
    assert default["max_num_timeout"] > 0  # a job that hits its time limit is requeued and continues

    changed = launcher_config(
        f"hydra/launcher={preset}", "trainer.num_threads=4", "hydra.launcher.partition=long", "hydra.launcher.mem_gb=3"
    )
    assert (changed["cpus_per_task"], changed["partition"], changed["mem_gb"]) == (4, "long", 3)
    launcher = instantiate(changed, _execution_whitelist_=changed["_target_"])  # as Hydra builds the launcher
    assert launcher.params["cpus_per_task"] == 4 and launcher.params["timeout_min"] == default["timeout_min"]


def test_ray_presets_reserve_the_threads_and_gpus_a_job_uses():
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="the ray extra (pip install -e '.[ray]')")
    local = launcher_config("hydra/launcher=ray_local", "trainer.num_threads=3", "trainer.device=cpu")
    assert local["ray"]["remote"] == {"num_cpus": 3, "num_gpus": 0}
    cluster = launcher_config("hydra/launcher=ray_cluster", "trainer.device=cuda")
    assert cluster["ray"]["remote"] == {"num_cpus": 1, "num_gpus": 1}
    # hydra-ray-launcher fills in a 75 MB object store when the key is absent, and Ray refuses any size
    # when connecting to an existing cluster.
    assert "object_store_memory" in cluster["ray"]["init"] and cluster["ray"]["init"]["object_store_memory"] is None


def test_cpus_and_gpus_follow_the_trainer_settings(monkeypatch):
    assert launchers.cpus_for_threads(None) == 1 and launchers.cpus_for_threads(3) == 3
    assert launchers.gpus_for_device("cpu") == 0 and launchers.gpus_for_device("cuda:1") == 1
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert launchers.gpus_for_device("auto") == 1


def test_a_launcher_whose_extra_is_missing_names_the_extra(monkeypatch, capsys):
    monkeypatch.setattr(launchers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit) as refused:
        launchers.require_launcher(["seed=0,1", "hydra/launcher=ray_local"])
    assert refused.value.code == 2
    assert (
        capsys.readouterr().err
        == "agnews: error: hydra/launcher=ray_local needs the ray extra: pip install -e '.[ray]'\n"
    )
    with pytest.raises(SystemExit):
        launchers.require_launcher(["hydra/launcher=slurm_gpu"])
    assert "the launchers extra" in capsys.readouterr().err
    launchers.require_launcher(["hydra/launcher=basic", "seed=1"])  # nothing to install


def read_results(job_dir: Path) -> dict | None:
    try:
        return json.loads((job_dir / "results.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None  # not written yet (an atomic write never leaves a partial file)


# --- Ray -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_sweep_on_a_local_ray_cluster_writes_complete_jobs_and_the_summary(
    ag_news_dir, tmp_path, cli, read_summary, sweep_args
):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="the ray extra (pip install -e '.[ray]')")
    sweep_dir = tmp_path / "sweep"
    args = sweep_args(
        ag_news_dir,
        sweep_dir,
        "hydra/launcher=ray_local",
        "hydra.launcher.ray.init.num_cpus=2",
        "trainer.num_threads=1",  # one CPU per job: both jobs run at once
        "seed=0,1",
    )
    done = cli("agnews.run", *args, env={"RAY_AUTH_MODE": "disabled"}, timeout=240)  # no token in ~/.ray
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_summary(sweep_dir)
    assert [(row["job"], row["seed"], row["status"]) for row in rows] == [
        ("0", "0", "completed"),
        ("1", "1", "completed"),
    ]
    launches = set()
    for row in rows:
        job_dir = sweep_dir / row["job"]
        results = read_results(job_dir)
        assert results["status"] == "completed" and float(row["test_acc"]) == results["metrics"]["test_acc"]
        assert {"model.pt", "vocab.txt", "history.csv", ".hydra"} <= {path.name for path in job_dir.iterdir()}
        assert not (job_dir / "checkpoint.pt").exists()
        launches.add(results["launch_job"].split("/")[0])
    assert len(launches) == 1  # both jobs carry the id of their launch


# --- requeue --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_requeued_job_continues_its_own_run_and_a_new_launch_still_refuses(
    tmp_path, make_ag_news, repo, cli, read_summary
):
    data_dir = make_ag_news("data", train_per_class=400, test_per_class=50)  # about a second per epoch
    sweep_dir, job_dir = tmp_path / "sweep", tmp_path / "sweep" / "0"
    args = [
        "--multirun",
        "hydra/launcher=submitit_local",
        f"data.dir={data_dir}",
        "trainer.epochs=3",
        "trainer.batch_size=16",
        "trainer.progress_bar=false",
        f"hydra.sweep.dir={sweep_dir}",
        "seed=0",
    ]
    command = [sys.executable, "-m", "agnews.run", *args]
    sweep = subprocess.Popen(command, cwd=repo, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while len((read_results(job_dir) or {}).get("history", [])) < 1:
            assert sweep.poll() is None, sweep.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the job never finished its first epoch"
            time.sleep(0.02)
        before = read_results(job_dir)["history"]
        # The signal Slurm sends a job before its time limit or when preempting it (submitit's --signal):
        # submitit pickles the job again through the launcher's checkpoint() and requeues it.
        job_pid = json.loads((job_dir / ".agnews.owner").read_text())["pid"]  # the process holding the run
        os.kill(job_pid, signal.SIGUSR2)
        statuses = set()
        while sweep.poll() is None and time.monotonic() < deadline:
            seen = read_results(job_dir) or {}
            statuses.add((seen.get("status"), seen.get("error")))
            time.sleep(0.02)
        _, stderr = sweep.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()
    assert sweep.returncode == 0, stderr.decode()[-3000:]

    # The first attempt stopped and said so; the requeued one continued it to the end.
    assert ("interrupted", "stopped by SystemExit(144), as submitit stops a preempted or timed-out job") in statuses
    results = read_results(job_dir)
    assert results["status"] == "completed" and [epoch["epoch"] for epoch in results["history"]] == [1, 2, 3]
    kept = results["resumed_after_epoch"]
    assert len(before) <= kept < 3
    assert results["history"][: len(before)] == before  # the finished epochs were kept, not redone
    log = "".join(path.read_text() for path in (sweep_dir / ".submitit").rglob("*_log.out"))
    assert "this job is preempted" in log and "Requeued job" in log and "continuing it" in log
    assert [row["status"] for row in read_summary(sweep_dir)] == ["completed"]
    assert not (job_dir / "checkpoint.pt").exists()

    # The same command launched again is a new launch, not a requeue: it refuses the folder untouched.
    recorded = (job_dir / "results.json").read_bytes()
    again = cli("agnews.run", *args)
    assert again.returncode == 2 and "already holds a run (completed)" in again.stderr
    assert (job_dir / "results.json").read_bytes() == recorded


def test_jobs_at_once_share_the_cores_and_the_gpus(monkeypatch):
    """The launch plans each job's threads (cores / jobs at once) and, on a machine with GPUs, slots on them: a
    fake machine of 8 cores and 2 GPUs, four jobs at once."""
    import torch

    from agnews.config import compose
    from agnews.sweep.launchers import plan_resources

    monkeypatch.setattr(launchers, "usable_cores", lambda: 8)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    config = compose(["hydra/launcher=joblib", "hydra.launcher.n_jobs=4"], with_hydra=True)
    plan_resources(config, jobs=9)
    marks = dict(item.removeprefix("++hydra.job.env_set.").split("=", 1) for item in config.hydra.overrides.hydra)
    assert marks["AGNEWS_THREADS"] == "'2'" and marks["AGNEWS_GPU_SLOTS"] == "'2x2'"
    assert "4 jobs at once on 8 cores" in marks["AGNEWS_THREADS_WHY"]

    few = compose(["hydra/launcher=joblib", "trainer.device=cpu"], with_hydra=True)  # n_jobs -1: every core
    plan_resources(few, jobs=2)  # two jobs only: 4 threads each, and no GPU slots for CPU jobs
    assert "++hydra.job.env_set.AGNEWS_THREADS='4'" in few.hydra.overrides.hydra
    assert not [item for item in few.hydra.overrides.hydra if "GPU_SLOTS" in item]

    basic = compose([], with_hydra=True)
    plan_resources(basic, jobs=9)  # one job at a time: each a lone run that measures the machine itself
    assert not [item for item in basic.hydra.overrides.hydra if "AGNEWS_THREADS" in item]


def test_the_local_preset_runs_as_many_jobs_as_the_cores_memory_and_gpus_hold(monkeypatch):
    monkeypatch.setattr(launchers, "usable_cores", lambda: 16)
    monkeypatch.setattr(launchers, "available_memory", lambda: 12 * 2**30)
    assert launchers.local_jobs("cpu", 1.5, 2.0) == 8  # 12 GiB / 1.5 GiB a job, though 16 cores
    monkeypatch.setattr(launchers, "available_memory", lambda: 100 * 2**30)
    assert launchers.local_jobs("cpu", 1.5, 2.0) == 16
    monkeypatch.setattr(launchers, "gpu_slots", lambda device, gib: [5, 3] if device in ("auto", "cuda") else [])
    assert launchers.local_jobs("auto", 1.5, 2.0) == 8  # two GPUs holding 5 and 3 jobs
    assert launchers.local_jobs("cpu", 1.5, 2.0) == 16
    assert launcher_config("hydra/launcher=local")["n_jobs"] >= 1  # the preset resolves on this machine


def test_gpu_slots_go_round_the_devices_and_wait_when_all_are_taken(tmp_path):
    import threading

    from agnews.gpu_slots import gpu_slot, parse_slots, slots_value

    assert slots_value(2, 4) == "2x2" and slots_value(3, 4) == "3x2" and parse_slots("2x2") == (2, 2)
    assert parse_slots("") is None and parse_slots("0x1") is None
    contexts = [gpu_slot(tmp_path, 2, 2) for _ in range(4)]
    devices = [context.__enter__() for context in contexts]
    assert devices == [0, 1, 0, 1]  # one on each device before a second on any
    fifth: list[int] = []
    waiter = threading.Thread(target=lambda: fifth.append(gpu_slot(tmp_path, 2, 2, poll_s=0.05).__enter__()))
    waiter.start()
    waiter.join(timeout=0.5)
    assert waiter.is_alive() and not fifth  # all four slots are held
    contexts[1].__exit__(None, None, None)  # a job on device 1 ends
    waiter.join(timeout=5)
    assert fifth == [1]
    for context in (contexts[0], *contexts[2:]):
        context.__exit__(None, None, None)
