"""Time what the dashboard computes for one new input (CPU by default).

    python scripts/bench_analysis.py [--checkpoint PATH] [--device cpu] [--threads N] [--repeats 30]

Prints the median and the minimum time of: the traced forward pass (analyse: convolutions once, routing traced
over 10 iterations, 10 decodes), the Fig. 4 grid (176 decodes in one call), the evidence maps
of all iterations and digits, one pose-slider reconstruction, a 21-value transform sweep, and
the total for a new input (analyse + grid + evidence maps). Uses the shipped checkpoint when
there is one, else an untrained CapsNet (the timing is the same).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from capsules import CapsNet, load_model  # noqa: E402
from capsules import analysis as A  # noqa: E402
from capsules.checkpoint import SHIPPED  # noqa: E402
from capsules.device import describe, pick_device  # noqa: E402


def time_ms(fn, repeats: int, device: torch.device) -> tuple[float, float]:
    """(median, minimum) wall time in ms; the minimum approximates the cost on an idle machine."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


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
    image = (rng.random((28, 28)) < 0.2).astype(np.float32)
    a = A.analyse(model, image)
    pose, digit = a.v[a.prediction], a.prediction

    rows = {
        "analyse (full trace, 10 iterations)": lambda: A.analyse(model, image),
        "Fig. 4 grid (176 decodes)": lambda: A.perturbation_grid(model, pose, digit),
        "evidence maps (r x 10 digits)": lambda: a.evidence(),
        "one pose-slider reconstruction": lambda: A.reconstruct(model, pose, digit),
        "transform sweep (21 images)": lambda: A.transform_sweep(model, image, "rotate"),
    }

    def new_input():
        b = A.analyse(model, image)
        A.perturbation_grid(model, b.v[b.prediction], b.prediction)
        b.evidence()

    rows["new input: analyse + grid + evidence"] = new_input
    print(f"{'':40s} {'median':>8s}    {'min':>8s}")
    for name, fn in rows.items():
        med, low = time_ms(fn, args.repeats, device)
        print(f"{name:40s} {med:8.2f} ms {low:8.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
