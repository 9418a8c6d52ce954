"""The torch threads a run takes when trainer.num_threads leaves it to agnews: an explicit number, then a
launch's plan, then a cluster's reservation, then the cores no other process keeps busy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agnews.threads import busy_cores, choose_threads, usable_cores


def test_an_explicit_number_always_wins():
    threads = choose_threads(3, {"AGNEWS_THREADS": "1", "OMP_NUM_THREADS": "2"}, cores=8, busy=5.0)
    assert (threads.count, threads.why) == (3, "trainer.num_threads")


def test_a_launch_plan_then_a_clusters_reservation():
    planned = {"AGNEWS_THREADS": "2", "AGNEWS_THREADS_WHY": "its share of the cores: 4 jobs at once on 8 cores"}
    assert choose_threads(None, {**planned, "SLURM_CPUS_PER_TASK": "6"}, cores=8, busy=0.0).as_record() == {
        "count": 2,
        "why": "its share of the cores: 4 jobs at once on 8 cores",
    }
    assert choose_threads(None, {"SLURM_CPUS_PER_TASK": "6", "OMP_NUM_THREADS": "1"}, cores=8, busy=0.0).count == 6
    ray = choose_threads(None, {"OMP_NUM_THREADS": "4"}, cores=8, busy=0.0)  # Ray sets it to the CPUs it reserved
    assert (ray.count, ray.why) == (4, "OMP_NUM_THREADS")


@pytest.mark.parametrize(
    ("cores", "busy", "count"),
    [(2, 0.05, 2), (2, 0.25, 2), (2, 1.0, 1), (2, 2.0, 1), (16, 0.1, 16), (16, 3.6, 12), (16, 40.0, 1)],
)
def test_a_lone_run_takes_the_cores_no_other_process_keeps_busy(cores, busy, count):
    threads = choose_threads(None, {}, cores=cores, busy=busy)
    assert threads.count == count
    if count < cores:
        assert threads.why == f"{count} of {cores} cores: other processes keep {busy:.1f} cores busy"
    else:
        assert threads.why == f"every core ({cores})"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_a_busy_core_is_seen():
    """A process spinning on a core shows as about one core's worth of work (1 of the 2 here: the rest is this
    machine's other work, which only adds to it)."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert busy_cores(1.0) >= 0.7
    finally:
        spinner.kill()
        spinner.wait()
    assert usable_cores() >= 1
