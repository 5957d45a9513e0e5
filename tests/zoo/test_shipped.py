"""capsules.zoo.shipped: the shipped models listed from their JSONs, their errors with intervals."""

from __future__ import annotations

import json

import pytest

from capsules import zoo
from capsules.checkpoint import SHIPPED


def by_name(models):
    return {m.name: m for m in models}


def test_listing_reads_each_models_json(folder):
    models = zoo.list_shipped(folder)
    assert [m.name for m in models] == ["capsnet-mnist", "capsnet-mnist-r1", "capsnet-mnist-r3-norecon",
                                        "capsnet-multimnist", "cnn-mnist"]  # by name; no JSON, no model kind: left out
    m = by_name(models)
    main, r1, norecon, cnn, multi = (m[k] for k in ("capsnet-mnist", "capsnet-mnist-r1", "capsnet-mnist-r3-norecon",
                                                    "cnn-mnist", "capsnet-multimnist"))
    assert (main.kind, main.dataset, main.iterations, main.reconstruction_weight, main.epochs) == \
        ("capsnet", "mnist", 3, 0.0005, 29)
    assert (main.correct, main.total, main.accuracy, main.weights_dtype) == (9956, 10000, 99.56, "fp32")
    assert main.path == folder / "capsnet-mnist.safetensors" and main.hardware == "CPU: test, 2 threads"
    assert (r1.iterations, r1.reconstruction, r1.weights_dtype) == (1, True, "fp16")
    assert (norecon.iterations, norecon.reconstruction_weight, norecon.reconstruction) == (3, 0.0, False)
    assert (cnn.kind, cnn.iterations, cnn.reconstruction_weight, cnn.reconstruction) == ("cnn", None, None, None)
    assert (multi.kind, multi.dataset) == ("capsnet", "multimnist")
    assert main.recipe == "r = 3, with reconstruction" and norecon.recipe == "r = 3, no reconstruction"
    assert cnn.recipe == "baseline CNN"
    assert r1.label == "capsnet-mnist-r1 · r = 1, with reconstruction, 10 epochs, 99.46%"
    assert r1.short_label == "r1 + recon · 10 ep · 99.46%" and cnn.short_label.startswith("CNN · ")
    assert norecon.short_label.startswith("r3 no recon · ")


def test_listing_follows_the_environment_and_tolerates_an_empty_folder(folder, tmp_path_factory, monkeypatch):
    monkeypatch.setenv(zoo.CHECKPOINT_DIR, str(folder))
    assert zoo.checkpoints_dir() == folder and len(zoo.list_shipped()) == 5
    monkeypatch.delenv(zoo.CHECKPOINT_DIR)
    assert zoo.checkpoints_dir() == SHIPPED.parent
    assert zoo.list_shipped(tmp_path_factory.mktemp("empty")) == []


def test_iterations_fall_back_to_the_config_and_unrecorded_figures_are_none(tmp_path):
    path = tmp_path / "capsnet-mnist-old.safetensors"
    path.write_bytes(b"")
    path.with_suffix(".json").write_text(json.dumps({"format": "capsules.capsnet", "config": {"routing_iterations": 2}}))
    (m,) = zoo.list_shipped(tmp_path)
    assert (m.iterations, m.reconstruction_weight, m.reconstruction, m.epochs) == (2, None, None, None)
    assert m.error is None and m.error_interval is None and m.weights_dtype == "fp32"
    assert m.recipe == "r = 2, reconstruction not recorded"


def test_a_warm_start_from_another_data_set_counts_only_this_data_sets_runs():
    """A MultiMNIST CapsNet warm-started from the MNIST one: its epochs and time are its own runs'
    (the MNIST epochs are not MultiMNIST epochs), and its recipe names the weights it started from;
    a further MultiMNIST run from it counts both MultiMNIST runs."""
    mnist = {"path": "checkpoints/capsnet-mnist.safetensors", "epoch": 11, "train_seconds": 8000.0,
             "train_config": {"dataset": "mnist"}, "init_from": {"epoch": 29, "train_seconds": 14000.0}}
    first = {"format": "capsules.capsnet", "epoch": 4, "train_seconds": 5000.0, "hardware": "CPU: X",
             "train_config": {"dataset": "multimnist", "iterations": 3, "reconstruction_weight": 5e-4},
             "init_from": mnist}
    m = zoo.Shipped.of("capsnet-multimnist.safetensors", first)
    assert (m.dataset, m.epochs, m.epochs_text, m.train_seconds, len(m.stages)) == ("multimnist", 4, "4", 5000.0, 1)
    assert m.pretrained == "capsnet-mnist" and m.recipe == "r = 3, with reconstruction, from capsnet-mnist's weights"
    further = {**first, "epoch": 2, "train_seconds": 2000.0,
               "init_from": {"path": "checkpoints/capsnet-multimnist.safetensors", **first}}
    m = zoo.Shipped.of("capsnet-multimnist.safetensors", further)
    assert (m.epochs_text, m.train_seconds, m.pretrained) == ("6 (4 + 2)", 7000.0, "capsnet-mnist")
    plain = zoo.Shipped.of("capsnet-mnist.safetensors", {**mnist, "format": "capsules.capsnet"})
    assert plain.pretrained is None and plain.epochs_text == "40 (29 + 11)"


def test_error_and_its_wilson_interval(folder):
    m = by_name(zoo.list_shipped(folder))["capsnet-mnist"]
    assert m.errors == 44 and m.error == pytest.approx(0.44)
    lo, hi = m.error_interval  # 95% Wilson score interval of 44 in 10,000, computed by hand
    assert lo == pytest.approx(0.32794, abs=1e-4) and hi == pytest.approx(0.59012, abs=1e-4)


def test_the_shipped_checkpoints_are_listed():
    m = by_name(zoo.list_shipped())
    main = m["capsnet-mnist"]
    assert (main.kind, main.dataset, main.iterations, main.reconstruction_weight) == ("capsnet", "mnist", 3, 0.0005)
    assert main.path == SHIPPED and main.correct == json.loads(SHIPPED.with_suffix(".json").read_text())["test_correct"]
    r1 = m["capsnet-mnist-r1"]
    assert (r1.kind, r1.iterations, r1.reconstruction, r1.weights_dtype, r1.epochs) == ("capsnet", 1, True, "fp16", 10)
