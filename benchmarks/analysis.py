"""Time what the dashboard's explorer page computes for one input (CPU by default).

    python -m benchmarks.analysis [--checkpoint PATH] [--device cpu] [--threads N] [--repeats 30]

Prints the median time of each piece of model work the page does, as the page does it: the
traced forward pass (``analyse``: convolutions once, routing traced over 10 iterations, 10
decodes), the evidence map of the one digit the Evidence tab shows, the Fig. 4 grid (176 decodes
in one call), one pose-slider decode, a 21-value transform sweep, and a new input with the
Evidence or the Pose tab open (only the open tab computes). Uses the shipped checkpoint when
there is one, else an untrained CapsNet (the timing is the same).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.speed import median_seconds
from capsules import CapsNet, analysis, load_model
from capsules.checkpoint import SHIPPED
from capsules.device import describe, pick_device


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    path = args.checkpoint or (SHIPPED if SHIPPED.is_file() else None)
    model = load_model(path, device) if path else CapsNet().to(device).eval()
    print(f"device: {describe(device)}; weights: {path or 'untrained'}")

    rng = np.random.default_rng(0)
    image = (rng.random((model.config.image_size,) * 2) < 0.2).astype(np.float32)
    a = analysis.analyse(model, image)
    pose, digit = a.v[a.prediction], a.prediction

    def new_input_evidence():
        b = analysis.analyse(model, image)
        b.evidence_for(b.prediction)

    def new_input_pose():
        b = analysis.analyse(model, image)
        analysis.perturbation_grid(model, b.v[b.prediction], b.prediction)

    rows = {
        "analyse (full trace, 10 iterations)": lambda: analysis.analyse(model, image),
        "evidence map (one digit, r iterations)": lambda: a.evidence_for(digit),
        "Fig. 4 grid (176 decodes)": lambda: analysis.perturbation_grid(model, pose, digit),
        "one pose-slider decode": lambda: analysis.offset_pose(model, pose, np.zeros_like(pose), digit),
        "transform sweep (21 images)": lambda: analysis.transform_sweep(model, image, "rotate", digit=digit),
        "new input, Evidence tab open": new_input_evidence,
        "new input, Pose tab open": new_input_pose,
    }
    print(f"{'':40s} {'median':>8s}")
    for name, fn in rows.items():
        print(f"{name:40s} {median_seconds(fn, device, args.repeats, 3) * 1e3:8.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
