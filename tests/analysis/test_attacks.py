"""capsules.analysis.attacks: FGSM, PGD and the adaptive attack on small models and a few images."""

import numpy as np
import pytest
import torch

from capsules import MarginLoss
from capsules.analysis import attacks
from capsules.analysis import outliers
from tests.analysis.helpers import images, small_capsnet, small_cnn


def test_eps_zero_changes_nothing(model):
    x = images(6)
    with torch.no_grad():
        clean = model(x).prediction
    for a in (attacks.fgsm(model, x, clean, 0.0), attacks.pgd(model, x, clean, 0.0, steps=3, early_stop=False)):
        assert torch.equal(a.images, x) and torch.equal(a.predictions, clean)


def test_attacks_raise_the_loss(model):
    """FGSM and PGD (without early stopping, so every image takes all its steps) ascend the loss."""
    x = images(8, seed=1)
    with torch.no_grad():
        y = model(x).prediction
        clean = attacks.attack_loss(model, model(x), y)
    for a in (attacks.fgsm(model, x, y, 0.1), attacks.pgd(model, x, y, 0.1, steps=5, early_stop=False)):
        with torch.no_grad():
            after = attacks.attack_loss(model, model(a.images), y)
        assert torch.allclose(after, a.loss, atol=1e-5)  # the loss recorded is the loss at the image returned
        assert after.mean() > clean.mean() and (after > clean).float().mean() >= 0.75
    pgd = attacks.pgd(model, x, y, 0.1, steps=5, early_stop=False)
    assert pgd.loss.mean() >= attacks.fgsm(model, x, y, 0.1 / 4).loss.mean()  # five steps of eps/4 beat one


@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_pixels_stay_in_range_and_within_eps(eps):
    x = images(5, seed=2)
    capsnet, cnn = small_capsnet(), small_cnn()
    with torch.no_grad():
        y = capsnet(x).prediction
        limit = float(attacks.reconstruction_distances(x, capsnet(x)).median())
    for a in (attacks.fgsm(capsnet, x, y, eps), attacks.pgd(capsnet, x, y, eps, steps=4, early_stop=False),
              attacks.pgd(capsnet, x, y, eps, steps=4, threshold=limit), attacks.fgsm(cnn, x, y, eps),
              attacks.pgd(cnn, x, y, eps, steps=4, early_stop=False)):
        assert a.images.min() >= 0.0 and a.images.max() <= 1.0
        assert (a.images - x).abs().max() <= eps + 1e-6
        assert (a.images - x).abs().max() > 0  # it moved


def test_pgd_stops_at_the_first_success_and_each_image_alone():
    model, x = small_capsnet(), images(6, seed=3)
    y = torch.arange(6) % 10
    full = attacks.pgd(model, x, y, 0.3, steps=6, early_stop=False)
    assert (full.steps == 6).all()
    early = attacks.pgd(model, x, y, 0.3, steps=6)
    fooled = early.predictions != y
    assert (early.steps[~fooled] == 6).all() and (early.steps <= 6).all()
    clean_wrong = model(x).prediction != y
    assert (early.steps[clean_wrong] == 0).all() and torch.equal(early.images[clean_wrong], x[clean_wrong])
    one = [attacks.pgd(model, x[i:i + 1], y[i:i + 1], 0.3, steps=6) for i in range(6)]  # batches of one
    assert [int(a.steps[0]) for a in one] == early.steps.tolist()
    assert torch.allclose(torch.cat([a.images for a in one]), early.images, atol=1e-5)


def test_the_adaptive_attack_stops_only_unflagged():
    model, x = small_capsnet(), images(6, seed=4)
    y = torch.arange(6)
    with torch.no_grad():
        limit = float(attacks.reconstruction_distances(x, model(x)).quantile(0.5))
    a = attacks.pgd(model, x, y, 0.2, steps=5, threshold=limit)
    done = a.steps < 5
    assert ((a.predictions[done] != y[done]) & (a.distances[done] <= limit)).all()


def test_pgd_pair_gives_what_the_two_attacks_give_alone():
    """The adaptive attack run from where its path leaves PGD's is the adaptive attack run alone."""
    model, x = small_capsnet(1), images(8, seed=6)
    y = torch.arange(8)
    with torch.no_grad():
        limit = float(attacks.reconstruction_distances(x, model(x)).quantile(0.6))
    begin = attacks.start(model, x, y)
    plain, adaptive = attacks.pgd_pair(model, x, y, 0.1, limit, steps=6, begin=begin, batch_size=3)
    alone = (attacks.pgd(model, x, y, 0.1, steps=6), attacks.pgd(model, x, y, 0.1, steps=6, threshold=limit))
    forked = plain.fork[1] >= 0
    assert 0 < int(forked.sum()) < 8  # both kinds of path occur
    for mine, theirs in zip((plain, adaptive), alone):
        assert torch.equal(mine.predictions, theirs.predictions) and torch.equal(mine.steps, theirs.steps)
        assert torch.allclose(mine.images, theirs.images, atol=1e-5)
        assert torch.allclose(mine.distances, theirs.distances, atol=1e-4)


def test_attacks_touch_only_the_input():
    model = small_capsnet().train()
    flags = [p.requires_grad for p in model.parameters()]
    attacks.pgd(model, images(3), torch.zeros(3, dtype=torch.long), 0.1, steps=2)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())


def test_margin_losses_is_eq_4_per_image():
    v = torch.randn(5, 10, 16) * 0.3
    y = torch.tensor([0, 3, 3, 9, 1])
    lengths = v.norm(dim=-1)
    per_image = attacks.margin_losses(lengths, y, 0.9, 0.1)
    assert torch.allclose(per_image.mean(), MarginLoss(n_labels=10)(v, y))
    t = lengths[0, 0]  # image 0 by hand, attack margins m+ = 1, m- = 0
    hand = max(1 - t, 0) ** 2 + 0.5 * (lengths[0, 1:] ** 2).sum()
    assert torch.allclose(attacks.margin_losses(lengths, y)[0], hand)


def test_attack_image_for_the_page():
    model = small_capsnet()
    image = (images(1, seed=5)[0, 0].numpy() * 255).astype(np.uint8)
    r = attacks.attack_image(model, image, "pgd", 0.1, steps=3)
    assert r.target == r.prediction_before and r.adversarial.shape == (28, 28)
    assert np.abs(r.perturbation).max() <= 0.1 + 1e-6 and r.distance_before is not None
    assert r.fooled == (r.prediction_after != r.target)
    assert attacks.attack_image(small_cnn(), image, "fgsm", 0.2, label=3).distance_after is None


def test_bad_input_gets_a_clear_message():
    model, x, y = small_capsnet(), images(2), torch.zeros(2, dtype=torch.long)
    for eps in (-0.1, 1.5):
        for call in (lambda: attacks.fgsm(model, x, y, eps), lambda: attacks.pgd(model, x, y, eps),
                     lambda: attacks.attack_image(model, x[0, 0], "pgd", eps)):
            with pytest.raises(ValueError, match=r"eps must be in \[0, 1\]"):
                call()
    with pytest.raises(ValueError, match="method must be one of"):
        attacks.attack(model, x, y, "cw", 0.1)
    with pytest.raises(ValueError, match="needs the detector's threshold"):
        attacks.attack(model, x, y, "pgd_adaptive", 0.1)
    norecon = small_capsnet()
    norecon.metadata = {"train_config": {"reconstruction_weight": 0.0}}
    assert outliers.score_names(norecon) == ("max_length",)
    for call in (lambda: outliers.scores(norecon, x, ["reconstruction_distance"]),
                 lambda: attacks.pgd(norecon, x, y, 0.1, threshold=1.0)):
        with pytest.raises(ValueError, match="trained without the reconstruction loss"):
            call()
    with pytest.raises(ValueError, match="has no decoder"):
        outliers.scores(small_cnn(), x, ["reconstruction_distance"])
    with pytest.raises(ValueError, match="has no max_length score"):
        outliers.scores(small_cnn(), x, ["max_length"])
