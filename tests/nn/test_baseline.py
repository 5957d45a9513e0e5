"""The paper's baseline CNN: parameter count, shapes, dropout, config, the training hook."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from capsules import BaselineCNN, BaselineCNNConfig
from capsules.nn import count_parameters

SMALL = BaselineCNNConfig(conv_channels=(8, 8, 4), fc_hidden=(32, 32))


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return BaselineCNN().eval()


def test_parameter_count_is_the_papers(cnn):
    """35.4M in the paper: 'same' padding, no pooling (see capsules/nn/baseline.py)."""
    assert count_parameters(cnn) == 35_445_522
    assert count_parameters(cnn.convs) == 6_656 + 1_638_656 + 819_328
    assert count_parameters(cnn.hidden[0]) == 128 * 28 * 28 * 328 + 328
    assert count_parameters(cnn.hidden[1]) == 328 * 192 + 192
    assert count_parameters(cnn.classifier) == 192 * 10 + 10
    assert [c.kernel_size for c in cnn.convs] == [(5, 5)] * 3 and [c.stride for c in cnn.convs] == [(1, 1)] * 3


def test_shapes_probabilities_and_prediction(cnn):
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        out = cnn(x)
    assert out.logits.shape == (3, 10) and out.logits.dtype == torch.float32
    assert out.prediction.shape == (3,) and out.prediction.dtype == torch.int64
    torch.testing.assert_close(out.probabilities.sum(-1), torch.ones(3))
    assert torch.equal(out.prediction, out.probabilities.argmax(-1))
    x[1] = 0  # a blank image changes only its own row
    with torch.no_grad():
        other = cnn(x)
    assert torch.equal(other.logits[[0, 2]], out.logits[[0, 2]]) and not torch.equal(other.logits[1], out.logits[1])


@pytest.mark.parametrize("batch", [0, 1, 5])
def test_any_batch_size(batch):
    torch.manual_seed(0)
    model = BaselineCNN(SMALL).eval()
    out = model(torch.rand(batch, 1, 28, 28))
    assert out.logits.shape == (batch, 10) and out.prediction.shape == (batch,)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model = BaselineCNN(SMALL)
    x = torch.rand(4, 1, 28, 28)
    model.train()
    assert not torch.equal(model(x).logits, model(x).logits)
    model.eval()
    assert torch.equal(model(x).logits, model(x).logits)
    assert model.dropout.p == 0.5


def test_bad_inputs_are_refused_clearly():
    model = BaselineCNN(SMALL).eval()
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(2, 28, 28))
    with pytest.raises(TypeError, match="float"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    x = torch.rand(2, 1, 28, 28)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(x)


def test_config_round_trip_and_refusals():
    assert BaselineCNNConfig.from_dict(SMALL.to_dict()) == SMALL
    assert BaselineCNNConfig().to_dict()["conv_channels"] == [256, 256, 128]
    with pytest.raises(ValueError, match="unknown baseline CNN config keys: pooling"):
        BaselineCNNConfig.from_dict({**SMALL.to_dict(), "pooling": 2})
    with pytest.raises(ValueError, match="odd"):
        BaselineCNNConfig(conv_kernel=4)
    with pytest.raises(ValueError, match="dropout"):
        BaselineCNNConfig(dropout=1.0)


def test_metadata_and_checkpoint_path_from_construction():
    model = BaselineCNN(SMALL)
    assert model.metadata == {} and model.checkpoint_path is None and model.device.type == "cpu"


def test_the_loss_is_cross_entropy_and_trains():
    torch.manual_seed(0)
    model = BaselineCNN(dataclasses.replace(SMALL, dropout=0.1))
    y = torch.arange(16) % 10
    x = 0.2 * torch.rand(16, 1, 28, 28)
    x[torch.arange(16), 0, 2 * y + 4] = 1.0  # class k: a bright row at 2k + 4
    model.eval()  # no dropout: the loss is the plain cross-entropy of the logits
    out = model(x, y)
    loss = model.loss(out, x, y)
    assert torch.equal(loss, F.cross_entropy(model(x).logits, y)) and out.logits.shape == (16, 10)
    first = float(loss.detach())
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(15):
        loss = model.loss(model(x, y), x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert float(model.loss(model(x, y), x, y)) < 0.5 * first


def test_the_loss_under_bf16_autocast_is_float32():
    torch.manual_seed(0)
    model = BaselineCNN(SMALL).train()
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, y)
        loss = model.loss(out, x, y)
    assert loss.dtype == torch.float32 and out.logits.dtype == torch.float32
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_one_training_objective_serves_every_kind():
    """The loop's objective: no case per kind, options from LOSS_OPTIONS."""
    from capsules import CapsNet, CapsNetConfig
    from capsules.train import model_objective

    options = {"reconstruction_weight": 0.0}
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([7, 2])
    assert BaselineCNN.LOSS_OPTIONS == () and CapsNet.LOSS_OPTIONS == ("reconstruction_weight",)
    for model in (BaselineCNN(SMALL), CapsNet(CapsNetConfig(routing_iterations=1))):
        model.train()
        kwargs = {k: options[k] for k in model.LOSS_OPTIONS}
        torch.manual_seed(0)
        loss, correct = model_objective(kwargs, "fp32")(model, (x, y))
        loss.backward()
        torch.manual_seed(0)  # the same dropout
        out = model(x, y)
        assert loss.shape == () and out.prediction.shape == (2,) and 0 <= int(correct) <= 2
        assert torch.equal(loss, model.loss(out, x, y, **kwargs))
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
