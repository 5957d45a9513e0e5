"""Checkpoints: safetensors weights with the model config in their header, plus a JSON sidecar.

``name.safetensors`` holds the tensors and, in its header, ``{"format": <the model kind>,
"config": <its config as JSON>, "weights_dtype": "fp32" | "fp16" | "bf16" | "int8"}``, so a model
is rebuilt from the file alone. The format names the kind: ``capsules.capsnet`` (:class:`CapsNet`)
or ``capsules.baseline-cnn`` (:class:`BaselineCNN`); :func:`load_model` dispatches on it. A file
without ``weights_dtype`` (every checkpoint written before it existed) holds float32 tensors.
"int8" is blockwise 8-bit storage for a model too large for the repository in half precision (the
baseline CNN's 35.4M weights: 71 MB in float16, 36 MB in int8; see :func:`quantize_int8`).
``name.json`` beside it describes the weights (accuracy, epochs, command, hardware, ...) and
records their sha256, which loading checks. Loading never executes code from a file: a pickle
or ``torch.save`` archive is refused, as is anything whose tensors do not match its config.
Every file is written atomically (temporary file in the same folder, fsync, rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError as SafetensorsError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .nn import BaselineCNN, CapsNet, Model
from .device import pick_device

KINDS: dict[str, type[Model]] = {cls.FORMAT: cls for cls in (CapsNet, BaselineCNN)}
WEIGHT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
STORAGES = (*WEIGHT_DTYPES, "int8")  # how a file may store the weights (``weights_dtype``)
INT8_BLOCK = 128  # values sharing one scale in int8 storage
INT8_SCALE = ":int8_scale"  # suffix of a scale tensor's name (no state-dict key holds a colon)
MAX_SHIPPED_BYTES = 36 * 2**20  # the most a shipped checkpoint may weigh (the repository stays light)
PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED = PACKAGE_DIR.parent / "checkpoints" / "capsnet-mnist.safetensors"
MAX_HEADER = 16 * 1024 * 1024


class CheckpointError(ValueError):
    """A file that is not a usable capsules checkpoint; the message names the problem."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_NEW_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if hasattr(os, "fchmod"):  # mkstemp gives 0600, which would hide the file from other users
                os.fchmod(f.fileno(), _NEW_FILE_MODE)
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


_ABSOLUTE = re.compile(r"(?<![\w.~/-])/[\w.+-]+(?:/[\w.+-]+)*/?")


def portable(obj, root: str | os.PathLike = PACKAGE_DIR.parent):
    """``obj`` (JSON data) with every absolute path in its strings made portable, so that what ships
    names no folder of the machine that made it: a path inside ``root`` (the repository) relative
    to it, one in the home folder as ``~/...``, any other relative to ``root`` (``../shared/data``)."""
    root, home = Path(root).resolve(), Path.home()

    def fix(match: re.Match) -> str:
        path = Path(match.group(0))
        if path.is_relative_to(root):
            return str(path.relative_to(root)) if path != root else "."
        if path.is_relative_to(home) and home != Path("/"):
            return "~/" + str(path.relative_to(home)) if path != home else "~"
        return os.path.relpath(path, root)

    if isinstance(obj, str):
        return _ABSOLUTE.sub(fix, obj)
    if isinstance(obj, list):
        return [portable(v, root) for v in obj]
    if isinstance(obj, dict):
        return {k: portable(v, root) for k, v in obj.items()}
    return obj


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


def int8_stored(t: torch.Tensor, block: int = INT8_BLOCK) -> bool:
    """Whether int8 storage quantizes ``t``: a weight matrix or kernel (2 or more dimensions) whose
    size is a multiple of ``block``. Biases and other small tensors stay float32."""
    return t.is_floating_point() and t.dim() >= 2 and t.numel() % block == 0


def quantize_int8(t: torch.Tensor, block: int = INT8_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise symmetric 8-bit quantization: ``(q, scale)``.

    ``t`` is read in memory order (a linear layer's rows, a kernel's input channels and taps) in
    blocks of ``block`` values; each block gets one float16 scale, its largest magnitude / 127,
    and its values become ``round(w / scale)`` in int8 [-127, 127]. Reading back,
    ``q * scale`` is off by at most half a scale step per weight: 1/254 of the block's largest
    magnitude. ``q`` has ``t``'s shape; ``scale`` is (numel / block,)."""
    flat = t.detach().to("cpu", torch.float32).reshape(-1, block)
    scale = (flat.abs().amax(dim=1) / 127).to(torch.float16)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero block: any scale
    q = torch.round(flat / scale.float()[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.reshape(t.shape), scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Float32 weights from :func:`quantize_int8`'s ``(q, scale)``."""
    block = q.numel() // scale.numel()
    return (q.reshape(-1, block).float() * scale.float()[:, None]).reshape(q.shape)


def encode_weights(state: dict[str, torch.Tensor], weights_dtype: str) -> dict[str, torch.Tensor]:
    """The tensors a file holds for ``state`` stored as ``weights_dtype`` (:data:`STORAGES`)."""
    if weights_dtype not in STORAGES:
        raise ValueError(f"weights_dtype must be one of {', '.join(STORAGES)}, got {weights_dtype!r}")
    if weights_dtype != "int8":
        return {k: v.detach().to("cpu", WEIGHT_DTYPES[weights_dtype]).contiguous() for k, v in state.items()}
    out = {}
    for k, v in state.items():
        if int8_stored(v):
            out[k], out[k + INT8_SCALE] = quantize_int8(v)
        else:
            out[k] = v.detach().to("cpu", torch.float32).contiguous()
    return out


def encoded_bytes(state: dict[str, torch.Tensor], weights_dtype: str) -> int:
    """The bytes of the tensors :func:`encode_weights` would make of ``state`` (the file less its
    header), counted without encoding anything: int8 keeps one byte a weight and a float16 scale
    per block of the tensors :func:`int8_stored` picks, the others in float32."""
    if weights_dtype not in STORAGES:
        raise ValueError(f"weights_dtype must be one of {', '.join(STORAGES)}, got {weights_dtype!r}")
    if weights_dtype != "int8":
        return sum(v.numel() for v in state.values()) * WEIGHT_DTYPES[weights_dtype].itemsize
    return sum(v.numel() + 2 * (v.numel() // INT8_BLOCK) if int8_stored(v) else 4 * v.numel() for v in state.values())


def stored_weights(state: dict[str, torch.Tensor], weights_dtype: str) -> dict[str, torch.Tensor]:
    """``state`` as :func:`load_model` gives it back after saving it as ``weights_dtype``: float32
    tensors, rounded to what the file keeps (to check a storage's accuracy before shipping it)."""
    return decode_weights(encode_weights(state, weights_dtype), weights_dtype, Path("<memory>"))


def decode_weights(tensors: dict[str, torch.Tensor], weights_dtype: str, path: Path) -> dict[str, torch.Tensor]:
    """Float32 tensors from a file's, checking each dtype against the header's ``weights_dtype``."""
    if weights_dtype != "int8":
        dtype = WEIGHT_DTYPES[weights_dtype]
        wrong = sorted(k for k, t in tensors.items() if t.dtype != dtype)
        if wrong:
            raise CheckpointError(f"{path}: tensor {wrong[0]} has dtype {tensors[wrong[0]].dtype}, "
                                  f"its header records {dtype}")
        return {k: t.to(torch.float32) for k, t in tensors.items()}
    scales = {k[:-len(INT8_SCALE)]: t for k, t in tensors.items() if k.endswith(INT8_SCALE)}
    out = {}
    for k, t in tensors.items():
        if k.endswith(INT8_SCALE):
            if k[:-len(INT8_SCALE)] not in tensors:
                raise CheckpointError(f"{path}: scale {k} belongs to no tensor")
            if t.dtype != torch.float16 or t.dim() != 1:
                raise CheckpointError(f"{path}: scale {k} is not a float16 vector")
        elif k in scales:
            s = scales[k]
            if t.dtype != torch.int8 or s.numel() == 0 or t.numel() != s.numel() * INT8_BLOCK:
                raise CheckpointError(f"{path}: tensor {k} is not int8 in blocks of {INT8_BLOCK} "
                                      f"({t.dtype}, {t.numel()} values, {s.numel()} scales)")
            out[k] = dequantize_int8(t, s)
        elif t.dtype != torch.float32:
            raise CheckpointError(f"{path}: tensor {k} has dtype {t.dtype} and no int8 scale: "
                                  "int8 storage keeps the tensors it does not quantize in float32")
        else:
            out[k] = t
    return out


def save_model(model: Model, path: str | os.PathLike, metadata: dict | None = None, *,
               weights_dtype: str = "fp32") -> dict:
    """Write ``model``'s weights to ``path`` (.safetensors) and ``metadata`` to the JSON beside it.

    ``model`` is any model kind (:data:`KINDS`). ``weights_dtype`` "fp16" or "bf16" stores the
    weights in half precision (half the file), "int8" in blockwise 8 bits (:func:`quantize_int8`,
    a quarter); the header and the JSON record it, and :func:`load_model` gives float32 back. Returns the sidecar's contents (``metadata`` plus
    config, format, weights dtype and sha256).
    """
    if getattr(type(model), "FORMAT", None) not in KINDS:
        raise TypeError(f"cannot save a {type(model).__name__}: not a capsules model kind")
    path = Path(path)
    tensors = encode_weights(model.state_dict(), weights_dtype)
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


def _weights_dtype_from(meta: dict[str, str], path: Path) -> str:
    name = meta.get("weights_dtype", "fp32")  # older checkpoints: float32, not recorded
    if name not in STORAGES:
        raise CheckpointError(f"{path} records weights_dtype {name!r}, expected one of {', '.join(STORAGES)}")
    return name


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
    ``.checkpoint_path`` the path; half-precision and int8 weights come back as float32.
    Raises :class:`CheckpointError` with one line naming the problem for anything unusable.
    """
    path = Path(path) if path is not None else SHIPPED
    dev = pick_device(device)
    tensors, meta, data = read_tensors(path)
    kind = _kind_from(meta, path)
    config = _config_from(kind, meta, path)
    weights_dtype = _weights_dtype_from(meta, path)
    info = read_metadata(path)
    if info.get("sha256") and info["sha256"] != sha256_bytes(data):
        raise CheckpointError(f"{path} does not match the sha256 recorded in {sidecar(path)}: "
                              "the weights were changed or damaged")
    try:
        model = kind(config)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path} has a config that builds no model: {exc}") from None
    state = decode_weights(tensors, weights_dtype, path)
    check_state(model, state, path)
    model.load_state_dict(state)
    model.metadata = info
    model.checkpoint_path = path
    return model.to(dev).eval()
