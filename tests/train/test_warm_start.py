"""Warm start across image sizes (capsules.train.warm_start), frozen convolutions, the validation split,
the learning-rate warm-up, the learning curve a checkpoint carries, and --init-from (a run that starts
from a checkpoint's weights, and records it)."""

import json

import pytest
import torch
import torch.nn.functional as F

from capsules import CapsNet, CapsNetConfig
from capsules.checkpoint import load_model, save_model
from capsules.data import load_mnist, to_float
from capsules.train import TrainConfig, TrainingError, learning_rate, set_frozen, train
from capsules.train.warm_start import grid_map, transfer
from tests.train.helpers import tiny_run


def test_grid_map_centres_the_source_grid_and_clamps_the_rim():
    assert grid_map(6, 10).tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 5, 5]
    assert grid_map(6, 6).tolist() == list(range(6))


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    model = CapsNet().eval()
    with torch.no_grad():  # biases too, so that nothing is left at a value the copy would hide
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


def test_a_warm_started_36x36_model_reads_a_centred_padded_digit_as_the_source_does(source):
    target = CapsNet(CapsNetConfig(image_size=36)).eval()
    record = transfer(source, target)
    assert record["from_image_size"] == 28 and record["to_image_size"] == 36 and record["rim"] == "zero"
    torch.manual_seed(1)
    x = torch.zeros(6, 1, 28, 28)
    x[:, :, 4:24, 6:22] = torch.rand(6, 1, 20, 16)  # ink where MNIST keeps it
    with torch.no_grad():
        a, b = source(x), target(F.pad(x, (4, 4, 4, 4)))
    assert torch.allclose(a.lengths, b.lengths, atol=1e-6)
    assert torch.equal(a.prediction, b.prediction)
    assert torch.allclose(b.reconstruction[:, :, 4:32, 4:32], a.reconstruction, atol=1e-6)
    # the rim pixels copy the nearest edge pixel's output
    assert torch.allclose(b.reconstruction[:, :, 0, 4:32], a.reconstruction[:, :, 0], atol=1e-6)


@pytest.mark.data
def test_the_shipped_mnist_model_warm_started_reads_padded_test_digits_as_it_does(mnist_test):
    source = load_model("checkpoints/capsnet-mnist.safetensors", "cpu").float()
    target = CapsNet(CapsNetConfig(image_size=36)).eval()
    transfer(source, target)
    x = to_float(mnist_test[0][:200])
    with torch.no_grad():
        a, b = source(x), target(F.pad(x, (4, 4, 4, 4)))
    assert torch.equal(a.prediction, b.prediction)
    assert (b.prediction == mnist_test[1][:200]).float().mean() > 0.97


def test_the_clamped_rim_copies_the_source_edge_weights(source):
    target = CapsNet(CapsNetConfig(image_size=36))
    transfer(source, target, rim="clamp")
    w_s = source.digits.weight.view(32, 6, 6, 10, 8, 16)
    w_t = target.digits.weight.view(32, 10, 10, 10, 8, 16)
    assert torch.equal(w_t[:, 2:8, 2:8], w_s)
    assert torch.equal(w_t[:, 0, 0], w_s[:, 0, 0]) and torch.equal(w_t[:, 9, 4], w_s[:, 5, 2])
    zero = CapsNet(CapsNetConfig(image_size=36))
    transfer(source, zero)
    w_z = zero.digits.weight.view(32, 10, 10, 10, 8, 16)
    assert torch.equal(w_z[:, 2:8, 2:8], w_s) and not w_z[:, :2].any() and not w_z[:, :, 8:].any()


def test_a_warm_start_refuses_other_architectures_and_sizes(source):
    with pytest.raises(ValueError, match="digit_dim"):
        transfer(source, CapsNet(CapsNetConfig(image_size=36, digit_dim=8)))
    with pytest.raises(ValueError, match="30x30"):
        transfer(source, CapsNet(CapsNetConfig(image_size=30)))
    with pytest.raises(ValueError, match="rim"):
        transfer(source, CapsNet(CapsNetConfig(image_size=36)), rim="mirror")


def test_frozen_layers_get_no_gradient_and_thaw_after_their_epochs():
    torch.manual_seed(0)
    model = CapsNet()
    cfg = TrainConfig(freeze="conv1,primary", freeze_epochs=1)
    set_frozen(model, cfg, 1)
    out = model(torch.rand(2, 1, 28, 28), torch.tensor([1, 2]))
    model.loss(out, torch.rand(2, 1, 28, 28), torch.tensor([1, 2])).backward()
    assert model.conv1.weight.grad is None and model.primary.conv.weight.grad is None
    assert out.u.grad_fn is None  # no backward pass through the convolutions at all
    assert model.digits.weight.grad is not None and model.decoder[0].weight.grad is not None
    set_frozen(model, cfg, 2)
    assert model.conv1.weight.requires_grad and model.primary.conv.weight.requires_grad
    set_frozen(model, TrainConfig(freeze="conv1"), 50)  # 0 epochs: the whole run
    assert not model.conv1.weight.requires_grad and model.primary.conv.weight.requires_grad


@pytest.mark.parametrize("options, message", [
    (dict(freeze="decoder"), "cannot be frozen"),
    (dict(freeze_epochs=2), "with --freeze"),
    (dict(model="cnn", freeze="conv1"), "CapsNet options"),
    (dict(warmup_steps=-1), "at least 0"),
])
def test_bad_training_options_are_refused_with_one_line(tmp_path, options, message):
    with pytest.raises(TrainingError, match=message):
        train(TrainConfig(out=str(tmp_path), **options))


def test_the_warm_up_ramps_the_learning_rate_linearly():
    cfg = TrainConfig(lr=1e-3, lr_decay=1.0, warmup_steps=4)
    assert [learning_rate(cfg, s, 100) for s in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])


@pytest.mark.data
@pytest.mark.slow
def test_a_multimnist_run_warm_started_frozen_and_validated(tmp_path, data_dir):
    """Validation digits come off the end of the training split; the run is scored on pairs of
    them, never on the test set, records its warm start and its learning curve."""
    source = tmp_path / "mnist.safetensors"
    torch.manual_seed(0)
    save_model(CapsNet(), source, {"epoch": 1})
    summary = train(TrainConfig(
        out=str(tmp_path / "run"), data_dir=str(data_dir), dataset="multimnist", init_from=str(source),
        freeze="conv1,primary", freeze_epochs=1, validation=100, train_subset=64, batch_size=32, epochs=2,
        precision="fp32", warmup_steps=2, lr=1e-3))
    assert summary["val_total"] == 100 and not any(k.startswith("test_") for k in summary)
    assert summary["init_from"]["warm_start"]["to_image_size"] == 36
    curve = summary["learning_curve"]
    assert [r["epoch"] for r in curve] == [1, 2] and all("val_error" in r and "lr" in r for r in curve)
    on_disk = json.loads((tmp_path / "run" / "last.json").read_text())
    assert on_disk["learning_curve"] == curve


@pytest.mark.data
def test_the_validation_digits_are_the_last_training_digits_and_never_trained_on(data_dir, tmp_path):
    from capsules.train.datasets import _mnist_split

    train_x, train_y = load_mnist("train", data_dir)
    cfg = TrainConfig(data_dir=str(data_dir), validation=5000)
    x, y, (vx, vy), _ = _mnist_split(cfg, 10_000)
    assert x.shape[0] == 55_000 and torch.equal(vx, train_x[-5000:]) and torch.equal(vy, train_y[-5000:])
    x, _, _, _ = _mnist_split(TrainConfig(data_dir=str(data_dir), validation=5000, train_subset=25_600), 10_000)
    assert torch.equal(x, train_x[:25_600])
    with pytest.raises(TrainingError, match="--validation 60000"):
        _mnist_split(TrainConfig(data_dir=str(data_dir), validation=60_000), 10_000)


@pytest.mark.data
def test_a_validated_run_keeps_its_best_epoch_and_a_test_scored_run_has_none(data_dir, tmp_path, monkeypatch):
    """``best`` is rewritten at an epoch whose validation accuracy beats every earlier one (a tie
    keeps the earlier epoch); the run's ``last`` goes on to the last epoch."""
    from capsules.evaluate import EvalResult
    from capsules.train import datasets

    scripted = iter([5, 7, 7])  # validation digits right after each of the 3 epochs

    def evaluate(model, images, labels, **kwargs):
        return EvalResult(correct=next(scripted), total=len(labels), loss=0.0, seconds=0.0)

    monkeypatch.setattr(datasets, "evaluate", evaluate)
    tiny_run(tmp_path, data_dir, "val", validation=10, epochs=3, lr=0.0)
    best = json.loads((tmp_path / "val" / "best.json").read_text())
    assert (best["epoch"], best["val_correct"]) == (2, 7)
    assert [r["val_correct"] for r in best["learning_curve"]] == [5, 7]
    assert json.loads((tmp_path / "val" / "last.json").read_text())["epoch"] == 3
    assert load_model(tmp_path / "val" / "best.safetensors", "cpu").metadata["sha256"] == best["sha256"]

    scripted = iter([5])
    tiny_run(tmp_path, data_dir, "test", epochs=1, lr=0.0)
    assert not (tmp_path / "test" / "best.safetensors").exists(), "without a validation split no epoch is chosen"


@pytest.mark.slow
def test_init_from_starts_from_the_checkpoint_and_records_it(tmp_path, data_dir):
    torch.manual_seed(1)  # not the run's seed: other weights than its own initialisation
    source = CapsNet()
    src = tmp_path / "source.safetensors"
    older = {"path": "first.safetensors", "sha256": "ab" * 32, "epoch": 3, "train_seconds": 10.0}
    info = save_model(source, src, {"epoch": 7, "test_accuracy": 12.5, "train_seconds": 60.0, "hardware": "CPU: X",
                                    "init_from": older, "half_precision_check": {"rule": "not a source key"}})
    # lr 0: Adam leaves the weights where they start, and the moving average with them
    summary = tiny_run(tmp_path, data_dir, "run", init_from=str(src), lr=0.0, ema_decay=0.5)
    # the whole history of the starting weights, the start of theirs nested: not the rest of their JSON
    assert summary["init_from"] == {"path": str(src), "sha256": info["sha256"], "epoch": 7, "test_accuracy": 12.5,
                                    "train_seconds": 60.0, "hardware": "CPU: X", "init_from": older}
    for name in ("last", "last-ema"):
        trained = load_model(tmp_path / "run" / f"{name}.safetensors", "cpu")
        for (k, a), b in zip(trained.state_dict().items(), source.state_dict().values()):
            assert torch.equal(a, b), (name, k)
    assert json.loads((tmp_path / "run" / "last.json").read_text())["train_config"]["init_from"] == str(src)


@pytest.mark.slow
def test_init_from_refuses_a_checkpoint_of_another_model(tmp_path, data_dir):
    save_model(CapsNet(CapsNetConfig(routing_iterations=1)), tmp_path / "r1.safetensors")
    with pytest.raises(TrainingError, match=r"routing_iterations 1 \(this run: 3\)"):
        tiny_run(tmp_path, data_dir, "a", init_from=str(tmp_path / "r1.safetensors"))
    save_model(CapsNet(CapsNetConfig(image_size=36)), tmp_path / "multi.safetensors")
    with pytest.raises(TrainingError, match=r"a warm start goes from 36x36 to a larger image .* not to 28x28"):
        tiny_run(tmp_path, data_dir, "b", init_from=str(tmp_path / "multi.safetensors"))
    assert not (tmp_path / "a" / "last.safetensors").exists() and not (tmp_path / "b" / "last.safetensors").exists()
    with pytest.raises(TrainingError, match="--init-from starts a new run"):
        train(TrainConfig(out=str(tmp_path / "a"), init_from=str(tmp_path / "r1.safetensors"), resume=True),
              given={"out", "init_from", "resume"})
