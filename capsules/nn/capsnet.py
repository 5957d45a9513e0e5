"""The MNIST CapsNet of Sabour, Frosst & Hinton (2017) and its reconstruction decoder.

Conv1 (256, 9x9, ReLU) -> PrimaryCaps (32 types x 6 x 6 capsules of 8D) -> DigitCaps (10 x 16D,
dynamic routing) -> decoder (mask all but one digit capsule; FC 512 -> 1024 -> 784, sigmoid).
8,215,568 parameters with the default :class:`CapsNetConfig` (:mod:`capsules.nn.config`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import CapsNetConfig, Model, check_images
from .losses import CapsuleLoss, capsule_lengths
from .primary import PrimaryCapsules
from .routing import Router, RoutingTrace


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
        (:class:`capsules.nn.losses.CapsuleLoss`), batch mean, in float32 with autocast off."""
        loss_fn = CapsuleLoss(n_labels=self.config.n_classes, reconstruction_weight=reconstruction_weight)
        with torch.autocast(images.device.type, enabled=False):
            return loss_fn(out.v, out.reconstruction, images, labels)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
