"""capsules.experiments.robustness: accuracy under the affine transforms, per image, and two models
compared on the same digits."""

import json

import pytest
import torch

from capsules import load_model
from capsules.analysis.transforms import IDENTITY, ROBUSTNESS, affine
from capsules.data import to_float
from capsules.experiments import (
    FORMAT, VERSION, checkpoint_sha256, load_results, main, results_path, robustness, robustness_experiments,
    robustness_subset, run_experiments, same_subset, save_results,
)
from tests.experiments.helpers import random_images


@pytest.mark.data
def test_zero_transform_leaves_accuracy_unchanged(shipped, mnist_test):
    images, labels = mnist_test
    idx = robustness_subset(images.shape[0], 60, seed=0)
    x, y = images[idx], labels[idx]
    with torch.inference_mode():
        plain = 100 * float((shipped(to_float(x)).prediction == y).double().mean())
    curves = robustness(shipped, x, y, values={k: [IDENTITY[k], 60.0 if k == "rotate" else IDENTITY[k]]
                                               for k in ROBUSTNESS}, batch_size=25)
    for kind, points in curves.items():
        assert points[0] == [IDENTITY[kind], pytest.approx(plain)]
    assert curves["rotate"][1][1] < plain - 5, "a 60-degree rotation does change the answers"


@pytest.mark.data
def test_the_shipped_curves_are_what_the_one_affine_computes(shipped, shipped_results, mnist_test):
    """The shipped curves were measured before the one convention (torchvision's clockwise angles)
    and relabelled: the one affine, on the same digits, gives each relabelled point exactly,
    on both sides of the identity."""
    shipped_curves, images, labels = shipped_results["robustness"], *mnist_test
    idx = robustness_subset(images.shape[0], shipped_results["robustness_subset"], shipped_results["robustness_seed"])
    values = {"rotate": [-60.0, 30.0], "shear": [-40.0, 20.0]}
    curves = robustness(shipped, images[idx], labels[idx], values=values, batch_size=250)
    for kind, points in curves.items():
        assert points == [p for p in shipped_curves[kind] if p[0] in values[kind]]
    assert curves["rotate"][0][1] != dict(shipped_curves["rotate"])[60.0], "the sign matters: the curve is not symmetric"


def test_robustness_subset_is_seeded_and_sorted():
    a, b = robustness_subset(10000, 500, seed=0), robustness_subset(10000, 500, seed=0)
    assert torch.equal(a, b) and len(set(a.tolist())) == 500 and torch.all(a[1:] > a[:-1])
    assert not torch.equal(a, robustness_subset(10000, 500, seed=1))
    assert torch.equal(robustness_subset(20, 500), torch.arange(20))


@pytest.fixture()
def small_cnn(tmp_path):
    """A small baseline CNN, saved and loaded back as a shipped checkpoint is."""
    from capsules import BaselineCNN, BaselineCNNConfig, save_model

    torch.manual_seed(0)
    path = tmp_path / "cnn-mnist.safetensors"
    save_model(BaselineCNN(BaselineCNNConfig(conv_channels=(4, 4, 2), fc_hidden=(8, 8))), path, {"epoch": 1})
    return load_model(path, "cpu")


def test_robustness_experiments_of_a_cnn_share_the_capsnets_digits(small_cnn, tiny_model):
    """The CNN's results file: the robustness curves alone, on the same seeded subset as a CapsNet's
    results, keyed by the checkpoint's sha256 so that load_results reads it back."""
    images, labels = random_images(30, seed=5)
    results = robustness_experiments(small_cnn, images, labels, robustness_size=6, batch_size=4)
    assert results["format"] == FORMAT and results["version"] == VERSION and results["kind"] == "capsules.baseline-cnn"
    assert "iterations" not in results and "ablations" not in results
    assert results["checkpoint"] == "cnn-mnist.safetensors"
    assert results["checkpoint_sha256"] == checkpoint_sha256(small_cnn.checkpoint_path)
    subset = robustness_subset(30, 6, 0)
    assert results["robustness"] == robustness(small_cnn, images[subset], labels[subset])
    assert (results["test_images"], results["robustness_subset"], results["robustness_seed"]) == (30, 6, 0)
    tiny_model.checkpoint_path = None
    capsnet = run_experiments(tiny_model, images, labels, iterations=3, robustness_size=6, batch_size=8)
    assert capsnet["kind"] == "capsules.capsnet" and same_subset(capsnet, results)
    assert not same_subset(capsnet, {**results, "robustness_seed": 1})
    assert not same_subset(capsnet, {**results, "test_images": 10000}) and not same_subset({}, {})
    save_results(json.loads(json.dumps(results)), results_path(small_cnn.checkpoint_path))
    assert load_results(small_cnn.checkpoint_path) == json.loads(json.dumps(results))


def test_per_image_counts_are_a_plain_loop_and_the_paired_test_compares_two_models(small_cnn, tiny_model):
    """robustness_right counts, per digit, the curve's points it is classified right at (checked
    against a plain loop of the model); their mean is the curve's mean, and two models on the same
    digits are compared image by image: the digits each does better on, and the paired test."""
    from capsules.data import to_float
    from capsules.experiments import (
        SIGNIFICANCE,
        compare_robustness,
        curve_mean,
        paired_mean_p,
        predict,
        robustness_paired,
    )

    images, labels = random_images(30, seed=5)
    tiny_model.checkpoint_path = None
    a = run_experiments(tiny_model, images, labels, iterations=3, robustness_size=12, batch_size=5)
    b = robustness_experiments(small_cnn, images, labels, robustness_size=12, batch_size=5)
    subset = robustness_subset(30, 12, 0)
    x, y = to_float(images[subset]), labels[subset]
    for kind, curve in b["robustness"].items():
        loop = sum((predict(small_cnn, affine(x, **{kind: v})) == y).long() for v, _ in curve)
        assert b["robustness_right"][kind] == loop.tolist()
        assert 100 * sum(loop.tolist()) / (12 * len(curve)) == pytest.approx(curve_mean(curve))
    ra, rb = robustness_paired(a, b, "rotate")
    assert (ra, rb) == (a["robustness_right"]["rotate"], b["robustness_right"]["rotate"])
    diffs = compare_robustness(a, b)
    assert [d.kind for d in diffs] == list(ROBUSTNESS)
    assert diffs[0].paired == (sum(p > q for p, q in zip(ra, rb)), sum(q > p for p, q in zip(ra, rb)))
    assert diffs[0].p == paired_mean_p(ra, rb) and diffs[0].beyond == (diffs[0].p < SIGNIFICANCE)
    assert compare_robustness(b, a)[0].paired == diffs[0].paired[::-1] and compare_robustness(b, a)[0].p == diffs[0].p
    assert diffs[0].mean_a == pytest.approx(curve_mean(a["robustness"]["rotate"]))
    # no counts, other digits or another curve: no test, the means still compare
    old = {k: v for k, v in b.items() if k != "robustness_right"}
    assert robustness_paired(a, old, "rotate") is None and compare_robustness(a, old)[0].p is None
    assert robustness_paired(a, {**b, "robustness_seed": 1}, "rotate") is None
    short = {**b, "robustness": {**b["robustness"], "rotate": b["robustness"]["rotate"][:-1]}}
    assert robustness_paired(a, short, "rotate") is None
    again = robustness_experiments(small_cnn, images, labels, robustness_size=12, batch_size=7)
    assert again["robustness_right"] == b["robustness_right"]  # whatever the batch size


def test_robust_range_stops_at_the_first_point_below_the_level():
    from capsules.experiments import robust_range

    curve = [[-2.0, 90.0], [-1.0, 96.0], [0.0, 99.0], [1.0, 97.0], [2.0, 94.0], [3.0, 96.0]]
    assert robust_range(curve, 0.0) == (-1.0, 1.0)  # stops at the first point below 95%
    assert robust_range([[0.0, 90.0]], 0.0) is None and robust_range(curve, 0.5) is None
    assert robust_range(curve, 0.0, level=90.0) == (-2.0, 3.0)


@pytest.mark.data
def test_command_line_writes_a_cnns_robustness(small_cnn, data_dir, capsys):
    path = small_cnn.checkpoint_path
    assert main(["--checkpoint", str(path), "--data-dir", str(data_dir), "--limit", "20", "--robustness-size", "4",
                 "--device", "cpu"]) == 0
    results = load_results(path)
    assert results is not None and results["kind"] == "capsules.baseline-cnn"
    assert set(results["robustness"]) == set(ROBUSTNESS) and results["robustness_subset"] == 4
    assert "robustness (mean accuracy over each curve)" in capsys.readouterr().out
