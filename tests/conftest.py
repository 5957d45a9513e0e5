"""Shared test fixtures.

MNIST: tests marked ``data`` need the four raw files in ``$CAPSULES_DATA``, else in ../shared/data
beside the clone, else in the cache folder (``capsules.data.resolve_data_dir``). Without them they skip with the reason, except when ``CAPSULES_REQUIRE_DATA=1`` (``.ci/run`` sets
it), where a missing dataset is a failure. ``CAPSULES_REQUIRE_BROWSER=1`` does the same for the
chromium browser tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def required(var: str) -> bool:
    return os.environ.get(var, "") not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The MNIST folder (holding MNIST/raw); skips, or fails under .ci/run, when it is absent."""
    from capsules.data import DatasetError, check, resolve_data_dir

    root = resolve_data_dir(beside_checkout=True)
    try:
        check(root)
    except DatasetError as exc:
        if required("CAPSULES_REQUIRE_DATA"):
            pytest.fail(f"MNIST is required here (CAPSULES_REQUIRE_DATA=1) but: {exc}")
        pytest.skip(f"MNIST not available: {exc}")
    return root


@pytest.fixture(scope="session")
def mnist_test(data_dir):
    from capsules.data import load_mnist

    return load_mnist("test", data_dir)


@pytest.fixture()
def tiny_model():
    """An untrained paper-architecture CapsNet, seeded."""
    from capsules import CapsNet

    torch.manual_seed(0)
    return CapsNet()


@pytest.fixture(scope="session")
def shipped_results():
    """The shipped checkpoint's test-set experiments (checkpoints/capsnet-mnist.experiments.json)."""
    from capsules.experiments import load_results

    results = load_results()
    assert results is not None, "the shipped checkpoint's experiments JSON is missing or stale"
    return results
