"""``python -m capsules.train``: see :mod:`capsules.train` and ``--help``."""

from __future__ import annotations

import os
import shlex
import sys

import torch.distributed as torch_dist

from ..checkpoint import CheckpointError
from ..data import DatasetError
from .config import TrainConfig, TrainingError
from .loop import train

def main(argv: list[str] | None = None) -> int:
    cfg, given = TrainConfig.from_args(argv)
    args = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = f"torchrun --nproc_per_node {world}" if world > 1 else "python"
    command = f"{launcher} -m capsules.train {args}".rstrip()
    try:
        summary = train(cfg, command, given)
    except (TrainingError, DatasetError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: python -m capsules.train --out {cfg.out} --resume (it goes on from "
              f"the last state saved: the end of an epoch, or within one every --save-minutes)", file=sys.stderr)
        return 130
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
    if summary:
        p = "val_" if "val_total" in summary else "test_"
        score = p[:-1] + (f" error: {summary[p + 'error']:.2f}% ({summary[p + 'errors']}/{summary[p + 'total']})"
                          if p + "error" in summary else
                          f" accuracy: {summary[p + 'accuracy']:.2f}% ({summary[p + 'correct']}/{summary[p + 'total']})")
        print(f"checkpoints in {cfg.out}; last epoch {summary['epoch']}: {score}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
