"""Copy a training run's last checkpoint into checkpoints/ as a shipped model, in half precision
when that costs no test image.

    python -m capsules.ship runs/mnist/last.safetensors          # -> checkpoints/capsnet-mnist
    python -m capsules.ship runs/mnist/last-ema.safetensors      # its moving average
    python -m capsules.ship runs/multimnist/last.safetensors     # -> checkpoints/capsnet-multimnist
    python -m capsules.ship runs/cnn/last.safetensors            # -> checkpoints/cnn-mnist
    python -m capsules.ship runs/cnn/best.safetensors            # a run with --validation: its best epoch
    python -m capsules.ship runs/r1/last.safetensors --name capsnet-mnist-r1   # a variant

Only ``last`` (the last epoch), ``last-ema`` (the moving average of the weights at the last
epoch) or, from a run with a validation split, ``best`` (the epoch of the highest validation
accuracy) is shipped: any checkpoint picked by its test score would be selected on the test set.
Anything else is refused with a message. The weights are checked by
loading them (sha256, tensors, config) before anything is written. The target is
``checkpoints/<model>-<data set>[-variant].safetensors``: the model kind (``capsnet``, ``cnn``)
from the file, the data set from its JSON, a variant by ``--name``.

Half precision: the model is evaluated on the full test set of its data set (MNIST's 10,000
images, or the 10,000 MultiMNIST pairs) twice, with its float32 weights and with the same weights
rounded to float16; the weights are stored as float16 if and only if both get the same number of
test examples right, else as float32. A model that would then weigh more than the repository
takes (``MAX_SHIPPED_BYTES``, 36 MiB: the 36x36 MultiMNIST CapsNet in float32, the baseline CNN
even in float16) is stored in float16, else in blockwise int8
(``capsules.checkpoint.quantize_int8``), the first that fits and gets within 1 in 10,000 of the
float32 count (a fixed order, never a choice by score); otherwise it is refused, with the counts. The
JSON says which (``weights_dtype``) and records the check (``half_precision_check``); its
``test_*`` figures are those of the shipped weights on the full test set (float32 evaluation),
whatever the run evaluated on.

An MNIST model then gets its test-set experiments beside it (``python -m capsules.experiments
--sections all``: ``<name>.experiments.json``, the routing experiments, the pose spread, outliers and
attacks; the CNN's robustness curves, outliers and attacks), so that the dashboard's pages show them
at once; ``--no-experiments`` leaves them to a
later ``python -m capsules.experiments --checkpoint checkpoints/<name>.safetensors``.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import torch

from .checkpoint import (MAX_SHIPPED_BYTES, SHIPPED, CheckpointError, encoded_bytes, load_model, portable,
                         save_model, sidecar, stored_weights)
from .data import DatasetError, load_mnist, load_multimnist_test
from .device import DEVICE_HELP, describe, pick_device
from .evaluate import EvalResult, TwoDigitResult, evaluate, evaluate_multimnist
from .zoo import KIND_NAMES, dataset_of

SHIPPABLE = ("last.safetensors", "last-ema.safetensors")
VALIDATED = "best.safetensors"  # chosen on validation digits: shippable from a run that had them
CHECKPOINTS = SHIPPED.parent
ROOT = CHECKPOINTS.parent


def target(model, name: str | None) -> Path:
    """``checkpoints/<name>.safetensors``; ``name`` is ``<model>-<data set>`` (the default) or that
    followed by ``-<variant>`` (lower-case letters, digits and dashes)."""
    prefix = f"{KIND_NAMES[model.FORMAT]}-{dataset_of(model.metadata)}"
    if name is not None and not re.fullmatch(rf"{re.escape(prefix)}(-[a-z0-9][a-z0-9-]*)?", name):
        raise CheckpointError(f"--name {name}: a shipped name is {prefix} or {prefix}-<variant> "
                              "(this checkpoint's model and data set, then lower-case letters, digits, dashes)")
    return CHECKPOINTS / f"{name or prefix}.safetensors"


def full_test_score(model, data_dir: str | None) -> EvalResult | TwoDigitResult:
    """The model's score on the full test set of its data set, float32 evaluation, with the loss
    options it was trained with."""
    info = model.metadata
    trained = info.get("train_config", {})
    if dataset_of(info) == "multimnist":
        return evaluate_multimnist(model, load_multimnist_test(data_dir))
    images, labels = load_mnist("test", data_dir)
    options = {k: trained[k] for k in model.LOSS_OPTIONS if k in trained}
    return evaluate(model, images, labels, loss_options=options)


def stored_as(model, weights_dtype: str):
    """A copy of ``model`` with the weights ``load_model`` returns from a file that stores them as
    ``weights_dtype`` ("fp16": rounded to float16; "int8": blockwise 8 bits), held as float32."""
    copied = copy.deepcopy(model)
    copied.load_state_dict(stored_weights(model.state_dict(), weights_dtype))
    return copied


def file_bytes(model, weights_dtype: str) -> int:
    """The size of ``model``'s weights stored as ``weights_dtype`` (the header aside), counted, not encoded."""
    return encoded_bytes(model.state_dict(), weights_dtype)


def n_correct(result: EvalResult | TwoDigitResult) -> int:
    return result.total - result.errors if isinstance(result, TwoDigitResult) else result.correct


def storage_rule(src, fp32_correct: int, total: int, sizes: dict[str, int], correct_of) -> str:
    """The storage of a model too large for the repository in fp32 (or in fp16 that scored the same):
    fp16, else int8, the first whose file fits ``MAX_SHIPPED_BYTES`` and whose test count
    (``correct_of(storage)``, evaluated only when asked) is within ``tolerance(total)`` of fp32's.
    The order is fixed in advance, never chosen by score; nothing that fits: CheckpointError."""
    said = []
    for storage in ("fp16", "int8"):
        if sizes[storage] > MAX_SHIPPED_BYTES:
            said.append(f"{storage} weighs {sizes[storage] / 2**20:.0f} MiB")
            continue
        correct = correct_of(storage)
        if abs(correct - fp32_correct) <= tolerance(total):
            return storage
        said.append(f"{storage} gets {correct} right")
    raise CheckpointError(f"{src} is over the {MAX_SHIPPED_BYTES / 2**20:.0f} MiB a shipped model may weigh in fp32, "
                          f"and no smaller storage keeps its test count ({fp32_correct} of {total} right in fp32; "
                          f"{'; '.join(said)}): not shipped")


def tolerance(total: int) -> int:
    """Test examples a storage may change for a model too large for fp32: 1 in 10,000 (0.01 points)."""
    return max(1, total // 10000)


def ship(src: Path, name: str | None = None, *, data_dir: str | None = None, device: str = "auto") -> Path:
    """Check ``src`` (a run's ``last``, ``last-ema`` or validated ``best``), evaluate it in float32
    and rounded to float16 on the full test set, and write it to ``checkpoints/`` with its JSON, in
    float16 when both score the same; returns the target."""
    if src.name not in (*SHIPPABLE, VALIDATED):
        raise CheckpointError(f"{src} is not a run's last or best checkpoint: only {', '.join(SHIPPABLE)} or "
                              f"{VALIDATED} is shipped (the last epoch, its moving average, or the epoch best "
                              "on validation), never one picked by its test score")
    model = load_model(src, pick_device(device))  # refuses anything damaged
    if src.name == VALIDATED and "val_accuracy" not in model.metadata:
        raise CheckpointError(f"{src} was not chosen on a validation split (its JSON has no val_accuracy): "
                              f"ship {' or '.join(SHIPPABLE)}, never one picked by its test score")
    if "train_config" not in model.metadata:
        raise CheckpointError(f"{sidecar(src)} does not record the training run (no train_config)")
    dest = target(model, name)
    half = stored_as(model, "fp16")
    full, rounded = full_test_score(model, data_dir), full_test_score(half, data_dir)
    dtype = "fp16" if n_correct(rounded) == n_correct(full) else "fp32"
    shipped, result = (half, rounded) if dtype == "fp16" else (model, full)
    check = {"rule": "fp16 if and only if the weights rounded to fp16 get as many test examples right as "
                     "the fp32 weights, on the full test set (fp32 evaluation); a model over "
                     f"{MAX_SHIPPED_BYTES / 2**20:.0f} MiB in that storage: fp16, else blockwise int8, the first "
                     "that fits and gets within 1 in 10,000 test examples of the fp32 count",
             "dataset": dataset_of(model.metadata), "total": full.total, "fp32_correct": n_correct(full),
             "fp16_correct": n_correct(rounded), "weights_dtype": dtype, "device": describe(model.device)}
    if file_bytes(model, dtype) > MAX_SHIPPED_BYTES:
        scores = {"fp16": (half, rounded)}

        def correct_of(storage: str) -> int:  # int8 is quantized and evaluated only when asked
            if storage not in scores:
                small = stored_as(model, storage)
                scores[storage] = (small, full_test_score(small, data_dir))
                check[f"{storage}_correct"] = n_correct(scores[storage][1])
            return n_correct(scores[storage][1])

        dtype = check["weights_dtype"] = storage_rule(
            src, n_correct(full), full.total, {k: file_bytes(model, k) for k in ("fp16", "int8")}, correct_of)
        shipped, result = scores[dtype]
    info = portable({**model.metadata, **{f"test_{k}": v for k, v in result.fields().items()},
                     "shipped_from": str(src), "source_sha256": model.metadata.get("sha256"),
                     "half_precision_check": check})  # no folder of this machine
    save_model(shipped, dest, info, weights_dtype=dtype)
    loaded = load_model(dest, "cpu")  # what ships is what was evaluated
    for (k, a), b in zip(loaded.state_dict().items(), shipped.state_dict().values()):
        if not torch.equal(a, b.cpu()):
            raise CheckpointError(f"{dest}: tensor {k} does not read back as evaluated")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capsules.ship", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a run's last.safetensors, last-ema.safetensors or "
                                                      "(with a validation split) best.safetensors")
    parser.add_argument("--name", default=None, help="file name in checkpoints/ without .safetensors: "
                                                     "<model>-<data set>[-variant] (default: <model>-<data set>)")
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: $CAPSULES_DATA or the cache)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--no-experiments", action="store_true",
                        help="do not compute an MNIST model's test-set experiments (the dashboard's second page)")
    args = parser.parse_args(argv)
    try:
        dest = ship(args.checkpoint, args.name, data_dir=args.data_dir, device=args.device)
    except (CheckpointError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    info = load_model(dest, "cpu").metadata
    check = info["half_precision_check"]
    score = (f"test error {info['test_error']:.2f}%" if "test_error" in info
             else f"test accuracy {info['test_accuracy']:.2f}%")
    int8 = f", {check['int8_correct']} in int8" if "int8_correct" in check else ""
    print(f"shipped {args.checkpoint} -> {dest}: {score} after epoch {info['epoch']}; weights {check['weights_dtype']} "
          f"({check['fp16_correct']} right in fp16{int8}, {check['fp32_correct']} in fp32, of {check['total']})")
    if args.no_experiments or dataset_of(info) != "mnist":
        return 0
    from . import experiments

    return experiments.main(["--checkpoint", str(dest), "--device", args.device, "--sections", "all",
                             *(["--data-dir", args.data_dir] if args.data_dir else [])])


if __name__ == "__main__":
    sys.exit(main())
