"""How many CPU threads a run gives torch, when trainer.num_threads leaves it to agnews (null, the default).

torch's own default (every core) loses up to 90 % of an LSTM's speed as soon as another process keeps a core
busy: its OpenMP threads wait for the one that was descheduled. So a run takes, in this order:
- trainer.num_threads when it is set (an explicit number always wins);
- its share of the cores when it is one of several jobs at once on this machine: the launch planned it
  (agnews.sweep.launchers.plan_threads) and says so in the job's environment (AGNEWS_THREADS);
- what a cluster reserved for it: Slurm's SLURM_CPUS_PER_TASK, Ray's (or a user's) OMP_NUM_THREADS;
- alone, every core it may use that no other process keeps busy when it starts (measured over a moment).
The choice and why are logged once and recorded in results.json.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

PLANNED = "AGNEWS_THREADS"  # set for each job by a launch that runs several at once
PLANNED_WHY = "AGNEWS_THREADS_WHY"
SAMPLE_S = 0.3  # how long a lone run watches the machine before it picks its threads
BUSY_SLACK = 0.3  # cores' worth of other work a run ignores (a shell, a log tail): below that a core is free


@dataclass(frozen=True)
class Threads:
    count: int
    why: str

    def as_record(self) -> dict[str, object]:
        return {"count": self.count, "why": self.why}


def usable_cores() -> int:
    """The cores this process may run on (its affinity: a cgroup's cpuset, taskset, a Slurm allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def choose_threads(
    explicit: int | None,
    environ: Mapping[str, str] | None = None,
    cores: int | None = None,
    busy: float | None = None,
) -> Threads:
    """The threads a run uses (see the module's doc). `busy`: cores' worth of other processes' work; measured
    (busy_cores) only for a lone run, and only when not given."""
    environ = os.environ if environ is None else environ
    if explicit is not None:
        return Threads(int(explicit), "trainer.num_threads")
    for variable, why in (
        (PLANNED, environ.get(PLANNED_WHY, "its share of the cores")),
        ("SLURM_CPUS_PER_TASK", "Slurm's cpus_per_task"),
        ("OMP_NUM_THREADS", "OMP_NUM_THREADS"),
    ):
        value = environ.get(variable, "")
        if value.isdigit() and int(value) > 0:
            return Threads(int(value), why)
    cores = usable_cores() if cores is None else cores
    busy = busy_cores() if busy is None else busy
    taken = max(0, math.ceil(busy - BUSY_SLACK))
    count = max(1, cores - taken)
    if count < cores:
        why = f"{count} of {cores} cores: other processes keep {busy:.1f} cores busy"
    else:
        why = f"every core ({cores})"
    return Threads(count, why)


def busy_cores(seconds: float = SAMPLE_S) -> float:
    """Cores' worth of CPU time the machine spends on work (every process, this one included, which is idle at
    a run's start) over `seconds`, among the cores this process may use; 0 where it cannot be read."""
    first = _cpu_times()
    if not first:
        return 0.0
    time.sleep(seconds)
    second = _cpu_times()
    busy = 0.0
    for cpu, (work, total) in second.items():
        if cpu in first and total > first[cpu][1]:
            busy += (work - first[cpu][0]) / (total - first[cpu][1])
    return busy


def _cpu_times() -> dict[int, tuple[int, int]]:
    """Linux's /proc/stat: per usable core, (busy jiffies, all jiffies)."""
    try:
        allowed = os.sched_getaffinity(0)
        with open("/proc/stat", encoding="ascii") as handle:
            lines = handle.read().splitlines()
    except (AttributeError, OSError):
        return {}
    times = {}
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or not name[3:].isdigit() or int(name[3:]) not in allowed:
            continue
        values = [int(value) for value in fields[:8]]  # user nice system idle iowait irq softirq steal
        idle = values[3] + values[4]
        times[int(name[3:])] = (sum(values) - idle, sum(values))
    return times
