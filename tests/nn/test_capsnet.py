"""The MNIST CapsNet: shapes, parameter count, decoder masking, trace, iterations."""

import pytest
import torch

from capsules import CapsNet, CapsNetConfig
from capsules.nn import count_parameters, primary_index, primary_position


def test_parameter_count_is_the_papers():
    model = CapsNet()
    assert count_parameters(model) == 8_215_568
    assert count_parameters(model.decoder) == 1_411_344
    assert count_parameters(model.digits) == 1_474_560


def test_shapes(tiny_model):
    x = torch.rand(3, 1, 28, 28)
    out = tiny_model(x)
    assert out.v.shape == (3, 10, 16)
    assert out.lengths.shape == (3, 10)
    assert out.reconstruction.shape == (3, 1, 28, 28)
    assert out.u.shape == (3, 1152, 8)
    assert out.routing is None
    assert ((out.lengths > 0) & (out.lengths < 1)).all()
    assert ((out.reconstruction >= 0) & (out.reconstruction <= 1)).all()


def test_decoder_masked_by_true_label_in_training_and_prediction_in_eval(tiny_model):
    torch.manual_seed(0)
    x = torch.rand(4, 1, 28, 28)
    tiny_model.train()
    out = tiny_model(x, labels=torch.tensor([0, 1, 2, 3]))
    for k, digit in enumerate([0, 1, 2, 3]):
        expected = tiny_model.decode(out.v[k:k + 1, digit], torch.tensor([digit]))
        torch.testing.assert_close(out.reconstruction[k:k + 1], expected)
    tiny_model.eval()
    out = tiny_model(x)
    pred = out.lengths.argmax(-1)
    expected = tiny_model.decode(out.v[torch.arange(4), pred], pred)
    torch.testing.assert_close(out.reconstruction, expected)
    # and it differs from decoding another capsule
    other = (pred + 1) % 10
    assert not torch.allclose(out.reconstruction, tiny_model.decode(out.v[torch.arange(4), other], other))


def test_decode_zeroes_other_capsules(tiny_model):
    poses = torch.randn(5, 16)
    digits = torch.tensor([0, 3, 3, 9, 1])
    full = torch.zeros(5, 10, 16)
    full[torch.arange(5), digits] = poses
    expected = tiny_model.decoder(full.flatten(1)).view(5, 1, 28, 28)
    torch.testing.assert_close(tiny_model.decode(poses, digits), expected)


def test_trace_shapes_and_meaning(tiny_model):
    x = torch.rand(2, 1, 28, 28)
    out = tiny_model(x, trace=True)
    r = out.routing
    assert r.c.shape == r.b.shape == r.agreement.shape == (3, 2, 1152, 10)
    assert r.v.shape == (3, 2, 10, 16) and r.u_hat.shape == (2, 1152, 10, 16)
    assert torch.equal(r.c[0], torch.full_like(r.c[0], 0.1))
    torch.testing.assert_close(r.v[-1], out.v)
    torch.testing.assert_close(tiny_model(x).v, out.v)  # tracing changes nothing


def test_iterations_at_inference(tiny_model):
    x = torch.rand(2, 1, 28, 28)
    for k in (1, 2, 5, 10):
        out = tiny_model(x, iterations=k, trace=True)
        assert out.routing.c.shape[0] == k
    assert not torch.allclose(tiny_model(x, iterations=1).v, tiny_model(x, iterations=5).v)


def test_primary_index_map():
    """i = type * 36 + row * 6 + col; its 8 components are conv channels type*8 .. type*8+7 at (row, col)."""
    model = CapsNet().eval()
    x = torch.rand(1, 1, 28, 28)
    with torch.no_grad():
        conv = model.primary.conv(torch.relu(model.conv1(x)))  # (1, 256, 6, 6)
        u = model.primary_capsules(x)
    t, row, col = 17, 2, 5
    i = primary_index(t, row, col)
    assert primary_position(i) == (t, row, col)
    s = conv[0, t * 8:(t + 1) * 8, row, col]
    n2 = (s * s).sum()
    torch.testing.assert_close(u[0, i], n2 / (1 + n2) * s / torch.sqrt(n2 + 1e-8))


def test_bad_inputs_are_refused_clearly(tiny_model):
    with pytest.raises(ValueError, match="shape"):
        tiny_model(torch.rand(2, 28, 28))
    with pytest.raises(TypeError, match="float"):
        tiny_model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def test_config_round_trip_and_unknown_keys():
    cfg = CapsNetConfig(routing_iterations=2)
    assert CapsNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        CapsNetConfig.from_dict({**cfg.to_dict(), "dropout": 0.5})


def test_odd_batch_sizes(tiny_model):
    for b in (1, 7):
        assert tiny_model(torch.rand(b, 1, 28, 28)).v.shape == (b, 10, 16)


from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(0, 9), seed=st.integers(0, 2**16), iterations=st.integers(1, 6))
def test_model_api_any_batch_size(batch, seed, iterations):
    model = _eval_model()
    torch.manual_seed(seed)
    out = model(torch.rand(batch, 1, 28, 28), iterations=iterations, trace=True)
    assert out.v.shape == (batch, 10, 16) and out.reconstruction.shape == (batch, 1, 28, 28)
    assert out.routing.c.shape == (iterations, batch, 1152, 10)
    assert torch.isfinite(out.lengths).all() and torch.isfinite(out.reconstruction).all()


_MODEL = []


def _eval_model():
    if not _MODEL:
        torch.manual_seed(0)
        _MODEL.append(CapsNet().eval())
    return _MODEL[0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_images_are_refused_in_eval(bad):
    x = torch.rand(2, 1, 28, 28)
    x[1, 0, 3, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        _eval_model()(x)


def test_prediction_is_the_longest_capsule(tiny_model):
    out = tiny_model.eval()(torch.rand(4, 1, 28, 28))
    assert out.prediction.shape == (4,) and torch.equal(out.prediction, out.lengths.argmax(-1))


def test_metadata_and_checkpoint_path_from_construction():
    model = CapsNet(CapsNetConfig(routing_iterations=1))
    assert model.metadata == {} and model.checkpoint_path is None and model.device.type == "cpu"


@pytest.mark.parametrize("bf16", [False, True])
def test_the_loop_s_objective_is_forward_masked_by_the_labels_then_capsule_loss(bf16):
    """The training loop's objective = forward masked by the true labels under autocast, then
    CapsuleLoss outside it: same loss and same gradients, bit for bit."""
    from capsules.nn import CapsuleLoss
    from capsules.train import model_objective

    x, y = torch.rand(4, 1, 28, 28), torch.tensor([3, 1, 4, 1])

    def run(loop: bool):
        torch.manual_seed(0)
        model = CapsNet().train()
        if loop:
            loss, _ = model_objective({"reconstruction_weight": 0.0005}, "bf16" if bf16 else "fp32")(model, (x, y))
        else:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(x, y)
            loss = CapsuleLoss(n_labels=10)(out.v, out.reconstruction, x, y)
        loss.backward()
        return loss, [p.grad for p in model.parameters()]

    (a, grads_a), (b, grads_b) = run(True), run(False)
    assert a.dtype == torch.float32 and torch.equal(a, b)
    assert all(torch.equal(g, h) for g, h in zip(grads_a, grads_b))


def test_the_loss_adds_the_reconstruction_weight_times_sse(tiny_model):
    from capsules.nn import MarginLoss, reconstruction_loss

    x, y = torch.rand(3, 1, 28, 28), torch.tensor([0, 5, 9])
    torch.manual_seed(1)
    out = tiny_model.train()(x, y)
    loss = tiny_model.loss(out, x, y)
    margin = MarginLoss(n_labels=10)(out.v, y)
    torch.testing.assert_close(loss, margin + reconstruction_loss(out.reconstruction, x, 0.0005))
    assert torch.equal(tiny_model.loss(out, x, y, reconstruction_weight=0), margin)
    # the decoder saw the true labels' capsules
    torch.testing.assert_close(out.reconstruction, tiny_model.decode(out.v[torch.arange(3), y], y))
