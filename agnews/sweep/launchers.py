"""Launchers beyond one process: which extra provides each Hydra launcher, and what the presets under
conf/hydra/launcher/ ask a cluster for, derived from the run's own settings so that a job gets the cores
and GPUs it will use: `${agnews.cpus:${trainer.num_threads}}` and `${agnews.gpus:${trainer.device}}`.
The presets resolve once, in the launching process, when Hydra builds the launcher.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from omegaconf import OmegaConf

from agnews.sweep import refuse

_SUBMITIT = ("hydra_plugins.hydra_submitit_launcher", "launchers")
_RAY = ("hydra_plugins.hydra_ray_launcher", "ray")
# hydra/launcher options -> (the plugin's package, the agnews extra that installs it)
LAUNCHER_PLUGINS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "launchers"),
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


def register_resolvers() -> None:
    for name, resolver in (("agnews.cpus", cpus_for_threads), ("agnews.gpus", gpus_for_device)):
        OmegaConf.register_resolver(name, resolver, replace=True)
