"""Copy a trained checkpoint (and its JSON) into checkpoints/ as the shipped MNIST model.

    python scripts/ship_checkpoint.py runs/mnist/best.safetensors

The weights are checked by loading them (sha256, tensors, config) before anything is copied.
"""

import sys
from pathlib import Path

from capsules.checkpoint import SHIPPED, atomic_write_bytes, atomic_write_json, load_model, sidecar


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    src = Path(argv[0])
    model = load_model(src, "cpu")  # refuses anything damaged
    info = dict(model.metadata)
    info["weights"] = SHIPPED.name
    atomic_write_bytes(SHIPPED, src.read_bytes())
    atomic_write_json(sidecar(SHIPPED), info)
    load_model(SHIPPED, "cpu")
    print(f"shipped {src} -> {SHIPPED}: test accuracy {info['test_accuracy']:.2f}% after epoch {info['epoch']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
