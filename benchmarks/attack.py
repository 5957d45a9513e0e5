"""Time one live attack as the dashboard runs it: PGD-20 on one image, for the CapsNet and the CNN.

    python -m benchmarks.attack [--device cpu] [--threads N] [--repeats 5] [--eps 0.1] [--json out.json]

For each shipped model (the CapsNet and the baseline CNN; an untrained one of the same size when the
file is missing) it times, as medians over ``--repeats`` after one warm-up: all 20 PGD steps on one
test-like image (``early_stop=False``: the worst case, an image the attack does not fool), in fp32
and under bf16 autocast, and :func:`capsules.analysis.attacks.attack_image` at ``--eps`` (the page's
call, which stops at the first step that fools the model).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from benchmarks.speed import median_seconds
from capsules import BaselineCNN, CapsNet, load_model
from capsules.analysis import attacks as A
from capsules.device import describe, pick_device

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"capsnet-mnist": CapsNet, "cnn-mnist": BaselineCNN}


def digit() -> torch.Tensor:
    """A 7-like stroke (1, 1, 28, 28): a bar and a diagonal, in [0, 1]."""
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 6:9, 6:22] = 1.0
    for r in range(9, 24):
        c = 21 - (r - 9) // 2
        x[0, 0, r, c - 1:c + 2] = 1.0
    return x


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    x = digit().to(device)
    rows = {}
    for name, kind in MODELS.items():
        path = ROOT / "checkpoints" / f"{name}.safetensors"
        model = load_model(path, device) if path.is_file() else kind().to(device).eval()
        with torch.no_grad():
            y = model(x).prediction
        rows[name] = {
            f"pgd{A.STEPS}_fp32": median_seconds(lambda: A.pgd(model, x, y, args.eps, early_stop=False), device,
                                                 args.repeats, 1),
            f"pgd{A.STEPS}_bf16": median_seconds(lambda: A.pgd(model, x, y, args.eps, early_stop=False,
                                                               precision="bf16"), device, args.repeats, 1),
            "attack_image_fp32": median_seconds(lambda: A.attack_image(model, x, "pgd", args.eps), device,
                                                args.repeats, 1),
        }
        print(f"{name}: " + "  ".join(f"{k} {v:.3f} s" for k, v in rows[name].items()), flush=True)
    result = {"device": describe(device), "threads": torch.get_num_threads(), "eps": args.eps, "steps": A.STEPS,
              "torch": torch.__version__, "seconds": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
