"""Launchers beyond one process: which extra provides each Hydra launcher; what the presets under
conf/hydra/launcher/ ask a cluster for, derived from the run's own settings so that a job gets the cores
and GPUs it will use (`${agnews.cpus:${trainer.num_threads}}`, `${agnews.gpus:${trainer.device}}`); how many
jobs the local preset runs at once (`${agnews.local_jobs:...}`: as many as the cores, the memory and the GPUs
hold); and the launch's plan for jobs that share this machine: each one's share of the cores, and the GPU
slots (several small jobs on one device) they take (agnews.threads, agnews.gpu_slots).
The presets resolve once, in the launching process, when Hydra builds the launcher.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from omegaconf import DictConfig, OmegaConf, read_write

from agnews.gpu_slots import GPU_SLOTS, slots_value
from agnews.sweep import refuse
from agnews.threads import PLANNED, PLANNED_WHY, usable_cores

_SUBMITIT = ("hydra_plugins.hydra_submitit_launcher", "launchers")
_RAY = ("hydra_plugins.hydra_ray_launcher", "ray")
# hydra/launcher options -> (the plugin's package, the agnews extra that installs it)
LAUNCHER_PLUGINS = {
    **dict.fromkeys(("joblib", "local"), ("hydra_plugins.hydra_joblib_launcher", "launchers")),
    **dict.fromkeys(("submitit_local", "submitit_slurm", "slurm_cpu", "slurm_gpu"), _SUBMITIT),
    **dict.fromkeys(("ray", "ray_local", "ray_cluster"), _RAY),
}


def require_launcher(args: Iterable[str]) -> None:
    """Refuse a `hydra/launcher=NAME` argument whose plugin is missing, naming the extra to install. Called
    before Hydra composes the config: Hydra itself would only say that the option does not exist."""
    for arg in args:
        key, _, name = str(arg).partition("=")
        if key.lstrip("+") != "hydra/launcher" or name not in LAUNCHER_PLUGINS:
            continue
        package, extra = LAUNCHER_PLUGINS[name]
        if importlib.util.find_spec(package) is None:
            refuse(f"hydra/launcher={name} needs the {extra} extra: pip install -e '.[{extra}]'")


def cpus_for_threads(num_threads: int | None) -> int:
    """CPUs to reserve for a job: its torch threads; one when trainer.num_threads is unset, as Ray and
    Slurm then give a job one core (Ray also sets OMP_NUM_THREADS to it, so torch uses one thread)."""
    return 1 if num_threads is None else int(num_threads)


def gpus_for_device(device: str) -> int:
    """GPUs to reserve for a job: one for a CUDA device, none for cpu or mps. `auto` reserves one when the
    launching machine has CUDA (right for a local cluster; on a remote one, say trainer.device=cuda)."""
    device = str(device)
    if device == "auto":
        import torch  # only here: the presets resolve in a process that imports torch anyway

        return 1 if torch.cuda.is_available() else 0
    return 1 if device.startswith("cuda") else 0


JOBLIB_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
GIB = 2**30


def local_jobs(device: str, memory_gib: float, gpu_memory_gib: float) -> int:
    """How many jobs the local preset runs at once: one per core, no more than the memory holds at
    `memory_gib` a job (a glove300 run peaks near 0.7 GiB), and, for jobs on GPUs, no more than the GPUs' free
    memory holds at `gpu_memory_gib` a job (the notebook model needs far less than a large GPU has)."""
    jobs = min(usable_cores(), max(1, int(available_memory() / (float(memory_gib) * GIB))))
    slots = gpu_slots(device, gpu_memory_gib)
    return min(jobs, sum(slots)) if slots else jobs


def available_memory() -> float:
    """Bytes of memory the machine can give new processes (Linux's MemAvailable); a large number elsewhere."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(2**50)


def cuda_devices(device: str) -> int:
    """The CUDA devices jobs whose trainer.device is `device` share: all of this machine's for auto or cuda."""
    if str(device) not in ("auto", "cuda"):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_slots(device: str, gpu_memory_gib: float) -> list[int]:
    """Jobs each of those CUDA devices can hold at once: its free memory / `gpu_memory_gib`, at least 1."""
    import torch

    return [
        max(1, int(torch.cuda.mem_get_info(index)[0] / (float(gpu_memory_gib) * GIB)))
        for index in range(cuda_devices(device))
    ]


def plan_resources(config: DictConfig, jobs: int | None) -> None:
    """For jobs that run at once on this machine (the joblib launcher, the local preset): give each its share of
    the cores (cores / jobs at once, at least 1) and, when they run on GPUs, the GPU slots to take, through every
    job's environment (hydra.job.env_set, as mark_launch does). `jobs`: how many the launch has, when known (a
    basic sweep's plan; a search's batch)."""
    if config.hydra.launcher.get("_target_") != JOBLIB_LAUNCHER:
        return  # one job at a time (basic), or a cluster that reserves cores itself (Ray, Slurm)
    at_once = joblib_workers(int(config.hydra.launcher.get("n_jobs") or -1))
    if jobs:
        at_once = min(at_once, jobs)
    cores = usable_cores()
    share = max(1, cores // at_once)
    marks = {
        PLANNED: str(share),
        PLANNED_WHY: f"its share of the cores: {at_once} jobs at once on {cores} cores",
    }
    devices = cuda_devices(str(config.trainer.device))
    if devices:
        marks[GPU_SLOTS] = slots_value(devices, at_once)
    with read_write(config.hydra.overrides):
        config.hydra.overrides.hydra.extend([f"++hydra.job.env_set.{key}='{value}'" for key, value in marks.items()])


def joblib_workers(n_jobs: int) -> int:
    """Workers joblib starts for n_jobs: that many, or for a negative n_jobs all cores but |n_jobs| - 1."""
    cores = usable_cores()
    return max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)


def register_resolvers() -> None:
    for name, resolver in (
        ("agnews.cpus", cpus_for_threads),
        ("agnews.gpus", gpus_for_device),
        ("agnews.local_jobs", local_jobs),
    ):
        OmegaConf.register_resolver(name, resolver, replace=True)
