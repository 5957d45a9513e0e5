"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28x28 grey images of clothes, the outlier set of
"is this a digit?" (:mod:`capsules.analysis.outliers`).

The files are Debian's package ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``),
four IDX files in ``/usr/share/datasets/fashion-mnist/`` (``t10k-images-idx3-ubyte.gz`` ...), read
with MNIST's own parser; ``$CAPSULES_FASHION`` or ``folder`` point elsewhere. A sample of the test
set ships with the package, so the dashboard needs no install:

    python -m capsules.data.fashion [--out capsules/data/fashion_sample.npz] [--size 300] [--seed 0]

writes it (:func:`save_sample`): ``images`` (N, 28, 28) uint8, ``labels`` (N,) int64, ``indices``
(N,) int64 (positions in the test set), drawn without replacement with ``--seed``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .mnist import SPLITS, DatasetError, _find, _parse_idx, _read_bytes, run_command

ENV_VAR = "CAPSULES_FASHION"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL = "apt-get install dataset-fashion-mnist"
SAMPLE = Path(__file__).resolve().with_name("fashion_sample.npz")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def fashion_dir(folder: str | os.PathLike | None = None) -> Path:
    """The Fashion-MNIST folder: ``folder``, else ``$CAPSULES_FASHION``, else Debian's."""
    if folder:
        return Path(folder).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return DEBIAN_DIR


def load_fashion(split: str = "test", folder: str | os.PathLike | None = None) -> tuple[Tensor, Tensor]:
    """One split as ``(images uint8 (N, 28, 28), labels int64 (N,))``; a missing folder or file is a
    :class:`DatasetError` that says how to install it."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = fashion_dir(folder)
    arrays = []
    for name in SPLITS[split]:  # the same file names as MNIST's
        path = _find(root, name)
        if path is None:
            raise DatasetError(f"Fashion-MNIST not found: no {root / name}[.gz]. Install it with `{INSTALL}` "
                               f"(files in {DEBIAN_DIR}), or point ${ENV_VAR} at a folder holding the four "
                               "*-ubyte[.gz] files.")
        arrays.append(_parse_idx(_read_bytes(path), path))
    images, labels = arrays
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise DatasetError(f"Fashion-MNIST {split} split in {root} has inconsistent shapes "
                           f"{images.shape} and {labels.shape}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def load_fashion_sample(path: str | os.PathLike = SAMPLE) -> tuple[Tensor, Tensor]:
    """The shipped sample of the test set: ``(images uint8 (N, 28, 28), labels int64 (N,))``."""
    with np.load(path, allow_pickle=False) as f:
        return torch.from_numpy(f["images"].copy()), torch.from_numpy(f["labels"].astype(np.int64))


def save_sample(out: str | os.PathLike = SAMPLE, size: int = 300, seed: int = 0,
                folder: str | os.PathLike | None = None) -> Path:
    """Write ``size`` test images drawn with ``seed`` (sorted by test index) as a compressed npz."""
    images, labels = load_fashion("test", folder)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(images.shape[0], generator=g)[:size].sort().values
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, images=images[idx].numpy(), labels=labels[idx].numpy(), indices=idx.numpy())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capsules.data.fashion", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(SAMPLE))
    parser.add_argument("--size", type=int, default=300, help="test images in the sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", default=None, help=f"default: ${ENV_VAR} or {DEBIAN_DIR}")
    args = parser.parse_args(argv)

    def sample() -> str:
        out = save_sample(args.out, args.size, args.seed, args.folder)
        return f"{out}: {args.size} Fashion-MNIST test images, {out.stat().st_size / 1024:.0f} KiB"

    return run_command(sample)


if __name__ == "__main__":
    sys.exit(main())
