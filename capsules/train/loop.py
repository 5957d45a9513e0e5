"""The training loop: :func:`setup` (configuration and resume, device and processes, data, model,
optimizer and the objective a step minimises), :func:`train_epoch` and :func:`end_of_epoch`
(evaluate, checkpoints, metrics line, resume state), and :func:`train`, which runs them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as torch_dist
from torch import nn
from tqdm.auto import tqdm

from ..checkpoint import save_model
from ..device import describe, pick_device, resolve_precision
from ..evaluate import EvalResult, TwoDigitResult
from ..nn import BaselineCNN, BaselineCNNConfig, CapsNet, CapsNetConfig, Model, TwoDigitLoss
from .config import (CAPSNET_OPTIONS, FREEZABLE, MODEL_NAMES, TrainConfig, TrainingError, frozen_layers,
                     recorded_config)
from .datasets import DATASETS, DataSet, epoch_batches
from .state import (WeightAverage, _append_line, _truncate_metrics, load_state, preflight, resumed_config,
                    save_state)
from .step import (Objective, _train_step, learning_rate, loss_options, make_optimizer, model_objective,
                   two_digit_objective)
from .warm_start import init_from_checkpoint

# ---------------------------------------------------------------------------- the loop's helpers


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


MODELS: dict[str, Callable[[TrainConfig, DataSet], Model]] = {
    "capsnet": lambda cfg, data: CapsNet(CapsNetConfig(image_size=data.image_size, routing_iterations=cfg.iterations,
                                                       detach_inner=cfg.detach_inner)),
    "cnn": lambda cfg, data: BaselineCNN(BaselineCNNConfig(image_size=data.image_size)),
}
"""Per ``--model``, ``(config, data set) -> model`` for the data set's images (the paper's defaults)."""
assert tuple(MODELS) == MODEL_NAMES


OBJECTIVES: dict[tuple[str, str], Callable[[TrainConfig, nn.Module, str], Objective]] = {
    ("capsnet", "mnist"): lambda cfg, model, precision: model_objective(loss_options(cfg, model), precision),
    ("capsnet", "multimnist"): lambda cfg, model, precision: two_digit_objective(
        TwoDigitLoss(n_labels=model.config.n_classes, reconstruction_weight=cfg.reconstruction_weight), precision),
    ("cnn", "mnist"): lambda cfg, model, precision: model_objective(loss_options(cfg, model), precision),
}
"""Per (model, data set), ``(config, model, resolved precision) -> objective``; a pair that is not
here is refused at setup (:func:`_check_options`)."""


# ---------------------------------------------------------------------------- the run


@dataclass
class Run:
    """What :func:`setup` builds and the epochs share; ``step`` and ``train_seconds`` advance as the
    run goes."""

    cfg: TrainConfig
    out: Path
    rank: int
    world: int
    device: torch.device
    precision: str  # resolved: fp32 or bf16
    data: DataSet
    batches: list[int]  # sizes of one epoch's global batches (epoch_batches)
    model: nn.Module  # the model itself: saved and evaluated
    step_model: nn.Module  # what a step calls: the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # shuffling and augmentation, on the CPU; part of the resume state
    objective: Objective
    average: WeightAverage | None  # --ema-decay; part of the resume state
    init_from: dict | None  # --init-from: the starting checkpoint, as the JSON records it
    commands: list[str]  # every command that ran this run, the first one started it
    hardware: str
    start_epoch: int = 0
    step: int = 0
    train_seconds: float = 0.0
    in_epoch: dict | None = None  # resumed within an epoch: how far it got (state_meta), until it goes on

    @property
    def main_process(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def steps_per_epoch(self) -> int:
        return len(self.batches)


def _start_processes(cfg: TrainConfig, world: int, local_rank: int) -> torch.device:
    """The device, and under torchrun the process group (NCCL on GPUs, gloo on CPUs)."""
    device = pick_device(cfg.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not torch_dist.is_initialized():
            torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.batch_size % world:
        raise TrainingError(f"--batch-size {cfg.batch_size} is not divisible by {world} processes")
    return device


def _check_options(cfg: TrainConfig, given: set[str]) -> None:
    """Options that make no sense together, refused before anything is loaded: among them the
    CapsNet's own (routing, reconstruction, MultiMNIST) for another model, whether named on the
    command line or changed from their defaults in code."""
    if cfg.model != "capsnet":
        defaults = TrainConfig()
        named = [n for n in CAPSNET_OPTIONS if n in given or getattr(cfg, n) != getattr(defaults, n)]
        if named:
            flags = ", ".join("--" + n.replace("_", "-") for n in named)
            raise TrainingError(f"{flags}: CapsNet options; --model {cfg.model} has no routing and no decoder")
    if (cfg.model, cfg.dataset) not in OBJECTIVES:
        raise TrainingError(f"--model {cfg.model} trains on {', '.join(d for m, d in OBJECTIVES if m == cfg.model)} "
                            f"only, not --dataset {cfg.dataset}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise TrainingError(f"--ema-decay must be at least 0 and below 1, got {cfg.ema_decay}")
    if cfg.dataset != "mnist" and "shift" in given:
        raise TrainingError(f"--shift is MNIST's augmentation; {cfg.dataset} shifts each digit by up to 4 pixels")
    if cfg.init_from and cfg.resume and "init_from" in given:
        raise TrainingError("--init-from starts a new run; --resume continues one from its state file")
    unknown = [name for name in frozen_layers(cfg) if name not in FREEZABLE]
    if unknown:
        raise TrainingError(f"--freeze {cfg.freeze}: {', '.join(unknown)} cannot be frozen; the CapsNet's "
                            f"convolutions are {', '.join(FREEZABLE)}")
    if cfg.freeze_epochs < 0 or (cfg.freeze_epochs and not cfg.freeze):
        raise TrainingError(f"--freeze-epochs {cfg.freeze_epochs}: a number of epochs (0 = the whole run), "
                            "with --freeze")
    if cfg.warmup_steps < 0 or cfg.validation < 0:
        raise TrainingError("--warmup-steps and --validation take a number at least 0")


def set_frozen(model: nn.Module, cfg: TrainConfig, epoch: int) -> None:
    """Before ``epoch`` (1-based) starts: the ``--freeze`` layers take no gradient while the freeze
    lasts (``--freeze-epochs``; 0: the whole run), so the backward pass stops at the first layer
    that learns; after it they learn again (Adam's moments for them start then)."""
    frozen = bool(cfg.freeze) and (cfg.freeze_epochs == 0 or epoch <= cfg.freeze_epochs)
    for name in frozen_layers(cfg):
        getattr(model, name).requires_grad_(not frozen)


def _build(cfg: TrainConfig, data: DataSet, device: torch.device, precision: str):
    """The ``--model`` for the data set's images (seeded), its optimizer, the random generator for
    shuffling and augmentation (on the CPU) and the objective a step minimises."""
    torch.manual_seed(cfg.seed)
    model = MODELS[cfg.model](cfg, data).to(device)
    optimizer = make_optimizer(model, cfg.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    return model, optimizer, generator, OBJECTIVES[cfg.model, data.name](cfg, model, precision)


def setup(cfg: TrainConfig, command: str | None = None, given: set[str] | None = None) -> Run:
    """Phase 1: the configuration (the saved one on ``--resume``), the device and processes, the
    output folder, the data, the model (``--init-from``: its starting weights), the moving
    average, optimizer, random generator and objective, and on ``--resume`` their saved state."""
    rank, world, local_rank = _dist_info()
    out, given = Path(cfg.out), given or set()
    _check_options(cfg, given)
    if cfg.resume:
        cfg = resumed_config(cfg, given)
    device = _start_processes(cfg, world, local_rank)
    if cfg.freeze and world > 1:
        raise TrainingError("--freeze trains in one process: DistributedDataParallel fixes its parameters at the start")
    # "auto" is resolved once, when the run starts, and the run keeps what it got (saved in its
    # config, so --resume continues in it); a state saved with "auto" itself is older than that.
    precision = resolve_precision(cfg.precision, device, saved=cfg.resume)
    cfg = dataclasses.replace(cfg, precision=precision)
    if rank == 0:
        preflight(out)
        for stale in out.glob(".*.tmp"):  # left by a process killed while writing
            stale.unlink(missing_ok=True)

    data = DATASETS[cfg.dataset](cfg, device)
    batches = epoch_batches(data.n_train, cfg.batch_size, drop_last=not cfg.train_subset, world=world)
    if not batches or batches[-1] < world:
        raise TrainingError(f"{data.n_train} training images cannot be shared by {world} processes")
    model, optimizer, generator, objective = _build(cfg, data, device, precision)
    source = init_from_checkpoint(model, Path(cfg.init_from), cfg.warm_rim) if cfg.init_from and not cfg.resume else None
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None

    start_epoch, step, train_seconds, history, in_epoch = 0, 0, 0.0, {}, None
    if cfg.resume:
        meta = load_state(out / "state.safetensors", model, optimizer, generator, device, average)
        start_epoch, step, train_seconds = meta["epoch"], meta["step"], meta["train_seconds"]
        history, in_epoch = meta.get("history", {}), meta.get("in_epoch")
        source = history.get("init_from")
        if rank == 0:
            _truncate_metrics(out / "metrics.jsonl", start_epoch)
            where = (f"in epoch {in_epoch['epoch']}, after {in_epoch['steps']} of its {len(batches)} steps"
                     if in_epoch else f"after epoch {start_epoch}")
            print(f"resuming {out} {where} (step {step})", flush=True)
    elif rank == 0:
        (out / "metrics.jsonl").unlink(missing_ok=True)

    step_model = model
    if world > 1:
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    run = Run(cfg=cfg, out=out, rank=rank, world=world, device=device, precision=precision, data=data,
              batches=batches, model=model, step_model=step_model, optimizer=optimizer, generator=generator,
              objective=objective, average=average, init_from=source,
              commands=history.get("commands", []) + [command or "python -m capsules.train"],
              hardware=describe(device) + (f" x {world} processes" if world > 1 else ""),
              start_epoch=start_epoch, step=step, train_seconds=train_seconds, in_epoch=in_epoch)
    if run.main_process:
        print(_data_line(run), flush=True)
    return run


def _data_line(run: Run) -> str:
    """What the run trains and evaluates on, said once at the start."""
    data, size = run.data, run.cfg.batch_size
    n, used, unit = data.n_train, sum(run.batches), data.unit
    train = f"{used:,} training {unit} an epoch ({run.steps_per_epoch} steps of {size}"
    if used < n:
        train += f"; {n - used} of the {n:,} images, different ones each epoch, left out to keep the batches full)"
    elif run.batches[-1] < size:
        train += f", the last one {run.batches[-1]})"
    else:
        train += ")"
    if data.name == "multimnist":
        train += f", fresh pairs of the {n:,} training images each epoch"
    test = f"{data.n_test:,} {'validation' if data.held_out == 'val' else 'test'} {unit}"
    if data.held_out == "val":
        test += " (the last training digits, held out of training)"
    elif run.cfg.train_subset and not run.cfg.test_subset:
        test += " (in proportion to --train-subset; --test-subset sets it)"
    return f"data: {train}, {test}"


# ------------------------------------------------------------------------ phase 2: one epoch


@dataclass
class EpochStats:
    loss: float  # mean training loss over this process's examples
    accuracy: float  # percent of this process's training examples right (the data set's criterion)
    images: int  # training examples of the epoch, all processes together
    started: float  # time.perf_counter() at the start of the epoch


def train_epoch(run: Run, epoch: int) -> EpochStats:
    """Phase 2: one pass over the shuffled training images. Per step: this process's share of the
    global batch from the data set (augmented), the learning rate for the step, the objective,
    Adam, then the moving average. Every ``--save-minutes`` the main process saves the resume
    state (:func:`state_meta` says how far the epoch got); a run resumed from it shuffles the epoch as it did (from the
    generator's state at the epoch's start) and goes on after the last step saved. A loss that
    stops being finite raises TrainingError (the last good checkpoints and state stay)."""
    cfg = run.cfg
    set_frozen(run.model, cfg, epoch)
    resumed, run.in_epoch = run.in_epoch, None
    if resumed is not None and resumed["epoch"] != epoch:
        raise TrainingError(f"the resume state stopped in epoch {resumed['epoch']}, not {epoch}")
    epoch_rng = resumed["rng"] if resumed else run.generator.get_state()
    if resumed:  # the epoch's shuffle again; the run's generator goes on as the last saved step left it
        perm = torch.randperm(run.data.n_train, generator=torch.Generator().set_state(epoch_rng))
    else:
        perm = torch.randperm(run.data.n_train, generator=run.generator)
    first = resumed["steps"] if resumed else 0
    started = time.perf_counter() - (resumed["seconds"] if resumed else 0.0)
    loss_sum = torch.tensor(resumed["loss_sum"] if resumed else 0.0, device=run.device)
    correct_sum = torch.tensor(resumed["correct_sum"] if resumed else 0.0, device=run.device)
    seen = resumed["seen"] if resumed else 0
    last_save = time.perf_counter()
    bar = tqdm(range(first, run.steps_per_epoch), initial=first, total=run.steps_per_epoch,
               desc=f"epoch {epoch}/{cfg.epochs}", disable=not run.main_process, dynamic_ncols=True, mininterval=1.0)
    for k in bar:
        idx = perm[k * cfg.batch_size:k * cfg.batch_size + run.batches[k]]  # the global batch
        batch = run.data.batch(idx, run.rank, run.world, run.generator)
        for group in run.optimizer.param_groups:
            group["lr"] = learning_rate(cfg, run.step, run.steps_per_epoch)
        loss, correct = _train_step(run.step_model, run.optimizer, batch, run.objective)
        if run.average is not None:
            run.average.update()
        run.step += 1
        n = batch[0].shape[0]
        loss_sum += loss * n
        correct_sum += correct
        seen += n
        if k % 20 == 0 or k == run.steps_per_epoch - 1:
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the loss became {float(loss)} at epoch {epoch}, step {run.step}; training stopped. "
                    f"The last good checkpoints in {run.out} are kept; try a lower --lr.")
            bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}", acc=f"{100 * float(correct_sum) / seen:.2f}%",
                            lr=f"{learning_rate(cfg, run.step, run.steps_per_epoch):.2e}")
        if (run.main_process and cfg.save_minutes > 0 and k < run.steps_per_epoch - 1
                and time.perf_counter() - last_save >= 60 * cfg.save_minutes):
            if not torch.isfinite(loss_sum):  # never save a state that cannot go on
                raise TrainingError(f"the loss became non-finite in epoch {epoch}; training stopped. "
                                    f"The last good checkpoints in {run.out} are kept; try a lower --lr.")
            in_epoch = {"epoch": epoch, "steps": k + 1, "loss_sum": float(loss_sum),
                        "correct_sum": float(correct_sum), "seen": seen, "seconds": time.perf_counter() - started}
            save_state(run.out / "state.safetensors", run.model, run.optimizer, run.generator,
                       state_meta(run, epoch - 1, in_epoch), run.average, epoch_rng)
            last_save = time.perf_counter()
    run.train_seconds += time.perf_counter() - started
    if not torch.isfinite(loss_sum):
        raise TrainingError(f"the loss became non-finite in epoch {epoch}; training stopped. "
                            f"The last good checkpoints in {run.out} are kept; try a lower --lr.")
    return EpochStats(loss=float(loss_sum) / seen, accuracy=100 * float(correct_sum) / seen,
                      images=sum(run.batches), started=started)


# --------------------------------------------------------------------- phase 3: end of epoch


def _prefixed(prefix: str, result: EvalResult | TwoDigitResult) -> dict:
    return {f"{prefix}{k}": v for k, v in result.fields().items()}


def end_of_epoch(run: Run, epoch: int, stats: EpochStats) -> dict:
    """Phase 3, main process only, after every process finished the epoch: evaluate on the held-out
    examples (and the moving average beside the weights), append the metrics line, save the
    ``last`` checkpoint (and ``last-ema``; with a validation split also ``best`` when this epoch's
    validation accuracy beats every earlier epoch's), then save the resume state. Each file is written
    atomically and the resume state comes last: it is the commit point, so a kill at any moment
    before it loses only this epoch (the resumed run drops the metrics lines of the epochs it
    redoes). Returns the summary the ``last`` checkpoint carries."""
    cfg, held = run.cfg, run.data.held_out + "_"
    result = run.data.evaluate(run.model, cfg.eval_batch_size)
    averaged = run.data.evaluate(run.average.model, cfg.eval_batch_size) if run.average else None
    lr = learning_rate(cfg, run.step, run.steps_per_epoch)
    now = time.perf_counter()
    eval_seconds = result.seconds + (averaged.seconds if averaged else 0.0)
    record = {"epoch": epoch, "step": run.step, "lr": lr,
              "train_loss": stats.loss, "train_accuracy": stats.accuracy, **_prefixed(held, result),
              **(_prefixed("ema_" + held, averaged) if averaged else {}),
              "epoch_seconds": now - stats.started, "train_seconds": run.train_seconds,
              "images_per_second": stats.images / (now - stats.started - eval_seconds)}
    print(f"epoch {epoch}: train loss {record['train_loss']:.4f}, train acc {record['train_accuracy']:.2f}%, "
          f"{run.data.held_out} {result.line()}" + (f", moving average {averaged.line()}" if averaged else "")
          + f", {record['epoch_seconds']:.0f} s", flush=True)
    _append_line(run.out / "metrics.jsonl", record)
    curve = [json.loads(line) for line in (run.out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    summary = {
        **_prefixed(held, result), "epoch": epoch, "epochs": cfg.epochs, "steps": run.step,
        "train_seconds": round(run.train_seconds, 1), "hardware": run.hardware, "precision": run.precision,
        "dataset": cfg.dataset, "train_images": run.data.n_train, "train_config": recorded_config(cfg),
        **({"init_from": run.init_from} if run.init_from else {}),
        "command": run.commands[0], "commands": run.commands,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
        "learning_curve": curve,
    }
    save_model(run.model, run.out / "last.safetensors", summary)
    if held == "val_" and all(record["val_accuracy"] > r["val_accuracy"] for r in curve[:-1]):
        save_model(run.model, run.out / "best.safetensors", summary)  # chosen on validation, never on test
    if averaged:
        save_model(run.average.model, run.out / "last-ema.safetensors",
                   {**summary, **_prefixed(held, averaged),
                    "weights_average": {"kind": "exponential moving average of the weights, updated after "
                                                "every step, float32", "decay": cfg.ema_decay}})
    save_state(run.out / "state.safetensors", run.model, run.optimizer, run.generator, state_meta(run, epoch),
               run.average)  # the commit point
    return summary


def state_meta(run: Run, epochs_done: int, in_epoch: dict | None = None) -> dict:
    """What the resume state records beside the tensors: the epochs done, the step, the training
    time of the epochs done, the configuration and the run's history; within an epoch,
    ``in_epoch``: the epoch, its steps done, the sums of its progress line and its time so far."""
    return {"epoch": epochs_done, "step": run.step, "train_seconds": run.train_seconds,
            "config": json.dumps(recorded_config(run.cfg)),
            "history": {"commands": run.commands, **({"init_from": run.init_from} if run.init_from else {})},
            **({"in_epoch": in_epoch} if in_epoch else {})}


def train(cfg: TrainConfig, command: str | None = None, given: set[str] | None = None) -> dict:
    """Run (or resume) training; returns the last epoch's summary ({} on processes other than the
    first, and when no epoch was left to run). Raises TrainingError / DatasetError."""
    run = setup(cfg, command, given)
    summary: dict = {}
    for epoch in range(run.start_epoch + 1, run.cfg.epochs + 1):
        stats = train_epoch(run, epoch)
        if run.distributed:
            torch_dist.barrier()
        if run.main_process:
            summary = end_of_epoch(run, epoch, stats)
    if run.distributed:
        torch_dist.barrier()
    return summary
