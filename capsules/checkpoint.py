"""Checkpoints: safetensors weights with the model config in their header, plus a JSON sidecar.

``name.safetensors`` holds the tensors and, in its header, ``{"format": <the model kind>,
"config": <its config as JSON>, "weights_dtype": "fp32" | "fp16" | "bf16"}``, so a model is
rebuilt from the file alone. The format names the kind: ``capsules.capsnet`` (:class:`CapsNet`)
or ``capsules.baseline-cnn`` (:class:`BaselineCNN`); :func:`load_model` dispatches on it. A file
without ``weights_dtype`` (every checkpoint written before it existed) holds float32 tensors.
``name.json`` beside it describes the weights (accuracy, epochs, command, hardware, ...) and
records their sha256, which loading checks. Loading never executes code from a file: a pickle
or ``torch.save`` archive is refused, as is anything whose tensors do not match its config.
Every file is written atomically (temporary file in the same folder, fsync, rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError as SafetensorsError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .baseline import BaselineCNN
from .device import pick_device
from .model import CapsNet, Model

KINDS: dict[str, type[Model]] = {cls.FORMAT: cls for cls in (CapsNet, BaselineCNN)}
WEIGHT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED = PACKAGE_DIR.parent / "checkpoints" / "capsnet-mnist.safetensors"
MAX_HEADER = 16 * 1024 * 1024


class CheckpointError(ValueError):
    """A file that is not a usable capsules checkpoint; the message names the problem."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def sidecar(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sniff(path: Path, data: bytes) -> None:
    """Refuse what is clearly not safetensors before any parser sees it, naming what it is."""
    n = struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else None
    if n is not None and n <= MAX_HEADER and data[8:9] == b"{":
        if 8 + n > len(data):
            raise CheckpointError(f"{path} is truncated: its header alone needs {8 + n:,} bytes, "
                                  f"the file has {len(data):,}")
        return
    if data[:2] == b"PK":
        raise CheckpointError(f"{path} is a zip archive (a torch.save pickle?): refused, since "
                              "unpickling can run code. Only safetensors checkpoints are loaded.")
    if data[:1] == b"\x80" or data[:1] in (b"(", b"]", b"}", b"c"):
        raise CheckpointError(f"{path} looks like a Python pickle: refused, since unpickling can "
                              "run code. Only safetensors checkpoints are loaded.")
    if len(data) < 8:
        raise CheckpointError(f"{path} is not a safetensors file: only {len(data)} bytes")
    raise CheckpointError(f"{path} is not a safetensors file (no valid header)")


def read_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str], bytes]:
    """Parse a safetensors file safely: ``(tensors, header metadata, raw bytes)``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    _sniff(path, data)
    try:
        tensors = st_load(data)
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
    except (SafetensorsError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is truncated or damaged: {exc}") from None
    meta = header.get("__metadata__") or {}
    return tensors, meta, data


def save_model(model: Model, path: str | os.PathLike, metadata: dict | None = None, *,
               weights_dtype: str = "fp32") -> dict:
    """Write ``model``'s weights to ``path`` (.safetensors) and ``metadata`` to the JSON beside it.

    ``model`` is any model kind (:data:`KINDS`). ``weights_dtype`` "fp16" or "bf16" stores the
    weights in half precision (half the file); the header and the JSON record it, and
    :func:`load_model` upcasts to float32. Returns the sidecar's contents (``metadata`` plus
    config, format, weights dtype and sha256).
    """
    if getattr(type(model), "FORMAT", None) not in KINDS:
        raise TypeError(f"cannot save a {type(model).__name__}: not a capsules model kind")
    if weights_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weights_dtype must be one of {', '.join(WEIGHT_DTYPES)}, got {weights_dtype!r}")
    path = Path(path)
    dtype = WEIGHT_DTYPES[weights_dtype]
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    config = model.config.to_dict()
    data = st_save(tensors, metadata={"format": model.FORMAT, "config": json.dumps(config),
                                      "weights_dtype": weights_dtype})
    info = {**(metadata or {}), "format": model.FORMAT, "config": config,
            "weights": path.name, "weights_dtype": weights_dtype, "sha256": sha256_bytes(data)}
    atomic_write_bytes(path, data)
    atomic_write_json(sidecar(path), info)
    return info


def _kind_from(meta: dict[str, str], path: Path) -> type[Model]:
    kind = KINDS.get(meta.get("format"))
    if kind is None:
        raise CheckpointError(f"{path} is a safetensors file but not a capsules checkpoint "
                              f"(format {meta.get('format')!r}, expected one of {', '.join(KINDS)})")
    return kind


def _config_from(kind: type[Model], meta: dict[str, str], path: Path):
    try:
        return kind.CONFIG.from_dict(json.loads(meta["config"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path} has an invalid config: {exc}") from None


def _weights_dtype_from(meta: dict[str, str], path: Path) -> torch.dtype:
    name = meta.get("weights_dtype", "fp32")  # older checkpoints: float32, not recorded
    if name not in WEIGHT_DTYPES:
        raise CheckpointError(f"{path} records weights_dtype {name!r}, expected one of {', '.join(WEIGHT_DTYPES)}")
    return WEIGHT_DTYPES[name]


def check_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse missing or extra tensors and wrong shapes, naming them."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing:
        raise CheckpointError(f"{path} lacks tensors its config needs: {', '.join(missing[:5])}")
    if extra:
        raise CheckpointError(f"{path} has tensors its config does not use: {', '.join(extra[:5])}")
    for k, t in expected.items():
        if tuple(tensors[k].shape) != tuple(t.shape):
            raise CheckpointError(f"{path}: tensor {k} has shape {tuple(tensors[k].shape)}, "
                                  f"its config needs {tuple(t.shape)}")
        if not tensors[k].is_floating_point():
            raise CheckpointError(f"{path}: tensor {k} has dtype {tensors[k].dtype}, expected a float")


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON sidecar of a checkpoint ({} when there is none)."""
    side = sidecar(path)
    if not side.is_file():
        return {}
    try:
        info = json.loads(side.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{side} is not valid JSON: {exc}") from None
    if not isinstance(info, dict):
        raise CheckpointError(f"{side} does not hold a JSON object")
    return info


def load_model(path: str | os.PathLike | None = None, device: str | torch.device | None = None) -> Model:
    """The model of a checkpoint, of whatever kind it holds (:data:`KINDS`), in eval mode.

    ``path`` None loads the shipped MNIST checkpoint; ``device`` None picks the best available
    (CUDA, then MPS, then CPU). The model's ``.metadata`` holds the JSON sidecar and
    ``.checkpoint_path`` the path; half-precision weights come back as float32.
    Raises :class:`CheckpointError` with one line naming the problem for anything unusable.
    """
    path = Path(path) if path is not None else SHIPPED
    dev = pick_device(device)
    tensors, meta, data = read_tensors(path)
    kind = _kind_from(meta, path)
    config = _config_from(kind, meta, path)
    dtype = _weights_dtype_from(meta, path)
    info = read_metadata(path)
    if info.get("sha256") and info["sha256"] != sha256_bytes(data):
        raise CheckpointError(f"{path} does not match the sha256 recorded in {sidecar(path)}: "
                              "the weights were changed or damaged")
    try:
        model = kind(config)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path} has a config that builds no model: {exc}") from None
    check_state(model, tensors, path)
    wrong = sorted(k for k, t in tensors.items() if t.dtype != dtype)
    if wrong:
        raise CheckpointError(f"{path}: tensor {wrong[0]} has dtype {tensors[wrong[0]].dtype}, "
                              f"its header records {dtype}")
    model.load_state_dict({k: t.to(torch.float32) for k, t in tensors.items()})
    model.metadata = info
    model.checkpoint_path = path
    return model.to(dev).eval()
