"""Warm start across input sizes: a CapsNet trained on one image size gives its weights to a
CapsNet of another (MNIST's 28x28 to MultiMNIST's 36x36), as far as they carry.

- conv1 and PrimaryCaps are convolutions: they fit any image size and are copied as they are.
- DigitCaps has one W_ij (8x16) per primary capsule i = (type, row, col) and digit j. The target
  grid is centred on the source grid: on the 36x36 canvas with its 4-pixel pad a centred digit sits
  where the source saw it, on positions 2..7 of the 10x10 grid (4 pixels are 2 steps of the stride-2
  PrimaryCaps), so the central 6x6 positions see exactly what the source saw and take its W_ij.
  The rim (positions 0, 1, 8, 9) sees what the source never did, a blank or part of a shifted digit:
  ``rim="zero"`` (the default) starts its W_ij at zero, so a centred, padded digit is read exactly as
  the source reads it (the rim votes nothing until training teaches it to); ``rim="clamp"`` gives
  position p the source's clamp(p - 2, 0, 5), repeating the source's edge (the rim's votes then
  swamp routing at first: 3,200 inputs instead of 1,152 push every capsule's length towards 1).
- The decoder's hidden layers are copied. Its output layer (one row per pixel) is embedded: the
  target's central pixels take the source's rows, each rim pixel the row of the nearest source edge
  pixel (always black on a centred digit), so the reconstruction of a centred digit starts as the
  source's, padded with what it draws at its edge.

:func:`transfer` does it and returns what a run's JSON records of it; :func:`init_from_checkpoint`
starts any run from a checkpoint (``--init-from``), through :func:`transfer` across sizes.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import load_model
from ..nn import CapsNet
from .config import RIMS, TrainingError

# Config fields that may differ between source and target; every other one must match.
CARRIED_ACROSS = ("image_size",)


def grid_map(source_grid: int, target_grid: int) -> torch.Tensor:
    """For each target grid position p, the source position it takes: clamp(p - offset, 0,
    source_grid - 1), offset = (target_grid - source_grid) // 2 (2 for 6 -> 10)."""
    offset = (target_grid - source_grid) // 2
    return (torch.arange(target_grid) - offset).clamp(0, source_grid - 1)


@torch.no_grad()
def transfer(source: CapsNet, target: CapsNet, *, rim: str = "zero") -> dict:
    """Copy ``source``'s weights into ``target``, a CapsNet that differs at most in ``image_size``
    (:data:`CARRIED_ACROSS`); ``rim`` is "zero" or "clamp" (see the module's docstring). Returns the
    record of what was copied."""
    if rim not in RIMS:
        raise ValueError(f"rim must be one of {', '.join(RIMS)}, not {rim!r}")
    s, t = source.config, target.config
    others = {k: (v, t.to_dict()[k]) for k, v in s.to_dict().items()
              if k not in CARRIED_ACROSS and t.to_dict()[k] != v}
    if others:
        diff = ", ".join(f"{k} {a} (this run: {b})" for k, (a, b) in others.items())
        raise ValueError(f"a warm start carries weights across image sizes only; these differ: {diff}")
    if t.image_size < s.image_size or (t.image_size - s.image_size) % (2 * s.primary_stride):
        raise ValueError(f"a warm start goes from {s.image_size}x{s.image_size} to a larger image padded by a "
                         f"multiple of {s.primary_stride} pixels on each side, not to {t.image_size}x{t.image_size}")
    target.conv1.load_state_dict(source.conv1.state_dict())
    target.primary.load_state_dict(source.primary.state_dict())

    # W (types * grid * grid, j, n, m): carry each type's grid by position
    rows = grid_map(s.primary_grid, t.primary_grid)
    offset = (t.primary_grid - s.primary_grid) // 2
    w = source.digits.weight.view(s.primary_types, s.primary_grid, s.primary_grid, *source.digits.weight.shape[1:])
    w = w[:, rows][:, :, rows]  # (types, target grid, target grid, j, n, m)
    if rim == "zero":
        inside = rows == torch.arange(t.primary_grid) - offset  # (target grid,): no clamping was needed
        w = w * (inside[:, None] & inside[None, :]).to(w.dtype)[None, :, :, None, None, None]
    target.digits.weight.copy_(w.reshape(target.digits.weight.shape))

    hidden = list(source.decoder)[:-2]  # every layer before the output Linear and its Sigmoid
    for mine, theirs in zip(list(target.decoder)[:-2], hidden):
        mine.load_state_dict(theirs.state_dict())
    out_s, out_t = source.decoder[-2], target.decoder[-2]
    pad = (t.image_size - s.image_size) // 2
    near = (torch.arange(t.image_size) - pad).clamp(0, s.image_size - 1)  # nearest source row / column
    pixel = torch.arange(s.in_channels * s.image_size**2).view(s.in_channels, s.image_size, s.image_size)
    pixel = pixel[:, near][:, :, near].flatten()  # per target pixel, the source pixel it copies
    out_t.weight.copy_(out_s.weight[pixel])
    out_t.bias.copy_(out_s.bias[pixel])
    return {"from_image_size": s.image_size, "to_image_size": t.image_size,
            "copied": ["conv1", "primary", "decoder hidden layers"],
            "routing_weights": f"by grid position, {s.primary_grid}x{s.primary_grid} -> {t.primary_grid}x"
                               f"{t.primary_grid} per type: target p <- source p - {offset}; the rim "
                               + ("zero" if rim == "zero" else f"<- source clamp(p - {offset}, 0, {s.primary_grid - 1})"),
            "rim": rim,
            "decoder_output": f"the {s.image_size}x{s.image_size} output rows embedded in the {t.image_size}x"
                              f"{t.image_size} centre, each rim pixel a copy of the nearest edge pixel's"}


def init_from_checkpoint(model: nn.Module, path: Path, rim: str = "zero") -> dict:
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
