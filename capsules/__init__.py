"""capsules: Capsule Networks with dynamic routing (Sabour, Frosst & Hinton, 2017) in PyTorch."""

from .nn import (BaselineCNN, BaselineCNNConfig, BaselineCNNOutput, CapsNet, CapsNetConfig, CapsNetOutput, CapsuleLoss,
                 MarginLoss, Model, PrimaryCapsules, Router, RoutingTrace, Squash, reconstruction_loss, squash)
from .checkpoint import CheckpointError, load_model, save_model

__version__ = "0.1.0"
__all__ = [
    "BaselineCNN", "BaselineCNNConfig", "BaselineCNNOutput", "CapsNet", "CapsNetConfig", "CapsNetOutput",
    "CapsuleLoss", "CheckpointError", "MarginLoss", "Model", "PrimaryCapsules", "Router", "RoutingTrace",
    "Squash", "load_model", "reconstruction_loss", "save_model", "squash",
]
