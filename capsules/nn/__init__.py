"""The networks: capsule layers (:mod:`.primary`: Squash, PrimaryCapsules; :mod:`.routing`: the
Router and its fused backward), the CapsNet (:mod:`.capsnet`, its config in :mod:`.config`), the
paper's baseline CNN (:mod:`.baseline`) and the losses (:mod:`.losses`)."""

from .baseline import BaselineCNN, BaselineCNNConfig, BaselineCNNOutput
from .capsnet import CapsNet, CapsNetOutput, count_parameters
from .config import CapsNetConfig, ConfigDict, Model, check_images
from .losses import CapsuleLoss, MarginLoss, TwoDigitLoss, capsule_lengths, decode_pair, reconstruction_loss
from .primary import PrimaryCapsules, Squash, primary_index, primary_position, squash
from .routing import DynamicRouting, Router, RoutingTrace, routing_iterations

__all__ = [
    "BaselineCNN", "BaselineCNNConfig", "BaselineCNNOutput", "CapsNet", "CapsNetConfig", "CapsNetOutput",
    "CapsuleLoss", "ConfigDict", "DynamicRouting", "MarginLoss", "Model", "PrimaryCapsules", "Router",
    "RoutingTrace", "Squash", "TwoDigitLoss", "capsule_lengths", "check_images", "count_parameters",
    "decode_pair", "primary_index", "primary_position", "reconstruction_loss", "routing_iterations", "squash",
]
