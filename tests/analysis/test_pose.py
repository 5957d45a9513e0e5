"""capsules.analysis.pose: the paper's Fig. 4 perturbations and reconstructions from a pose."""

from __future__ import annotations

import numpy as np
import pytest

from capsules import analysis


def test_perturbation_grid(tiny_model, result):
    pose, digit = result.v[result.prediction], result.prediction
    deltas = analysis.perturbation_deltas()
    np.testing.assert_allclose(deltas, np.round(np.arange(-0.25, 0.2501, 0.05), 2), atol=1e-7)
    assert deltas[5] == 0.0
    grid = analysis.perturbation_grid(tiny_model, pose, digit)
    assert grid.shape == (16, 11, 28, 28)
    plain = analysis.reconstruct(tiny_model, pose, digit)
    assert plain.shape == (28, 28)
    for d in range(16):
        np.testing.assert_allclose(grid[d, 5], plain, atol=1e-6)
    np.testing.assert_allclose(plain, result.reconstruction, atol=1e-5)
    # a non-zero offset in dimension d is the decode of the pose with d moved
    moved = pose.copy()
    moved[4] += 0.25
    np.testing.assert_allclose(grid[4, 10], analysis.reconstruct(tiny_model, moved, digit), atol=1e-6)
    assert np.abs(grid[4, 10] - plain).max() > 0


def test_identity_and_offset_pose(tiny_model, result):
    assert analysis.is_identity({"rotate": 0.0, "scale": 1.0, "shift_x": 0.0, "shift_y": 0.0, "shear": 0.0})
    assert not analysis.is_identity({"rotate": 0.0, "scale": 1.02})
    pose, digit = result.v[result.prediction], result.prediction
    offsets = np.zeros(16, np.float32)
    offsets[3] = 0.25
    moved, image = analysis.offset_pose(tiny_model, pose, offsets, digit)
    np.testing.assert_allclose(moved, pose + offsets)
    np.testing.assert_allclose(image, analysis.reconstruct(tiny_model, pose + offsets, digit), atol=1e-6)


def test_reconstruct_takes_one_digit_per_pose(tiny_model, result):
    poses = result.v[[3, 5, 3]]
    both = analysis.reconstruct(tiny_model, poses, [3, 5, 3])
    assert both.shape == (3, 28, 28)
    np.testing.assert_allclose(both[0], analysis.reconstruct(tiny_model, poses[0], 3), atol=1e-6)
    np.testing.assert_allclose(both[1], analysis.reconstruct(tiny_model, poses[1], 5), atol=1e-6)
    assert np.abs(both[0] - both[2]).max() == 0
    with pytest.raises(ValueError, match="3 poses but 2 digits"):
        analysis.reconstruct(tiny_model, poses, [3, 5])
