"""What summary.csv, results.json and the files behind them may never do: lose a run, label it with
another run's settings, call an exploded run completed, mix two datasets, or trust a damaged file.
Each test is a repro of a way they once did, while the command exited 0."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from agnews.config import OptimizerConfig, OptimizerName
from agnews.experiment import run_experiment
from agnews.locks import FolderBusyError, claim_folder
from agnews.predict import load_predictor
from agnews.report.summary_csv import write_summary
from agnews.results import BASIC_SWEEPER, CHECKPOINT_FILE, MODEL_FILE
from agnews.storage import AgnewsError
from agnews.sweep import record_launched, start_launch
from agnews.sweep.summary import SummaryCallback
from agnews.train import DIVERGENCE_WINDOW, DivergedError, DivergenceMonitor


@pytest.fixture
def hold_claim(repo):
    """hold_claim(folder): another process that holds `folder`'s claim until the test ends."""
    holders = []

    def hold(folder: Path) -> subprocess.Popen:
        script = textwrap.dedent(
            f"""
            import sys, time
            from agnews.locks import claim_folder
            claim = claim_folder({str(folder)!r})
            print("claimed", flush=True)
            time.sleep(120)
            """
        )
        holder = subprocess.Popen([sys.executable, "-c", script], cwd=repo, stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "claimed"
        holders.append(holder)
        return holder

    yield hold
    for holder in holders:
        holder.kill()
        holder.wait()


# --- 1. two commands, one folder -----------------------------------------------------------------------


def test_a_claimed_folder_refuses_a_second_process_and_frees_when_it_dies(tmp_path, hold_claim):
    holder = hold_claim(tmp_path / "run")
    with pytest.raises(FolderBusyError, match=rf"in use by another agnews command \(pid {holder.pid} on "):
        claim_folder(tmp_path / "run")
    holder.kill()  # a killed holder leaves no stale claim
    holder.wait()
    claim_folder(tmp_path / "run").release()


def test_a_refused_search_leaves_no_folder_unless_another_search_shares_it(tmp_path):
    fresh = claim_folder(tmp_path / "alone", shared=True)
    fresh.abandon()  # refused: the folder it made goes
    assert not (tmp_path / "alone").exists()
    first = claim_folder(tmp_path / "shared", shared=True)
    second = claim_folder(tmp_path / "shared", shared=True)  # another search on the same study
    first.abandon()  # refused while the other works there: its folder and claim stay
    assert sorted(path.name for path in (tmp_path / "shared").iterdir()) == [".agnews.lock", ".agnews.owner"]
    with pytest.raises(FolderBusyError):
        claim_folder(tmp_path / "shared")  # the other's shared claim still holds off an exclusive one
    second.release()
    (tmp_path / "kept").mkdir()
    claim_folder(tmp_path / "kept", shared=True).abandon()  # a folder that was there before stays
    assert (tmp_path / "kept").is_dir()


@pytest.mark.slow
def test_a_second_command_into_a_busy_folder_fails_before_hydra_writes_there(
    ag_news_dir, tmp_path, cli, hold_claim, sweep_args
):
    sweep_dir, run_dir = tmp_path / "sweep", tmp_path / "run"
    hold_claim(sweep_dir)
    hold_claim(run_dir)
    swept = cli("agnews.run", *sweep_args(ag_news_dir, sweep_dir, "seed=2,3"))
    single = cli("agnews.run", f"data.dir={ag_news_dir}", f"hydra.run.dir={run_dir}", "trainer.epochs=1")
    for done in (swept, single):
        assert done.returncode == 2, done.stderr[-2000:]
        assert "is in use by another agnews command" in done.stderr and "Traceback" not in done.stderr
    # Nothing of the folders' owner was touched: no multirun.yaml, no .hydra/, no job folders.
    assert sorted(path.name for path in sweep_dir.iterdir()) == [".agnews.lock", ".agnews.owner"]
    assert sorted(path.name for path in run_dir.iterdir()) == [".agnews.lock", ".agnews.owner"]


@pytest.mark.slow
def test_two_sweeps_started_together_into_one_folder_lose_nothing(
    ag_news_dir, tmp_path, repo, read_summary, sweep_args
):
    sweep_dir = tmp_path / "sweep"
    command = [sys.executable, "-m", "agnews.run"]
    started = [
        subprocess.Popen(
            [*command, *sweep_args(ag_news_dir, sweep_dir, f"seed={seeds}")],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seeds in ("0,1", "2,3")
    ]
    finished = [(process.wait(timeout=300), process.communicate()[1]) for process in started]
    codes = sorted(code for code, _ in finished)
    assert codes == [0, 2], finished
    loser = next(err for code, err in finished if code == 2)
    assert "in use by another agnews command" in loser
    rows = read_summary(sweep_dir)
    assert [row["status"] for row in rows] == ["completed", "completed"]
    seeds = [row["seed"] for row in rows]
    assert seeds in (["0", "1"], ["2", "3"])
    for row in rows:  # every row is what its job recorded, and the job's Hydra files agree
        recorded = json.loads((sweep_dir / row["job"] / "results.json").read_text())
        assert str(recorded["config"]["seed"]) == row["seed"]
        assert float(row["test_acc"]) == recorded["metrics"]["test_acc"]
        assert f"seed={row['seed']}" in yaml.safe_load(
            (sweep_dir / row["job"] / ".hydra" / "overrides.yaml").read_text()
        )


def test_default_run_and_sweep_folders_do_not_collide_within_a_second(repo):
    hydra = yaml.safe_load((repo / "conf" / "config.yaml").read_text())["hydra"]
    assert hydra["run"]["dir"].endswith("%f}") and hydra["sweep"]["dir"].endswith("%f}")


# --- 2. labels come from what each run recorded ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("first", "second", "named"),
    [
        (["seed=0,1"], ["seed=1,0"], "seed: 0 -> 1"),
        (["embedding=learned"], ["embedding=learned100,learned"], "embedding.dim: 32 -> 100"),
    ],
    ids=["reordered seeds", "other embedding"],
)
def test_a_resume_whose_jobs_differ_from_the_folder_is_refused_untouched(
    ag_news_dir, tmp_path, cli, first, second, named, sweep_args
):
    sweep_dir = tmp_path / "sweep"
    assert cli("agnews.run", *sweep_args(ag_news_dir, sweep_dir, *first)).returncode == 0
    before = {path: path.read_bytes() for path in sorted(sweep_dir.rglob("*")) if path.is_file()}

    refused = cli("agnews.run", *sweep_args(ag_news_dir, sweep_dir, *second, "resume=true"))

    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"nothing was launched, nothing in {sweep_dir} was changed" in refused.stderr
    assert "job 0 (" in refused.stderr and named in refused.stderr
    after = {path: path.read_bytes() for path in sorted(sweep_dir.rglob("*")) if path.is_file()}
    changed = [path for path in after if before.get(path) != after[path]]
    assert [path.name for path in changed] in ([], [".agnews.owner"])  # only the claim's note of who held it


def test_summary_labels_come_from_results_json_even_when_hydra_files_lie(
    ag_news_dir, tmp_path, tiny_config, read_summary
):
    sweep_dir = tmp_path / "sweep"
    for job, seed in enumerate((0, 1)):
        run_experiment(
            tiny_config(seed=seed, trainer={"epochs": 1}),
            sweep_dir / str(job),
            [f"seed={seed}"],
            job_of(sweep_dir, job),
        )
        (sweep_dir / str(job) / ".hydra").mkdir()
        # What Hydra leaves when a later, refused command reached the folder.
        (sweep_dir / str(job) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={7 + job}"]))
    write_summary(sweep_dir)
    rows = read_summary(sweep_dir)
    assert [row["seed"] for row in rows] == ["0", "1"]


# --- 3. a summary step that cannot read a job says so ---------------------------------------------------


def job_of(sweep_dir: Path, job: int) -> dict:
    """What run_experiment records of a job of a basic sweep in `sweep_dir`."""
    return {"dir": str(sweep_dir), "job": job, "sweeper": BASIC_SWEEPER}


def launch_config(sweep_dir: Path):
    """The parts of a launching command's config the summary callback reads, for a launch that starts now."""
    start_launch()
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}, "overrides": {"task": []}, "sweeper": {}}})


def test_a_corrupt_results_json_is_listed_as_unreadable_and_fails_the_sweep(
    ag_news_dir, tmp_path, tiny_config, cli, read_summary
):
    sweep_dir = tmp_path / "sweep"
    for job in range(2):
        run_experiment(
            tiny_config(seed=job, trainer={"epochs": 1}), sweep_dir / str(job), [f"seed={job}"], job_of(sweep_dir, job)
        )
    (sweep_dir / "1" / "results.json").write_text('{"format": "agnews-results/1", "status": ')

    with pytest.raises(SystemExit) as exited:
        SummaryCallback().on_multirun_end(launch_config(sweep_dir))
    assert exited.value.code == 1
    rows = read_summary(sweep_dir)
    assert [(row["job"], row["status"]) for row in rows] == [("0", "completed"), ("1", "unreadable")]
    assert "is not valid JSON" in rows[1]["error"] and rows[1]["test_acc"] == ""

    rebuilt = cli("agnews.report", "--summary", sweep_dir)  # the same, from the command line
    assert rebuilt.returncode == 1 and "Job 1 unreadable" in rebuilt.stderr


def test_a_job_whose_folder_another_command_took_fails_the_sweep(tmp_path, tiny_config, caplog):
    # While job 0 of seed=0,1,2 ran, a single run was started into the folder job 1 was planned for: job 1 was
    # refused there, and the folder holds that single run, which the summary lists as a copy. Job 2 never ran.
    sweep_dir = tmp_path / "sweep"
    run_experiment(tiny_config(trainer={"epochs": 1}), sweep_dir / "0", ["seed=0"], job_of(sweep_dir, 0))
    run_experiment(tiny_config(seed=1, trainer={"epochs": 1}), sweep_dir / "1", ["seed=1"])
    config = launch_config(sweep_dir)
    record_launched({"0", "1", "2"})  # what the launch check planned
    with pytest.raises(SystemExit) as exited:
        SummaryCallback().on_multirun_end(config)
    assert exited.value.code == 1
    assert "Job 1 did not run: its folder holds another command's run" in caplog.text
    assert f"Job 2 did not run: its folder {sweep_dir / '2'} holds no run" in caplog.text


def test_a_summary_that_cannot_be_written_fails_the_sweep(ag_news_dir, tmp_path, tiny_config):
    sweep_dir = tmp_path / "sweep"
    run_experiment(tiny_config(trainer={"epochs": 1}), sweep_dir / "0", sweep=job_of(sweep_dir, 0))
    (sweep_dir / "summary.csv").mkdir()  # something that is not a file where summary.csv goes
    with pytest.raises(SystemExit) as exited:
        SummaryCallback().on_multirun_end(launch_config(sweep_dir))
    assert exited.value.code == 1


@pytest.mark.slow
def test_the_summary_rebuilt_while_a_job_runs_lists_it_as_running(
    make_ag_news, tmp_path, repo, cli, read_summary, sweep_args
):
    data_dir = make_ag_news("data", train_per_class=400, test_per_class=50)  # about a second per epoch
    sweep_dir = tmp_path / "sweep"
    args = [*sweep_args(data_dir, sweep_dir), "trainer.epochs=1,30"]  # job 0 ends at once, job 1 runs on
    args.remove("trainer.epochs=1")
    command = [sys.executable, "-m", "agnews.run", *args]
    sweep = subprocess.Popen(
        command, cwd=repo, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 240
        while not (sweep_dir / "1" / "results.json").exists():
            assert sweep.poll() is None, sweep.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "job 1 never started"
            time.sleep(0.05)
        rebuilt = cli("agnews.report", "--summary", sweep_dir)  # as after the launching command was killed
        still_running = sweep.poll() is None
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait()
    assert still_running
    assert rebuilt.returncode == 1 and "1 of 2 jobs did not complete" in rebuilt.stderr
    rows = read_summary(sweep_dir)
    assert [(row["job"], row["trainer.epochs"], row["status"]) for row in rows] == [
        ("0", "1", "completed"),
        ("1", "30", "running"),
    ]
    assert rows[0]["test_acc"] != "" and rows[1]["test_acc"] == ""


# --- 4. an exploding loss is divergence, finite or not --------------------------------------------------


@pytest.mark.parametrize(
    "optimizer",
    [
        OptimizerConfig(name=OptimizerName.adam, lr=1e30, grad_clip=None),
        OptimizerConfig(name=OptimizerName.sgd, lr=1e12, grad_clip=None),  # SGD without clipping
    ],
    ids=["adam lr 1e30", "sgd lr 1e12"],
)
def test_an_exploding_loss_is_diverged_not_completed(tmp_path, tiny_config, optimizer):
    results = run_experiment(tiny_config(optimizer=optimizer, trainer={"epochs": 2}), tmp_path / "run")
    assert results["status"] == "diverged", results["history"]
    assert "trainer.divergence_threshold" in results["error"] or "loss became" in results["error"]
    assert "test_acc" not in results["metrics"]


def test_divergence_needs_a_sustained_stretch_not_one_bad_batch():
    monitor = DivergenceMonitor(10.0, torch.device("cpu"), "epoch 1/1")
    for step in range(1, DIVERGENCE_WINDOW + 1):  # one huge spike among ordinary losses
        monitor.add(torch.tensor(1e6 if step == 7 else 1.2), step)
    monitor = DivergenceMonitor(10.0, torch.device("cpu"), "epoch 1/1")
    with pytest.raises(DivergedError, match=r"median training loss of batches 1-50 of epoch 1/1 is 1e\+03"):
        for step in range(1, DIVERGENCE_WINDOW + 1):
            monitor.add(torch.tensor(1e3 if step % 2 else 1e4), step)
    lenient = DivergenceMonitor(None, torch.device("cpu"), "epoch 1/1")  # null: only non-finite losses count
    for step in range(1, 4):
        lenient.add(torch.tensor(1e20), step)
    lenient.check(3)
    lenient.add(torch.tensor(1.0), 4)
    lenient.add(torch.tensor(float("nan")), 5)
    with pytest.raises(DivergedError, match=r"training loss became nan at batch 5 of epoch 1/1"):
        lenient.check(5)


# --- 5. resume only on the data a run started with ------------------------------------------------------


def rotate_labels(path: Path) -> None:
    rows = list(csv.reader(path.open(newline="")))
    with path.open("w", newline="") as handle:
        csv.writer(handle, quoting=csv.QUOTE_ALL).writerows([[str(int(row[0]) % 4 + 1), *row[1:]] for row in rows])


@pytest.mark.parametrize("change", ["labels", "vocab"])
def test_resume_on_changed_data_is_refused_and_keeps_the_recorded_epochs(
    ag_news_dir, tmp_path, tiny_config, killed_run, change
):
    run_dir = tmp_path / "run"
    killed_run(tiny_config(trainer={"epochs": 4}), run_dir, epochs_done=2)
    history_csv = (run_dir / "history.csv").read_text()
    if change == "labels":
        rotate_labels(ag_news_dir / "train.csv")
    else:
        with open(ag_news_dir / "train.csv", "a") as handle:
            handle.write('"2","Unseen words","zebra quagga okapi"\n')

    with pytest.raises(AgnewsError, match=r"other data than data\.dir/data\.url now hold.*mix two datasets"):
        run_experiment(tiny_config(trainer={"epochs": 4}, resume=True), run_dir)

    recorded = json.loads((run_dir / "results.json").read_text())
    assert len(recorded["history"]) == 2 and (run_dir / "history.csv").read_text() == history_csv
    assert (run_dir / CHECKPOINT_FILE).exists()  # still there to resume on the original data


def test_a_completed_run_is_not_skipped_as_done_on_other_data(ag_news_dir, tmp_path, tiny_config):
    run_experiment(tiny_config(trainer={"epochs": 1}), tmp_path / "run")
    rotate_labels(ag_news_dir / "train.csv")
    with pytest.raises(AgnewsError, match="other data"):
        run_experiment(tiny_config(trainer={"epochs": 1}, resume=True), tmp_path / "run")


# --- files trusted only after a check -----------------------------------------------------------------


def test_a_failed_resume_keeps_the_recorded_epochs(tmp_path, tiny_config, killed_run):
    run_dir = tmp_path / "run"
    killed_run(tiny_config(trainer={"epochs": 4}), run_dir, epochs_done=2)
    history_csv = (run_dir / "history.csv").read_text()
    path = run_dir / CHECKPOINT_FILE
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(AgnewsError, match="cannot be read"):
        run_experiment(tiny_config(trainer={"epochs": 4}, resume=True), run_dir)
    recorded = json.loads((run_dir / "results.json").read_text())
    assert recorded["status"] == "failed" and [epoch["epoch"] for epoch in recorded["history"]] == [1, 2]
    assert (run_dir / "history.csv").read_text() == history_csv


def test_checkpoints_with_a_flipped_tensor_byte_are_refused(tmp_path, tiny_config, killed_run, flip_a_tensor_byte):
    run_dir = tmp_path / "run"
    killed_run(tiny_config(trainer={"epochs": 3}), run_dir, epochs_done=1)
    flip_a_tensor_byte(run_dir / CHECKPOINT_FILE)
    with pytest.raises(AgnewsError, match=r"checkpoint\.pt is damaged: its content does not match the checksum"):
        run_experiment(tiny_config(trainer={"epochs": 3}, resume=True), run_dir)


def test_predict_refuses_a_damaged_model_or_another_runs_vocab(tmp_path, tiny_config, flip_a_tensor_byte):
    run_dir = tmp_path / "run"
    run_experiment(tiny_config(trainer={"epochs": 1}), run_dir)
    load_predictor(run_dir)  # as written: fine

    vocab = run_dir / "vocab.txt"
    original = vocab.read_text()
    lines = original.splitlines(keepends=True)
    lines[3], lines[4] = lines[4], lines[3]  # same size, two words' ids swapped
    vocab.write_text("".join(lines))
    with pytest.raises(AgnewsError, match=r"vocab\.txt is not the vocab this model was trained with"):
        load_predictor(run_dir)
    vocab.write_text(original)

    flip_a_tensor_byte(run_dir / MODEL_FILE)
    with pytest.raises(AgnewsError, match=r"model\.pt is damaged"):
        load_predictor(run_dir)


def test_files_a_killed_write_left_behind_are_removed_when_the_run_resumes(tmp_path, tiny_config, killed_run):
    run_dir = tmp_path / "run"
    killed_run(tiny_config(trainer={"epochs": 2}), run_dir, epochs_done=1)
    leftover = run_dir / ".checkpoint.pt.k1ll3d.tmp"  # what SIGKILL inside a checkpoint write leaves
    leftover.write_bytes(b"half a checkpoint")
    results = run_experiment(tiny_config(trainer={"epochs": 2}, resume=True), run_dir)
    assert results["status"] == "completed" and not leftover.exists()


# --- the end of a run by Ctrl-C -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stop", "exit_status", "error"),
    [(signal.SIGINT, 130, "interrupted (Ctrl-C)"), (signal.SIGTERM, 143, "stopped by SIGTERM")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_stopped_run_records_itself_interrupted_and_resumes(
    make_ag_news, tmp_path, cli, stopped_run, stop, exit_status, error
):
    data_dir = make_ag_news("data", train_per_class=400, test_per_class=20)
    run_dir = tmp_path / "run"
    args = [f"data.dir={data_dir}", "trainer.epochs=6", "trainer.progress_bar=false", f"hydra.run.dir={run_dir}"]
    returncode, output = stopped_run(args, run_dir / CHECKPOINT_FILE, stop)
    assert returncode == exit_status, output[-2000:]
    assert "Traceback" not in output and "run the same command with resume=true" in output
    recorded = json.loads((run_dir / "results.json").read_text())
    assert recorded["status"] == "interrupted" and len(recorded["history"]) >= 1
    assert recorded["error"].startswith(error) and (run_dir / CHECKPOINT_FILE).exists()

    resumed = cli("agnews.run", *args, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Run folder: {run_dir}" in resumed.stdout
    assert json.loads((run_dir / "results.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_resuming_a_sweep_with_a_corrupt_results_json_lists_it_unreadable_and_fails(
    ag_news_dir, tmp_path, cli, read_summary, sweep_args
):
    sweep_dir = tmp_path / "sweep"
    assert cli("agnews.run", *sweep_args(ag_news_dir, sweep_dir, "seed=0,1")).returncode == 0
    corrupt = '{"format": "agnews-results/1", "status": '
    (sweep_dir / "1" / "results.json").write_text(corrupt)
    resumed = cli("agnews.run", *sweep_args(ag_news_dir, sweep_dir, "seed=0,1", "resume=true"))
    assert resumed.returncode == 1 and "Traceback" not in resumed.stdout + resumed.stderr
    rows = read_summary(sweep_dir)
    assert [(row["job"], row["status"]) for row in rows] == [("0", "completed"), ("1", "unreadable")]
    assert (sweep_dir / "1" / "results.json").read_text() == corrupt  # left for the user to look at


def test_settings_swept_on_purpose_are_columns_even_if_they_do_not_change_results(tmp_path, tiny_config, read_summary):
    sweep_dir = tmp_path / "sweep"
    for job, threads in enumerate((1, 2)):
        config = tiny_config(trainer={"epochs": 1, "num_threads": threads})
        run_experiment(config, sweep_dir / str(job), [f"trainer.num_threads={threads}"], job_of(sweep_dir, job))
    write_summary(sweep_dir, declared=["trainer.num_threads"])
    assert [row["trainer.num_threads"] for row in read_summary(sweep_dir)] == ["1", "2"]
    write_summary(sweep_dir)  # not declared (a rebuild): a setting that does not change results is no column
    assert "trainer.num_threads" not in read_summary(sweep_dir)[0]


# --- the launch check: what a sweep cannot do is refused before any job starts ----------------------------


def folder_state(folder: Path) -> dict[Path, bytes]:
    """Every file's bytes, but the folder claim's (each command rewrites who holds it)."""
    files = [path for path in sorted(folder.rglob("*")) if path.is_file() and not path.name.startswith(".agnews.")]
    return {path: path.read_bytes() for path in files}


@pytest.mark.slow
def test_a_sweep_resumed_on_changed_data_is_refused_before_any_job(ag_news_dir, tmp_path, cli, sweep_args):
    sweep_dir = tmp_path / "sweep"
    assert cli("agnews.run", *sweep_args(ag_news_dir, sweep_dir, "seed=0,1")).returncode == 0
    rotate_labels(ag_news_dir / "train.csv")  # edited in place: same path, other data
    before = folder_state(sweep_dir)
    resumed = cli("agnews.run", *sweep_args(ag_news_dir, sweep_dir, "seed=0,1", "resume=true"))
    assert resumed.returncode == 2, resumed.stderr[-2000:]
    assert "nothing was launched" in resumed.stderr and "Traceback" not in resumed.stderr
    for job in ("0", "1"):
        assert f"job {job} (seed={job}): {sweep_dir / job} holds a run made on other data" in resumed.stderr
    assert folder_state(sweep_dir) == before  # summary.csv still lists the runs as they were made


@pytest.mark.slow
def test_a_job_folder_outside_the_sweep_folder_is_a_config_error(ag_news_dir, tmp_path, cli, sweep_args):
    """'${hydra.job.num}/..' is the sweep folder itself for every job: Hydra would rewrite one run's files for the
    next job before agnews could refuse it."""
    sweep_dir = tmp_path / "sweep"
    done = cli("agnews.run", *sweep_args(ag_news_dir, sweep_dir, "seed=0,1", "hydra.sweep.subdir=${hydra.job.num}/.."))
    assert done.returncode == 2, done.stderr[-2000:]
    assert (
        f"job 0 (seed=0) would run in {sweep_dir / '0' / '..'}, not in a folder inside the sweep folder" in done.stderr
    )
    assert not sweep_dir.exists()  # the refused command leaves no folder of its own behind


@pytest.mark.slow
@pytest.mark.parametrize("subdir", ["same", "${embedding.name}"])
def test_two_jobs_of_one_sweep_in_one_folder_are_a_config_error(ag_news_dir, tmp_path, cli, sweep_args, subdir):
    sweep_dir = tmp_path / "sweep"
    done = cli("agnews.run", *sweep_args(ag_news_dir, sweep_dir, "seed=0,1,2", f"hydra.sweep.subdir={subdir}"))
    assert done.returncode == 2, done.stderr[-2000:]
    folder = sweep_dir / ("same" if subdir == "same" else "learned")
    assert f"job 1 (seed=1) and job 0 (seed=0) would both run in {folder}" in done.stderr
    assert "job 2 (seed=2) and job 0 (seed=0)" in done.stderr and "Traceback" not in done.stderr
    assert not folder.exists()


@pytest.mark.slow
@pytest.mark.parametrize("planted", [".hydra/config.yaml", ".hydra/overrides.yaml", "run.log", ".hydra", "mine"])
def test_hydra_never_writes_through_a_symlink_out_of_the_run_folder(ag_news_dir, tmp_path, cli, planted):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "file.txt").write_text("keep me\n")
    run_dir = tmp_path / "run"
    link = run_dir / planted
    link.parent.mkdir(parents=True)
    link.symlink_to(victim if planted in (".hydra", "mine") else victim / "file.txt")
    subdir = ["hydra.output_subdir=mine"] if planted == "mine" else []  # Hydra's files go where a user says
    done = cli("agnews.run", f"data.dir={ag_news_dir}", f"hydra.run.dir={run_dir}", "trainer.epochs=1", *subdir)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"holds {planted}, a symbolic link to {link.readlink()}" in done.stderr
    assert (victim / "file.txt").read_text() == "keep me\n" and sorted(p.name for p in victim.iterdir()) == ["file.txt"]
    assert not (run_dir / "results.json").exists()


@pytest.mark.slow
def test_a_sweep_never_writes_through_a_symlink_in_a_job_folder(ag_news_dir, tmp_path, cli, sweep_args):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    sweep_dir = tmp_path / "sweep"
    (sweep_dir / "1" / ".hydra").mkdir(parents=True)
    (sweep_dir / "1" / ".hydra" / "config.yaml").symlink_to(victim)
    done = cli("agnews.run", *sweep_args(ag_news_dir, sweep_dir, "seed=0,1"))
    assert done.returncode == 2 and "job 1 (seed=1)" in done.stderr and "a symbolic link to" in done.stderr
    assert victim.read_text() == "keep me\n" and not (sweep_dir / "0").exists()
