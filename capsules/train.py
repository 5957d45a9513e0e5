"""Train a CapsNet on MNIST, or on MultiMNIST, with the paper's recipe; or the paper's baseline CNN.

    python -m capsules.train --out runs/mnist [--epochs 50] [--resume] ...
    python -m capsules.train --dataset multimnist --lr 1e-4 --out runs/multimnist ...   # section 6
    python -m capsules.train --model cnn --out runs/cnn ...   # the baseline CNN of Table 1
    torchrun --nproc_per_node N -m capsules.train --out runs/mnist ...   # DistributedDataParallel

Recipe (defaults): Adam, lr 1e-3 decayed exponentially (x0.9 per epoch), batch 128, 3 routing
iterations, margin loss + 0.0005 x SSE reconstruction with the decoder masked by the true label,
training images shifted by up to 2 pixels. MultiMNIST (section 6): a 36x36 CapsNet, two digits
of different classes overlaid, each shifted by up to 4 pixels, fresh pairs every epoch; margin
loss with both digits present and each digit reconstructed from its own capsule against its own
image; scored by the paper's metric (the two longest capsules are exactly the two digits).
The baseline CNN (``--model cnn``, section 5, MNIST only): the same data pipeline, shifts, Adam
and learning-rate schedule (the paper gives no recipe for it; the official code trains its
baseline with the optimizer and schedule of its CapsNet), cross-entropy, dropout active.

The output folder gets the ``last`` checkpoint (safetensors + JSON; with ``--ema-decay`` also
``last-ema``, the moving average of the weights), ``metrics.jsonl`` (one JSON line per epoch) and
``state.safetensors``, the resume state (weights, optimizer, moving average, random generator);
``--resume`` continues from it, bit-identical to a run that never stopped. The state is also saved
within an epoch every ``--save-minutes`` (10 by default), so a stopped run loses at most that much
work, not the epoch in progress (a baseline-CNN epoch is about an hour on a 2-core CPU). No
checkpoint is chosen by its test score: with no validation split that would select on the test set.

:func:`train` runs three phases, one section each below: :func:`setup` (configuration and resume,
device and processes, data, model, optimizer and the objective a step minimises),
:func:`train_epoch` and :func:`end_of_epoch` (evaluate, checkpoints, metrics line, resume state).
What differs between data sets is a :class:`DataSet` (batches, test score); between models the
model (:data:`MODELS`); the pair chooses the :data:`Objective` a step minimises, all at setup
(see "data sets, models and objectives").
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import json
import os
import shlex
import shutil
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from .nn import BaselineCNN, BaselineCNNConfig
from .checkpoint import (CheckpointError, atomic_write_bytes, check_state, load_model, read_tensors,
                         save_model)
from .data import DatasetError, MultiMNIST, load_mnist, load_multimnist_test, shift_augment, to_float
from .device import DEVICE_HELP, PRECISIONS, autocast, describe, pick_device, resolve_precision
from .evaluate import EvalResult, TwoDigitResult, evaluate, evaluate_multimnist, two_digit_correct
from .nn import TwoDigitLoss
from .nn import CapsNet, CapsNetConfig, Model
from .warm_start import RIMS, transfer

STATE_FORMAT = "capsules.train-state"
DATASET_NAMES = ("mnist", "multimnist")  # the keys of DATASETS
MODEL_NAMES = ("capsnet", "cnn")  # the keys of MODELS
CAPSNET_OPTIONS = ("iterations", "reconstruction_weight", "detach_inner", "warm_rim", "freeze",
                   "freeze_epochs")  # meaningless for the CNN
FREEZABLE = ("conv1", "primary")  # the CapsNet's convolutions, by attribute name
VALIDATION_SEED = 1710  # the fixed MultiMNIST validation pairs (the test pairs have their own seed)


def option(default, help: str, **argparse_kwargs):
    """A :class:`TrainConfig` field with its ``--help`` text (and any further argparse arguments)."""
    return field(default=default, metadata={"help": help, "argparse": argparse_kwargs})


@dataclass
class TrainConfig:
    """Training run settings; ``python -m capsules.train --help`` is built from these fields."""

    out: str = option("runs/mnist", "output folder: checkpoints, metrics.jsonl, resume state")
    data_dir: str | None = option(None, "MNIST folder; default $CAPSULES_DATA, else ~/.cache/capsules/data")
    model: str = option("capsnet", "capsnet, or cnn: the paper's baseline CNN (section 5, 35.4M parameters; "
                                   "MNIST only), cross entropy, dropout; trained like the CapsNet: the same "
                                   "data, shifts, batch and Adam with the same learning rate, 1e-3 decayed "
                                   "x0.9 per epoch by default (the paper gives no CNN recipe; the official code "
                                   "trains its baseline with its CapsNet's optimizer and schedule)",
                        choices=MODEL_NAMES)
    dataset: str = option("mnist", "mnist, or multimnist: two overlapping digits on 36x36 (section 6), "
                                   "fresh training pairs every epoch, the fixed seeded test pairs",
                          choices=DATASET_NAMES)
    epochs: int = option(50, "passes over the training set")
    batch_size: int = option(128, "images per optimisation step (global, across processes)")
    lr: float = option(1e-3, "Adam learning rate at step 0")
    lr_decay: float = option(0.9, "exponential decay of the lr per epoch, applied smoothly every step")
    iterations: int = option(3, "routing iterations r (CapsNet)")
    shift: int = option(2, "max shift augmentation in pixels (0 = none); MNIST only: MultiMNIST shifts "
                           "each digit by up to 4 pixels")
    reconstruction_weight: float = option(0.0005, "scale of the SSE reconstruction loss (CapsNet; 0 = none)")
    detach_inner: bool = option(False, "variant: no gradient through u_hat in inner routing iterations (CapsNet)")
    ema_decay: float = option(0.0, "variant: also keep an exponential moving average of the weights, "
                                   "w_ema <- D w_ema + (1 - D) w after every step (e.g. 0.999), evaluated "
                                   "and saved as last-ema beside last (0 = off)")
    init_from: str | None = option(None, "start from the weights of this checkpoint (its model config must "
                                         "match this run's, or be a CapsNet of a smaller image size: a warm "
                                         "start, see capsules.warm_start); the optimizer and the lr schedule "
                                         "start afresh")
    warm_rim: str = option("zero", "a warm start from a smaller image size: the routing weights of the grid "
                                   "positions the source lacks start at zero (a centred digit is read as the "
                                   "source reads it), or clamp: copies of the source's edge positions",
                           choices=RIMS)
    freeze: str = option("", "variant: train without a backward pass through these CapsNet layers, "
                             "comma-separated: conv1, primary (e.g. after a warm start)")
    freeze_epochs: int = option(0, "with --freeze: how many epochs the layers stay frozen (0 = the whole run)")
    warmup_steps: int = option(0, "variant: raise the lr linearly from lr/N to lr over the first N steps "
                                  "(0 = none)")
    validation: int = option(0, "hold the last N training digits out of training and score each epoch on "
                                "them (MultiMNIST: N fixed pairs built from them), not on the test set: "
                                "decisions are made on these; 0 = none, the test set is scored each epoch")
    seed: int = option(0, "seeds init, shuffling and augmentation")
    device: str = option("auto", DEVICE_HELP)
    precision: str = option("auto", "auto: bf16 autocast (routing in fp32) on a GPU that supports it, else "
                                    "fp32; the run records what it chose and resumes in it. Or fp32, or bf16 "
                                    "(faster on some CPUs, slower on others: docs/speed.md)",
                            choices=PRECISIONS)
    train_subset: int = option(0, "train on the first N images only, every one of them each epoch "
                                  "(0 = all 60,000, in full batches: the last partial batch is dropped)")
    test_subset: int = option(0, "evaluate on the first N test images (pairs) only (0 = all 10,000, or "
                                 "with --train-subset one per 6 training images, MNIST's ratio)")
    eval_batch_size: int = option(500, "batch size for evaluation")
    resume: bool = option(False, "continue the run in --out from its state file, as it started: only --epochs, "
                                 "--device, --data-dir, --eval-batch-size and --save-minutes may change")
    save_minutes: float = option(10.0, "also save the resume state within an epoch every this many minutes, "
                                       "so that a stopped run loses at most that much work (0 = only at the "
                                       "end of each epoch)")

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> tuple["TrainConfig", set[str]]:
        """Parse the command line; also returns the names given explicitly."""
        parser = argparse.ArgumentParser(
            prog="python -m capsules.train", description=__doc__.split("\n\n")[0],
            epilog="Every default reproduces the paper's recipe.", formatter_class=_HelpFormatter)
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            helptext, extra = f.metadata["help"], f.metadata["argparse"]
            if f.type in ("bool", bool):
                parser.add_argument(flag, action="store_true", default=None, help=helptext, **extra)
            else:
                typ = {"int": int, "float": float}.get(str(f.type), str)
                parser.add_argument(flag, type=typ, default=None, help=f"{helptext} (default: {f.default})",
                                    **extra)
        ns = vars(parser.parse_args(argv))
        given = {k for k, v in ns.items() if v is not None}
        return cls(**{k: v for k, v in ns.items() if v is not None}), given


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's, wrapping lines between words only: an option named in a help text stays whole."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on; the message says why."""


# ----------------------------------------------------------------------------------- one step

Batch = tuple[Tensor, ...]
"""One step's examples as a :class:`DataSet` hands them to its objective, on the device: images
(B, C, H, W) float in [0, 1] first, labels second, then whatever else the objective needs
(MultiMNIST: each digit's own image)."""

Objective = Callable[[nn.Module, Batch], tuple[Tensor, Tensor]]
"""What a step minimises, chosen once at setup (:data:`OBJECTIVES`): ``objective(model, batch) ->
(loss, number correct)``, the forward pass included. Another kind of model, or a data set with
other labels, brings its own; the step and the epoch stay as they are."""


def two_digit_objective(loss_fn: TwoDigitLoss, precision: str) -> Objective:
    """Section 6, for ``batch = (merged, labels (B, 2), first, second)``: the forward pass and both
    decodes under ``precision`` autocast (the decoder in bf16, as for MNIST), each digit decoded
    from its own capsule masked by its true label (the forward pass decodes the first, one more
    decoder call the second); margin loss with both digits present + 0.0005 x SSE of each
    reconstruction against that digit's own image (:class:`TwoDigitLoss`, in fp32). Correct when
    the two longest capsules are exactly the two digits (:func:`two_digit_correct`)."""

    def objective(model, batch):
        images, labels, first, second = batch
        module = model.module if hasattr(model, "module") else model  # under DistributedDataParallel
        rows = torch.arange(images.shape[0], device=images.device)
        with autocast(images.device, precision):
            out = model(images, labels[:, 0])  # the first digit decoded from its own capsule
            recon_second = module.decode(out.v[rows, labels[:, 1]], labels[:, 1])  # the second from its own
        loss = loss_fn(out.v, (out.reconstruction, recon_second), first, second, labels)
        return loss, two_digit_correct(out.lengths.detach(), labels).sum()

    return objective


def model_objective(options: dict, precision: str) -> Objective:
    """A model's own training loss, for any kind (:mod:`capsules.nn.config`): the forward pass
    ``model(images, labels)`` under ``precision`` autocast (through the DistributedDataParallel
    wrapper, if any; a CapsNet's decoder masked by the true labels), then ``model.loss(out, images,
    labels, **options)`` in fp32 (a CapsNet's margin + 0.0005 x SSE reconstruction; the CNN's
    cross-entropy, dropout active in train mode); correct when ``out.prediction`` is the label."""

    def objective(model, batch):
        images, labels = batch
        module = model.module if hasattr(model, "module") else model  # under DistributedDataParallel
        with autocast(images.device, precision):
            out = model(images, labels)
        loss = module.loss(out, images, labels, **options)
        return loss, (out.prediction.detach() == labels).sum()

    return objective


def _train_step(model, optimizer, batch: Batch, objective: Objective):
    """The step the loop runs: returns (loss, number correct) as 0-dim tensors."""
    model.train()
    loss, correct = objective(model, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), correct


def train_step(model, optimizer, images, labels, *, reconstruction_weight: float = 0.0005,
               precision: str = "auto") -> Tensor:
    """One optimisation step exactly as the training loop runs it by default: forward in train
    mode with the decoder masked by the true labels, margin + 0.0005 x SSE loss, backward, Adam.

    ``images`` (B, 1, 28, 28) float in [0, 1] (already augmented), ``labels`` (B,).
    Returns the loss as a detached 0-dim tensor.
    """
    objective = model_objective({"reconstruction_weight": reconstruction_weight},
                                resolve_precision(precision, images.device))
    return _train_step(model, optimizer, (images, labels), objective)[0]


def make_optimizer(model: torch.nn.Module, lr: float = 1e-3) -> torch.optim.Adam:
    """Adam, as the paper trains; the fused kernel (one pass over all parameters) where available."""
    device = next(model.parameters()).device
    fused = device.type in ("cuda", "cpu")
    return torch.optim.Adam(model.parameters(), lr=lr, fused=fused)


def learning_rate(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """``lr * lr_decay ** (step / steps_per_epoch)``: x0.9 an epoch by default (the official
    code's x0.96 every 2000 steps at batch 128 is ``--lr-decay 0.9905``); with ``--warmup-steps N``
    times ``(step + 1) / N`` over the first N steps."""
    warmup = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    return cfg.lr * cfg.lr_decay ** (step / steps_per_epoch) * warmup


# ------------------------------------------------------------------ moving average of the weights


class WeightAverage:
    """An exponential moving average of a model's weights (``--ema-decay``), kept in float32 in a
    copy of the model, ``.model``, which is evaluated and saved like the model itself:

        w_ema <- decay * w_ema + (1 - decay) * w        after every optimiser step,

    one fused ``torch._foreach_lerp_`` over all parameters (buffers, where a model has any, are
    copied). It starts at the model's weights when it is made (the seeded initialisation, or the
    ``--init-from`` weights), with no bias correction; ``decay`` 0 keeps an exact copy."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise TrainingError(f"--ema-decay must be at least 0 and below 1, got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).float().eval().requires_grad_(False)
        self._average = list(self.model.parameters())
        self._weights = [p.detach() for p in model.parameters()]  # views: they follow the optimiser
        self._buffers = list(zip(self.model.buffers(), model.buffers()))

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self._average, self._weights, 1.0 - self.decay)
        for mine, theirs in self._buffers:
            mine.copy_(theirs)


# ------------------------------------------------------------------------------ resume state


def save_state(path: Path, model, optimizer, generator: torch.Generator, meta: dict,
               average: WeightAverage | None = None, epoch_rng: Tensor | None = None) -> None:
    """Weights, Adam moments, the moving average (if any), the run's random generator and torch's
    global one (dropout draws from it; on a GPU, the GPU's) in one safetensors file, atomically.
    Within an epoch, also ``epoch_rng``: the run's generator as the epoch began, which gives the
    epoch's shuffle again (``meta["in_epoch"]`` says how far the epoch got)."""
    from safetensors.torch import save as st_save

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if average is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in average.model.state_dict().items()})
    opt = optimizer.state_dict()
    for idx, st in opt["state"].items():
        for name, value in st.items():
            tensors[f"optim.{idx}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng"] = generator.get_state()
    tensors["torch_rng"] = torch.get_rng_state()
    if epoch_rng is not None:
        tensors["epoch_rng"] = epoch_rng
    device = next(model.parameters()).device
    if device.type == "cuda":
        tensors["cuda_rng"] = torch.cuda.get_rng_state(device)
    header = {"format": STATE_FORMAT, "meta": json.dumps(meta),
              "param_groups": json.dumps(opt["param_groups"])}
    atomic_write_bytes(path, st_save(tensors, metadata=header))


def load_state(path: Path, model, optimizer, generator: torch.Generator, device,
               average: WeightAverage | None = None) -> dict:
    tensors, header, _ = read_tensors(path)
    if header.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a capsules training state")
    meta = json.loads(header["meta"])
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    check_state(model, weights, path)
    model.load_state_dict(weights)
    if average is not None:
        averaged = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        check_state(average.model, averaged, path)
        average.model.load_state_dict(averaged)
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v.to(device) if name != "step" else v
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(header["param_groups"])})
    generator.set_state(tensors["rng"])
    if "torch_rng" in tensors:  # absent from states written before it was saved
        torch.set_rng_state(tensors["torch_rng"])
    if "cuda_rng" in tensors and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(tensors["cuda_rng"], device)
    if "in_epoch" in meta:
        meta["in_epoch"]["rng"] = tensors["epoch_rng"]
    return meta


# ---------------------------------------------------------------------------- the loop's helpers


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


# ---------------------------------------------------------------------------- phase 1: setup

# Options a resumed run takes from its new command line; everything else comes from its state file.
RESUME_OVERRIDES = frozenset({"out", "data_dir", "epochs", "device", "eval_batch_size", "save_minutes"})


def resumed_config(cfg: TrainConfig, given: set[str]) -> TrainConfig:
    """The saved configuration of the run in ``cfg.out``, with the options of :data:`RESUME_OVERRIDES`
    that were named on this command line (defaults never override a saved value).

    A resumed run continues the same trajectory, bit-identical to a run that never stopped, so
    everything that shapes the weights comes from the state file: the model, the data set, the
    recipe (lr and its decay, batch size, routing, loss weights, shift, precision, the moving
    average's decay), the seed, the starting weights (``init_from`` is recorded, not loaded again:
    the weights are in the state) and the data (both subsets, so that the metrics log stays one series). The
    overrides do not touch the weights: ``out`` (the folder may have moved; it is where the state
    was read), ``data_dir`` (where MNIST lives on this machine), ``device`` (to continue on other
    hardware; bit-identical only on the same kind), ``eval_batch_size`` (evaluation memory only),
    ``save_minutes`` (how often the state is saved within an epoch) and ``epochs`` (to extend or
    shorten the run: the learning rate follows the step, not the planned number of epochs). A state file written before an option existed resumes with that
    option's default. Any other option named with a value other than the run's (``--lr``, a
    ``--model`` ...) is refused, not dropped in silence; named with the run's own value it is
    accepted (``--precision auto`` too: the run keeps what auto chose), so that a resume command
    may repeat the run's first command line.
    """
    state_path = Path(cfg.out) / "state.safetensors"
    if not state_path.exists():
        raise TrainingError(f"--resume: no training state in {cfg.out} (expected {state_path})")
    _, header, _ = read_tensors(state_path)
    saved = json.loads(json.loads(header["meta"])["config"])
    run = {**dataclasses.asdict(TrainConfig()), **saved}  # an option the state predates: its default
    clashes = sorted(n for n in given - RESUME_OVERRIDES - {"resume"}
                     if getattr(cfg, n) != run[n]
                     and not (n == "precision" and cfg.precision == "auto"))  # auto: what auto chose
    if clashes:
        flags = "; ".join(f"--{n.replace('_', '-')} {getattr(cfg, n)} (the run has {run[n]})" for n in clashes)
        raise TrainingError(f"{flags}: --resume continues the run in {cfg.out} as it started, so only --epochs, "
                            "--device, --data-dir, --eval-batch-size and --save-minutes may change; for another "
                            "recipe start a new run, from these weights with --init-from")
    keep = RESUME_OVERRIDES & ({"out"} | given)
    return TrainConfig(**{**saved, **{k: getattr(cfg, k) for k in keep}, "resume": True})


def epoch_batches(n: int, batch_size: int, *, drop_last: bool, world: int = 1) -> list[int]:
    """Sizes of one epoch's global batches over ``n`` shuffled images: full batches, then the
    remainder ``n % batch_size`` as a smaller last batch, so that every image is trained on.

    ``drop_last`` keeps only the full batches (a set smaller than one batch is one batch): the
    full training set is trained that way (468 batches of 128 and a different 96 images left out
    each epoch), as the shipped run was, so that resuming a run keeps its step count and learning
    rate schedule. A remainder smaller than the number of processes is dropped too: each process
    needs at least one image of every batch.
    """
    sizes = [batch_size] * (n // batch_size)
    rest = n % batch_size
    if rest and (not sizes or (not drop_last and rest >= world)):
        sizes.append(rest)
    return sizes


def eval_size(cfg: TrainConfig, n_train: int, n_test: int) -> int:
    """How many test images to evaluate after each epoch: ``--test-subset``; else, with
    ``--train-subset``, as many as the data set's test:train ratio gives (MNIST: one per 6 training
    images, rounded up), so that a quick run is quick; else all of them."""
    if cfg.test_subset:
        return min(cfg.test_subset, n_test)
    if cfg.train_subset:
        return min(-(-min(cfg.train_subset, n_train) * n_test // n_train), n_test)
    return n_test


# ------------------------------------------------------------ data sets, models and objectives


@dataclass
class DataSet:
    """A data set as training uses it, made at setup by its entry in :data:`DATASETS`; with its
    objective (:data:`OBJECTIVES`) it is all that differs between data sets.

    ``batch(idx, rank, world, generator)``: from the global batch ``idx`` (positions among the
    ``n_train`` training images, from the epoch's shuffle), this process's share as a :data:`Batch`,
    every random draw (shifts, partners) from ``generator``, the run's, which the resume state keeps.
    ``evaluate(model, batch_size)``: the model's score on the test examples, an :class:`EvalResult`
    or a :class:`TwoDigitResult`, whose ``fields()`` the log and the checkpoints record.
    """

    name: str
    unit: str  # what one training example is, for messages: "images", "pairs"
    image_size: int  # the model's input side
    n_train: int  # training images; one epoch has one example per image
    n_test: int  # held-out examples evaluated after each epoch
    held_out: str  # what they are: "val" (--validation) or "test"; the prefix of their figures
    batch: Callable[[Tensor, int, int, torch.Generator], Batch]
    evaluate: Callable[[nn.Module, int], EvalResult | TwoDigitResult]


def _mnist_split(cfg: TrainConfig, n_test: int) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor] | None, int]:
    """The training images and labels (less the last ``--validation`` ones, then cut to
    ``--train-subset``), the validation digits (None without ``--validation``) and how many of the
    ``n_test`` test examples to evaluate (:func:`eval_size`)."""
    train_x, train_y = load_mnist("train", cfg.data_dir)
    validation = None
    if cfg.validation:
        if not 0 < cfg.validation < train_x.shape[0]:
            raise TrainingError(f"--validation {cfg.validation}: between 1 and {train_x.shape[0] - 1} of the "
                                f"{train_x.shape[0]:,} training digits")
        validation = train_x[-cfg.validation:], train_y[-cfg.validation:]
        train_x, train_y = train_x[:-cfg.validation], train_y[:-cfg.validation]
    n_eval = eval_size(cfg, train_x.shape[0], n_test)
    if cfg.train_subset:
        train_x, train_y = train_x[:cfg.train_subset], train_y[:cfg.train_subset]
    return train_x, train_y, validation, n_eval


def mnist_data(cfg: TrainConfig, device: torch.device) -> DataSet:
    """MNIST: each training image shifted by up to ``--shift`` pixels; accuracy on the validation
    digits (``--validation``), else on the test images."""
    train_x, train_y, validation, n_test = _mnist_split(cfg, 10_000)
    train_x, train_y = train_x.to(device), train_y.to(device)  # batched by indexing
    if validation is not None:
        (test_x, test_y), held_out = validation, "val"
    else:
        (test_x, test_y), held_out = load_mnist("test", cfg.data_dir), "test"
        test_x, test_y = test_x[:n_test], test_y[:n_test]  # on the CPU; evaluate() moves each batch

    def batch(idx, rank, world, generator):
        idx = _shard(idx, rank, world).to(device)
        return shift_augment(to_float(train_x[idx]), cfg.shift, generator), train_y[idx]

    def score(model, batch_size):
        return evaluate(model, test_x, test_y, batch_size=batch_size, loss_options=loss_options(cfg, model))

    return DataSet("mnist", "images", train_x.shape[-1], train_x.shape[0], len(test_y), held_out, batch, score)


def multimnist_data(cfg: TrainConfig, device: torch.device) -> DataSet:
    """MultiMNIST (section 6): each training image is the first digit of one fresh pair an epoch,
    its partner (another class, from the same training images) and both shifts drawn as the batch
    is made; the error on the fixed, seeded test pairs (the first ``n_test`` of them), by the
    paper's metric; with ``--validation``, on fixed pairs of the validation digits instead (one
    per digit, seeded by :data:`VALIDATION_SEED`)."""
    train_x, train_y, validation, n_test = _mnist_split(cfg, 10_000)
    digits = MultiMNIST(train_x.to(device), train_y)
    if validation is not None:
        test, held_out = MultiMNIST(*validation).test_set(seed=VALIDATION_SEED), "val"
    else:
        test, held_out = load_multimnist_test(cfg.data_dir)[:n_test], "test"

    def batch(idx, rank, world, generator):
        pairs = digits.pairs(idx, generator)  # the global batch: every process draws the same
        pairs = pairs[_shard(torch.arange(len(pairs), device=device), rank, world)]
        merged, first, second = pairs.floats()
        return merged, pairs.labels, first, second

    def score(model, batch_size):
        return evaluate_multimnist(model, test, batch_size=batch_size)

    return DataSet("multimnist", "pairs", digits.image_size, len(digits), len(test), held_out, batch, score)


DATASETS: dict[str, Callable[[TrainConfig, torch.device], DataSet]] = {
    "mnist": mnist_data, "multimnist": multimnist_data}
assert tuple(DATASETS) == DATASET_NAMES

MODELS: dict[str, Callable[[TrainConfig, DataSet], Model]] = {
    "capsnet": lambda cfg, data: CapsNet(CapsNetConfig(image_size=data.image_size, routing_iterations=cfg.iterations,
                                                       detach_inner=cfg.detach_inner)),
    "cnn": lambda cfg, data: BaselineCNN(BaselineCNNConfig(image_size=data.image_size)),
}
"""Per ``--model``, ``(config, data set) -> model`` for the data set's images (the paper's defaults)."""
assert tuple(MODELS) == MODEL_NAMES


def loss_options(cfg: TrainConfig, model: Model) -> dict:
    """The run's values of the model's loss options (``model.LOSS_OPTIONS``: CapsNet's
    reconstruction weight; the CNN has none)."""
    return {name: getattr(cfg, name) for name in model.LOSS_OPTIONS}


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


def frozen_layers(cfg: TrainConfig) -> list[str]:
    """The layers named by ``--freeze``."""
    return [name.strip() for name in cfg.freeze.split(",") if name.strip()]


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


def recorded_config(cfg: TrainConfig) -> dict:
    """The run's options as its checkpoints' JSON (``train_config``) and its resume state record
    them: all of them, less the CapsNet's own for another model (they played no part)."""
    options = dataclasses.asdict(cfg)
    if cfg.model != "capsnet":
        for name in CAPSNET_OPTIONS:
            del options[name]
    return options


def _init_from(model: nn.Module, path: Path, rim: str = "zero") -> dict:
    """``--init-from``: copy the weights of the checkpoint at ``path`` into ``model``, refusing one
    whose model (kind and config) differs from this run's, except a CapsNet of a smaller image
    size, whose weights are carried across (:func:`capsules.warm_start.transfer`, ``rim``).
    Returns what the run's JSON records of it."""
    source = load_model(path, "cpu")  # refuses anything damaged, with one line
    if type(source) is not type(model):
        raise TrainingError(f"--init-from {path} holds a {type(source).__name__}; this run trains a "
                            f"{type(model).__name__}")
    if isinstance(model, CapsNet) and source.config.image_size != model.config.image_size:
        try:
            copied = transfer(source.float(), model, rim=rim)
        except ValueError as exc:
            raise TrainingError(f"--init-from {path}: {exc}") from None
        return {**source_record(path, source.metadata), "warm_start": copied}
    if source.config != model.config:
        theirs, mine = source.config.to_dict(), model.config.to_dict()
        diff = ", ".join(f"{k} {theirs[k]} (this run: {mine[k]})" for k in mine if theirs[k] != mine[k])
        raise TrainingError(f"--init-from {path} does not match this run's model: {diff}")
    model.load_state_dict(source.state_dict())
    return source_record(path, source.metadata)


# What a run started with --init-from records of the checkpoint it started from: enough to tell the
# whole training of the weights it ships (its epochs, time, hardware and recipe; and, nested, where
# that one started from).
SOURCE_KEYS = ("sha256", "epoch", "steps", "test_accuracy", "test_error", "train_seconds", "hardware", "precision",
               "date", "command", "commands", "train_config", "init_from")


def source_record(path: str | os.PathLike, metadata: dict) -> dict:
    """The ``init_from`` record of a run started from the checkpoint at ``path`` whose JSON is
    ``metadata``: its path and :data:`SOURCE_KEYS`, those it has."""
    return {"path": str(path), **{k: metadata[k] for k in SOURCE_KEYS if k in metadata}}


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
        _preflight(out)
        for stale in out.glob(".*.tmp"):  # left by a process killed while writing
            stale.unlink(missing_ok=True)

    data = DATASETS[cfg.dataset](cfg, device)
    batches = epoch_batches(data.n_train, cfg.batch_size, drop_last=not cfg.train_subset, world=world)
    if not batches or batches[-1] < world:
        raise TrainingError(f"{data.n_train} training images cannot be shared by {world} processes")
    model, optimizer, generator, objective = _build(cfg, data, device, precision)
    source = _init_from(model, Path(cfg.init_from), cfg.warm_rim) if cfg.init_from and not cfg.resume else None
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


def _shard(idx: Tensor, rank: int, world: int) -> Tensor:
    """This process's part of a global batch: contiguous and as even as can be (the same size for
    every process when the batch divides evenly, as every full batch does)."""
    return idx[rank * len(idx) // world:(rank + 1) * len(idx) // world]


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
    """Phase 3, main process only, after every process finished the epoch: evaluate on the test
    examples (and the moving average beside the weights), save the ``last`` checkpoint (and
    ``last-ema``), append the metrics line, then save the resume state. Each file is written
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
