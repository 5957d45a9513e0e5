"""Copy a training run's last checkpoint (and its JSON) into checkpoints/ as a shipped model.

    python scripts/ship_checkpoint.py runs/mnist/last.safetensors          # -> checkpoints/capsnet-mnist
    python scripts/ship_checkpoint.py runs/mnist/last-ema.safetensors      # its moving average
    python scripts/ship_checkpoint.py runs/multimnist/last.safetensors     # -> checkpoints/capsnet-multimnist

Only ``last`` (the last epoch) or ``last-ema`` (the moving average of the weights at the last
epoch) is shipped: with no validation split, any checkpoint picked by its test score would be
selected on the test set. Anything else is refused with a message. The weights are checked by
loading them (sha256, tensors, config) before anything is copied; the target is named after the
run's data set (``--name`` names another).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from capsules.checkpoint import SHIPPED, CheckpointError, atomic_write_bytes, atomic_write_json, load_model, sidecar

SHIPPABLE = ("last.safetensors", "last-ema.safetensors")
CHECKPOINTS = SHIPPED.parent


def target(info: dict, name: str | None) -> Path:
    """``checkpoints/<name>.safetensors``; by default ``capsnet-<data set>`` (the run's JSON says which)."""
    dataset = info.get("dataset") or info.get("train_config", {}).get("dataset", "mnist")
    return CHECKPOINTS / f"{name or f'capsnet-{dataset}'}.safetensors"


def ship(src: Path, name: str | None = None) -> Path:
    """Check and copy ``src`` (a run's ``last`` or ``last-ema``) with its JSON; returns the target."""
    if src.name not in SHIPPABLE:
        raise CheckpointError(f"{src} is not a run's last checkpoint: only {' or '.join(SHIPPABLE)} is shipped "
                              "(the last epoch, or its moving average), never one picked by its test score")
    model = load_model(src, "cpu")  # refuses anything damaged
    if "train_config" not in model.metadata:
        raise CheckpointError(f"{sidecar(src)} does not record the training run (no train_config)")
    dest = target(model.metadata, name)
    info = {**model.metadata, "weights": dest.name, "shipped_from": str(src)}
    atomic_write_bytes(dest, src.read_bytes())
    atomic_write_json(sidecar(dest), info)
    load_model(dest, "cpu")
    return dest


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/ship_checkpoint.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a run's last.safetensors or last-ema.safetensors")
    parser.add_argument("--name", default=None, help="file name in checkpoints/ without .safetensors "
                                                     "(default: capsnet-<data set>)")
    args = parser.parse_args(argv)
    try:
        dest = ship(args.checkpoint, args.name)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    info = load_model(dest, "cpu").metadata
    score = (f"test error {info['test_error']:.2f}%" if "test_error" in info
             else f"test accuracy {info['test_accuracy']:.2f}%")
    print(f"shipped {args.checkpoint} -> {dest}: {score} after epoch {info['epoch']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
