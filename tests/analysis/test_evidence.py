"""capsules.analysis.evidence: each primary capsule's vote spread over its receptive field."""

from __future__ import annotations

import numpy as np
import pytest

from capsules import analysis
from capsules.nn import primary_index


def test_evidence_map_shape_and_sign(result):
    for spread in analysis.EVIDENCE_SPREADS:
        m = analysis.evidence_map(result.c[-1], result.u_hat, result.prediction, spread=spread, image=result.image)
        assert m.shape == (28, 28) and m.dtype == np.float32
        assert (m >= 0).all() and m.max() > 0
    maps = result.evidence()
    assert maps.shape == (3, 10, 28, 28)
    np.testing.assert_allclose(maps[1, 4], analysis.evidence_map(result.c[1], result.u_hat, 4), rtol=1e-6)
    with pytest.raises(ValueError, match="image"):
        analysis.evidence_map(result.c[-1], result.u_hat, 4, spread="ink")
    with pytest.raises(ValueError, match="spread"):
        analysis.evidence_map(result.c[-1], result.u_hat, 4, spread="blur")


@pytest.mark.parametrize("spread", ["mean", "sum"])
@pytest.mark.parametrize("capsule_type,row,col", [(0, 0, 0), (7, 2, 3), (31, 5, 5)])
def test_vote_lands_in_its_receptive_field(spread, capsule_type, row, col):
    rng = np.random.default_rng(1)
    u_hat = rng.normal(size=(1152, 10, 16)).astype(np.float32)
    c = np.zeros((1152, 10), np.float32)
    i = primary_index(capsule_type, row, col)
    c[i, 3] = 0.7
    m = analysis.evidence_map(c, u_hat, 3, spread=spread)
    rows, cols = analysis.receptive_field(row, col)
    inside = np.zeros((28, 28), bool)
    inside[rows, cols] = True
    assert inside.sum() == 17 * 17
    assert (m[inside] > 0).all()
    assert (m[~inside] == 0).all()
    vote = 0.7 * np.linalg.norm(u_hat[i, 3])
    if spread == "sum":
        np.testing.assert_allclose(m[inside], vote, rtol=1e-5)
    # another digit receives nothing
    assert (analysis.evidence_map(c, u_hat, 2, spread=spread) == 0).all()


def test_ink_spread_shares_each_vote_among_the_ink_it_sees():
    rng = np.random.default_rng(2)
    u_hat = rng.normal(size=(1152, 10, 16)).astype(np.float32)
    image = np.zeros((28, 28), np.float32)
    image[10, 12], image[11, 12], image[20, 5] = 1.0, 0.5, 0.25  # three inked pixels
    c = np.zeros((1152, 10), np.float32)
    i = primary_index(4, 1, 2)  # field rows 2..18, cols 4..20: holds the first two pixels only
    c[i, 6] = 0.4
    m = analysis.evidence_map(c, u_hat, 6, spread="ink", image=image)
    vote = 0.4 * np.linalg.norm(u_hat[i, 6])
    np.testing.assert_allclose([m[10, 12], m[11, 12]], [vote / 1.5, vote * 0.5 / 1.5], rtol=1e-5)
    assert m.sum() == pytest.approx(vote, rel=1e-5)  # the whole vote, on the ink
    assert m[20, 5] == 0 and (m[image == 0] == 0).all()
    np.testing.assert_allclose(analysis.field_ink(image)[1, 2], 1.5)
    # a field with no ink has nowhere to put its vote
    corner = np.zeros((28, 28), np.float32)
    corner[0, 0] = 1.0  # seen by the field at grid (0, 0) only
    c[:] = 0
    c[primary_index(4, 5, 5), 6] = 0.4
    assert (analysis.evidence_map(c, u_hat, 6, spread="ink", image=corner) == 0).all()
    c[primary_index(4, 0, 0), 6] = 0.4
    m = analysis.evidence_map(c, u_hat, 6, spread="ink", image=corner)
    assert m[0, 0] == pytest.approx(0.4 * np.linalg.norm(u_hat[primary_index(4, 0, 0), 6]), rel=1e-5)


def test_coverage_counts_fields():
    cov = analysis.coverage()
    assert cov[0, 0] == 1 and cov[14, 14] == 36 and cov[27, 27] == 0
    assert cov.sum() == 36 * 17 * 17


def test_evidence_for_one_digit_as_the_page_shows_it(result):
    j = result.prediction
    for spread in ("ink", "mean"):
        votes = result.evidence_for(j, "votes", spread)
        assert votes.shape == (3, 28, 28)
        assert np.isnan(votes[:, 27, :]).all() and np.isnan(votes[:, :, 27]).all()  # in no field
        assert np.isfinite(votes[:, :27, :27]).all() and (votes[:, :27, :27] >= 0).all()
        np.testing.assert_allclose(votes[:, :27, :27], result.evidence(spread)[:, j, :27, :27], rtol=1e-6)
        change = result.evidence_for(j, "change", spread)
        np.testing.assert_allclose(change[:, :27, :27], votes[:, :27, :27] - votes[:1, :27, :27], atol=1e-6)
        proj = result.evidence_for(j, "projected", spread)
        np.testing.assert_allclose(proj[:, :27, :27],
                                   result.evidence(spread, projected=True)[:, j, :27, :27], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="mode"):
        result.evidence_for(j, "loudness")


def test_projected_evidence_decomposes_the_length_of_s(result):
    # Summed without normalisation, every primary's projected vote lands on 17*17 pixels, so the
    # map's total is 289 * sum_i c_ij u_hat . v/|v| = 289 * |s_j| for every iteration and digit.
    maps = result.evidence("sum", projected=True)
    assert maps.shape == (3, 10, 28, 28)
    s = np.einsum("tij,ijm->tjm", result.c, result.u_hat)
    np.testing.assert_allclose(maps.sum(axis=(-1, -2)) / 289, np.linalg.norm(s, axis=-1), rtol=1e-4)
    # and v = squash(s) is parallel to s
    np.testing.assert_allclose(np.linalg.norm(result.v_per_iteration, axis=-1),
                               np.linalg.norm(s, axis=-1) ** 2 / (1 + np.linalg.norm(s, axis=-1) ** 2),
                               rtol=1e-4)
    # the plain maps are non-negative and total 289 * sum_i c_ij |u_hat|, i.e. the vote mass
    plain = result.evidence("sum")
    np.testing.assert_allclose(plain.sum(axis=(-1, -2)) / 289, result.vote_mass, rtol=1e-4)
    # shared over the ink, an image inked everywhere it is seen gives each field's vote to its
    # 289 pixels equally: the map totals |s_j| itself
    full = analysis.evidence_maps(result.c, result.u_hat, spread="ink", image=np.ones((28, 28), np.float32),
                           along=result.v_per_iteration)
    np.testing.assert_allclose(full.sum(axis=(-1, -2)), np.linalg.norm(s, axis=-1), rtol=1e-4)
