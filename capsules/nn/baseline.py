"""The paper's baseline CNN (Sabour, Frosst & Hinton 2017, §5), the reference point of Table 1.

The paper: "three convolutional layers of 256, 256, 128 channels. Each has 5x5 kernels and stride
of 1. The last convolutional layers are followed by two fully connected layers of size 328, 192.
The last fully connected layer is connected with dropout to a 10 class softmax layer with cross
entropy loss", 35.4M parameters.

Padding and pooling are not in the paper. The official code (tensorflow/models
``research/capsules/models/conv_model.py`` at commit 760e3718) does not settle them either: its
``ConvModel`` is a different network, two 5x5 convolutions of 512 and 256 channels, each followed
by 2x2 stride-2 max pooling, then one fully connected layer of 1024 and a linear 10-way layer, no
dropout, with the convolutions' padding taken from the ``padding`` hyper-parameter, ``'VALID'``
by default (``experiment.py``); that is 7.5M parameters, or 16.1M with 'SAME' padding. The paper's
count fixes the layout of its own description: only 'same' padding (2 pixels) without pooling keeps
the 28x28 grid, and then

    conv 1->256:     1*256*25 + 256     =      6,656
    conv 256->256: 256*256*25 + 256     =  1,638,656
    conv 256->128: 256*128*25 + 128     =    819,328
    FC 128*28*28 -> 328: 100,352*328 + 328 = 32,915,784
    FC 328 -> 192:   328*192 + 192      =     63,168
    FC 192 -> 10:    192*10 + 10        =      1,930
                                          35,445,522  (the paper: 35.4M)

whereas 'valid' padding without pooling gives 13.3M, and one 2x2 pooling anywhere 10.8M or less.
Dropout sits between the 192 units and the 10-way layer, as the paper says; its rate is not given
and is 0.5 here (the usual choice). Weights start from PyTorch's default initialisation: the paper
gives none, and the official code's truncated normals (sigma 0.05 for convolutions, 0.1 for fully
connected layers) belong to its other network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ConfigDict, Model, check_images


@dataclass(frozen=True)
class BaselineCNNConfig(ConfigDict):
    """Architecture of the baseline CNN; saved inside every checkpoint. Defaults are the paper's."""

    image_size: int = 28  # input side, pixels
    in_channels: int = 1  # grayscale
    conv_channels: tuple[int, ...] = (256, 256, 128)  # convolutions, ReLU, 'same' padding, no pooling
    conv_kernel: int = 5  # 5x5 kernels, stride 1
    fc_hidden: tuple[int, ...] = (328, 192)  # fully connected layers (ReLU)
    dropout: float = 0.5  # before the 10-way layer; the paper gives no rate
    n_classes: int = 10  # softmax over the classes

    NAME: ClassVar[str] = "baseline CNN"

    def __post_init__(self):
        if self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd for 'same' padding, got {self.conv_kernel}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def features(self) -> int:
        """Inputs of the first fully connected layer: last channels x the unchanged image grid."""
        return self.conv_channels[-1] * self.image_size**2


@dataclass
class BaselineCNNOutput:
    """What a forward pass returns."""

    logits: Tensor  # (B, 10) float32, before the softmax

    @property
    def probabilities(self) -> Tensor:
        """(B, 10) the softmax of the logits: the class probabilities."""
        return self.logits.softmax(dim=-1)

    @property
    def prediction(self) -> Tensor:
        """(B,) the predicted classes."""
        return self.logits.argmax(dim=-1)


class BaselineCNN(Model):
    """The paper's baseline. ``BaselineCNN()`` has 35,445,522 parameters (the paper: 35.4M)."""

    FORMAT = "capsules.baseline-cnn"
    CONFIG = BaselineCNNConfig

    def __init__(self, config: BaselineCNNConfig | None = None):
        super().__init__()
        self.config = cfg = config or BaselineCNNConfig()
        channels = [cfg.in_channels, *cfg.conv_channels]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, kernel_size=cfg.conv_kernel, padding=cfg.conv_kernel // 2)
            for a, b in zip(channels[:-1], channels[1:])
        )
        widths = [cfg.features, *cfg.fc_hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(widths[-1], cfg.n_classes)

    def forward(self, images: Tensor, labels: Tensor | None = None) -> BaselineCNNOutput:
        """Classify ``images`` (B, 1, 28, 28) in [0, 1]; dropout is active in train mode only.

        ``labels`` is unused: it is accepted so that training calls every model kind alike,
        ``model(images, labels)`` (CapsNet's decoder needs them).
        """
        cfg = self.config
        check_images(images, cfg.in_channels, cfg.image_size, name="BaselineCNN", training=self.training)
        x = images
        for conv in self.convs:
            x = F.relu(conv(x))  # (B, c, 28, 28)
        x = x.flatten(1)  # (B, 128 * 28 * 28)
        for fc in self.hidden:
            x = F.relu(fc(x))  # (B, 328), then (B, 192)
        logits = self.classifier(self.dropout(x))  # (B, 10)
        return BaselineCNNOutput(logits=logits.float())

    def loss(self, out: BaselineCNNOutput, images: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy of the softmax over ``out.logits``, batch mean, in float32 with autocast off.

        ``images`` is unused (the CNN reconstructs nothing); it keeps the signature every model has.
        """
        with torch.autocast(images.device.type, enabled=False):
            return F.cross_entropy(out.logits.float(), labels)
