"""capsules.analysis.inputs: one image prepared for a model, the geometry of its capsules, a CNN's answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from capsules import analysis
from capsules.nn import primary_index


def test_prepare_reads_uint8_and_float():
    u8 = np.full((28, 28), 255, np.uint8)
    assert torch.equal(analysis.prepare(u8), torch.ones(1, 1, 28, 28))
    assert analysis.prepare(np.full((28, 28), 0.5)).dtype == torch.float32
    with pytest.raises(ValueError, match="square"):
        analysis.prepare(np.zeros((27, 28)))
    with pytest.raises(ValueError, match="28x28"):
        analysis.prepare(np.zeros((27, 27)), side=28)
    np.testing.assert_array_equal(analysis.as_image(u8), np.ones((28, 28), np.float32))


def test_geometry_from_the_config():
    from capsules import CapsNetConfig

    g = analysis.Geometry.of(CapsNetConfig())
    assert (g.side, g.grid, g.types, g.field, g.stride, g.caps) == (28, 6, 32, 17, 2, 1152)
    assert g.position(primary_index(7, 2, 3)) == (7, 2, 3)
    small = analysis.Geometry.of(CapsNetConfig(image_size=20, primary_types=4))
    assert (small.grid, small.caps) == (2, 16)
    cov = analysis.coverage(small)
    assert cov.shape == (20, 20) and cov.max() == 4 and cov.sum() == 4 * 17 * 17


def test_classify_gives_the_cnns_prediction_and_softmax_probability(image):
    from capsules import BaselineCNN, BaselineCNNConfig

    torch.manual_seed(0)
    cnn = BaselineCNN(BaselineCNNConfig(conv_channels=(4, 4, 2), fc_hidden=(8, 8))).eval()
    with torch.no_grad():
        logits = cnn(torch.from_numpy(image)[None, None]).logits[0].double()
    p = torch.exp(logits - logits.logsumexp(0))  # the softmax, computed apart
    answer = analysis.classify(cnn, image)
    assert answer.prediction == int(logits.argmax()) and answer.probability == pytest.approx(float(p.max()), rel=1e-5)
    np.testing.assert_allclose(answer.probabilities, p.numpy(), rtol=1e-5)
    grey = (image * 255).astype(np.uint8)  # 0..255 grey levels too
    assert analysis.classify(cnn, grey).prediction == answer.prediction
    with pytest.raises(ValueError, match="28x28"):
        analysis.classify(cnn, np.zeros((36, 36), np.float32))
