"""Training-step speed of the models the training queue trains, in the configurations it can
choose between, measured side by side in one process (alternating rounds, so that a machine whose
speed drifts affects every configuration alike):

- the MultiMNIST CapsNet (36x36, batch 128): every layer learning, against conv1 and PrimaryCaps
  frozen (``--freeze conv1,primary``: no backward pass through them), each in fp32 and bf16;
- the baseline CNN (28x28, batch 128): fp32 and bf16, each in the default memory format and in
  channels_last.

    python -m benchmarks.steps [--rounds 3] [--json out.json]

Each configuration runs the training loop's own objective and step (``capsules.train``) on random
inputs of the right shape; a round times one step of each, after one warm-up step each. Prints
examples/s per configuration (the median over rounds) and the ratios to the first of its model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from capsules import BaselineCNN, BaselineCNNConfig, CapsNet, CapsNetConfig
from capsules.device import describe
from capsules.nn import TwoDigitLoss
from capsules.train import (
    TrainConfig,
    make_optimizer,
    model_objective,
    set_frozen,
    two_digit_objective,
)
from capsules.train.step import _train_step


def capsnet_step(frozen: bool, precision: str, batch: int):
    torch.manual_seed(0)
    model = CapsNet(CapsNetConfig(image_size=36)).train()
    set_frozen(model, TrainConfig(freeze="conv1,primary" if frozen else ""), 1)
    optimizer = make_optimizer(model, 1e-4)
    objective = two_digit_objective(TwoDigitLoss(n_labels=10), precision)
    labels = torch.stack([torch.arange(batch) % 10, (torch.arange(batch) + 3) % 10], dim=1)
    first, second = torch.rand(batch, 1, 36, 36), torch.rand(batch, 1, 36, 36)
    data = ((first + second).clamp(max=1), labels, first, second)
    return lambda: _train_step(model, optimizer, data, objective)


def cnn_step(channels_last: bool, precision: str, batch: int):
    torch.manual_seed(0)
    model = BaselineCNN(BaselineCNNConfig()).train()
    x = torch.rand(batch, 1, 28, 28)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, 1e-3)
    objective = model_objective({}, precision)
    data = (x, torch.arange(batch) % 10)
    return lambda: _train_step(model, optimizer, data, objective)


def configurations(batch: int) -> dict[str, tuple[str, callable]]:
    """name -> (model, a function that builds the step)."""
    out = {}
    for precision in ("fp32", "bf16"):
        for frozen in (False, True):
            name = f"capsnet-multimnist {'frozen conv1+primary' if frozen else 'all layers'}, {precision}"
            out[name] = ("capsnet-multimnist", lambda f=frozen, p=precision: capsnet_step(f, p, batch))
    for precision in ("fp32", "bf16"):
        for channels_last in (False, True):
            name = f"cnn-mnist {'channels_last' if channels_last else 'contiguous'}, {precision}"
            out[name] = ("cnn-mnist", lambda c=channels_last, p=precision: cnn_step(c, p, batch))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--only", default="", help="only the configurations whose name contains this")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    configs = {k: v for k, v in configurations(args.batch_size).items() if args.only in k}
    steps = {}
    for name, (_, build) in configs.items():
        steps[name] = build()
        steps[name]()  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            seconds[name].append(time.perf_counter() - start)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    rows, first_of = [], {}
    for name, (model, _) in configs.items():
        per_s = args.batch_size / statistics.median(seconds[name])
        first_of.setdefault(model, per_s)
        rows.append({"configuration": name, "model": model, "examples_per_second": round(per_s, 2),
                     "ratio": round(per_s / first_of[model], 3), "seconds": seconds[name]})
    hardware = describe(torch.device("cpu"))
    print(f"{hardware}, batch {args.batch_size}, median of {args.rounds} rounds\n")
    print("| configuration | examples/s | against the first of its model |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['configuration']} | {row['examples_per_second']:.1f} | {row['ratio']:.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"hardware": hardware, "torch": torch.__version__, "batch_size": args.batch_size,
                       "rounds": args.rounds, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
