"""The shipped checkpoints: self-describing, and each scores what its JSON says on its test set."""

import hashlib
import json

import pytest
import torch

from capsules import CapsNet, load_model
from capsules.checkpoint import MAX_SHIPPED_BYTES, SHIPPED, read_tensors, sidecar
from capsules.data import load_mnist, load_multimnist_test
from capsules.evaluate import evaluate, evaluate_multimnist
from capsules.zoo import dataset_of

ROOT = SHIPPED.parents[1]

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
    """Stored as its JSON says (``weights_dtype``; float32 in a file written before half precision,
    which names none) and by the shipping rule when its JSON records the check (float16 if and
    only if it gets as many test images right); it loads as a float32 CapsNet, with its path and
    JSON attached."""
    tensors, meta, _ = read_tensors(SHIPPED)
    info = json.loads(sidecar(SHIPPED).read_text())
    dtype = meta.get("weights_dtype", "fp32")
    assert meta["format"] == "capsules.capsnet" and info.get("weights_dtype", "fp32") == dtype
    assert {t.dtype for t in tensors.values()} == {{"fp32": torch.float32, "fp16": torch.float16}[dtype]}
    if "half_precision_check" in info:
        check = info["half_precision_check"]
        assert check["weights_dtype"] == dtype and check["total"] == info["test_total"] == 10000
        assert check[f"{dtype}_correct"] == info["test_correct"]
        assert (check["fp16_correct"] == check["fp32_correct"]) == (dtype == "fp16")
    model = load_model(SHIPPED, "cpu")
    assert type(model) is CapsNet and model.checkpoint_path == SHIPPED
    assert {t.dtype for t in model.state_dict().values()} == {torch.float32}
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


# Every other shipped model (the model zoo of Table 1, the MultiMNIST CapsNet): self-describing,
# stored as its JSON's precision check says, and re-scored in full on its own data set's test set.
ZOO = sorted(p for p in SHIPPED.parent.glob("*.safetensors") if p != SHIPPED)


@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_zoo_checkpoint_metadata(path):
    info = json.loads(sidecar(path).read_text())
    missing = [k for k in REQUIRED + ("weights_dtype", "half_precision_check") if k not in info]
    assert not missing, missing
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    held_out = int((info.get("train_config") or {}).get("validation", 0))  # digits held out for validation
    assert info["train_images"] == 60000 - held_out and info["epoch"] == info["epochs"], "the last epoch of a full run"
    check, dtype = info["half_precision_check"], info["weights_dtype"]
    assert check["weights_dtype"] == dtype == read_tensors(path)[1]["weights_dtype"]
    assert check["dataset"] == dataset_of(info) and check["total"] == info["test_total"]
    shipped_correct = {"fp16": check["fp16_correct"], "fp32": check["fp32_correct"],
                       "int8": check.get("int8_correct")}[dtype]
    assert shipped_correct == info["test_correct"]
    weights = sum(t.numel() for t in load_model(path, "cpu").state_dict().values())
    if shipped_correct != check["fp32_correct"]:  # only for a model too large in fp32, within 1 in 10,000
        assert dtype != "fp32" and 4 * weights > MAX_SHIPPED_BYTES
        assert abs(shipped_correct - check["fp32_correct"]) <= max(1, check["total"] // 10000)
    if dtype == "fp32":  # only when fp16 would change a test result
        assert check["fp16_correct"] != check["fp32_correct"]
    if dtype == "int8":  # only for a model too large in fp16
        assert 2 * weights > MAX_SHIPPED_BYTES
    assert path.stat().st_size < MAX_SHIPPED_BYTES


@pytest.mark.slow
@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_zoo_checkpoint_scores_what_its_json_records(path, data_dir):
    model = load_model(path, device="cpu")
    if dataset_of(model.metadata) == "multimnist":
        result = evaluate_multimnist(model, load_multimnist_test(data_dir))
        assert result.total == model.metadata["test_total"] == 10000
        assert result.errors == model.metadata["test_errors"]
        return
    images, labels = load_mnist("test", data_dir)
    options = {k: model.metadata["train_config"][k] for k in model.LOSS_OPTIONS
               if k in model.metadata["train_config"]}
    result = evaluate(model, images, labels, loss_options=options)
    assert result.total == 10000
    assert result.correct == model.metadata["test_correct"]


def test_no_shipped_file_names_a_folder_of_the_machine_that_made_it():
    import re

    for path in sorted((ROOT / "checkpoints").glob("*.json")):
        text = path.read_text()
        found = re.findall(r"(?<![\w.~/-])/(?:root|home|work|tmp|Users)/[^\s\"]*", text)
        assert not found, (path.name, found[:3])


def test_the_dashboard_listens_on_this_machine_only():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] in ("localhost", "127.0.0.1")
