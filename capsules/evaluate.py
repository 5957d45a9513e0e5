"""Evaluate a checkpoint on the 10,000 MNIST test images, or on the fixed MultiMNIST test set.

    python -m capsules.evaluate [--checkpoint PATH] [--data-dir DIR] [--device auto]
    python -m capsules.evaluate --dataset multimnist --checkpoint PATH [--pairs-per-digit 1]

Any model kind on MNIST (a CapsNet, the baseline CNN: ``load_model`` reads which from the file);
MultiMNIST is scored on capsule lengths, so by a CapsNet only.

Ends with a line ``accuracy: 99.71% (9971/10000)``, or for MultiMNIST
``error: 5.20% (520/10000), 95% interval 4.78-5.65%``. Test images are never augmented.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .data import (
    DatasetError,
    MultiMNISTBatch,
    load_mnist,
    load_multimnist_test,
    to_float,
)
from .device import DEVICE_HELP, autocast, describe, pick_device
from .nn import CapsNet, TwoDigitLoss
from .stats import binomial_interval


@dataclass
class EvalResult:
    correct: int
    total: int
    loss: float  # the model's own loss (model.loss), batch mean: see evaluate()
    seconds: float

    @property
    def accuracy(self) -> float:
        """Percent correct."""
        return 100.0 * self.correct / max(self.total, 1)

    def line(self) -> str:
        return f"accuracy: {self.accuracy:.2f}% ({self.correct}/{self.total})"

    def fields(self) -> dict:
        """What a training log and a checkpoint's JSON record (after a prefix such as ``test_``)."""
        return {"accuracy": round(self.accuracy, 4), "correct": self.correct, "total": self.total,
                "loss": self.loss}


@torch.inference_mode()
def evaluate(model, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500,
             precision: str = "fp32", iterations: int | None = None, loss_options: dict | None = None,
             progress: bool = False) -> EvalResult:
    """Accuracy and loss of ``model``, of any kind, on uint8 ``images`` (N, 28, 28) and ``labels`` (N,).

    An image is right when ``out.prediction`` (CapsNet: the longest digit capsule; the CNN: the
    largest logit) is its label. The loss is the model's own, ``model.loss(out, x, y,
    **loss_options)`` on eval-mode outputs: a CapsNet's margin + ``reconstruction_weight`` (0.0005
    unless given) x SSE with the decoder masked by the prediction, the CNN's cross-entropy.
    ``iterations`` (routing) applies to a CapsNet only; for another kind it is refused.
    """
    if iterations is not None and not isinstance(model, CapsNet):
        raise ValueError(f"routing iterations apply to a CapsNet, not to a {model.config.NAME}")
    forward = {} if iterations is None else {"iterations": iterations}
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct, loss_sum, start = 0, 0.0, time.perf_counter()
    n = images.shape[0]
    for lo in tqdm(range(0, n, batch_size), desc="evaluate", leave=False, disable=not progress):
        x = to_float(images[lo:lo + batch_size].to(device, non_blocking=True))
        y = labels[lo:lo + batch_size].to(device, non_blocking=True)
        with autocast(device, precision):
            out = model(x, **forward)
        correct += int((out.prediction == y).sum())
        loss_sum += float(model.loss(out, x, y, **(loss_options or {}))) * x.shape[0]
    model.train(was_training)
    return EvalResult(correct=correct, total=n, loss=loss_sum / max(n, 1), seconds=time.perf_counter() - start)


def two_digit_correct(lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The paper's MultiMNIST criterion, per pair: the two longest capsules are exactly the two
    digits. ``lengths`` (B, n_classes), ``labels`` (B, 2) -> bool (B,)."""
    top2 = lengths.topk(2, dim=-1).indices.sort(dim=-1).values
    return (top2 == labels.sort(dim=-1).values.to(top2.device)).all(dim=-1)


@dataclass
class TwoDigitResult:
    errors: int  # pairs whose two longest capsules are not exactly their two digits
    total: int
    loss: float  # margin (both digits) + 0.0005 x SSE of each digit's reconstruction, true labels
    seconds: float

    @property
    def error(self) -> float:
        """Percent wrong."""
        return 100.0 * self.errors / max(self.total, 1)

    @property
    def accuracy(self) -> float:
        """Percent of pairs with both digits right, 100 - :attr:`error`."""
        return 100.0 * (self.total - self.errors) / max(self.total, 1)

    @property
    def interval(self) -> tuple[float, float]:
        """95% Wilson interval of the error, percent."""
        lo, hi = binomial_interval(self.errors, self.total)
        return 100.0 * lo, 100.0 * hi

    def line(self) -> str:
        lo, hi = self.interval
        return f"error: {self.error:.2f}% ({self.errors}/{self.total}), 95% interval {lo:.2f}-{hi:.2f}%"

    def fields(self) -> dict:
        """What a training log and a checkpoint's JSON record (after a prefix such as ``test_``): the
        paper's error and, for readers of any checkpoint, its complement as ``accuracy`` / ``correct``
        (pairs with both digits right)."""
        return {"error": round(self.error, 4), "errors": self.errors, "accuracy": round(self.accuracy, 4),
                "correct": self.total - self.errors, "total": self.total, "loss": self.loss}


@torch.inference_mode()
def evaluate_multimnist(model, pairs: MultiMNISTBatch, *, batch_size: int = 500, precision: str = "fp32",
                        iterations: int | None = None, progress: bool = False) -> TwoDigitResult:
    """Error of ``model`` (a CapsNet for 36x36 input) on MultiMNIST ``pairs`` (the fixed test set,
    :func:`capsules.data.load_multimnist_test`), in batches; a pair counts as right when its two
    longest capsules are exactly its two digits (:func:`two_digit_correct`)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_fn = TwoDigitLoss(n_labels=model.config.n_classes)
    errors, loss_sum, start = 0, 0.0, time.perf_counter()
    n = len(pairs)
    for lo in tqdm(range(0, n, batch_size), desc="evaluate", leave=False, disable=not progress):
        batch = pairs[lo:lo + batch_size].to(device, non_blocking=True)
        x, first, second = batch.floats()
        with autocast(device, precision):
            out = model(x, batch.labels[:, 0], iterations=iterations)  # decodes the first digit
            second_digit = batch.labels[:, 1]  # and the second, from its own capsule
            recon_b = model.decode(out.v[torch.arange(len(batch), device=device), second_digit], second_digit)
        errors += int((~two_digit_correct(out.lengths, batch.labels)).sum())
        loss_sum += float(loss_fn(out.v, (out.reconstruction, recon_b), first, second, batch.labels)) * len(batch)
    model.train(was_training)
    return TwoDigitResult(errors=errors, total=n, loss=loss_sum / max(n, 1), seconds=time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import SHIPPED, CheckpointError, load_model

    parser = argparse.ArgumentParser(prog="python -m capsules.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help=f"a .safetensors checkpoint (default: {SHIPPED})")
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: $CAPSULES_DATA or the cache)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--iterations", type=int, default=None,
                        help="routing iterations (default: the model's; a CapsNet only)")
    parser.add_argument("--dataset", choices=["mnist", "multimnist"], default="mnist",
                        help="multimnist: the fixed, seeded MultiMNIST test set (a 36x36 model)")
    parser.add_argument("--pairs-per-digit", type=int, default=1,
                        help="MultiMNIST test pairs per MNIST test digit (default 1: 10,000 pairs)")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.checkpoint, pick_device(args.device))
        if args.iterations is not None and not isinstance(model, CapsNet):
            raise ValueError(f"--iterations: {model.checkpoint_path} holds a {model.config.NAME}, which does "
                             "not route")
        if args.dataset == "multimnist" and not isinstance(model, CapsNet):
            raise ValueError(f"MultiMNIST is scored on capsule lengths; {model.checkpoint_path} holds a "
                             f"{model.config.NAME}")
        if args.dataset == "multimnist":
            pairs = load_multimnist_test(args.data_dir, pairs_per_digit=args.pairs_per_digit)
            side = pairs.merged.shape[-1]
            if model.config.image_size != side:
                raise ValueError(f"MultiMNIST images are {side}x{side} but the model in {model.checkpoint_path} "
                                 f"takes {model.config.image_size}x{model.config.image_size}")
        else:
            images, labels = load_mnist("test", args.data_dir)
    except (CheckpointError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"checkpoint: {model.checkpoint_path} ({model.config.NAME})  device: {describe(model.device)}")
    if args.dataset == "multimnist":
        result = evaluate_multimnist(model, pairs, batch_size=args.batch_size, iterations=args.iterations,
                                     progress=True)
    else:
        result = evaluate(model, images, labels, batch_size=args.batch_size, iterations=args.iterations,
                          progress=True)
    print(f"loss: {result.loss:.5f}  time: {result.seconds:.1f} s")
    print(result.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
