"""Can it be fooled? Outlier scores and their AUROC (capsules.analysis.outliers), FGSM and PGD
(capsules.analysis.attacks), the results sections (capsules.analysis.trust), Fashion-MNIST
(capsules.data.fashion) and the command line, on small models and a few images (the shipped
numbers: tests/test_trust_shipped.py)."""

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from capsules import BaselineCNN, BaselineCNNConfig, CapsNet, CapsNetConfig, MarginLoss, load_model
from capsules.analysis import attacks as A
from capsules.analysis import outliers as O
from capsules.analysis import trust as T
from capsules.data import DatasetError
from capsules.data.fashion import CLASSES, INSTALL, load_fashion
from capsules.experiments import main, merge_results, parse_sections, read_results, save_results

ROOT = Path(__file__).resolve().parents[1]
CAPSNET = ROOT / "checkpoints" / "capsnet-mnist.safetensors"
CNN = ROOT / "checkpoints" / "cnn-mnist.safetensors"
DOC = ROOT / "docs" / "experiments.md"


def small_capsnet(seed: int = 0) -> CapsNet:
    torch.manual_seed(seed)
    return CapsNet(CapsNetConfig(conv1_channels=16, primary_types=4, decoder_hidden=(16, 16))).eval()


def small_cnn(seed: int = 0) -> BaselineCNN:
    torch.manual_seed(seed)
    return BaselineCNN(BaselineCNNConfig(conv_channels=(4, 4, 2), fc_hidden=(8, 8))).eval()


def images(n: int, seed: int = 0) -> torch.Tensor:
    """Float (n, 1, 28, 28) in [0, 1], with exact 0s and 1s, where clipping matters."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g)
    return torch.where(x < 0.3, 0.0, torch.where(x > 0.8, 1.0, x))


@pytest.fixture(params=["capsnet", "cnn"])
def model(request):
    return small_capsnet() if request.param == "capsnet" else small_cnn()


# --------------------------------------------------------------------------------------------
# attacks


def test_eps_zero_changes_nothing(model):
    x = images(6)
    with torch.no_grad():
        clean = model(x).prediction
    for a in (A.fgsm(model, x, clean, 0.0), A.pgd(model, x, clean, 0.0, steps=3, early_stop=False)):
        assert torch.equal(a.images, x) and torch.equal(a.predictions, clean)


def test_attacks_raise_the_loss(model):
    """FGSM and PGD (without early stopping, so every image takes all its steps) ascend the loss."""
    x = images(8, seed=1)
    with torch.no_grad():
        y = model(x).prediction
        clean = A.attack_loss(model, model(x), y)
    for a in (A.fgsm(model, x, y, 0.1), A.pgd(model, x, y, 0.1, steps=5, early_stop=False)):
        with torch.no_grad():
            after = A.attack_loss(model, model(a.images), y)
        assert torch.allclose(after, a.loss, atol=1e-5)  # the loss recorded is the loss at the image returned
        assert after.mean() > clean.mean() and (after > clean).float().mean() >= 0.75
    pgd = A.pgd(model, x, y, 0.1, steps=5, early_stop=False)
    assert pgd.loss.mean() >= A.fgsm(model, x, y, 0.1 / 4).loss.mean()  # five steps of eps/4 beat one


@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_pixels_stay_in_range_and_within_eps(eps):
    x = images(5, seed=2)
    capsnet, cnn = small_capsnet(), small_cnn()
    with torch.no_grad():
        y = capsnet(x).prediction
        limit = float(A.reconstruction_distances(x, capsnet(x)).median())
    for a in (A.fgsm(capsnet, x, y, eps), A.pgd(capsnet, x, y, eps, steps=4, early_stop=False),
              A.pgd(capsnet, x, y, eps, steps=4, threshold=limit), A.fgsm(cnn, x, y, eps),
              A.pgd(cnn, x, y, eps, steps=4, early_stop=False)):
        assert a.images.min() >= 0.0 and a.images.max() <= 1.0
        assert (a.images - x).abs().max() <= eps + 1e-6
        assert (a.images - x).abs().max() > 0  # it moved


def test_pgd_stops_at_the_first_success_and_each_image_alone():
    model, x = small_capsnet(), images(6, seed=3)
    y = torch.arange(6) % 10
    full = A.pgd(model, x, y, 0.3, steps=6, early_stop=False)
    assert (full.steps == 6).all()
    early = A.pgd(model, x, y, 0.3, steps=6)
    fooled = early.predictions != y
    assert (early.steps[~fooled] == 6).all() and (early.steps <= 6).all()
    clean_wrong = model(x).prediction != y
    assert (early.steps[clean_wrong] == 0).all() and torch.equal(early.images[clean_wrong], x[clean_wrong])
    one = [A.pgd(model, x[i:i + 1], y[i:i + 1], 0.3, steps=6) for i in range(6)]  # batches of one
    assert [int(a.steps[0]) for a in one] == early.steps.tolist()
    assert torch.allclose(torch.cat([a.images for a in one]), early.images, atol=1e-5)


def test_the_adaptive_attack_stops_only_unflagged():
    model, x = small_capsnet(), images(6, seed=4)
    y = torch.arange(6)
    with torch.no_grad():
        limit = float(A.reconstruction_distances(x, model(x)).quantile(0.5))
    a = A.pgd(model, x, y, 0.2, steps=5, threshold=limit)
    done = a.steps < 5
    assert ((a.predictions[done] != y[done]) & (a.distances[done] <= limit)).all()


def test_pgd_pair_gives_what_the_two_attacks_give_alone():
    """The adaptive attack run from where its path leaves PGD's is the adaptive attack run alone."""
    model, x = small_capsnet(1), images(8, seed=6)
    y = torch.arange(8)
    with torch.no_grad():
        limit = float(A.reconstruction_distances(x, model(x)).quantile(0.6))
    begin = A.start(model, x, y)
    plain, adaptive = A.pgd_pair(model, x, y, 0.1, limit, steps=6, begin=begin, batch_size=3)
    alone = (A.pgd(model, x, y, 0.1, steps=6), A.pgd(model, x, y, 0.1, steps=6, threshold=limit))
    forked = plain.fork[1] >= 0
    assert 0 < int(forked.sum()) < 8  # both kinds of path occur
    for mine, theirs in zip((plain, adaptive), alone):
        assert torch.equal(mine.predictions, theirs.predictions) and torch.equal(mine.steps, theirs.steps)
        assert torch.allclose(mine.images, theirs.images, atol=1e-5)
        assert torch.allclose(mine.distances, theirs.distances, atol=1e-4)


def test_attacks_touch_only_the_input():
    model = small_capsnet().train()
    flags = [p.requires_grad for p in model.parameters()]
    A.pgd(model, images(3), torch.zeros(3, dtype=torch.long), 0.1, steps=2)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())


def test_margin_losses_is_eq_4_per_image():
    v = torch.randn(5, 10, 16) * 0.3
    y = torch.tensor([0, 3, 3, 9, 1])
    lengths = v.norm(dim=-1)
    per_image = A.margin_losses(lengths, y, 0.9, 0.1)
    assert torch.allclose(per_image.mean(), MarginLoss(n_labels=10)(v, y))
    t = lengths[0, 0]  # image 0 by hand, attack margins m+ = 1, m- = 0
    hand = max(1 - t, 0) ** 2 + 0.5 * (lengths[0, 1:] ** 2).sum()
    assert torch.allclose(A.margin_losses(lengths, y)[0], hand)


def test_attack_image_for_the_page():
    model = small_capsnet()
    image = (images(1, seed=5)[0, 0].numpy() * 255).astype(np.uint8)
    r = A.attack_image(model, image, "pgd", 0.1, steps=3)
    assert r.target == r.prediction_before and r.adversarial.shape == (28, 28)
    assert np.abs(r.perturbation).max() <= 0.1 + 1e-6 and r.distance_before is not None
    assert r.fooled == (r.prediction_after != r.target)
    assert A.attack_image(small_cnn(), image, "fgsm", 0.2, label=3).distance_after is None


def test_bad_input_gets_a_clear_message():
    model, x, y = small_capsnet(), images(2), torch.zeros(2, dtype=torch.long)
    for eps in (-0.1, 1.5):
        for call in (lambda: A.fgsm(model, x, y, eps), lambda: A.pgd(model, x, y, eps),
                     lambda: A.attack_image(model, x[0, 0], "pgd", eps)):
            with pytest.raises(ValueError, match=r"eps must be in \[0, 1\]"):
                call()
    with pytest.raises(ValueError, match="method must be one of"):
        A.attack(model, x, y, "cw", 0.1)
    with pytest.raises(ValueError, match="needs the detector's threshold"):
        A.attack(model, x, y, "pgd_adaptive", 0.1)
    norecon = small_capsnet()
    norecon.metadata = {"train_config": {"reconstruction_weight": 0.0}}
    assert O.score_names(norecon) == ("max_length",)
    for call in (lambda: O.scores(norecon, x, ["reconstruction_distance"]),
                 lambda: A.pgd(norecon, x, y, 0.1, threshold=1.0)):
        with pytest.raises(ValueError, match="trained without the reconstruction loss"):
            call()
    with pytest.raises(ValueError, match="has no decoder"):
        O.scores(small_cnn(), x, ["reconstruction_distance"])
    with pytest.raises(ValueError, match="has no max_length score"):
        O.scores(small_cnn(), x, ["max_length"])


def test_a_shipped_checkpoint_without_reconstruction_refuses_distances():
    model = load_model(ROOT / "checkpoints" / "capsnet-mnist-r3-norecon.safetensors", "cpu")
    with pytest.raises(ValueError, match="capsnet-mnist-r3-norecon.safetensors was trained without"):
        O.scores(model, images(1), ["reconstruction_distance"])
    assert "pgd_adaptive" not in T.adversarial_results(model, (images(2) * 255).byte()[:, 0], torch.tensor([0, 1]),
                                                       epsilons=[0.1], steps=1)


# --------------------------------------------------------------------------------------------
# scores, AUROC and its interval


def pairwise_auroc(a, b) -> float:
    """The definition, pair by pair."""
    wins = sum(1.0 if x > z else 0.5 if x == z else 0.0 for x in a for z in b)
    return wins / (len(a) * len(b))


def test_auroc_by_hand():
    assert O.auroc([0.9, 0.8, 0.4], [0.5, 0.1]) == pytest.approx(5 / 6)  # only 0.4 < 0.5 loses
    assert O.auroc([1.0, 1.0], [1.0, 0.0]) == pytest.approx(3 / 4)  # two ties count one half each
    assert O.auroc([1.0, 2.0], [3.0, 4.0], higher_is_digit=False) == 1.0  # distances: lower is a digit
    assert O.auroc([5.0], [5.0]) == 0.5
    with pytest.raises(ValueError, match="both sets"):
        O.auroc([], [1.0])


def test_auroc_against_the_pairwise_count():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 12, 40).astype(float), rng.integers(0, 9, 25).astype(float)  # many ties
        assert O.auroc(a, b) == pytest.approx(pairwise_auroc(a, b), abs=1e-12)
        assert O.auroc(a, b, higher_is_digit=False) == pytest.approx(pairwise_auroc(-a, -b), abs=1e-12)
    r = O.average_ranks(np.array([3.0, 1.0, 3.0, 2.0]))
    assert r.tolist() == [3.5, 1.0, 3.5, 2.0]


def test_bootstrap_interval_is_seeded_and_holds_the_estimate():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1.0, 300), np.round(rng.normal(0.0, 1.0, 200), 1)
    lo, hi = O.bootstrap_interval(a, b, resamples=300, seed=7)
    assert lo < O.auroc(a, b) < hi and 0.0 < hi - lo < 0.2
    assert O.bootstrap_interval(a, b, resamples=300, seed=7) == (lo, hi)
    assert O.bootstrap_interval(a, b, resamples=300, seed=8) != (lo, hi)
    # the counting trick against resampling the slow way, with the same draws
    draws, aucs = np.random.default_rng(7), []
    for _ in range(300):
        ia, ib = draws.integers(0, a.size, a.size), draws.integers(0, b.size, b.size)
        aucs.append(O.auroc(a[ia], b[ib]))
    assert (lo, hi) == pytest.approx(tuple(np.quantile(aucs, [0.025, 0.975])), abs=1e-12)


def test_thresholds_flag_five_percent_and_histograms_count_everything():
    d = np.arange(1, 101, dtype=float)
    assert O.flagged(d, "reconstruction_distance", O.threshold(d, "reconstruction_distance")).sum() == 5
    assert O.flagged(d, "max_length", O.threshold(d, "max_length")).sum() == 5
    h = O.histogram({"a": d, "b": np.full(7, 50.0)}, bins=10)
    assert len(h["edges"]) == 11 and sum(h["counts"]["a"]) == 100 and sum(h["counts"]["b"]) == 7
    assert h["edges"][0] == 1.0 and h["edges"][-1] == 100.0


def test_scores_of_each_model_kind():
    x = images(4)
    s = O.scores(small_capsnet(), x)
    assert set(s) == {"max_length", "reconstruction_distance"} and all(v.shape == (4,) for v in s.values())
    assert ((s["max_length"] > 0) & (s["max_length"] < 1)).all()
    model = small_capsnet()
    with torch.no_grad():
        out = model(x)
    expected = (x - out.reconstruction).flatten(1).norm(dim=1)
    assert np.allclose(s["reconstruction_distance"], expected.numpy(), atol=1e-5)
    p = O.scores(small_cnn(), (x[:, 0] * 255).byte())["max_softmax"]  # uint8 images read as 0..255
    assert ((p >= 0.1) & (p <= 1.0)).all()
    assert O.image_scores(small_cnn(), x[0, 0].numpy())["max_softmax"] == pytest.approx(p[0], abs=1e-6)
    blank = O.blank_images(5)
    assert blank[0].max() == 0 and blank[-1].min() == 255 and O.noise_images(3, 1).equal(O.noise_images(3, 1))


# --------------------------------------------------------------------------------------------
# the sections, the command line, Fashion-MNIST


def test_sections_of_a_capsnet_and_a_cnn():
    g = torch.Generator().manual_seed(0)
    mnist = torch.randint(0, 256, (30, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (30,), generator=g)
    fashion = torch.randint(0, 256, (20, 28, 28), generator=g, dtype=torch.uint8)
    for model, names in ((small_capsnet(), {"max_length", "reconstruction_distance"}), (small_cnn(), {"max_softmax"})):
        seen = []
        r = T.trust_sections(model, mnist, labels, fashion, ood_size=12, noise=9, blank=3, attack_images=5,
                             resamples=50, precision="fp32", progress=lambda f, m: seen.append(f))
        r = json.loads(json.dumps(r))  # JSON-ready
        assert [f for f in seen] == sorted(seen) and seen[-1] == pytest.approx(1.0)
        ood, adv = r["ood"], r["adversarial"]
        for key in ("fashion-mnist", "noise", "blank"):
            assert set(ood[key]) == names
            for v in ood[key].values():
                assert v["interval"][0] <= v["auroc"] <= v["interval"][1]
        assert ood["sets"] == {"mnist-test": 12, "fashion-mnist": 12, "noise": 9, "blank": 3}
        assert set(ood["histograms"]) == names and set(ood["thresholds"]) == names
        assert adv["images"] == 5 and adv["eps"] == list(A.EPSILONS) and adv["steps"] == A.STEPS
        for method in ("fgsm", "pgd"):
            assert len(adv[method]["accuracy"]) == 4 and all(len(s) == 5 for s in adv[method]["right"])
            assert adv[method]["accuracy"] == pytest.approx([100 * s.count("1") / 5 for s in adv[method]["right"]])
        capsnet = isinstance(model, CapsNet)
        assert ("pgd_adaptive" in adv) == capsnet and ("detected" in adv["pgd"]) == capsnet
        assert (adv["detector"] is not None) == capsnet
    with pytest.raises(ValueError, match="unknown sections"):
        T.trust_sections(small_cnn(), mnist, labels, fashion, sections=["routing"])


def test_parse_sections_and_merge(tmp_path):
    assert parse_sections("ood,adversarial") == ["ood", "adversarial"]
    assert parse_sections("adversarial, core") == ["core", "adversarial"] and parse_sections("all")[0] == "core"
    assert parse_sections("ood,pgd") is None and parse_sections("") is None
    checkpoint = tmp_path / "m.safetensors"
    checkpoint.write_bytes(b"weights")
    from capsules.experiments import FORMAT, VERSION, checkpoint_sha256

    path = tmp_path / "m.experiments.json"
    save_results({"format": FORMAT, "version": VERSION, "checkpoint_sha256": checkpoint_sha256(checkpoint),
                  "robustness": {"rotate": []}, "ood": {"old": 1}}, path)
    merged = merge_results(path, checkpoint, {"ood": {"new": 2}})
    assert merged["robustness"] == {"rotate": []} and merged["ood"] == {"new": 2}
    assert read_results(path, checkpoint) == merged
    checkpoint.write_bytes(b"other weights")  # results of other weights are not merged into
    assert read_results(path, checkpoint) is None and "robustness" not in merge_results(path, checkpoint, {"x": 1})


def test_fashion_loader(tmp_path, monkeypatch):
    def idx(array: np.ndarray, code: int) -> bytes:
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        return gzip.compress(header + array.astype(np.uint8).tobytes())

    pixels = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(idx(pixels, 3))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(idx(np.array([9, 0, 4]), 1))
    x, y = load_fashion("test", tmp_path)
    assert x.dtype == torch.uint8 and x.shape == (3, 28, 28) and np.array_equal(x.numpy(), pixels)
    assert y.tolist() == [9, 0, 4] and CLASSES[9] == "Ankle boot"
    monkeypatch.setenv("CAPSULES_FASHION", str(tmp_path))
    assert load_fashion("test")[1].tolist() == [9, 0, 4]
    monkeypatch.setenv("CAPSULES_FASHION", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match=f"Fashion-MNIST not found.*`{INSTALL}`"):
        load_fashion("test")
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_fashion("train", tmp_path / "nowhere")


@pytest.mark.data
def test_the_command_line_says_how_to_install_fashion_mnist(tmp_path, capsys, data_dir):
    results = tmp_path / "r.json"
    shutil.copy(ROOT / "checkpoints" / "capsnet-mnist.experiments.json", results)
    assert main(["--sections", "ood", "--json", str(results), "--fashion-dir", str(tmp_path / "none"),
                 "--data-dir", str(data_dir), "--device", "cpu"]) == 1
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
    assert main(["--sections", "ood,adversarial", "--json", str(tmp_path / "missing.json"), "--data-dir",
                 str(data_dir), "--device", "cpu"]) == 1
    assert "no results of these weights" in capsys.readouterr().err
    assert main(["--sections", "robustness"]) == 2
