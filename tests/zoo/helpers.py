"""What the zoo tests share: a fake shipped model, a folder of them."""

from __future__ import annotations

import json
from pathlib import Path


def fake(folder: Path, name: str, *, kind: str = "capsnet", iterations: int | None = 3, recon: float | None = 0.0005,
         correct: int = 9956, total: int = 10000, epoch: int = 10, dataset: str | None = None,
         weights_dtype: str | None = "fp16") -> Path:
    """A shipped model as the listing sees it: a JSON as capsules.ship writes it, beside a
    .safetensors file whose bytes are never read."""
    path = folder / f"{name}.safetensors"
    path.write_bytes(b"weights are not read by the listing")
    trained = {"epochs": epoch, "seed": 0}
    if kind == "capsnet":
        trained.update(iterations=iterations, reconstruction_weight=recon)
    else:
        trained["model"] = "cnn"
    if dataset is not None:
        trained["dataset"] = dataset
    info = {"test_accuracy": round(100 * correct / total, 4), "test_correct": correct, "test_total": total,
            "epoch": epoch, "epochs": epoch, "train_seconds": 5400.0, "hardware": "CPU: test, 2 threads",
            "train_config": trained, "format": {"capsnet": "capsules.capsnet", "cnn": "capsules.baseline-cnn"}[kind],
            "config": {"routing_iterations": 3} if kind == "capsnet" else {}, "weights": path.name}
    if weights_dtype is not None:
        info["weights_dtype"] = weights_dtype
    if dataset is not None:
        info["dataset"] = dataset
    path.with_suffix(".json").write_text(json.dumps(info))
    return path
