"""Choosing the device (CUDA, then MPS, then CPU) and the arithmetic precision."""

from __future__ import annotations

import contextlib
import functools
import platform

import torch

DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"
PRECISIONS = ("auto", "fp32", "bf16")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def pick_device(name: str | torch.device | None = None) -> torch.device:
    """The named device, checked, or the best available one for ``None`` / ``"auto"``.

    Raises ``ValueError`` with a clear message for an unknown or unavailable device.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name is None or name.strip().lower() in ("", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name.strip().lower())
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use {DEVICE_HELP}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for but no CUDA GPU is available here; "
                             f"use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA GPU(s) found")
    elif dev.type == "mps":
        if not _mps_available():
            raise ValueError(f"device {name!r} was asked for but Apple MPS is not available here")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {name!r}; use {DEVICE_HELP}")
    return dev


def describe(device: torch.device) -> str:
    """A human name for the device: the GPU's name, or the CPU model and thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"CPU: {cpu}, {threads} thread{'' if threads == 1 else 's'}"


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


@functools.cache
def _cpuinfo() -> str:
    """``/proc/cpuinfo``, read once (``train_step`` resolves its precision at every step); empty off Linux."""
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_prefers_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this is a CPU on which this project's training step was measured faster in bf16:
    an AMD CPU with AVX512-BF16 (Zen 4: 1.7-2.1x fp32). An Intel Xeon with AVX512-BF16 but no AMX
    measured 0.8x, and a CPU without native bf16 has none to use (docs/speed.md). ``cpuinfo``: the
    text of ``/proc/cpuinfo`` (read when None; False where there is none, off Linux)."""
    cpuinfo = _cpuinfo() if cpuinfo is None else cpuinfo
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return "AuthenticAMD" in cpuinfo and "avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device, *, saved: bool = False) -> str:
    """``auto``: bf16 autocast on a GPU that supports it and on a CPU where :func:`cpu_prefers_bf16`
    (a rule from measurements, not a measurement at start-up), else fp32; ``bf16`` asks for it
    anywhere. ``saved=True``: an ``auto`` read from a run's state written before runs recorded
    what ``auto`` gave them, which then meant bf16 wherever native."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        native = bf16_supported(device)
        return "bf16" if native and (device.type == "cuda" or saved or cpu_prefers_bf16()) else "fp32"
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise ValueError(f"bf16 autocast is not supported on {device.type}")
    return precision


def autocast(device: torch.device, precision: str):
    """The autocast context for a resolved precision. The convolutions and the decoder run in
    bf16; the capsule layers cast back to fp32 for squash and routing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
