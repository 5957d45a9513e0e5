"""Shared test fixtures.

MNIST: tests marked ``data`` need the four raw files in ``$CAPSULES_DATA`` (else ../shared/data).
Without them they skip with the reason, except when ``CAPSULES_REQUIRE_DATA=1`` (``.ci/run`` sets
it), where a missing dataset is a failure. ``CAPSULES_REQUIRE_BROWSER=1`` does the same for the
chromium browser tests.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _data_dir() -> Path:
    if os.environ.get("CAPSULES_DATA"):
        return Path(os.environ["CAPSULES_DATA"])
    return ROOT.parent / "shared" / "data"


def required(var: str) -> bool:
    return os.environ.get(var, "") not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The MNIST folder (holding MNIST/raw); skips, or fails under .ci/run, when it is absent."""
    from capsules.data import DatasetError, check

    root = _data_dir()
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
