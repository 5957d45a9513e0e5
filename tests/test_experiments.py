"""Test-set experiments (capsules.experiments): each computed figure against an independent way of
computing it, on a few test images or an untrained model."""

import json
import math

import pytest
import torch
from torch import nn

from capsules import load_model
from capsules.analysis.transforms import IDENTITY, ROBUSTNESS, affine
from capsules.checkpoint import SHIPPED, atomic_write_json
from capsules.data import to_float
from capsules.experiments import (
    FORMAT, VERSION, accuracy_interval, checkpoint_sha256, confusion_matrix, coupling_ablations,
    intervals_overlap, load_results, main, misclassified, random_logits, results_path, robustness,
    robustness_experiments, robustness_subset, route_fixed, routing_pass, run_experiments, same_subset, save_results,
    wilson_interval,
)


@pytest.fixture(scope="module")
def shipped():
    return load_model(device="cpu")


@pytest.fixture(scope="module")
def subset(mnist_test):
    """The first 48 test images and labels (uint8, int64)."""
    images, labels = mnist_test
    return images[:48], labels[:48]


def random_images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8), torch.randint(0, 10, (n,), generator=g)


def test_wilson_interval_closed_forms():
    z2 = 1.959963984540054**2
    lo, hi = wilson_interval(0, 10)  # k = 0: [0, z^2 / (n + z^2)]
    assert lo == 0.0 and hi == pytest.approx(100 * z2 / (10 + z2))
    lo, hi = wilson_interval(50, 50)  # k = n: [n / (n + z^2), 1]
    assert lo == pytest.approx(100 * 50 / (50 + z2)) and hi == pytest.approx(100.0)
    lo, hi = wilson_interval(9956, 10000)
    assert lo < 99.56 < hi and hi - lo < 0.3
    width = lambda k, n: wilson_interval(k, n)[1] - wilson_interval(k, n)[0]  # noqa: E731
    assert width(5, 10) > width(500, 1000) > width(5000, 10000)


def test_accuracy_interval_and_overlap():
    assert accuracy_interval(99.4, 500) == wilson_interval(497, 500)
    assert accuracy_interval(38.0, 500) == wilson_interval(190, 500)
    assert intervals_overlap((99.41, 99.67), (99.19, 99.51))
    assert intervals_overlap((1.0, 2.0), (2.0, 3.0))  # touching ends share a point
    assert not intervals_overlap((99.41, 99.67), (99.0, 99.40))
    assert intervals_overlap([0, 3], [1, 4], [2, 5]) and not intervals_overlap([0, 3], [1, 4], [3.5, 5])
    with pytest.raises(ValueError, match="at least one"):
        intervals_overlap()


@pytest.mark.data
def test_iterations_equal_a_plain_loop_of_the_model(shipped, subset):
    images, labels = subset
    rp = routing_pass(shipped, images, labels, iterations=10, batch_size=20)  # batches of 20, 20, 8
    x = to_float(images)
    first = None
    with torch.inference_mode():
        for k in range(1, 11):
            out = shipped(x, iterations=k)
            torch.testing.assert_close(rp.lengths[k - 1], out.lengths, rtol=1e-5, atol=1e-6)
            assert torch.equal(rp.predictions[k - 1], out.prediction)
            assert rp.correct[k - 1] == int((out.prediction == labels).sum())
            top2 = out.lengths.topk(2, dim=-1).values
            assert rp.margins[k - 1] == pytest.approx(float((top2[:, 0] - top2[:, 1]).mean()), abs=1e-6)
            first = out.prediction if first is None else first
            assert rp.changed[k - 1] == pytest.approx(100 * float((out.prediction != first).double().mean()))
            right, right_first = out.prediction == labels, first == labels
            assert rp.paired[0][k - 1] == int((right_first & ~right).sum())  # right answers turned wrong
            assert rp.paired[1][k - 1] == int((~right_first & right).sum())  # wrong ones turned right
            assert rp.correct[k - 1] - rp.correct[0] == rp.paired[1][k - 1] - rp.paired[0][k - 1]


def test_dynamics_match_the_models_trace(tiny_model):
    images, labels = random_images(12)
    rp = routing_pass(tiny_model, images, labels, iterations=5, batch_size=5)
    with torch.inference_mode():
        tr = tiny_model(to_float(images), trace=True, iterations=5).routing
    torch.testing.assert_close(rp.logit_change, tr.agreement.abs().mean(dim=(1, 2, 3)), rtol=1e-4, atol=1e-7)
    c = tr.c.double()
    entropy = -(c * c.log()).sum(-1).mean(dim=(1, 2))
    torch.testing.assert_close(rp.entropy.double(), entropy, rtol=1e-5, atol=1e-6)
    assert rp.entropy[0] == pytest.approx(math.log(10), abs=1e-5)  # iteration 1 is uniform
    b = tr.b[tiny_model.config.routing_iterations - 1]  # the logits of the model's own last iteration
    assert rp.logit_std == pytest.approx(math.sqrt(float(b.var(dim=-1).mean())), rel=1e-4)


def test_class_coupling_is_the_mean_own_coupling_per_predicted_class(tiny_model):
    images, labels = random_images(16, seed=1)
    rp = routing_pass(tiny_model, images, labels, iterations=4, batch_size=6)
    r = tiny_model.config.routing_iterations
    with torch.inference_mode():
        out = tiny_model(to_float(images), trace=True, iterations=r)
    c, pred = out.routing.c[-1], out.prediction  # (B, i, j), (B,)
    for j in range(10):
        mine = pred == j
        assert int(rp.class_counts[j]) == int(mine.sum())
        expected = c[mine, :, j].mean(0) if mine.any() else torch.full((c.shape[1],), 0.1)
        torch.testing.assert_close(rp.class_coupling[:, j], expected, rtol=1e-5, atol=1e-7)
    assert (rp.class_counts == 0).any() and (rp.class_counts > 0).any(), "both branches exercised"


def test_fixed_coupling_with_each_images_own_c_reproduces_the_model(tiny_model):
    x = to_float(random_images(6, seed=2)[0])
    with torch.inference_mode():
        out = tiny_model(x, trace=True)
        u_hat = tiny_model.digits.predictions(out.u)
        own = route_fixed(u_hat, out.routing.c[-1])
        uniform = route_fixed(u_hat, torch.full((u_hat.shape[2], 10), 0.1))
    torch.testing.assert_close(own, out.v, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(uniform, out.v, rtol=1e-5, atol=1e-6), "routing moved c: the test can tell"
    with pytest.raises(ValueError, match="coupling must be"):
        route_fixed(u_hat, torch.full((10, u_hat.shape[2]), 0.1))


@pytest.mark.data
def test_uniform_coupling_equals_one_iteration_and_class_mean_route(shipped, subset):
    images, labels = subset
    rp = routing_pass(shipped, images, labels, iterations=3)
    ab = coupling_ablations(shipped, rp, batch_size=13)
    assert torch.equal(ab["uniform"].predictions, rp.predictions[0])
    assert ab["uniform"].correct == rp.correct[0]
    assert ab["routing"].correct == rp.correct[2] and torch.equal(ab["routing"].predictions, rp.predictions[2])
    with torch.inference_mode():
        u_hat = shipped.digits.predictions(rp.u)
        one = shipped(to_float(images), iterations=1).lengths
        v = route_fixed(u_hat, rp.class_coupling)
    torch.testing.assert_close(route_fixed(u_hat, torch.full((u_hat.shape[2], 10), 0.1)).norm(dim=-1), one,
                               rtol=1e-5, atol=1e-6)
    assert torch.equal(ab["class_mean"].predictions, v.norm(dim=-1).argmax(-1))
    for a in ab.values():
        lo, hi = a.interval
        assert lo <= a.accuracy <= hi and a.total == 48


def test_random_coupling_is_seeded_and_independent_of_the_batch_size(tiny_model):
    images, labels = random_images(10, seed=3)
    rp = routing_pass(tiny_model, images, labels, iterations=3)
    rp.logit_std = 3.0  # large enough that the draw decides predictions
    a = coupling_ablations(tiny_model, rp, seed=5, batch_size=3)["random"].predictions
    b = coupling_ablations(tiny_model, rp, seed=5, batch_size=10)["random"].predictions
    c = coupling_ablations(tiny_model, rp, seed=6, batch_size=10)["random"].predictions
    assert torch.equal(a, b) and not torch.equal(a, c)
    z = random_logits(200, 50, 10, 0.25, torch.Generator().manual_seed(0))
    assert z.shape == (200, 50, 10) and float(z.std()) == pytest.approx(0.25, rel=0.03)


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


def test_confusion_and_errors_agree():
    labels = torch.tensor([0, 1, 2, 2, 9])
    lengths = torch.full((5, 10), 0.1)
    lengths[torch.arange(5), torch.tensor([0, 7, 2, 3, 9])] = 0.9
    m = confusion_matrix(labels, lengths.argmax(-1))
    assert m[1][7] == 1 and m[2][3] == 1 and m[2][2] == 1 and sum(map(sum, m)) == 5
    errors = misclassified(labels, lengths)
    assert [(e["index"], e["label"], e["prediction"]) for e in errors] == [(1, 1, 7), (3, 2, 3)]
    assert errors[0]["lengths"][7] == 0.9


def check_schema(results: dict, n: int, iterations: int = 10) -> None:
    keys = [str(k) for k in range(1, iterations + 1)]
    assert results["format"] == FORMAT and results["version"] == VERSION
    assert results["test_images"] == n
    assert list(results["iterations"]) == keys and list(results["margins"]) == keys
    assert all(0 <= a <= 100 for a in results["iterations"].values())
    for key in ("logit_change", "entropy", "changed_from_k1", "right_to_wrong_from_k1", "wrong_to_right_from_k1"):
        assert len(results["dynamics"][key]) == iterations
    dyn = results["dynamics"]
    assert dyn["right_to_wrong_from_k1"][0] == dyn["wrong_to_right_from_k1"][0] == 0
    for k in range(1, iterations + 1):  # the changed predictions: every discordant one among them
        assert dyn["right_to_wrong_from_k1"][k - 1] + dyn["wrong_to_right_from_k1"][k - 1] <= \
            round(dyn["changed_from_k1"][k - 1] * n / 100)
    assert set(results["ablations"]) == {"routing", "uniform", "random", "class_mean"}
    for a in results["ablations"].values():
        assert a["total"] == n and a["interval"][0] <= a["accuracy"] <= a["interval"][1]
    assert results["ablations"]["uniform"]["accuracy"] == results["iterations"]["1"]
    assert results["ablations"]["routing"]["accuracy"] == results["iterations"][str(results["model_iterations"])]
    curves = results["robustness"]
    assert set(curves) == {"rotate", "scale", "shear", "shift_x"}
    assert curves["rotate"][0][0] <= -60 and curves["rotate"][-1][0] >= 60
    assert curves["scale"][0][0] <= 0.5 and curves["scale"][-1][0] >= 1.5
    assert curves["shift_x"][0][0] <= -8 and curves["shift_x"][-1][0] >= 8
    assert all(len(p) == 2 and 0 <= p[1] <= 100 for c in curves.values() for p in c)
    assert 0 < results["robustness_subset"] <= n and isinstance(results["robustness_seed"], int)
    confusion = results["confusion"]
    assert len(confusion) == 10 and sum(map(sum, confusion)) == n
    wrong = n - sum(confusion[k][k] for k in range(10))
    assert len(results["errors"]) == wrong
    assert results["seconds"] > 0 and results["torch"] == torch.__version__ and results["device"]


@pytest.mark.data
def test_command_line_writes_the_json(tmp_path, data_dir):
    out = tmp_path / "r.json"
    assert main(["--data-dir", str(data_dir), "--limit", "30", "--robustness-size", "8",
                 "--json", str(out), "--device", "cpu"]) == 0
    results = json.loads(out.read_text())
    check_schema(results, 30)
    assert results["robustness_subset"] == 8
    assert results["checkpoint_sha256"] == checkpoint_sha256(SHIPPED)


def test_run_experiments_reports_progress_and_refuses_other_models(tiny_model):
    tiny_model.checkpoint_path = None  # an untrained model has no file
    images, labels = random_images(20, seed=4)
    seen = []
    results = run_experiments(tiny_model, images, labels, iterations=4, robustness_size=3, batch_size=8,
                              progress=lambda f, msg: seen.append((f, msg)))
    check_schema(json.loads(json.dumps(results)), 20, iterations=4)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0 <= fractions[0] < 0.5
    assert results["checkpoint_sha256"] is None
    with pytest.raises(ValueError, match="need a CapsNet"):
        run_experiments(nn.Linear(2, 2), images, labels)
    with pytest.raises(ValueError, match="at least the model's 3"):
        routing_pass(tiny_model, images, labels, iterations=2)


def shipped_mnist_models():
    from capsules.zoo import list_shipped

    return [m for m in list_shipped(SHIPPED.parent) if m.dataset == "mnist"]


@pytest.mark.parametrize("model", shipped_mnist_models(), ids=lambda m: m.name)
def test_each_shipped_mnist_model_ships_its_results(model):
    """Every shipped MNIST model has its experiments beside it, computed for its weights, so that the
    experiments page shows them at once whichever model is picked: a CapsNet's all of them (with
    its own test score at the iterations it was trained with), the CNN's robustness curves."""
    results = load_results(model.path)
    assert results is not None, (f"{results_path(model.path)} is missing or was computed for other weights: "
                                 f"run python -m capsules.experiments --checkpoint checkpoints/{model.path.name}")
    info = json.loads(model.path.with_suffix(".json").read_text())
    right = results["robustness_right"]  # per digit, so that two models compare image by image
    assert {k: len(v) for k, v in right.items()} == {k: results["robustness_subset"] for k in results["robustness"]}
    if model.kind == "cnn":
        assert results["kind"] == "capsules.baseline-cnn" and set(results["robustness"]) == set(ROBUSTNESS)
        assert results["test_images"] == 10000
        return
    check_schema(results, 10000)
    assert results["model_iterations"] == model.iterations
    assert results["iterations_correct"][str(results["model_iterations"])] == info["test_correct"]


def test_the_main_model_is_shipped_with_its_results():
    assert SHIPPED in [m.path for m in shipped_mnist_models()]


def test_load_results_refuses_a_sha256_mismatch(tmp_path):
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"weights one")
    assert load_results(ckpt) is None  # no results file
    good = {"format": FORMAT, "version": VERSION, "checkpoint_sha256": checkpoint_sha256(ckpt), "x": 1}
    atomic_write_json(results_path(ckpt), good)
    assert results_path(ckpt).name == "m.experiments.json"
    assert load_results(ckpt) == good
    ckpt.write_bytes(b"weights two")
    assert load_results(ckpt) is None
    ckpt.write_bytes(b"weights one")
    atomic_write_json(results_path(ckpt), {**good, "version": VERSION + 1})
    assert load_results(ckpt) is None
    results_path(ckpt).write_text("{not json")
    assert load_results(ckpt) is None


def test_command_line_errors_are_one_line(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "missing.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not found" in err and err.count("\n") == 1
    assert main(["--robustness-size", "0"]) == 2


# ------------------------------------------------------------------------------ a model that does not route


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
    from capsules.experiments import (SIGNIFICANCE, compare_robustness, curve_mean, paired_mean_p, predict,
                                      robustness_paired)

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


def test_paired_mean_test_closed_forms():
    """z = mean(d) / (sd(d) / sqrt(n)) on the differences, two-sided against the normal."""
    from capsules.experiments import paired_mean_p

    assert paired_mean_p([3, 1, 2], [3, 1, 2]) == 1.0  # no difference at all
    assert paired_mean_p([2, 2, 2], [1, 1, 1]) == 0.0  # the same difference on every item
    d = [1, -1, 1, 1]  # mean 0.5, sd 1, n 4: z = 1
    assert paired_mean_p(d, [0] * 4) == pytest.approx(math.erfc(1 / math.sqrt(2)))  # 0.3173
    assert paired_mean_p([0] * 4, d) == paired_mean_p(d, [0] * 4)  # two-sided
    big = [1] * 60 + [0] * 40  # mean 0.6, sd 0.4924: z = 12.2
    assert paired_mean_p(big, [0] * 100) < 1e-30
    with pytest.raises(ValueError, match="two paired samples"):
        paired_mean_p([1], [1, 2])


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


def test_mcnemar_is_the_exact_two_sided_binomial_test_of_the_changed_predictions():
    from capsules.experiments import mcnemar_p

    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(3, 3) == 1.0
    assert mcnemar_p(4, 0) == mcnemar_p(0, 4) == 2 / 16  # all 4 one way: 2 x (1/2)^4
    assert mcnemar_p(6, 2) == pytest.approx(2 * (1 + 8 + 28) / 256)
    assert mcnemar_p(10, 0) < 0.05 < mcnemar_p(5, 0)


def test_the_verdict_and_the_changed_predictions_read_from_a_results_file():
    from capsules.experiments import SIGNIFICANCE, changed_from_k1, mcnemar_p, mcnemar_verdict

    assert mcnemar_verdict(10, 0) == (mcnemar_p(10, 0), True) and mcnemar_verdict(5, 0) == (mcnemar_p(5, 0), False)
    assert mcnemar_verdict(3, 3)[1] is False and SIGNIFICANCE == 0.05
    results = {"dynamics": {"right_to_wrong_from_k1": [0, 7, 29], "wrong_to_right_from_k1": [0, 3, 10]}}
    assert changed_from_k1(results, 1) == (0, 0) and changed_from_k1(results, 3) == (29, 10)
    assert changed_from_k1({"dynamics": {"changed_from_k1": [0.0, 0.1]}}, 2) is None  # recorded before them
    assert changed_from_k1({}, 2) is None
