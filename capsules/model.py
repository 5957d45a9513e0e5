"""The MNIST CapsNet of Sabour, Frosst & Hinton (2017) and its reconstruction decoder.

Conv1 (256, 9x9, ReLU) -> PrimaryCaps (32 types x 6 x 6 capsules of 8D) -> DigitCaps (10 x 16D,
dynamic routing) -> decoder (mask all but one digit capsule; FC 512 -> 1024 -> 784, sigmoid).
8,215,568 parameters with the default :class:`CapsNetConfig`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import PrimaryCapsules, Router, RoutingTrace
from .losses import capsule_lengths


@dataclass(frozen=True)
class CapsNetConfig:
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

    @property
    def primary_grid(self) -> int:
        conv1 = self.image_size - self.conv1_kernel + 1
        return (conv1 - self.primary_kernel) // self.primary_stride + 1

    @property
    def primary_caps(self) -> int:
        return self.primary_types * self.primary_grid**2

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["decoder_hidden"] = list(self.decoder_hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CapsNetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown CapsNet config keys: {', '.join(unknown)}")
        d = dict(d)
        if "decoder_hidden" in d:
            d["decoder_hidden"] = tuple(int(x) for x in d["decoder_hidden"])
        return cls(**d)


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
        return self.lengths.argmax(dim=-1)


class CapsNet(nn.Module):
    """The paper's CapsNet. ``CapsNet()`` is the MNIST model with 8,215,568 parameters."""

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

    @property
    def device(self) -> torch.device:
        return self.conv1.weight.device

    def primary_capsules(self, images: Tensor) -> Tensor:
        """(B, 1, 28, 28) in [0, 1] -> primary capsules u (B, 1152, 8), float32."""
        cfg = self.config
        expected = (cfg.in_channels, cfg.image_size, cfg.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"CapsNet expects images of shape (batch, {', '.join(map(str, expected))}), "
                             f"got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"CapsNet expects float images in [0, 1], got dtype {images.dtype}")
        if not self.training and not bool(torch.isfinite(images).all()):  # (no device sync in training)
            raise ValueError("CapsNet got images with NaN or infinite values")
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


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
