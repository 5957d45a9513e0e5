"""Choosing the device (CUDA, then MPS, then CPU) and the arithmetic precision."""

from __future__ import annotations

import contextlib
import functools
import platform
import statistics
import time

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


BF16_MARGIN = 0.9  # a CPU trains in bf16 when its convolution step takes at most 0.9x fp32's time


def faster_of(bf16_seconds: list[float], fp32_seconds: list[float]) -> str:
    """``bf16`` when its median time is at most :data:`BF16_MARGIN` x fp32's, else ``fp32``: bf16
    must win clearly, not by noise."""
    return "bf16" if statistics.median(bf16_seconds) <= BF16_MARGIN * statistics.median(fp32_seconds) else "fp32"


@functools.lru_cache(maxsize=None)
def cpu_precision_measured(threads: int) -> str:
    """The faster precision for this CPU, measured once per process (about a second): the
    PrimaryCaps convolution (most of a training step's work), forward and backward at batch 16,
    under bf16 autocast and in fp32, alternating, three pairs after a warm-up. A CPU that runs
    bf16 natively is not always faster in it: on one with AVX512-BF16 but no AMX, this project's
    step ran at 84 img/s in bf16 against 107 in fp32 (on a Zen 4, bf16 was 1.7x fp32)."""
    del threads  # part of the cache key: the answer depends on the thread count
    generator = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(256, 256, 9, stride=2)
    x = torch.randn(16, 256, 20, 20, generator=generator, requires_grad=True)

    def step(precision: str) -> float:
        start = time.perf_counter()
        with autocast(torch.device("cpu"), precision):
            y = conv(x)
        y.float().sum().backward()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"bf16": [], "fp32": []}
    for i in range(4):
        for precision in times:
            seconds = step(precision)
            if i:  # the first pair warms up
                times[precision].append(seconds)
    return faster_of(times["bf16"], times["fp32"])


def resolve_precision(precision: str, device: torch.device, *, measure: bool = True) -> str:
    """``auto``: on a GPU, bf16 autocast where supported; on a CPU that runs bf16 natively, the
    faster of bf16 and fp32 on it (:func:`cpu_precision_measured`, once per process), else fp32.
    ``measure=False`` keeps the rule that ``auto`` followed before the measurement (bf16 wherever
    native): what a run saved with ``auto`` by then trained in."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if not bf16_supported(device):
            return "fp32"
        if device.type == "cpu" and measure:
            return cpu_precision_measured(torch.get_num_threads())
        return "bf16"
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise ValueError(f"bf16 autocast is not supported on {device.type}")
    return precision


def autocast(device: torch.device, precision: str):
    """The autocast context for a resolved precision. The convolutions and the decoder run in
    bf16; the capsule layers cast back to fp32 for squash and routing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
