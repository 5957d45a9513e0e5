"""capsules.analysis.transforms: the one affine's directions and the sweep that tracks a capsule's pose."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from capsules import analysis


def test_transform_identity_returns_same_image(image):
    out = analysis.transform_image(image)
    assert isinstance(out, np.ndarray) and out.shape == (28, 28)
    np.testing.assert_allclose(out, image, atol=1e-5)
    t = torch.from_numpy(image)
    out_t = analysis.transform_image(t, rotate=0, scale=1, shift_x=0, shift_y=0, shear=0)
    assert isinstance(out_t, torch.Tensor)
    torch.testing.assert_close(out_t, t, atol=1e-5, rtol=0)


def test_transform_directions():
    dot = np.zeros((28, 28), np.float32)
    dot[14, 20] = 1.0  # right of the centre (the centre is at 13.5)

    def peak(img):
        return tuple(int(v) for v in np.unravel_index(np.argmax(img), img.shape))

    assert peak(analysis.transform_image(dot, shift_x=3)) == (14, 23)
    assert peak(analysis.transform_image(dot, shift_y=-2)) == (12, 20)
    r, c = peak(analysis.transform_image(dot, rotate=90))  # counter-clockwise: right -> up
    assert r < 10 and abs(c - 13.5) <= 1
    r, c = peak(analysis.transform_image(dot, scale=1.5))  # away from the centre
    assert r in (13, 14, 15) and c > 21
    blob = np.zeros((28, 28), np.float32)
    blob[20, 14] = 1.0  # below the centre: shear (degrees, x += tan(shear) * y) moves it right
    assert peak(analysis.transform_image(blob, shear=30))[1] > 16
    assert peak(analysis.transform_image(blob, shear=-30))[1] < 11
    assert analysis.transform_image(blob, rotate=-30, shear=10, scale=1.2)[20:26].sum() > 0  # one call, all of them
    with pytest.raises(ValueError):
        analysis.transform_image(dot, scale=0)
    with pytest.raises(ValueError, match="unknown transform"):
        analysis.transform_images(dot, [{"twist": 1.0}])


def test_transform_sweep(tiny_model, image):
    sweep = analysis.transform_sweep(tiny_model, image, "rotate", values=[-30, 0, 30])
    assert sweep.poses.shape == (3, 16) and sweep.lengths.shape == (3, 10)
    assert sweep.images.shape == (3, 28, 28) and sweep.predictions.shape == (3,)
    plain = analysis.analyse(tiny_model, image)
    assert sweep.digit == plain.prediction
    np.testing.assert_allclose(sweep.images[1], image, atol=1e-5)
    np.testing.assert_allclose(sweep.lengths[1], plain.lengths, atol=1e-4)
    np.testing.assert_allclose(sweep.poses[1], plain.v[plain.prediction], atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(sweep.poses, axis=1), sweep.lengths[:, sweep.digit],
                               rtol=1e-5)
    default = analysis.transform_sweep(tiny_model, image, "scale", base={"rotate": 10.0}, digit=2)
    assert default.digit == 2 and default.values.shape == (21,)
    assert default.values[0] == pytest.approx(analysis.TRANSFORMS["scale"].explore[0])
    with pytest.raises(ValueError):
        analysis.transform_sweep(tiny_model, image, "bend")
