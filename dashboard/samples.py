"""Write the dashboard's built-in sample digits, ``dashboard/samples.npz``.

    python -m dashboard.samples [--checkpoint PATH] [--data-dir DIR] [--out dashboard/samples.npz]

Classifies the whole MNIST test set with the model (the shipped checkpoint by default) and keeps
``--per-class`` digits of every class (20: 200 in all, drawn at random with ``--seed``) plus
every misclassified test digit, up to ``--max-misclassified`` (60, the least confident first
when there are more). Rerun it whenever the shipped checkpoint changes.

The file is read with ``np.load(path, allow_pickle=False)`` and holds:
images (N, 28, 28) uint8, labels (N,) int64, indices (N,) int64 (positions in the test set),
predictions (N,) int64 and confidence (N,) float32 (the model's, at creation time),
misclassified (N,) bool, and 0-d strings checkpoint, sha256, created, plus test_accuracy (0-d
float64, of the model on all 10,000 test digits).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np
import torch

from capsules import CapsNet, load_model
from capsules.checkpoint import SHIPPED
from capsules.data import DatasetError, load_mnist, resolve_data_dir
from capsules.device import pick_device

DEFAULT_OUT = Path(__file__).with_name("samples.npz")


@torch.inference_mode()
def classify(model, images: torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) uint8 -> predictions (N,) int64 and the predicted capsule's length (N,)."""
    preds, conf = [], []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(model.device).float().div_(255).unsqueeze(1)
        out = model(x)
        lengths = out.lengths
        preds.append(lengths.argmax(-1).cpu())
        conf.append(lengths.max(-1).values.cpu())
    return torch.cat(preds).numpy().astype(np.int64), torch.cat(conf).numpy().astype(np.float32)


def select(labels: np.ndarray, predictions: np.ndarray, confidence: np.ndarray, per_class: int,
           max_misclassified: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Test-set indices: ``per_class`` random digits of each class, then the misclassified ones
    not already chosen (least confident first, at most ``max_misclassified``). Returns the
    indices and a misclassified flag per index."""
    rng = np.random.default_rng(seed)
    chosen = []
    for digit in range(10):
        pool = np.flatnonzero(labels == digit)
        chosen.extend(sorted(rng.choice(pool, size=min(per_class, pool.size), replace=False)))
    wrong = np.flatnonzero(predictions != labels)
    wrong = wrong[np.argsort(confidence[wrong], kind="stable")][:max_misclassified]
    taken = set(int(i) for i in chosen)
    extra = sorted(int(i) for i in wrong if int(i) not in taken)
    indices = np.asarray(chosen + extra, dtype=np.int64)
    return indices, predictions[indices] != labels[indices]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None,
                   help=f"weights (default: the shipped checkpoints/{SHIPPED.name}; an untrained "
                        "model, with a warning, when it does not exist yet)")
    p.add_argument("--data-dir", default=None,
                   help="MNIST folder (default: $CAPSULES_DATA, else ../shared/data beside the clone, else the cache)")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--max-misclassified", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, mps")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    device = pick_device(args.device)
    path = Path(args.checkpoint) if args.checkpoint else SHIPPED
    if args.checkpoint or SHIPPED.is_file():
        model = load_model(path, device)
        digest = str(model.metadata.get("sha256", ""))
        source = str(path)
    else:
        print(f"warning: {SHIPPED} does not exist yet; using an UNTRAINED model (seed 0). "
              "Rerun this script once the checkpoint is there.", file=sys.stderr)
        torch.manual_seed(0)
        model = CapsNet().to(device).eval()
        digest, source = "", "untrained"

    data_dir = resolve_data_dir(args.data_dir, beside_checkout=True)
    try:
        images, labels = load_mnist("test", data_dir)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    images = torch.as_tensor(images)
    labels_np = torch.as_tensor(labels).numpy().astype(np.int64)

    predictions, confidence = classify(model, images, args.batch_size)
    accuracy = float((predictions == labels_np).mean())
    indices, wrong = select(labels_np, predictions, confidence, args.per_class,
                            args.max_misclassified, args.seed)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        images=images.numpy()[indices].astype(np.uint8),
        labels=labels_np[indices],
        indices=indices,
        predictions=predictions[indices],
        confidence=confidence[indices],
        misclassified=wrong,
        checkpoint=np.array(source),
        sha256=np.array(digest),
        created=np.array(dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")),
        test_accuracy=np.array(accuracy, dtype=np.float64),
    )
    print(f"{out}: {len(indices)} digits ({int(wrong.sum())} misclassified), "
          f"{out.stat().st_size / 1024:.0f} KiB; model {source}: test accuracy {accuracy:.4%}; "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
