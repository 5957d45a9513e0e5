"""Fixtures of the experiments tests: the shipped CapsNet, a test subset, a small CNN checkpoint."""

import pytest

from capsules import load_model


@pytest.fixture(scope="module")
def shipped():
    return load_model(device="cpu")


@pytest.fixture(scope="module")
def subset(mnist_test):
    """The first 48 test images and labels (uint8, int64)."""
    images, labels = mnist_test
    return images[:48], labels[:48]
