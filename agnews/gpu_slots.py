"""Several small jobs on one GPU: a launch that runs jobs at once on a machine with GPUs (the local preset, or
joblib) gives them slots, so many devices x jobs per device (AGNEWS_GPU_SLOTS="<devices>x<per device>"), and
each job takes a free one for its life: a file lock in its sweep folder, which dies with the job. The slots go
round the devices first, so two jobs on two GPUs get one each.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import filelock

log = logging.getLogger(__name__)

GPU_SLOTS = "AGNEWS_GPU_SLOTS"
SLOTS_DIR = ".agnews-gpu"


def parse_slots(value: str) -> tuple[int, int] | None:
    """(devices, jobs per device) from AGNEWS_GPU_SLOTS, or None."""
    devices, _, per_device = value.partition("x")
    if devices.isdigit() and per_device.isdigit() and int(devices) > 0 and int(per_device) > 0:
        return int(devices), int(per_device)
    return None


def slots_value(devices: int, jobs_at_once: int) -> str:
    """AGNEWS_GPU_SLOTS for `jobs_at_once` jobs on `devices` GPUs: as few per device as fit them all."""
    return f"{devices}x{-(-jobs_at_once // devices)}"


@contextlib.contextmanager
def gpu_slot(folder: Path, devices: int, per_device: int, poll_s: float = 1.0) -> Iterator[int]:
    """Hold a free slot for the block; yields its device index. Waits (saying so once) while every slot is
    taken, which happens only when more jobs run at once than the launch planned."""
    (folder / SLOTS_DIR).mkdir(parents=True, exist_ok=True)
    order = [(device, slot) for slot in range(per_device) for device in range(devices)]
    waited = False
    while True:
        for device, slot in order:
            lock = filelock.FileLock(folder / SLOTS_DIR / f"cuda{device}-{slot}.lock", is_singleton=False)
            try:
                lock.acquire(timeout=0)
            except filelock.Timeout:
                continue
            try:
                yield device
            finally:
                lock.release()
            return
        if not waited:
            log.info("All %d GPU slots are taken; waiting for one", len(order))
            waited = True
        time.sleep(poll_s)
