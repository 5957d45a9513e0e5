"""One optimisation step: the objective a step minimises (per model and data set), Adam, and the
learning-rate schedule."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..device import autocast, resolve_precision
from ..evaluate import two_digit_correct
from ..nn import Model, TwoDigitLoss
from .config import TrainConfig

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


def loss_options(cfg: TrainConfig, model: Model) -> dict:
    """The run's values of the model's loss options (``model.LOSS_OPTIONS``: CapsNet's
    reconstruction weight; the CNN has none)."""
    return {name: getattr(cfg, name) for name in model.LOSS_OPTIONS}
