"""The shipped checkpoint: self-describing, and it scores what its JSON says on the MNIST test set."""

import hashlib
import json

import pytest

import torch

from capsules import CapsNet, load_model
from capsules.checkpoint import SHIPPED, read_tensors, sidecar
from capsules.evaluate import evaluate

REQUIRED = ("config", "test_accuracy", "test_correct", "test_total", "epoch", "epochs", "train_seconds",
            "hardware", "command", "date", "sha256", "train_config", "precision")


def test_shipped_checkpoint_metadata():
    assert SHIPPED.is_file(), f"no shipped checkpoint at {SHIPPED}"
    info = json.loads(sidecar(SHIPPED).read_text())
    missing = [k for k in REQUIRED if k not in info]
    assert not missing, missing
    assert info["sha256"] == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    assert info["command"].startswith(("python -m capsules.train", "torchrun"))
    assert info["train_images"] == 60000, "shipped weights are trained on the full training set"
    assert SHIPPED.stat().st_size < 40 * 2**20


@pytest.mark.slow
def test_shipped_checkpoint_scores_what_its_json_records(mnist_test):
    model = load_model(device="cpu")
    images, labels = mnist_test
    result = evaluate(model, images, labels)
    assert result.total == 10000
    assert result.accuracy == pytest.approx(model.metadata["test_accuracy"], abs=0.01)


def test_shipped_checkpoint_loads_as_a_capsnet():
    """Written before kinds and half precision: its header names the CapsNet format and no
    weights_dtype, so float32; it loads as before, with its path and JSON attached."""
    tensors, meta, _ = read_tensors(SHIPPED)
    assert meta["format"] == "capsules.capsnet" and "weights_dtype" not in meta
    assert {t.dtype for t in tensors.values()} == {torch.float32}
    model = load_model(SHIPPED, "cpu")
    assert type(model) is CapsNet and model.checkpoint_path == SHIPPED
    assert model.metadata["sha256"] == json.loads(sidecar(SHIPPED).read_text())["sha256"]
    out = model(torch.zeros(2, 1, 28, 28))
    assert out.prediction.shape == (2,)


@pytest.mark.slow
def test_shipped_checkpoint_in_fp16_scores_the_same(mnist_test, tmp_path):
    """Half-precision storage (fp16, chosen over bf16: 10 mantissa bits against 7) keeps the
    shipped model's test accuracy: what lets checkpoints/ store fp16 weights."""
    from capsules import save_model

    model = load_model(device="cpu")
    path = tmp_path / "fp16.safetensors"
    save_model(model, path, dict(model.metadata), weights_dtype="fp16")
    images, labels = mnist_test
    result = evaluate(load_model(path, "cpu"), images, labels)
    assert result.accuracy == pytest.approx(model.metadata["test_accuracy"], abs=0.01)


# Every other shipped model (the model zoo of Table 1): self-describing, and re-scored in full.
ZOO = sorted(p for p in SHIPPED.parent.glob("*.safetensors") if p != SHIPPED)


@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_zoo_checkpoint_metadata(path):
    info = json.loads(sidecar(path).read_text())
    missing = [k for k in REQUIRED + ("weights_dtype", "half_precision_check") if k not in info]
    assert not missing, missing
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["train_images"] == 60000 and info["epoch"] == info["epochs"], "the last epoch of a full run"
    check = info["half_precision_check"]
    assert info["weights_dtype"] == "fp16" and check["fp16_correct"] == check["fp32_correct"] == info["test_correct"]
    _, meta, _ = read_tensors(path)
    assert meta["weights_dtype"] == "fp16"
    assert path.stat().st_size < 36 * 2**20


@pytest.mark.slow
@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_zoo_checkpoint_scores_what_its_json_records(path, mnist_test):
    model = load_model(path, device="cpu")
    images, labels = mnist_test
    options = {k: model.metadata["train_config"][k] for k in model.LOSS_OPTIONS
               if k in model.metadata["train_config"]}
    result = evaluate(model, images, labels, loss_options=options)
    assert result.total == 10000
    assert result.correct == model.metadata["test_correct"]
