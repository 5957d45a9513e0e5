"""Fixtures of the analysis tests: one test-like image and its analysis by an untrained CapsNet, and a
small model of each kind."""

from __future__ import annotations

import numpy as np
import pytest

from capsules import analysis
from tests.analysis.helpers import small_capsnet, small_cnn


@pytest.fixture()
def image():
    rng = np.random.default_rng(0)
    img = np.zeros((28, 28), np.float32)
    img[6:22, 12:16] = 1.0  # a thick vertical bar, a "1"
    img += 0.1 * rng.random((28, 28), dtype=np.float32)
    return np.clip(img, 0, 1)


@pytest.fixture()
def result(tiny_model, image):
    return analysis.analyse(tiny_model, image, iterations=3, sweep_iterations=10)


@pytest.fixture(params=["capsnet", "cnn"])
def model(request):
    """A small seeded CapsNet, then a small seeded CNN: the attack and outlier tests run on both."""
    return small_capsnet() if request.param == "capsnet" else small_cnn()
