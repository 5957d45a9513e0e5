"""python -m capsules.ship: a run's weights shipped in the smallest storage that scores the same, with
the runs that trained them."""

import pytest
import torch

from capsules import BaselineCNN, BaselineCNNConfig, CapsNet, CapsNetConfig, load_model
from capsules.checkpoint import read_tensors, save_model
from tests.train.helpers import SMALL_CNN


def ship_module(monkeypatch, tmp_path):
    from capsules import ship

    monkeypatch.setattr(ship, "CHECKPOINTS", tmp_path / "checkpoints")
    return ship


def constant_cnn(bias_gap: float) -> BaselineCNN:
    """A small CNN that predicts class 1 for every image by a margin of ``bias_gap`` over class 0:
    its classifier ignores the features (zero weights); biases 1 for class 0, 1 + gap for class 1,
    0 for the others. A gap of 1e-5 is lost when rounded to fp16 (spacing 1/1024 near 1): the
    rounded model ties, and argmax takes the first, class 0."""
    torch.manual_seed(0)
    model = BaselineCNN(SMALL_CNN)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[0] = 1.0
        model.classifier.bias[1] = 1.0 + bias_gap
    return model


@pytest.mark.data
def test_ship_stores_fp16_exactly_when_the_full_test_set_scores_the_same(tmp_path, monkeypatch, capsys, data_dir,
                                                                         mnist_test):
    ship = ship_module(monkeypatch, tmp_path)
    _, labels = mnist_test
    ones, zeros = int((labels == 1).sum()), int((labels == 0).sum())
    assert ones != zeros  # 1135 and 980: the two models below score differently in fp16
    meta = {"test_accuracy": 50.0, "test_correct": 5, "test_total": 10, "epoch": 3, "sha256": "recorded",
            "train_config": {"model": "cnn", "dataset": "mnist"}}
    info = save_model(constant_cnn(1e-2), tmp_path / "wide" / "last.safetensors", meta)
    save_model(constant_cnn(1e-5), tmp_path / "narrow" / "last.safetensors", meta)
    args = ["--data-dir", str(data_dir), "--device", "cpu"]

    assert ship.main([str(tmp_path / "wide" / "last.safetensors"), *args]) == 0
    dest = tmp_path / "checkpoints" / "cnn-mnist.safetensors"
    assert read_tensors(dest)[1]["weights_dtype"] == "fp16"
    shipped = load_model(dest, "cpu")
    assert type(shipped) is BaselineCNN and shipped.metadata["weights_dtype"] == "fp16"
    check = shipped.metadata["half_precision_check"]
    assert (check["total"], check["fp32_correct"], check["fp16_correct"]) == (10000, ones, ones)
    assert check["weights_dtype"] == "fp16"
    # the JSON's test figures are the shipped weights' on the full test set, not the run's
    assert (shipped.metadata["test_correct"], shipped.metadata["test_total"]) == (ones, 10000)
    assert shipped.metadata["source_sha256"] == info["sha256"] != shipped.metadata["sha256"]
    assert f"weights fp16 ({ones} right in fp16, {ones} in fp32, of 10000)" in capsys.readouterr().out
    # an MNIST model ships with its experiments (a CNN: the robustness curves), for its own weights
    from capsules.experiments import load_results, results_path

    results = load_results(dest)
    assert results is not None and results["kind"] == "capsules.baseline-cnn" and results["test_images"] == 10000

    assert ship.main([str(tmp_path / "narrow" / "last.safetensors"), *args, "--name", "cnn-mnist-narrow",
                      "--no-experiments"]) == 0
    dest = tmp_path / "checkpoints" / "cnn-mnist-narrow.safetensors"
    assert not results_path(dest).exists()
    assert read_tensors(dest)[1]["weights_dtype"] == "fp32"
    shipped = load_model(dest, "cpu")
    check = shipped.metadata["half_precision_check"]
    assert (check["fp32_correct"], check["fp16_correct"], check["weights_dtype"]) == (ones, zeros, "fp32")
    assert shipped.metadata["weights_dtype"] == "fp32" and shipped.metadata["test_correct"] == ones
    assert torch.equal(shipped.classifier.bias, constant_cnn(1e-5).classifier.bias)


def int8_sensitive_cnn(small_weight: float) -> BaselineCNN:
    """A small CNN that predicts class 1 for every image in float32 and float16, by a margin that
    blockwise int8 keeps only when ``small_weight`` is at least half a quantization step.

    The last hidden layer outputs the constant x = (0, 1, ..., 1) (zero weights, ReLU of biases
    -1, 1, ..., 1). Class 1's classifier row (one int8 block of 128) is 1 on x's zero and
    ``small_weight`` on the 127 ones, with bias 1, so its logit is 1 + 127 * small_weight; class
    0's is its bias, 1.01. The block's int8 step is 1/127: 2e-4 rounds to 0 (class 1 falls to 1.0, below
    class 0), 0.01 survives."""
    torch.manual_seed(0)
    model = BaselineCNN(BaselineCNNConfig(conv_channels=(4, 4, 2), fc_hidden=(8, 128)))
    with torch.no_grad():
        last = model.hidden[-1]
        last.weight.zero_()
        last.bias.fill_(1.0)
        last.bias[0] = -1.0
        model.classifier.weight.zero_()
        model.classifier.weight[1, 0] = 1.0
        model.classifier.weight[1, 1:] = small_weight
        model.classifier.bias.zero_()
        model.classifier.bias[0] = 1.01
        model.classifier.bias[1] = 1.0
    return model


@pytest.mark.data
def test_ship_stores_a_model_too_large_for_fp16_in_int8_only_when_it_scores_the_same(tmp_path, monkeypatch, capsys,
                                                                                     data_dir, mnist_test):
    ship = ship_module(monkeypatch, tmp_path)
    _, labels = mnist_test
    ones, zeros = int((labels == 1).sum()), int((labels == 0).sum())
    meta = {"test_accuracy": 50.0, "epoch": 3, "train_config": {"model": "cnn", "dataset": "mnist"}}
    save_model(int8_sensitive_cnn(1e-2), tmp_path / "coarse" / "last.safetensors", meta)
    save_model(int8_sensitive_cnn(2e-4), tmp_path / "fine" / "last.safetensors", meta)
    args = ["--data-dir", str(data_dir), "--device", "cpu", "--no-experiments"]
    monkeypatch.setattr(ship, "MAX_SHIPPED_BYTES", 20_000)  # the small CNN: 31 KB in fp16, about 16 KB in int8

    assert ship.main([str(tmp_path / "coarse" / "last.safetensors"), *args]) == 0
    dest = tmp_path / "checkpoints" / "cnn-mnist.safetensors"
    assert read_tensors(dest)[1]["weights_dtype"] == "int8" and dest.stat().st_size <= 20_000
    shipped = load_model(dest, "cpu")
    check = shipped.metadata["half_precision_check"]
    assert (check["fp32_correct"], check["fp16_correct"], check["int8_correct"]) == (ones, ones, ones)
    assert check["weights_dtype"] == shipped.metadata["weights_dtype"] == "int8"
    assert shipped.metadata["test_correct"] == ones
    assert f"weights int8 ({ones} right in fp16, {ones} in int8, {ones} in fp32, of 10000)" in capsys.readouterr().out

    assert ship.main([str(tmp_path / "fine" / "last.safetensors"), *args, "--name", "cnn-mnist-fine"]) == 1
    err = capsys.readouterr().err
    assert (f"no smaller storage keeps its test count ({ones} of 10000 right in fp32; fp16 weighs 0 MiB; "
            f"int8 gets {zeros} right): not shipped") in err
    assert not (tmp_path / "checkpoints" / "cnn-mnist-fine.safetensors").exists()


def test_storage_of_a_model_too_large_for_fp32_is_fp16_then_int8_within_1_in_10000(tmp_path, monkeypatch):
    """A fixed order, never a choice by score: fp16 when it fits and is within 1 of 10,000 test
    examples of fp32 (here 6274 against 6275), else int8 on the same terms; int8 is evaluated only
    when fp16 does not do."""
    ship = ship_module(monkeypatch, tmp_path)
    limit = ship.MAX_SHIPPED_BYTES
    fits, big = {"fp16": limit // 2, "int8": limit // 4}, {"fp16": 2 * limit, "int8": limit // 2}
    asked = []

    def counts(**correct):
        asked.clear()
        return lambda storage: asked.append(storage) or correct[storage]

    assert ship.storage_rule("m", 6275, 10000, fits, counts(fp16=6274, int8=0)) == "fp16" and asked == ["fp16"]
    assert ship.storage_rule("m", 6275, 10000, fits, counts(fp16=6273, int8=6276)) == "int8"
    assert asked == ["fp16", "int8"]
    assert ship.storage_rule("m", 6275, 10000, big, counts(fp16=6275, int8=6275)) == "int8" and asked == ["int8"]
    assert ship.storage_rule("m", 9947, 20000, fits, counts(fp16=9949, int8=0)) == "fp16"  # 2 of 20,000
    with pytest.raises(ship.CheckpointError, match=r"\(6275 of 10000 right in fp32; fp16 gets 6277 right; "
                                                   r"int8 gets 6273 right\): not shipped"):
        ship.storage_rule("m", 6275, 10000, fits, counts(fp16=6277, int8=6273))


def test_ship_checkpoint_ships_last_its_moving_average_or_a_validated_best_and_refuses_anything_else(
        tmp_path, monkeypatch, capsys):
    ship = ship_module(monkeypatch, tmp_path)
    meta = {"test_accuracy": 99.0, "epoch": 3, "train_config": {"dataset": "mnist"}}
    for name in ("last", "last-ema", "best", "epoch3"):
        save_model(constant_cnn(1e-2), tmp_path / "run" / f"{name}.safetensors", meta)
    assert ship.main([str(tmp_path / "run" / "epoch3.safetensors")]) == 1
    assert "only last.safetensors, last-ema.safetensors or best.safetensors" in capsys.readouterr().err
    assert ship.main([str(tmp_path / "run" / "best.safetensors")]) == 1  # scored on test: picked on test
    assert "was not chosen on a validation split (its JSON has no val_accuracy)" in capsys.readouterr().err
    save_model(constant_cnn(1e-2), tmp_path / "val" / "best.safetensors", {**meta, "val_accuracy": 99.0})
    assert ship.main([str(tmp_path / "val" / "best.safetensors"), "--name", "cnn"]) == 1  # past the check
    assert "a shipped name is cnn-mnist or cnn-mnist-<variant>" in capsys.readouterr().err
    for name in ("capsnet-mnist", "cnn-multimnist", "cnn-mnist-", "cnn-mnist-R3", "cnn-mnist/x", "cnn"):
        assert ship.main([str(tmp_path / "run" / "last-ema.safetensors"), "--name", name]) == 1
        assert "a shipped name is cnn-mnist or cnn-mnist-<variant>" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()
    # the default name: the model kind from the file, the data set from its JSON
    capsnet = CapsNet(CapsNetConfig(routing_iterations=1))
    capsnet.metadata = {"train_config": {"dataset": "multimnist"}}
    assert ship.target(capsnet, None).name == "capsnet-multimnist.safetensors"
    assert ship.target(capsnet, "capsnet-multimnist-r1-norecon").name == "capsnet-multimnist-r1-norecon.safetensors"


def test_a_model_trained_from_another_counts_the_epochs_and_time_of_both_runs(tmp_path):
    """A run started from another run's weights on the same data set (--init-from) records the
    starting checkpoint (``init_from``, capsules.train.SOURCE_KEYS): the shipped JSON, Table 1 and
    the picker count the epochs and the time of both runs, not of the last one alone."""
    from capsules.zoo import Shipped

    parent = tmp_path / "cnn-mnist.safetensors"
    recorded = {"path": "checkpoints/cnn-mnist.safetensors", "sha256": "0" * 64, "epoch": 29, "steps": 13572,
                "train_seconds": 14132.3, "hardware": "CPU: AMD EPYC, 2 threads", "precision": "bf16",
                "train_config": {"model": "cnn", "lr": 1e-3}}
    info = {"epoch": 15, "train_seconds": 8000.0, "hardware": "CPU: Intel Xeon, 2 threads", "init_from": recorded,
            "format": "capsules.baseline-cnn", "train_config": {"model": "cnn", "lr": 1e-4}}
    m = Shipped.of(parent, info)
    assert (m.epochs, m.train_seconds, m.epochs_text) == (44, 22132.3, "44 (29 + 15)")
    assert m.training_text == "3.9 h on CPU: AMD EPYC, 2 threads, then 2.2 h on CPU: Intel Xeon, 2 threads"
    untimed = Shipped.of(parent, {**info, "init_from": {k: v for k, v in recorded.items()
                                                          if k not in ("train_seconds", "hardware")}})
    assert untimed.epochs_text == "44 (29 + 15)"  # the time of the first run unknown:
    assert untimed.train_seconds is None and "time not recorded, then 2.2 h" in untimed.training_text
    single = Shipped.of(parent, {"epoch": 10, "train_seconds": 3600.0, "hardware": "CPU: X",
                                 "format": "capsules.baseline-cnn"})
    assert (single.epochs_text, single.training_text, len(single.stages)) == ("10", "1.0 h on CPU: X", 1)


@pytest.mark.data
def test_ship_scores_a_multimnist_capsnet_on_the_two_digit_test_set(tmp_path, monkeypatch, data_dir):
    from capsules.data import load_multimnist_test
    from capsules.evaluate import evaluate_multimnist

    ship = ship_module(monkeypatch, tmp_path)
    monkeypatch.setattr(ship, "load_multimnist_test", lambda d: load_multimnist_test(d)[:20])  # not 10,000
    torch.manual_seed(0)
    model = CapsNet(CapsNetConfig(image_size=36, routing_iterations=1))
    save_model(model, tmp_path / "run" / "last.safetensors", {"epoch": 1, "train_config": {"dataset": "multimnist"}})
    dest = ship.ship(tmp_path / "run" / "last.safetensors", data_dir=str(data_dir), device="cpu")
    assert dest.name == "capsnet-multimnist.safetensors"
    shipped = load_model(dest, "cpu")
    errors = evaluate_multimnist(model, load_multimnist_test(data_dir)[:20]).errors
    assert shipped.metadata["test_errors"] == errors and shipped.metadata["half_precision_check"]["total"] == 20
    assert shipped.metadata["half_precision_check"]["fp32_correct"] == 20 - errors
