"""``python -m capsules.analysis [CHECKPOINT ...]``: how far each pose value ranges over the MNIST
test digits of each class (:func:`capsules.analysis.pose_distribution`), for each CapsNet
(default: the shipped one), merged into the experiments results shipped beside it under
``pose_distribution`` (:func:`capsules.analysis.pose.merge_section`; the results must be those of
its very weights). About two minutes a model on one CPU thread; the dashboard's pose view draws
it under its sliders."""

from __future__ import annotations

import argparse
import sys
import time

from ..checkpoint import SHIPPED, CheckpointError, load_model
from ..data import DatasetError, load_mnist
from ..device import DEVICE_HELP, pick_device
from .pose import POSE_KEY, merge_section, pose_distribution


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capsules.analysis",
                                     description="Merge each CapsNet's pose spread into its experiments results.")
    parser.add_argument("checkpoints", nargs="*", default=[str(SHIPPED)], help="CapsNet checkpoints (.safetensors)")
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: $CAPSULES_DATA or the cache)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    args = parser.parse_args(argv)
    try:
        images, _ = load_mnist("test", args.data_dir)
        for checkpoint in args.checkpoints:
            start = time.perf_counter()
            model = load_model(checkpoint, pick_device(args.device))
            path = merge_section(checkpoint, POSE_KEY, pose_distribution(model, images))
            print(f"{checkpoint}: {POSE_KEY} written into {path} ({time.perf_counter() - start:.0f} s)")
    except (CheckpointError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
