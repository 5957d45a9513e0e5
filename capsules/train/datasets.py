"""The data sets as training uses them (:class:`DataSet`): MNIST with its shifts and MultiMNIST's
fresh pairs, the validation split, the batches of an epoch and each process's share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..data import MultiMNIST, load_mnist, load_multimnist_test, shift_augment, to_float
from ..evaluate import EvalResult, TwoDigitResult, evaluate, evaluate_multimnist
from .config import DATASET_NAMES, VALIDATION_SEED, TrainConfig, TrainingError
from .step import Batch, loss_options

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

def _shard(idx: Tensor, rank: int, world: int) -> Tensor:
    """This process's part of a global batch: contiguous and as even as can be (the same size for
    every process when the batch divides evenly, as every full batch does)."""
    return idx[rank * len(idx) // world:(rank + 1) * len(idx) // world]
