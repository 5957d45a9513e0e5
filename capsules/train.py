"""Train a CapsNet on MNIST with the paper's recipe.

    python -m capsules.train --out runs/mnist [--epochs 50] [--resume] ...
    torchrun --nproc_per_node N -m capsules.train --out runs/mnist ...   # DistributedDataParallel

Recipe (defaults): Adam, lr 1e-3 decayed exponentially (x0.9 per epoch), batch 128, 3 routing iterations, margin loss + 0.0005 x SSE reconstruction with
the decoder masked by the true label, training images shifted by up to 2 pixels.

The output folder gets ``last`` and ``best`` checkpoints (safetensors + JSON), ``metrics.jsonl``
(one JSON line per epoch) and ``state.safetensors``, the resume state (weights, optimizer,
random generator); ``--resume`` continues from it, losing at most the epoch in progress.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shlex
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as torch_dist
from tqdm.auto import tqdm

from .checkpoint import (CheckpointError, atomic_write_bytes, check_state, read_metadata, read_tensors,
                         save_model)
from .data import DatasetError, load_mnist, shift_augment, to_float
from .device import DEVICE_HELP, PRECISIONS, autocast, describe, pick_device, resolve_precision
from .evaluate import evaluate
from .losses import CapsuleLoss
from .model import CapsNet, CapsNetConfig

STATE_FORMAT = "capsules.train-state"


@dataclass
class TrainConfig:
    """Training run settings; ``python -m capsules.train --help`` is built from these fields."""

    out: str = "runs/mnist"  # output folder: checkpoints, metrics.jsonl, resume state
    data_dir: str | None = None  # MNIST folder; default $CAPSULES_DATA, else ~/.cache/capsules/data
    epochs: int = 50  # passes over the training set
    batch_size: int = 128  # images per optimisation step (global, across processes)
    lr: float = 1e-3  # Adam learning rate at step 0
    lr_decay: float = 0.9  # exponential decay of the lr per epoch, applied smoothly every step
    iterations: int = 3  # routing iterations r
    shift: int = 2  # max shift augmentation in pixels (0 = none)
    reconstruction_weight: float = 0.0005  # scale of the SSE reconstruction loss
    detach_inner: bool = False  # variant: no gradient through u_hat in inner routing iterations
    seed: int = 0  # seeds init, shuffling and augmentation
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    precision: str = "auto"  # auto (bf16 autocast where native, routing in fp32), fp32, bf16
    train_subset: int = 0  # train on the first N images only (0 = all 60,000)
    test_subset: int = 0  # evaluate on the first N test images only (0 = all 10,000)
    eval_batch_size: int = 500  # batch size for evaluation
    resume: bool = False  # continue the run in --out from its state file

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> tuple["TrainConfig", set[str]]:
        """Parse the command line; also returns the names given explicitly."""
        parser = argparse.ArgumentParser(
            prog="python -m capsules.train", description=__doc__.split("\n\n")[0],
            epilog="Every default reproduces the paper's recipe.")
        comments = _field_comments()
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            helptext = comments.get(f.name, "")
            if f.name == "device":
                helptext = DEVICE_HELP
            if f.type in ("bool", bool):
                parser.add_argument(flag, action="store_true", default=None, help=helptext)
            else:
                typ = {"int": int, "float": float}.get(str(f.type), str)
                kw = {"choices": PRECISIONS} if f.name == "precision" else {}
                parser.add_argument(flag, type=typ, default=None, help=f"{helptext} (default: {f.default})", **kw)
        ns = vars(parser.parse_args(argv))
        given = {k for k, v in ns.items() if v is not None}
        return cls(**{k: v for k, v in ns.items() if v is not None}), given


def _field_comments() -> dict[str, str]:
    """The comment beside each TrainConfig field, used as its --help text."""
    import inspect

    out = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        line = line.strip()
        if ":" in line and "#" in line and not line.startswith(("#", '"')):
            out[line.split(":", 1)[0].strip()] = line.split("#", 1)[1].strip()
    return out


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on; the message says why."""


# ----------------------------------------------------------------------------------- one step


def _train_step(model, optimizer, images, labels, *, loss_fn=None, precision="auto"):
    """The step the loop runs: returns (loss, number correct) as 0-dim tensors."""
    module = model.module if hasattr(model, "module") else model
    device = images.device
    precision = resolve_precision(precision, device)
    if loss_fn is None:
        loss_fn = CapsuleLoss(n_labels=module.config.n_classes)
    model.train()
    with autocast(device, precision):
        out = model(images, labels)  # decoder masked by the true labels
    loss = loss_fn(out.v, out.reconstruction, images, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    correct = (out.lengths.detach().argmax(-1) == labels).sum()
    return loss.detach(), correct


def train_step(model, optimizer, images, labels, *, loss_fn=None, precision: str = "auto") -> torch.Tensor:
    """One optimisation step exactly as the training loop runs it by default: forward in train
    mode with the decoder masked by the true labels, margin + 0.0005 x SSE loss, backward, Adam.

    ``images`` (B, 1, 28, 28) float in [0, 1] (already augmented), ``labels`` (B,).
    Returns the loss as a detached 0-dim tensor.
    """
    return _train_step(model, optimizer, images, labels, loss_fn=loss_fn, precision=precision)[0]


def make_optimizer(model: torch.nn.Module, lr: float = 1e-3) -> torch.optim.Adam:
    """Adam, as the paper trains; the fused kernel (one pass over all parameters) where available."""
    device = next(model.parameters()).device
    fused = device.type in ("cuda", "cpu")
    return torch.optim.Adam(model.parameters(), lr=lr, fused=fused)


def learning_rate(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """``lr * lr_decay ** (step / steps_per_epoch)``: x0.9 an epoch by default (the official
    code's x0.96 every 2000 steps at batch 128 is ``--lr-decay 0.9905``)."""
    return cfg.lr * cfg.lr_decay ** (step / steps_per_epoch)


# ------------------------------------------------------------------------------ resume state


def save_state(path: Path, model, optimizer, generator: torch.Generator, meta: dict) -> None:
    """Weights, Adam moments and the random generator in one safetensors file, atomically."""
    from safetensors.torch import save as st_save

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, st in opt["state"].items():
        for name, value in st.items():
            tensors[f"optim.{idx}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng"] = generator.get_state()
    header = {"format": STATE_FORMAT, "meta": json.dumps(meta),
              "param_groups": json.dumps(opt["param_groups"])}
    atomic_write_bytes(path, st_save(tensors, metadata=header))


def load_state(path: Path, model, optimizer, generator: torch.Generator, device) -> dict:
    tensors, header, _ = read_tensors(path)
    if header.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a capsules training state")
    meta = json.loads(header["meta"])
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    check_state(model, weights, path)
    model.load_state_dict(weights)
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v.to(device) if name != "step" else v
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(header["param_groups"])})
    generator.set_state(tensors["rng"])
    return meta


# ------------------------------------------------------------------------------------ the loop


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _preflight(out: Path) -> None:
    """An unwritable folder or a nearly full disk is reported before any training."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise TrainingError(f"cannot write to the output folder {out}: {exc.strerror or exc}") from None
    free = shutil.disk_usage(out).free
    if free < 200 * 1024 * 1024:
        raise TrainingError(f"only {free / 2**20:.0f} MiB free in {out}; checkpoints need about 200 MiB")


def _truncate_metrics(path: Path, upto_epoch: int) -> None:
    """Drop log lines of epochs that the resumed run will redo."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("epoch", 0) <= upto_epoch:
                keep.append(line)
        except ValueError:
            continue
    atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())


def _append_line(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def train(cfg: TrainConfig, command: str | None = None, given: set[str] | None = None) -> dict:
    """Run (or resume) training; returns the final summary. Raises TrainingError / DatasetError."""
    rank, world, local_rank = _dist_info()
    distributed = world > 1
    out = Path(cfg.out)
    state_path = out / "state.safetensors"

    if cfg.resume:
        if not state_path.exists():
            raise TrainingError(f"--resume: no training state in {out} (expected {state_path})")
        _, header, _ = read_tensors(state_path)
        saved = json.loads(json.loads(header["meta"])["config"])
        keep = {"out", "data_dir", "epochs", "device", "eval_batch_size", "resume"} & (given or set())
        cfg = TrainConfig(**{**saved, **{k: getattr(cfg, k) for k in keep}, "resume": True})

    device = pick_device(cfg.device)
    if distributed:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not torch_dist.is_initialized():
            torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.batch_size % world:
        raise TrainingError(f"--batch-size {cfg.batch_size} is not divisible by {world} processes")
    precision = resolve_precision(cfg.precision, device)
    main_proc = rank == 0
    if main_proc:
        _preflight(out)
        for stale in out.glob(".*.tmp"):  # left by a process killed while writing
            stale.unlink(missing_ok=True)

    train_x, train_y = load_mnist("train", cfg.data_dir)
    test_x, test_y = load_mnist("test", cfg.data_dir)
    if cfg.train_subset:
        train_x, train_y = train_x[:cfg.train_subset], train_y[:cfg.train_subset]
    if cfg.test_subset:
        test_x, test_y = test_x[:cfg.test_subset], test_y[:cfg.test_subset]
    train_x, train_y = train_x.to(device), train_y.to(device)

    torch.manual_seed(cfg.seed)
    model = CapsNet(CapsNetConfig(routing_iterations=cfg.iterations, detach_inner=cfg.detach_inner)).to(device)
    optimizer = make_optimizer(model, cfg.lr)
    generator = torch.Generator().manual_seed(cfg.seed)  # shuffling and augmentation, CPU
    loss_fn = CapsuleLoss(n_labels=model.config.n_classes, reconstruction_weight=cfg.reconstruction_weight)

    start_epoch, step, train_seconds, history = 0, 0, 0.0, {}
    if cfg.resume:
        meta = load_state(state_path, model, optimizer, generator, device)
        start_epoch, step, train_seconds = meta["epoch"], meta["step"], meta["train_seconds"]
        history = meta.get("history", {})
        if main_proc:
            _truncate_metrics(out / "metrics.jsonl", start_epoch)
            print(f"resuming {out} after epoch {start_epoch} (step {step})", flush=True)
    elif main_proc:
        (out / "metrics.jsonl").unlink(missing_ok=True)
    commands = history.get("commands", []) + [command or "python -m capsules.train"]
    best_acc = float(read_metadata(out / "best.safetensors").get("test_accuracy", -1.0)) \
        if cfg.resume and (out / "best.safetensors").exists() else -1.0

    step_model = model
    if distributed:
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    n = train_x.shape[0]
    per_rank = cfg.batch_size // world
    steps_per_epoch = n // cfg.batch_size if n >= cfg.batch_size else 1
    hardware = describe(device) + (f" x {world} processes" if distributed else "")
    summary: dict = {}
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=generator)
        run_loss, run_correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{cfg.epochs}", disable=not main_proc,
                   dynamic_ncols=True, mininterval=1.0)
        for k in bar:
            idx = perm[k * cfg.batch_size:(k + 1) * cfg.batch_size]
            idx = idx[rank * per_rank:(rank + 1) * per_rank].to(device)  # this process's shard
            x = shift_augment(to_float(train_x[idx]), cfg.shift, generator)
            y = train_y[idx]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, step, steps_per_epoch)
            loss, correct = _train_step(step_model, optimizer, x, y, loss_fn=loss_fn, precision=precision)
            step += 1
            run_loss += loss * y.shape[0]
            run_correct += correct
            seen += y.shape[0]
            if k % 20 == 0 or k == steps_per_epoch - 1:
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"the loss became {float(loss)} at epoch {epoch}, step {step}; training stopped. "
                        f"The last good checkpoints in {out} are kept; try a lower --lr.")
                bar.set_postfix(loss=f"{float(run_loss) / seen:.4f}", acc=f"{100 * float(run_correct) / seen:.2f}%",
                                lr=f"{learning_rate(cfg, step, steps_per_epoch):.2e}")
        train_seconds += time.perf_counter() - t0
        if not torch.isfinite(run_loss):
            raise TrainingError(f"the loss became non-finite in epoch {epoch}; training stopped. "
                                f"The last good checkpoints in {out} are kept; try a lower --lr.")
        if distributed:
            torch_dist.barrier()
        if not main_proc:
            continue
        result = evaluate(model, test_x, test_y, batch_size=cfg.eval_batch_size)
        record = {"epoch": epoch, "step": step, "lr": learning_rate(cfg, step, steps_per_epoch),
                  "train_loss": float(run_loss) / seen, "train_accuracy": 100 * float(run_correct) / seen,
                  "test_loss": result.loss, "test_accuracy": result.accuracy,
                  "epoch_seconds": time.perf_counter() - t0, "train_seconds": train_seconds,
                  "images_per_second": seen * world / (time.perf_counter() - t0 - result.seconds)}
        print(f"epoch {epoch}: train loss {record['train_loss']:.4f}, train acc {record['train_accuracy']:.2f}%, "
              f"test {result.line()}, {record['epoch_seconds']:.0f} s", flush=True)
        summary = {
            "test_accuracy": round(result.accuracy, 4), "test_correct": result.correct, "test_total": result.total,
            "test_loss": result.loss, "epoch": epoch, "epochs": cfg.epochs, "steps": step,
            "train_seconds": round(train_seconds, 1), "hardware": hardware, "precision": precision,
            "train_images": n, "train_config": dataclasses.asdict(cfg), "command": commands[0],
            "commands": commands, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
        }
        save_model(model, out / "last.safetensors", summary)
        if result.accuracy > best_acc:
            best_acc = result.accuracy
            save_model(model, out / "best.safetensors", summary)
        _append_line(out / "metrics.jsonl", record)
        meta = {"epoch": epoch, "step": step, "train_seconds": train_seconds,
                "config": json.dumps(dataclasses.asdict(cfg)), "history": {"commands": commands}}
        save_state(state_path, model, optimizer, generator, meta)  # the commit point of an epoch
    if distributed:
        torch_dist.barrier()
    return summary


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
        print(f"\ninterrupted; continue with: python -m capsules.train --out {cfg.out} --resume", file=sys.stderr)
        return 130
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
    if summary:
        print(f"best and last checkpoints in {cfg.out}; last epoch {summary['epoch']}: "
              f"accuracy: {summary['test_accuracy']:.2f}% ({summary['test_correct']}/{summary['test_total']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
