"""What every model kind of the package shares (:class:`Model`, :class:`ConfigDict`, the input
check), and the CapsNet's architecture, :class:`CapsNetConfig`, which checkpoints save.

Every model kind (:class:`capsules.nn.CapsNet`, :class:`capsules.nn.BaselineCNN`) is a
:class:`Model`, so that loading, training and the dashboard treat them alike:

- ``model.config``: a frozen dataclass with ``to_dict`` / ``from_dict``, saved in the checkpoint;
- ``model.metadata`` (dict, ``{}`` until :func:`capsules.load_model` fills it with the JSON sidecar)
  and ``model.checkpoint_path`` (``Path`` or None), set from construction;
- ``model(images).prediction``: (B,) predicted classes;
- training: one forward pass ``out = model(images, labels)`` under the loop's autocast context,
  then the loss training minimises, ``model.loss(out, images, labels, **options)`` (CapsNet: margin
  + 0.0005 x SSE with the decoder masked by the true labels; the CNN: cross-entropy, dropout
  active in train mode), always computed in float32 with autocast off
  (:func:`capsules.train.model_objective`). ``options`` are the names in ``model.LOSS_OPTIONS``
  (CapsNet: ``reconstruction_weight``; the CNN: none). Under DistributedDataParallel the forward
  must go through the wrapper: ``out = ddp(images, labels)``, then ``ddp.module.loss(out, images,
  labels, **options)``; every kind takes ``labels`` in forward. Evaluation uses ``model.loss`` on
  eval-mode outputs (CapsNet's decoder then sees the prediction).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn


class ConfigDict:
    """``to_dict`` / ``from_dict`` for a frozen config dataclass: JSON-ready, unknown keys refused.

    Tuple fields are written as lists and read back as tuples of ints.
    """

    NAME: ClassVar[str]  # names the model kind in error messages

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ValueError(f"unknown {cls.NAME} config keys: {', '.join(unknown)}")
        d = {k: tuple(int(x) for x in v) if isinstance(fields[k].default, tuple) else v for k, v in d.items()}
        return cls(**d)


def check_images(images: Tensor, in_channels: int, image_size: int, *, name: str, training: bool) -> None:
    """Refuse, with one line, images that are not float (B, C, H, W) of the model's geometry, and
    (at inference only: no device sync in training) images with NaN or infinite values."""
    expected = (in_channels, image_size, image_size)
    if images.dim() != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(f"{name} expects images of shape (batch, {', '.join(map(str, expected))}), "
                         f"got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{name} expects float images in [0, 1], got dtype {images.dtype}")
    if not training and not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} got images with NaN or infinite values")


class Model(nn.Module):
    """What every model kind shares (see the module docstring): checkpoint format, config class,
    ``.metadata`` and ``.checkpoint_path`` from construction, ``.device``."""

    FORMAT: ClassVar[str]  # the checkpoint's "format" header entry, which load_model dispatches on
    CONFIG: ClassVar[type]  # the config dataclass saved in the checkpoint
    LOSS_OPTIONS: ClassVar[tuple[str, ...]] = ()  # keyword options of loss()

    def __init__(self):
        super().__init__()
        self.metadata: dict = {}  # the checkpoint's JSON sidecar once loaded
        self.checkpoint_path: Path | None = None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


@dataclass(frozen=True)
class CapsNetConfig(ConfigDict):
    """Architecture of a CapsNet; saved inside every checkpoint. Defaults are the paper's MNIST model."""

    image_size: int = 28  # input side, pixels
    in_channels: int = 1  # grayscale
    conv1_channels: int = 256  # Conv1: 256 kernels 9x9, stride 1, ReLU
    conv1_kernel: int = 9
    primary_types: int = 32  # PrimaryCaps: 32 capsule types ...
    primary_dim: int = 8  # ... of 8D capsules
    primary_kernel: int = 9  # 9x9 kernels ...
    primary_stride: int = 2  # ... stride 2 -> 6x6 grid
    n_classes: int = 10  # DigitCaps: one capsule per class ...
    digit_dim: int = 16  # ... of 16D
    routing_iterations: int = 3  # r in Procedure 1
    routing_init_std: float = 0.1  # truncated-normal std of W_ij (official code)
    detach_inner: bool = False  # variant: no gradient through u_hat in inner iterations
    decoder_hidden: tuple[int, ...] = (512, 1024)  # FC layers of the decoder (ReLU)

    NAME: ClassVar[str] = "CapsNet"

    @property
    def primary_grid(self) -> int:
        conv1 = self.image_size - self.conv1_kernel + 1
        return (conv1 - self.primary_kernel) // self.primary_stride + 1

    @property
    def primary_caps(self) -> int:
        return self.primary_types * self.primary_grid**2
