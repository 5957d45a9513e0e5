"""The MNIST CapsNet of Sabour, Frosst & Hinton (2017) and its reconstruction decoder.

Conv1 (256, 9x9, ReLU) -> PrimaryCaps (32 types x 6 x 6 capsules of 8D) -> DigitCaps (10 x 16D,
dynamic routing) -> decoder (mask all but one digit capsule; FC 512 -> 1024 -> 784, sigmoid).
8,215,568 parameters with the default :class:`CapsNetConfig`.

Every model kind of the package (this CapsNet, :class:`capsules.baseline.BaselineCNN`) is a
:class:`Model`, so that loading, training and the dashboard treat them alike:

- ``model.config``: a frozen dataclass with ``to_dict`` / ``from_dict``, saved in the checkpoint;
- ``model.metadata`` (dict, ``{}`` until :func:`capsules.load_model` fills it with the JSON sidecar)
  and ``model.checkpoint_path`` (``Path`` or None), set from construction;
- ``model(images).prediction``: (B,) predicted classes;
- training: one forward pass ``out = model(images, labels)`` under the loop's autocast context,
  then the loss training minimises, ``model.loss(out, images, labels, **options)`` (CapsNet: margin
  + 0.0005 x SSE with the decoder masked by the true labels; the CNN: cross-entropy, dropout
  active in train mode), always computed in float32 with autocast off
  (:func:`capsules.train.model_objective`). ``options`` are the names in ``model.LOSS_OPTIONS`` (CapsNet: ``reconstruction_weight``;
  the CNN: none), so a loop passes ``{k: getattr(cfg, k) for k in model.LOSS_OPTIONS}``. Under
  DistributedDataParallel the forward must go through the wrapper: ``out = ddp(images, labels)``,
  then ``ddp.module.loss(out, images, labels, **options)``; every kind takes ``labels`` in forward.
  Evaluation uses ``model.loss`` on eval-mode outputs (CapsNet's decoder then sees the prediction).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import PrimaryCapsules, Router, RoutingTrace
from .losses import CapsuleLoss, capsule_lengths


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


@dataclass
class CapsNetOutput:
    """What a forward pass returns."""

    v: Tensor  # (B, 10, 16) digit capsules
    lengths: Tensor  # (B, 10) their lengths: the class probabilities
    reconstruction: Tensor  # (B, 1, 28, 28) decoded from the masked capsule
    u: Tensor  # (B, 1152, 8) primary capsules
    routing: RoutingTrace | None = None  # with trace=True

    @property
    def prediction(self) -> Tensor:
        """(B,) the predicted classes: the longest digit capsules."""
        return self.lengths.argmax(dim=-1)


class CapsNet(Model):
    """The paper's CapsNet. ``CapsNet()`` is the MNIST model with 8,215,568 parameters."""

    FORMAT = "capsules.capsnet"
    CONFIG = CapsNetConfig
    LOSS_OPTIONS = ("reconstruction_weight",)

    def __init__(self, config: CapsNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or CapsNetConfig()
        self.conv1 = nn.Conv2d(cfg.in_channels, cfg.conv1_channels, kernel_size=cfg.conv1_kernel)
        self.primary = PrimaryCapsules(
            cfg.conv1_channels, cfg.primary_types, cfg.primary_dim, cfg.primary_kernel, cfg.primary_stride
        )
        self.digits = Router(
            cfg.primary_caps,
            cfg.n_classes,
            cfg.primary_dim,
            cfg.digit_dim,
            cfg.routing_iterations,
            init_std=cfg.routing_init_std,
            detach_inner=cfg.detach_inner,
        )
        pixels = cfg.in_channels * cfg.image_size**2
        widths = [cfg.n_classes * cfg.digit_dim, *cfg.decoder_hidden]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        layers += [nn.Linear(widths[-1], pixels), nn.Sigmoid()]
        self.decoder = nn.Sequential(*layers)

    def primary_capsules(self, images: Tensor) -> Tensor:
        """(B, 1, 28, 28) in [0, 1] -> primary capsules u (B, 1152, 8), float32."""
        cfg = self.config
        check_images(images, cfg.in_channels, cfg.image_size, name="CapsNet", training=self.training)
        return self.primary(F.relu(self.conv1(images)))

    def decode(self, poses: Tensor, digits: Tensor) -> Tensor:
        """Place ``poses`` (N, 16) in digit capsules ``digits`` (N,), zero the others, decode.

        Returns images (N, 1, 28, 28). This is the decoder masked as the paper masks it.
        """
        cfg = self.config
        n = poses.shape[0]
        mask = F.one_hot(digits.long(), cfg.n_classes).to(poses.dtype)  # (N, 10)
        masked = mask[:, :, None] * poses[:, None, :]  # (N, 10, 16)
        return self.decoder(masked.flatten(1)).view(n, cfg.in_channels, cfg.image_size, cfg.image_size)

    def forward(
        self,
        images: Tensor,
        labels: Tensor | None = None,
        *,
        iterations: int | None = None,
        trace: bool = False,
    ) -> CapsNetOutput:
        """Classify and reconstruct ``images`` (B, 1, 28, 28) in [0, 1].

        ``labels`` (B,), when given, choose the capsule the decoder sees (training masks with the
        true label); without them the predicted, i.e. longest, capsule is decoded.
        ``iterations`` overrides the routing iterations; ``trace`` records every iteration.
        """
        u = self.primary_capsules(images)  # (B, i, n)
        u_hat = self.digits.predictions(u)  # (B, i, j, m)
        v, routing = self.digits.route(u_hat, iterations, trace=trace)  # (B, j, m)
        lengths = capsule_lengths(v)  # (B, j)
        target = lengths.argmax(dim=-1) if labels is None else labels
        poses = v[torch.arange(v.shape[0], device=v.device), target]  # (B, m)
        reconstruction = self.decode(poses, target)
        return CapsNetOutput(v=v, lengths=lengths, reconstruction=reconstruction, u=u, routing=routing)

    def loss(self, out: CapsNetOutput, images: Tensor, labels: Tensor, *,
             reconstruction_weight: float = 0.0005) -> Tensor:
        """Eq. 4's margin loss plus ``reconstruction_weight`` x the SSE of ``out.reconstruction``
        (:class:`capsules.losses.CapsuleLoss`), batch mean, in float32 with autocast off."""
        loss_fn = CapsuleLoss(n_labels=self.config.n_classes, reconstruction_weight=reconstruction_weight)
        with torch.autocast(images.device.type, enabled=False):
            return loss_fn(out.v, out.reconstruction, images, labels)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
