"""The training run's settings: :class:`TrainConfig`, from which ``python -m capsules.train --help``
is built, with the paper's recipe as its defaults (see :mod:`capsules.train`)."""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
from dataclasses import dataclass, field


from ..device import DEVICE_HELP, PRECISIONS

RIMS = ("zero", "clamp")  # --warm-rim: how the routing weights of grid positions the source lacks start

DESCRIPTION = "Train a CapsNet on MNIST, or on MultiMNIST, with the paper's recipe; or the paper's baseline CNN."
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
    precision: str = option("auto", "auto: bf16 autocast (routing in fp32) on a GPU that supports it and on an "
                                    "AMD CPU with AVX512-BF16 (measured faster there), else fp32; the run records "
                                    "what it chose and resumes in it. Or fp32, or bf16 (docs/speed.md)",
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
            prog="python -m capsules.train", description=DESCRIPTION,
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



def frozen_layers(cfg: TrainConfig) -> list[str]:
    """The layers named by ``--freeze``."""
    return [name.strip() for name in cfg.freeze.split(",") if name.strip()]


def recorded_config(cfg: TrainConfig) -> dict:
    """The run's options as its checkpoints' JSON (``train_config``) and its resume state record
    them: all of them, less the CapsNet's own for another model (they played no part)."""
    options = dataclasses.asdict(cfg)
    if cfg.model != "capsnet":
        for name in CAPSNET_OPTIONS:
            del options[name]
    return options
