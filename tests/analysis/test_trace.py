"""capsules.analysis.trace: routing per iteration (Procedure 1 traced), the reading of the lengths, the
sweep over iterations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from capsules import analysis


def test_analyse_shapes(result):
    r = result
    assert r.iterations == 3
    assert r.image.shape == (28, 28) and r.reconstruction.shape == (28, 28)
    assert r.lengths.shape == (10,) and r.v.shape == (10, 16)
    assert r.u.shape == (1152, 8) and r.u_hat.shape == (1152, 10, 16)
    for name in ("c", "b", "agreement", "c_deviation", "c_step"):
        assert getattr(r, name).shape == (3, 1152, 10), name
    assert r.v_per_iteration.shape == (3, 10, 16)
    assert r.lengths_per_iteration.shape == (3, 10) and r.length_change.shape == (3, 10)
    assert r.mass.shape == (3, 10) and r.vote_mass.shape == (3, 10)
    assert r.entropy.shape == (3,)
    assert r.geometry == analysis.MNIST
    assert r.sweep.lengths.shape == (10, 10) and r.sweep.predictions.shape == (10,)
    assert r.sweep.reconstructions.shape == (10, 28, 28)
    assert r.prediction == int(np.argmax(r.lengths))
    assert r.confidence == pytest.approx(float(r.lengths.max()))
    assert r.runner_up == int(np.argsort(r.lengths)[-2])


def test_first_iteration_is_uniform(result):
    c = result.c
    np.testing.assert_allclose(c[0], 0.1, atol=1e-7)
    assert result.entropy[0] == pytest.approx(np.log(10), abs=1e-6)
    np.testing.assert_allclose(result.mass[0], 115.2, atol=1e-5)  # summed in float64
    np.testing.assert_allclose(result.c_deviation[0], 0.0, atol=1e-7)
    np.testing.assert_array_equal(result.c_step[0], 0.0)
    # later iterations move away from uniform and stay distributions over the 10 digits
    assert np.abs(result.c_deviation[1:]).max() > 0
    np.testing.assert_allclose(c.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(result.c_step[2], c[2] - c[1])


def test_routing_recursion(result):
    # b[t + 1] = b[t] + agreement[t], and c = softmax_j(b)
    np.testing.assert_allclose(result.b[1:], result.b[:-1] + result.agreement[:-1], atol=1e-5)
    b = result.b.astype(np.float64)
    soft = np.exp(b - b.max(-1, keepdims=True))
    np.testing.assert_allclose(result.c, soft / soft.sum(-1, keepdims=True), atol=1e-6)
    agreement = np.einsum("ijm,tjm->tij", result.u_hat, result.v_per_iteration)
    np.testing.assert_allclose(result.agreement, agreement, rtol=1e-4, atol=1e-6)


def test_analysis_matches_forward_pass(tiny_model, image, result):
    with torch.inference_mode():
        out = tiny_model(analysis.prepare(image), iterations=3)
    np.testing.assert_allclose(result.lengths, out.lengths[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(result.reconstruction, out.reconstruction[0, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(result.lengths_per_iteration[-1], result.lengths, atol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 7])
def test_iteration_sweep_is_routing_with_k_iterations(tiny_model, image, result, k):
    with torch.inference_mode():
        out = tiny_model(analysis.prepare(image), iterations=k)
    np.testing.assert_allclose(result.sweep.lengths[k - 1], out.lengths[0].numpy(), atol=1e-6)
    assert result.sweep.predictions[k - 1] == int(out.prediction[0])
    np.testing.assert_allclose(result.sweep.reconstructions[k - 1], out.reconstruction[0, 0].numpy(),
                               atol=1e-5)


def test_routing_step_and_the_tie_at_iteration_1(result):
    first = result.routing_step(1, 2)
    assert first.top is None  # every c is 1/10: no primary is the most coupled
    assert first.top_c == pytest.approx(0.1)
    assert abs(first.mass_gap) < 1e-5 and abs(first.entropy_gap) < 1e-6
    assert (first.primaries, first.digits, first.uniform_mass) == (1152, 10, pytest.approx(115.2))
    last = result.routing_step(3, 2)
    i = int(np.argmax(result.c[2, :, 2]))
    assert last.top == result.geometry.position(i)
    assert last.top_c == pytest.approx(float(result.c[2, i, 2]))
    assert last.mass == pytest.approx(float(result.c[2, :, 2].astype(np.float64).sum()))
    assert last.max_deviation == pytest.approx(float(np.abs(result.c[2] - 0.1).max()))


def test_coupling_views(result):
    raw = result.coupling(5, "raw")
    np.testing.assert_array_equal(raw.values, result.c[:, :, 5])
    assert raw.centre == pytest.approx(0.1)
    assert raw.spread == pytest.approx(float(np.abs(result.c[:, :, 5] - 0.1).max()))
    dev = result.coupling(5, "deviation")
    assert dev.centre == 0 and dev.spread == pytest.approx(raw.spread)
    np.testing.assert_allclose(result.coupling(5, "step").values, result.c_step[:, :, 5])
    with pytest.raises(ValueError, match="coupling view"):
        result.coupling(5, "sideways")


def test_reading_of_the_lengths():
    confident = analysis.reading([0.01, 0.95, 0.02, 0, 0, 0, 0, 0.3, 0, 0])
    assert (confident.prediction, confident.long, confident.confident) == (1, [1], True)
    assert not confident.nothing and not confident.several
    hesitant = analysis.reading([0.1, 0.7, 0, 0, 0, 0, 0, 0, 0, 0])
    assert hesitant.long == [1] and not hesitant.confident
    nothing = analysis.reading([0.47, 0.2, 0, 0, 0, 0, 0, 0, 0, 0.3])  # a smiley: 0 at 0.47
    assert nothing.nothing and nothing.prediction == 0 and nothing.length == pytest.approx(0.47)
    two = analysis.reading([0, 0, 0, 0, 0.88, 0, 0, 0.67, 0, 0])  # "#": 4 at 0.88, 7 at 0.67
    assert two.several and two.long == [4, 7] and not two.confident


def test_sweep_changes_and_long_capsules():
    sweep = analysis.IterationSweep(lengths=np.array([[0.2, 0.95, 0.1], [0.3, 0.96, 0.92], [0.95, 0.97, 0.5]]),
                             predictions=np.array([1, 1, 0]), reconstructions=np.zeros((3, 28, 28)))
    assert sweep.changes == [3]
    assert sweep.long(1) == [1] and sweep.long(2) == [1, 2] and sweep.long(3) == [1, 0]
    assert sweep.long(3, threshold=0.4) == [1, 0, 2]


def test_training_iterations_from_the_sidecar():
    assert analysis.training_iterations({"train_config": {"iterations": 2}}) == 2
    assert analysis.training_iterations({"train_config": {"lr": 1e-3}}) is None  # the CNN: no routing
    assert analysis.training_iterations({}) is None
    assert analysis.training_iterations({"train_config": "not a dict ("}) is None


def test_shipped_checkpoint_records_its_routing_iterations():
    from capsules.checkpoint import SHIPPED, read_metadata

    if not SHIPPED.is_file():
        pytest.skip("no shipped checkpoint")
    assert analysis.training_iterations(read_metadata(SHIPPED)) == 3


def test_longest_orders_by_length_ties_to_the_lower_digit():
    lengths = np.array([0.1, 0.8, 0.3, 0.8, 0.05, 0.0, 0.3, 0.2, 0.9, 0.0])
    assert analysis.longest(lengths, 3) == [8, 1, 3]
    assert analysis.longest(lengths) == [8, 1, 3, 2, 6, 7, 0, 4, 5, 9]
    res = analysis.Analysis.__new__(analysis.Analysis)
    res.lengths = lengths
    assert res.runner_up == 1
