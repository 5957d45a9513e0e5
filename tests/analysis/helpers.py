"""What the analysis tests share: small seeded models of each kind and images with exact 0s and 1s."""

from pathlib import Path

import torch

from capsules import BaselineCNN, BaselineCNNConfig, CapsNet, CapsNetConfig

ROOT = Path(__file__).resolve().parents[2]


def small_capsnet(seed: int = 0) -> CapsNet:
    torch.manual_seed(seed)
    return CapsNet(CapsNetConfig(conv1_channels=16, primary_types=4, decoder_hidden=(16, 16))).eval()


def small_cnn(seed: int = 0) -> BaselineCNN:
    torch.manual_seed(seed)
    return BaselineCNN(BaselineCNNConfig(conv_channels=(4, 4, 2), fc_hidden=(8, 8))).eval()


def images(n: int, seed: int = 0) -> torch.Tensor:
    """Float (n, 1, 28, 28) in [0, 1], with exact 0s and 1s, where clipping matters."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g)
    return torch.where(x < 0.3, 0.0, torch.where(x > 0.8, 1.0, x))
