"""capsules.analysis.outliers: the outlier scores, their AUROC, intervals and thresholds."""

import numpy as np
import pytest
import torch

from capsules import load_model
from capsules.analysis import outliers
from capsules.analysis import trust
from tests.analysis.helpers import ROOT, images, small_capsnet, small_cnn


def test_a_shipped_checkpoint_without_reconstruction_refuses_distances():
    model = load_model(ROOT / "checkpoints" / "capsnet-mnist-r3-norecon.safetensors", "cpu")
    with pytest.raises(ValueError, match="capsnet-mnist-r3-norecon.safetensors was trained without"):
        outliers.scores(model, images(1), ["reconstruction_distance"])
    assert "pgd_adaptive" not in trust.adversarial_results(model, (images(2) * 255).byte()[:, 0], torch.tensor([0, 1]),
                                                       epsilons=[0.1], steps=1)


def pairwise_auroc(a, b) -> float:
    """The definition, pair by pair."""
    wins = sum(1.0 if x > z else 0.5 if x == z else 0.0 for x in a for z in b)
    return wins / (len(a) * len(b))


def test_auroc_by_hand():
    assert outliers.auroc([0.9, 0.8, 0.4], [0.5, 0.1]) == pytest.approx(5 / 6)  # only 0.4 < 0.5 loses
    assert outliers.auroc([1.0, 1.0], [1.0, 0.0]) == pytest.approx(3 / 4)  # two ties count one half each
    assert outliers.auroc([1.0, 2.0], [3.0, 4.0], higher_is_digit=False) == 1.0  # distances: lower is a digit
    assert outliers.auroc([5.0], [5.0]) == 0.5
    with pytest.raises(ValueError, match="both sets"):
        outliers.auroc([], [1.0])


def test_auroc_against_the_pairwise_count():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 12, 40).astype(float), rng.integers(0, 9, 25).astype(float)  # many ties
        assert outliers.auroc(a, b) == pytest.approx(pairwise_auroc(a, b), abs=1e-12)
        assert outliers.auroc(a, b, higher_is_digit=False) == pytest.approx(pairwise_auroc(-a, -b), abs=1e-12)
    r = outliers.average_ranks(np.array([3.0, 1.0, 3.0, 2.0]))
    assert r.tolist() == [3.5, 1.0, 3.5, 2.0]


def test_bootstrap_interval_is_seeded_and_holds_the_estimate():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1.0, 300), np.round(rng.normal(0.0, 1.0, 200), 1)
    lo, hi = outliers.bootstrap_interval(a, b, resamples=300, seed=7)
    assert lo < outliers.auroc(a, b) < hi and 0.0 < hi - lo < 0.2
    assert outliers.bootstrap_interval(a, b, resamples=300, seed=7) == (lo, hi)
    assert outliers.bootstrap_interval(a, b, resamples=300, seed=8) != (lo, hi)
    # the counting trick against resampling the slow way, with the same draws
    draws, aucs = np.random.default_rng(7), []
    for _ in range(300):
        ia, ib = draws.integers(0, a.size, a.size), draws.integers(0, b.size, b.size)
        aucs.append(outliers.auroc(a[ia], b[ib]))
    assert (lo, hi) == pytest.approx(tuple(np.quantile(aucs, [0.025, 0.975])), abs=1e-12)


def test_thresholds_flag_five_percent_and_histograms_count_everything():
    d = np.arange(1, 101, dtype=float)
    assert outliers.flagged(d, "reconstruction_distance", outliers.threshold(d, "reconstruction_distance")).sum() == 5
    assert outliers.flagged(d, "max_length", outliers.threshold(d, "max_length")).sum() == 5
    h = outliers.histogram({"a": d, "b": np.full(7, 50.0)}, bins=10)
    assert len(h["edges"]) == 11 and sum(h["counts"]["a"]) == 100 and sum(h["counts"]["b"]) == 7
    assert h["edges"][0] == 1.0 and h["edges"][-1] == 100.0


def test_scores_of_each_model_kind():
    x = images(4)
    s = outliers.scores(small_capsnet(), x)
    assert set(s) == {"max_length", "reconstruction_distance"} and all(v.shape == (4,) for v in s.values())
    assert ((s["max_length"] > 0) & (s["max_length"] < 1)).all()
    model = small_capsnet()
    with torch.no_grad():
        out = model(x)
    expected = (x - out.reconstruction).flatten(1).norm(dim=1)
    assert np.allclose(s["reconstruction_distance"], expected.numpy(), atol=1e-5)
    p = outliers.scores(small_cnn(), (x[:, 0] * 255).byte())["max_softmax"]  # uint8 images read as 0..255
    assert ((p >= 0.1) & (p <= 1.0)).all()
    assert outliers.image_scores(small_cnn(), x[0, 0].numpy())["max_softmax"] == pytest.approx(p[0], abs=1e-6)
    blank = outliers.blank_images(5)
    assert blank[0].max() == 0 and blank[-1].min() == 255
    assert outliers.noise_images(3, 1).equal(outliers.noise_images(3, 1))
