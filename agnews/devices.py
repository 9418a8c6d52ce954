"""Where tensors live and in what precision: picking the device a config names (and refusing one this
machine lacks), autocast dtypes, and the precisions a device can train the LSTM in."""

from __future__ import annotations

import torch
from torch import nn

from agnews.config import Precision, TrainerConfig
from agnews.storage import AgnewsError


def select_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; anything else is a torch device string that must exist here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise AgnewsError(f"device {name!r} is not a torch device: try auto, cpu, cuda, cuda:1 or mps") from error
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise AgnewsError(
                f"device {name!r}: this machine has no CUDA GPU (or this torch {torch.__version__} "
                "was built without CUDA); use device auto or cpu"
            )
        if device.index is not None and device.index >= count:
            raise AgnewsError(f"device {name!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise AgnewsError(f"device {name!r}: Apple's MPS is not available on this machine; use device auto or cpu")
    return device


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The dtype autocast runs matrix work in, or None for plain float32."""
    if precision is Precision.auto:
        return torch.float16 if device.type == "cuda" else None
    return {Precision.fp32: None, Precision.bf16: torch.bfloat16, Precision.fp16: torch.float16}[precision]


def check_precision(precision: Precision, device: torch.device) -> None:
    """Refuse, before any data is read, a precision the device cannot train the LSTM in."""
    dtype = autocast_dtype(precision, device)
    if dtype is None or device.type == "cuda":
        return
    if dtype is torch.float16:
        raise AgnewsError(
            f"trainer.precision=fp16 needs a CUDA GPU, and this run is on {device}: "
            "use trainer.precision=fp32 (or auto)"
        )
    # bfloat16 LSTMs on a CPU need oneDNN kernels that some processors lack; try a tiny one.
    try:
        with torch.autocast(device.type, dtype=dtype):
            nn.LSTM(2, 2, batch_first=True).to(device)(torch.zeros(1, 2, 2, device=device))
    except RuntimeError as error:
        raise AgnewsError(
            f"trainer.precision=bf16: this {device} cannot run the LSTM in bfloat16 "
            f"({str(error).splitlines()[0]}); use trainer.precision=fp32"
        ) from None


def check_device(trainer: TrainerConfig) -> torch.device:
    """The device `trainer` names, refused (with the reason) if this machine lacks it or cannot train in the
    precision it asks for. Checked where a run will run, before anything is written."""
    device = select_device(trainer.device)
    check_precision(trainer.precision, device)
    return device
