"""capsules.analysis.two_digits: the MultiMNIST CapsNet's two digits read, matched and their evidence split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from capsules import analysis


@pytest.fixture(scope="module")
def pair_model():
    """A small untrained CapsNet for MultiMNIST's 36x36 input: 4 types on a 10x10 grid."""
    from capsules import CapsNet, CapsNetConfig

    torch.manual_seed(0)
    return CapsNet(CapsNetConfig(image_size=36, conv1_channels=16, primary_types=4, decoder_hidden=(16, 16))).eval()


@pytest.fixture(scope="module")
def pair_image():
    """A "1" and a "7" overlaid in the 36x36 frame, and each alone."""
    one = np.zeros((36, 36), np.float32)
    one[8:28, 16:19] = 1.0
    seven = np.zeros((36, 36), np.float32)
    seven[9:12, 10:26] = 1.0
    for k in range(16):  # the diagonal
        seven[11 + k, 24 - k // 2:26 - k // 2] = 1.0
    return np.minimum(one + seven, 1.0), np.stack([one, seven])


def test_the_analysis_takes_the_36x36_model(pair_model, pair_image):
    image, _ = pair_image
    res = analysis.analyse(pair_model, image, iterations=3)
    g = res.geometry
    assert (g.side, g.grid, g.types, g.caps) == (36, 10, 4, 400)
    assert res.c.shape == (3, 400, 10) and res.u_hat.shape == (400, 10, 16)
    assert res.reconstruction.shape == (36, 36) and res.sweep.reconstructions.shape == (10, 36, 36)
    maps = res.evidence_for(res.prediction)
    assert maps.shape == (3, 36, 36)
    assert np.isnan(maps[:, 35]).all() and np.isnan(maps[:, :, 35]).all()  # row and column 35: in no field
    out = pair_model(analysis.prepare(image))
    np.testing.assert_allclose(res.lengths, out.lengths[0].detach().numpy(), atol=1e-5)


def test_read_pair_decodes_the_two_longest_and_the_rejected_capsule(pair_model, pair_image):
    image, _ = pair_image
    res = analysis.analyse(pair_model, image, iterations=3)
    pair = analysis.read_pair(pair_model, res)
    order = analysis.longest(res.lengths)
    assert pair.digits == (order[0], order[1]) and pair.absent == order[2]
    assert pair.reconstructions.shape == (2, 36, 36) and pair.absent_reconstruction.shape == (36, 36)
    for k, d in enumerate(pair.digits):  # each digit from its own capsule, masked as the decoder is trained
        np.testing.assert_allclose(pair.reconstructions[k], analysis.reconstruct(pair_model, res.v[d], d), atol=1e-6)
    np.testing.assert_allclose(pair.reconstructions[0], res.reconstruction, atol=1e-6)  # the winner's, as ever
    chosen = order[7]
    other = analysis.read_pair(pair_model, res, absent=chosen)
    assert other.absent == chosen
    redrawn = analysis.reconstruct(pair_model, res.v[chosen], chosen)
    np.testing.assert_allclose(other.absent_reconstruction, redrawn, atol=1e-6)
    with pytest.raises(ValueError, match="not one the model rejects"):
        analysis.read_pair(pair_model, res, absent=order[1])
    # the paper's criterion, as the test error counts it
    assert pair.correct(pair.digits) and pair.correct(pair.digits[::-1])
    assert not pair.correct((order[0], order[2]))


def test_match_sources_pairs_each_reconstruction_with_the_digit_it_redraws(pair_image):
    _, sources = pair_image
    blurred = sources + 0.2  # a reconstruction is never the digit itself
    assert analysis.match_sources(blurred, sources) == (0, 1)
    assert analysis.match_sources(blurred[::-1], sources) == (1, 0)
    assert analysis.match_sources(np.stack([sources[1], sources[1]]), sources) in ((1, 0), (0, 1))
    empty = np.stack([sources[0], np.zeros_like(sources[1])])
    assert analysis.match_sources(blurred[::-1], empty) == (1, 0)  # the one with ink decides
    with pytest.raises(ValueError, match="expected as many of the same size"):
        analysis.match_sources(sources, sources[:, :30, :30])


def test_source_shares_split_a_map_between_the_two_digits_ink():
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    a[0, 0] = 1.0  # only digit A
    b[3, 3] = 1.0  # only digit B
    a[1, 1], b[1, 1] = 1.0, 1.0  # both, equally
    a[2, 2], b[2, 2] = 0.75, 0.25  # both, A brighter
    m = np.zeros((4, 4))
    m[0, 0], m[3, 3], m[1, 1], m[2, 2] = 2.0, 1.0, 4.0, 1.0  # total 8
    shares = analysis.source_shares(m, np.stack([a, b]))
    np.testing.assert_allclose(shares, [(2 + 2 + 0.75) / 8, (1 + 2 + 0.25) / 8])
    assert shares.sum() == pytest.approx(1.0)
    m[0, 3] = 8.0  # evidence on no digit's ink counts in the total only
    np.testing.assert_allclose(analysis.source_shares(m, np.stack([a, b])).sum(), 0.5)
    m[0, 1] = np.nan  # left out, as the pixels no field reaches
    stacked = analysis.source_shares(np.stack([m, np.zeros((4, 4))]), np.stack([a, b]))  # leading axes kept
    assert stacked.shape == (2, 2) and (stacked[1] == 0).all()
    with pytest.raises(ValueError, match="do not match"):
        analysis.source_shares(m, np.stack([a, b])[:, :3])


def test_shares_of_the_ink_evidence_add_up_to_one(pair_model, pair_image):
    image, sources = pair_image
    res = analysis.analyse(pair_model, image, iterations=3)
    maps = np.stack([res.evidence_for(d, "votes", "ink") for d in analysis.longest(res.lengths, 2)])  # (2, 3, 36, 36)
    shares = analysis.source_shares(maps, sources)
    assert shares.shape == (2, 3, 2)
    np.testing.assert_allclose(shares.sum(-1), 1.0, atol=1e-5)  # the "ink" spread puts every vote on ink
    # the "1" is about a third of the ink: at uniform coupling (iteration 1) its share is near that
    assert 0.15 < shares[0, 0, 0] < 0.6
