"""The training queue: the open training pieces in order, each resuming from its own state, so
that every session starts it first and the same command goes on after any stop:

    mkdir -p ~/capsules-runs && nohup python scripts/train_queue.py > ~/capsules-runs/queue.out 2>&1 &

1. The baseline CNN on the paper's recipe (the zoo's: Adam 1e-3 decayed x0.9 an epoch, 2-pixel
   shifts, dropout), scored on the 5,000 validation digits, one epoch at a time until its
   validation accuracy has not improved for ``CNN_PATIENCE`` epochs (or ``CNN_EPOCHS``); in
   ``<runs>/cnn``; ``CNN_ENDED`` records that its rule ended it (2026-12-05), so that no machine trains
   it again. It went first from 2026-12-04: the long MultiMNIST run was at 21.7%
   validation error after four sessions, and its curve puts 10% 290-330 epochs away (docs/training.md,
   "The long MultiMNIST run"), while the CNN's goal was a few sessions away.
2. MultiMNIST recipe arms, with ``--arms`` only (docs/training.md, "Recipe comparison"): each arm
   trains on the same 25,600 fresh pairs (one epoch of the first 25,600 training digits) and is
   scored on the same 5,000 validation pairs, built from the last 5,000 training digits, which no
   arm trains on.
3. The long MultiMNIST run of the arm with the lowest validation error (ties: the earlier arm),
   one epoch at a time (55,000 fresh pairs), until the validation error is at most
   ``GOAL_ERROR``; its log and state in ``<runs>/multimnist``.

``--precision`` sets the precision a run starts in (it resumes in it): ``auto`` by default, the
training's own rule: bf16 on an AMD CPU with AVX512-BF16, where it was measured faster
(``python -m benchmarks.steps``: 2x on an AMD Zen 4, 0.8x on an Intel Xeon without AMX), else fp32.

Nothing is shipped by the queue: ship a run's best epoch (``best``, the highest validation
accuracy so far) at the end of a session when it improved on the shipped model's (``python -m
capsules.ship <runs>/multimnist/best.safetensors``, or ``<runs>/cnn/best.safetensors``, which also
recomputes the CNN's experiments; the ship script measures the test score once). Options:
``--runs DIR`` (default ``$CAPSULES_RUNS`` or ``~/capsules-runs``), ``--dry-run`` (print the
commands).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MNIST_MODEL = "checkpoints/capsnet-mnist.safetensors"
MULTIMNIST_MODEL = "checkpoints/capsnet-multimnist.safetensors"
CNN_MODEL = "checkpoints/cnn-mnist.safetensors"
GOAL_ERROR = 10.0  # percent of validation pairs not both right
CNN_PATIENCE, CNN_EPOCHS = 3, 30
CNN = ["--model", "cnn", "--validation", "5000", "--seed", "0"]
LONG_EPOCHS = 200  # the long run's planned length: it stops at the goal first
COMMON = ["--dataset", "multimnist", "--validation", "5000", "--lr-decay", "0.9905", "--seed", "0"]
ARM_DATA = ["--train-subset", "25600", "--epochs", "1", "--precision", "fp32"]  # every arm alike
ARMS = {  # name: the recipe, as the long run uses it
    "a-scratch": ["--lr", "1e-4"],
    "b-warm": ["--init-from", MNIST_MODEL, "--lr", "1e-4"],
    "c-warm-frozen-1e-3": ["--init-from", MNIST_MODEL, "--freeze", "conv1,primary", "--lr", "1e-3",
                           "--warmup-steps", "50"],
    "d-warm-clamp": ["--init-from", MNIST_MODEL, "--warm-rim", "clamp", "--lr", "1e-4"],
}
LONG_EXTRA = {"c-warm-frozen-1e-3": ["--freeze-epochs", "1"]}  # the long run unfreezes after epoch 1
DECIDED = "b-warm"  # the arms' winner, measured 2026-12-03 (docs/training.md): rerun them with --arms
CNN_ENDED = "epoch 16, best validation accuracy 99.5% at epoch 13"  # its rule ended it 2026-12-05: not trained again


def log(runs: Path, text: str) -> None:
    line = f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} {text}"
    print(line, flush=True)
    with open(runs / "queue.log", "a") as f:
        f.write(line + "\n")


def records(out: Path) -> list[dict]:
    """A run's metrics log, one record an epoch ([] before its first epoch)."""
    path = out / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def last_record(out: Path) -> dict | None:
    """The last record of a run's metrics log, or None."""
    return (records(out) or [None])[-1]


def starting(out: Path, precision: str) -> list[str]:
    """``--precision`` for a run that starts now; none for one that resumes (it keeps its own)."""
    return [] if (out / "state.safetensors").exists() else ["--precision", precision]


def continue_shipped(run_args: list[str], shipped: str) -> list[str]:
    """A run's recipe for a run folder that is gone: when the ``shipped`` model is a piece of this
    run (its JSON records the same validation split), the new run warm-starts from it at the
    learning rate the next epoch would have had, so a lost folder loses at most the piece since
    the last ship; else ``run_args`` as they are."""
    meta = ROOT / shipped
    try:
        info = json.loads(meta.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return run_args
    curve, config = info.get("learning_curve") or [], info.get("train_config") or {}
    if not curve or config.get("validation") != 5000 or "lr" not in curve[-1]:
        return run_args
    lr = f"{curve[-1]['lr']:.4g}"  # the rate after its last epoch: the next epoch's
    args = list(run_args)
    for option in ("--init-from", "--lr"):  # replaced below
        if option in args:
            del args[args.index(option):args.index(option) + 2]
    return [*args, "--init-from", shipped, "--lr", lr]


def train(runs: Path, name: str, args: list[str], dry_run: bool) -> None:
    out = runs / name
    resume = ["--resume"] if (out / "state.safetensors").exists() else []
    if resume and "--init-from" in args:  # the starting weights are in the state now
        at = args.index("--init-from")
        args = args[:at] + args[at + 2:]
    command = [sys.executable, "-m", "capsules.train", "--out", str(out), *args, *resume]
    if dry_run:  # printed only: the queue's log holds what ran
        print("would start " + " ".join(command[1:]))
        return
    log(runs, "start " + " ".join(command[1:]))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.log", "a") as f:
        code = subprocess.call(command, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if code:
        log(runs, f"stopped {name} (exit {code}): run the queue again to resume")
        sys.exit(code)


def train_cnn(runs: Path, precision: str, dry_run: bool) -> None:
    """The baseline CNN, an epoch at a time, until ``CNN_PATIENCE`` epochs without a better
    validation accuracy (or ``CNN_EPOCHS``); a run folder that is gone continues from the shipped
    CNN when that is a piece of this run."""
    if CNN_ENDED:  # recorded here, as its run folder may be gone on this machine
        log(runs, f"cnn done: {CNN_ENDED}")
        return
    args = [*CNN, *starting(runs / "cnn", precision)]
    if not (runs / "cnn" / "state.safetensors").exists():
        args = continue_shipped(args, CNN_MODEL)
    while True:
        curve = records(runs / "cnn")
        best = max(range(len(curve)), key=lambda k: curve[k]["val_accuracy"], default=-1)
        if curve and (len(curve) - 1 - best >= CNN_PATIENCE or len(curve) >= CNN_EPOCHS):
            log(runs, f"cnn done: epoch {len(curve)}, best validation accuracy {curve[best]['val_accuracy']}% "
                      f"at epoch {best + 1}")
            return
        train(runs, "cnn", [*args, "--epochs", str(len(curve) + 1)], dry_run)
        if dry_run:
            return


def train_multimnist(runs: Path, precision: str, arms: bool, dry_run: bool) -> None:
    """The recipe arms (with ``arms``), then the long MultiMNIST run of the winner, an epoch at a
    time, until ``GOAL_ERROR`` (or ``LONG_EPOCHS``)."""
    winner = DECIDED
    if arms:
        scores = {}
        for name, recipe in ARMS.items():
            out = runs / "arms" / name
            if (last_record(out) or {}).get("epoch") != 1:
                train(runs, f"arms/{name}", [*COMMON, *recipe, *ARM_DATA], dry_run)
            scores[name] = (last_record(out) or {}).get("val_error", float("inf"))
        winner = min(scores, key=scores.get)  # dicts keep the arms' order: a tie goes to the earlier
        log(runs, "arms (validation error %): " + ", ".join(f"{k} {v}" for k, v in scores.items())
            + f"; the long run takes {winner}")

    long_args = [*COMMON, *ARMS[winner], *LONG_EXTRA.get(winner, []), *starting(runs / "multimnist", precision)]
    if not (runs / "multimnist" / "state.safetensors").exists():
        long_args = continue_shipped(long_args, MULTIMNIST_MODEL)
    while True:
        record = last_record(runs / "multimnist") or {}
        if record.get("val_error", 100.0) <= GOAL_ERROR or record.get("epoch", 0) >= LONG_EPOCHS:
            log(runs, f"multimnist done: epoch {record.get('epoch')}, validation error {record.get('val_error')}%")
            return
        train(runs, "multimnist", [*long_args, "--epochs", str(record.get("epoch", 0) + 1)], dry_run)
        if dry_run:
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default=os.environ.get("CAPSULES_RUNS", str(Path.home() / "capsules-runs")))
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="the precision a new long run starts in (a resumed one keeps its own)")
    parser.add_argument("--arms", action="store_true",
                        help=f"run the recipe arms again (else the long run takes {DECIDED}, their measured winner)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")

    train_cnn(runs, args.precision, args.dry_run)
    train_multimnist(runs, args.precision, args.arms, args.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
