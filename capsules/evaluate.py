"""Evaluate a checkpoint on the 10,000 MNIST test images.

    python -m capsules.evaluate [--checkpoint PATH] [--data-dir DIR] [--device auto]

Ends with a line ``accuracy: 99.71% (9971/10000)``. Test images are never augmented.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .data import DatasetError, load_mnist, to_float
from .device import DEVICE_HELP, autocast, describe, pick_device
from .losses import CapsuleLoss


@dataclass
class EvalResult:
    correct: int
    total: int
    loss: float  # margin + 0.0005 x SSE reconstruction (decoder masked by the prediction)
    seconds: float

    @property
    def accuracy(self) -> float:
        """Percent correct."""
        return 100.0 * self.correct / max(self.total, 1)

    def line(self) -> str:
        return f"accuracy: {self.accuracy:.2f}% ({self.correct}/{self.total})"


@torch.inference_mode()
def evaluate(model, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500,
             precision: str = "fp32", iterations: int | None = None, progress: bool = False) -> EvalResult:
    """Accuracy and loss of ``model`` on uint8 ``images`` (N, 28, 28) and ``labels`` (N,)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_fn = CapsuleLoss(n_labels=model.config.n_classes if hasattr(model, "config") else 10)
    correct, loss_sum, start = 0, 0.0, time.perf_counter()
    n = images.shape[0]
    for lo in tqdm(range(0, n, batch_size), desc="evaluate", leave=False, disable=not progress):
        x = to_float(images[lo:lo + batch_size].to(device, non_blocking=True))
        y = labels[lo:lo + batch_size].to(device, non_blocking=True)
        with autocast(device, precision):
            out = model(x, iterations=iterations)
        correct += int((out.lengths.argmax(-1) == y).sum())
        loss_sum += float(loss_fn(out.v, out.reconstruction, x, y)) * x.shape[0]
    model.train(was_training)
    return EvalResult(correct=correct, total=n, loss=loss_sum / max(n, 1), seconds=time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import SHIPPED, CheckpointError, load_model

    parser = argparse.ArgumentParser(prog="python -m capsules.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help=f"a .safetensors checkpoint (default: {SHIPPED})")
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: $CAPSULES_DATA or the cache)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--iterations", type=int, default=None, help="routing iterations (default: the model's)")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.checkpoint, pick_device(args.device))
        images, labels = load_mnist("test", args.data_dir)
    except (CheckpointError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"checkpoint: {model.checkpoint_path}  device: {describe(model.device)}")
    result = evaluate(model, images, labels, batch_size=args.batch_size, iterations=args.iterations, progress=True)
    print(f"loss: {result.loss:.5f}  time: {result.seconds:.1f} s")
    print(result.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
