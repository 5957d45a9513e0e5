"""capsules.experiments.routing: routing with k = 1..10 iterations and the coupling rules at inference,
against plain loops of the model."""

import math

import pytest
import torch

from capsules.data import to_float
from capsules.experiments import coupling_ablations, random_logits, route_fixed, routing_pass
from tests.experiments.helpers import random_images


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


def test_the_verdict_and_the_changed_predictions_read_from_a_results_file():
    from capsules.experiments import SIGNIFICANCE, changed_from_k1, mcnemar_p, mcnemar_verdict

    assert mcnemar_verdict(10, 0) == (mcnemar_p(10, 0), True) and mcnemar_verdict(5, 0) == (mcnemar_p(5, 0), False)
    assert mcnemar_verdict(3, 3)[1] is False and SIGNIFICANCE == 0.05
    results = {"dynamics": {"right_to_wrong_from_k1": [0, 7, 29], "wrong_to_right_from_k1": [0, 3, 10]}}
    assert changed_from_k1(results, 1) == (0, 0) and changed_from_k1(results, 3) == (29, 10)
    assert changed_from_k1({"dynamics": {"changed_from_k1": [0.0, 0.1]}}, 2) is None  # recorded before them
    assert changed_from_k1({}, 2) is None
