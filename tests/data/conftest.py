"""Fixtures of the drawing tests: the hand-drawn 7."""

from __future__ import annotations

import numpy as np
import pytest

from tests.data.helpers import seven_mask


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    return seven_mask()
