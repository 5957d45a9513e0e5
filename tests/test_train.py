"""Training: the step, augmentation, schedule, the loop's resume, and its error messages."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from capsules import BaselineCNN, BaselineCNNConfig, CapsNet, CapsNetConfig
from capsules.checkpoint import read_tensors, save_model
import capsules.train.loop as train_module
from capsules.data import DatasetError, load_mnist, shift_augment, to_float
from capsules.train.datasets import _shard
from capsules.train import (TrainConfig, TrainingError, WeightAverage, epoch_batches, learning_rate, eval_size,
                            train, train_step)

ROOT = Path(__file__).resolve().parents[1]


def test_shift_augment_shifts_each_image_by_at_most_two_pixels():
    torch.manual_seed(0)
    x = torch.zeros(200, 1, 28, 28)
    x[:, :, 10:18, 9:19] = torch.rand(200, 1, 8, 10)  # content away from the border
    g = torch.Generator().manual_seed(1)
    y = shift_augment(x, 2, g)
    assert y.shape == x.shape
    seen = set()
    for k in range(200):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if torch.equal(torch.roll(x[k], (dy, dx), dims=(1, 2)), y[k])]
        assert len(matches) == 1, "each image is one shift of the original"
        seen.add(matches[0])
    assert len(seen) == 25, "all 25 shifts occur"
    assert torch.equal(shift_augment(x, 0), x)


def test_shift_augment_pads_with_zeros():
    x = torch.ones(64, 1, 28, 28)
    y = shift_augment(x, 2, torch.Generator().manual_seed(0))
    assert (y.sum(dim=(1, 2, 3)) < 784).any() and y.max() == 1 and y.min() == 0


def test_learning_rate_decays_exponentially_per_epoch():
    cfg = TrainConfig()
    assert learning_rate(cfg, 0, 468) == pytest.approx(1e-3)
    assert learning_rate(cfg, 468, 468) == pytest.approx(0.9e-3)
    assert learning_rate(cfg, 234, 468) == pytest.approx(1e-3 * 0.9**0.5)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_train_step_lowers_the_loss(precision):
    torch.manual_seed(0)
    model = CapsNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.zeros(16, 1, 28, 28)
    y = torch.arange(16) % 4
    for k in range(16):  # four distinct bar patterns, one per class
        c = int(y[k])
        x[k, 0, 4 + 5 * c:8 + 5 * c, 4:24] = 1.0
    losses = [float(train_step(model, opt, x, y, precision=precision)) for _ in range(8)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.slow
def test_smoke_training_lowers_loss_and_resume_matches_an_uninterrupted_run(data_dir, tmp_path, monkeypatch, capsys):
    common = dict(data_dir=str(data_dir), train_subset=384, test_subset=200, batch_size=64,
                  precision="fp32", eval_batch_size=200)
    full = train(TrainConfig(out=str(tmp_path / "full"), epochs=2, **common))
    log = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert [r["step"] for r in log] == [6, 12]
    assert log[1]["train_loss"] < log[0]["train_loss"]
    assert full["test_accuracy"] > 20  # from 10% at random

    # stop after one epoch, then resume to two: the same weights as the run that never stopped
    train(TrainConfig(out=str(tmp_path / "cut"), epochs=1, **common))
    resumed = train(TrainConfig(out=str(tmp_path / "cut"), epochs=2, resume=True, **common),
                    given={"out", "epochs", "resume"})
    assert resumed["epoch"] == 2 and resumed["test_correct"] == full["test_correct"]
    a = load_model_cpu(tmp_path / "full" / "last.safetensors")
    b = load_model_cpu(tmp_path / "cut" / "last.safetensors")
    for (k, ta), tb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(ta, tb), k
    cut_log = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in cut_log] == [1, 2]
    meta = json.loads((tmp_path / "cut" / "last.json").read_text())
    assert len(meta["commands"]) == 2 and meta["epoch"] == 2

    # killed within an epoch (after global step 3 of epoch 1; after step 9, the third of epoch 2),
    # with the state saved after every step (--save-minutes tiny): the resumed run goes on from the
    # step saved, with the epoch's shuffle and augmentation as they were, to the same weights and
    # the same log (the progress sums of the epoch are restored too)
    step = train_module._train_step
    for killed_after in (3, 9):
        out, calls = tmp_path / f"killed{killed_after}", []

        def dies(*args, **kwargs):
            calls.append(1)
            if len(calls) > killed_after:
                raise RuntimeError("killed")
            return step(*args, **kwargs)

        monkeypatch.setattr(train_module, "_train_step", dies)
        with pytest.raises(RuntimeError, match="killed"):
            train(TrainConfig(out=str(out), epochs=2, save_minutes=1e-9, **common))
        monkeypatch.setattr(train_module, "_train_step", step)
        saved = json.loads(read_tensors(out / "state.safetensors")[1]["meta"])
        assert saved["step"] == killed_after
        assert saved["in_epoch"]["epoch"] == 1 + killed_after // 6 and saved["in_epoch"]["steps"] == killed_after % 6
        resumed = train(TrainConfig(out=str(out), epochs=2, resume=True, **common), given={"out", "epochs", "resume"})
        assert f"in epoch {1 + killed_after // 6}, after {killed_after % 6} of its 6 steps" in capsys.readouterr().out
        b = load_model_cpu(out / "last.safetensors")
        for (k, ta), tb in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(ta, tb), (killed_after, k)
        killed_log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [(r["epoch"], r["train_loss"], r["train_accuracy"], r["test_correct"]) for r in killed_log] == \
            [(r["epoch"], r["train_loss"], r["train_accuracy"], r["test_correct"]) for r in log]
        assert resumed["test_correct"] == full["test_correct"] and "in_epoch" not in json.loads(
            read_tensors(out / "state.safetensors")[1]["meta"])


def test_a_subset_is_trained_on_every_image_and_the_full_set_in_full_batches():
    assert epoch_batches(500, 128, drop_last=False) == [128, 128, 128, 116]
    assert epoch_batches(384, 128, drop_last=False) == [128, 128, 128]
    assert epoch_batches(60000, 128, drop_last=True) == [128] * 468  # as the shipped run was trained
    assert epoch_batches(100, 128, drop_last=True) == epoch_batches(100, 128, drop_last=False) == [100]
    # under torchrun every process needs an image of every batch
    assert epoch_batches(130, 128, drop_last=False, world=2) == [128, 2]
    assert epoch_batches(129, 128, drop_last=False, world=2) == [128]


@pytest.mark.parametrize("size, world", [(128, 2), (116, 2), (7, 3), (5, 1)])
def test_shards_split_a_batch_evenly_and_completely(size, world):
    idx = torch.randperm(size)
    shards = [_shard(idx, rank, world) for rank in range(world)]
    assert torch.equal(torch.cat(shards), idx)
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1


def test_a_quick_run_evaluates_a_proportionate_test_subset():
    assert eval_size(TrainConfig(train_subset=500), 60000, 10000) == 84  # 500 / 6, rounded up
    assert eval_size(TrainConfig(train_subset=500, test_subset=1000), 60000, 10000) == 1000
    assert eval_size(TrainConfig(test_subset=20000), 60000, 10000) == 10000
    assert eval_size(TrainConfig(), 60000, 10000) == 10000
    assert eval_size(TrainConfig(train_subset=90000), 60000, 10000) == 10000


@pytest.mark.slow
def test_quick_run_trains_on_every_subset_image_and_says_what_it_used(data_dir, tmp_path, capsys):
    summary = train(TrainConfig(out=str(tmp_path / "run"), data_dir=str(data_dir), train_subset=100, batch_size=64,
                                epochs=1, precision="fp32"))
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert record["step"] == 2, "64 + 36 images: the partial batch is trained on"
    assert summary["train_images"] == 100 and summary["test_total"] == 17  # 100 / 6, rounded up
    out = capsys.readouterr().out
    assert "data: 100 training images an epoch (2 steps of 64, the last one 36), 17 test images" in out


def load_model_cpu(path):
    from capsules import load_model

    return load_model(path, "cpu")


def test_resume_without_state_is_a_clear_error(tmp_path):
    with pytest.raises(TrainingError, match="no training state"):
        train(TrainConfig(out=str(tmp_path), resume=True))


def test_unwritable_output_is_reported_before_training(tmp_path, data_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(TrainingError, match="cannot write"):
        train(TrainConfig(out=str(blocker / "run"), data_dir=str(data_dir)))


def test_missing_dataset_names_the_fetch_command(tmp_path):
    with pytest.raises(DatasetError, match="capsules.data fetch"):
        load_mnist("train", tmp_path)


def test_one_data_folder_lookup_explicit_then_environment_then_beside_the_clone_then_cache(tmp_path, monkeypatch):
    import capsules.data.mnist as D

    shared, cache = tmp_path / "shared" / "data", tmp_path / "cache"
    monkeypatch.setattr(D, "BESIDE_CHECKOUT", shared)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("CAPSULES_DATA", raising=False)
    assert D.resolve_data_dir(beside_checkout=True) == cache / "capsules" / "data"  # no shared/data
    shared.mkdir(parents=True)
    assert D.resolve_data_dir(beside_checkout=True) == shared
    assert D.resolve_data_dir() == cache / "capsules" / "data", "the library's own default is the cache"
    monkeypatch.setenv("CAPSULES_DATA", str(tmp_path / "env"))
    assert D.resolve_data_dir(beside_checkout=True) == tmp_path / "env"
    assert D.resolve_data_dir(tmp_path / "given", beside_checkout=True) == tmp_path / "given"


def test_corrupt_dataset_file_is_named_with_md5(tmp_path, data_dir):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    src = data_dir / "MNIST" / "raw"
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes((src / name).read_bytes())
    data = bytearray((raw / "t10k-images-idx3-ubyte").read_bytes())
    data[5000] ^= 0xFF
    (raw / "t10k-images-idx3-ubyte").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte is corrupt: MD5"):
        load_mnist("test", tmp_path)


def test_nan_loss_stops_training_and_keeps_checkpoints(tmp_path, data_dir, monkeypatch):
    import capsules.train.loop as T

    real = T._train_step

    def poisoned(*args, **kwargs):
        loss, correct = real(*args, **kwargs)
        return loss * float("nan"), correct

    monkeypatch.setattr(T, "_train_step", poisoned)
    with pytest.raises(TrainingError, match="nan"):
        train(TrainConfig(out=str(tmp_path / "run"), data_dir=str(data_dir), train_subset=64,
                          test_subset=10, batch_size=32, epochs=1))
    assert not (tmp_path / "run" / "last.safetensors").exists()


@pytest.mark.parametrize("module", ["capsules.train", "capsules.evaluate", "capsules.data"])
def test_cli_help(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout


def test_train_cli_documents_every_option():
    out = subprocess.run([sys.executable, "-m", "capsules.train", "--help"], capture_output=True, text=True,
                         timeout=120).stdout
    for flag in ("--data-dir", "--out", "--epochs", "--batch-size", "--lr", "--iterations", "--seed",
                 "--device", "--train-subset", "--resume", "--precision", "--shift"):
        assert flag in out
    text = " ".join(out.split())  # argparse wraps the help texts
    for f in dataclasses.fields(TrainConfig):
        assert f"--{f.name.replace('_', '-')}" in text
        shown = " ".join(f.metadata["help"].split())
        assert (shown if f.type == "bool" else f"{shown} (default: {f.default})") in text, f.name


def test_full_disk_is_reported_before_training(tmp_path, data_dir, monkeypatch):
    import collections

    import capsules.train.state as T

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(T.shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 5 * 2**20, 5 * 2**20))
    with pytest.raises(TrainingError, match="only 5 MiB free"):
        train(TrainConfig(out=str(tmp_path / "run"), data_dir=str(data_dir)))
    assert not (tmp_path / "run" / "state.safetensors").exists()


# ---------------------------------------------------------------- moving average of the weights


def _two_steps(model, average=None):
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(2):
        loss = model(torch.randn(8, 3)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if average is not None:
            average.update()


def test_moving_average_with_decay_0_is_exactly_the_weights():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    average = WeightAverage(model, 0.0)
    _two_steps(model, average)
    for (k, a), b in zip(average.model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k  # parameters, and the BatchNorm buffers copied


def test_moving_average_follows_its_formula_in_float32():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    start = [p.detach().clone() for p in model.parameters()]
    average = WeightAverage(model, 0.75)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    expected = start
    for _ in range(3):
        model(torch.randn(8, 3)).square().mean().backward()
        opt.step()
        opt.zero_grad()
        average.update()
        expected = [0.75 * e + 0.25 * p.detach() for e, p in zip(expected, model.parameters())]
    for a, e, p in zip(average.model.parameters(), expected, model.parameters()):
        assert a.dtype == torch.float32 and not a.requires_grad
        torch.testing.assert_close(a, e, rtol=1e-6, atol=1e-7)
        assert not torch.equal(a, p.detach())
    with pytest.raises(TrainingError, match="ema-decay"):
        WeightAverage(model, 1.0)


# ----------------------------------------------------------------------------------- --init-from


def tiny_run(tmp_path, data_dir, name, **kwargs):
    cfg = dict(out=str(tmp_path / name), data_dir=str(data_dir), train_subset=32, test_subset=8, batch_size=32,
               epochs=1, precision="fp32", eval_batch_size=8)
    return train(TrainConfig(**{**cfg, **kwargs}))


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
        trained = load_model_cpu(tmp_path / "run" / f"{name}.safetensors")
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


# ------------------------------------------------------------------------------------ shipping

SMALL_CNN = BaselineCNNConfig(conv_channels=(4, 4, 2), fc_hidden=(8, 8))


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
    shipped = load_model_cpu(dest)
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
    shipped = load_model_cpu(dest)
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
    shipped = load_model_cpu(dest)
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


def test_ship_checkpoint_ships_last_or_its_moving_average_and_refuses_anything_else(tmp_path, monkeypatch,
                                                                                      capsys):
    ship = ship_module(monkeypatch, tmp_path)
    meta = {"test_accuracy": 99.0, "epoch": 3, "train_config": {"dataset": "mnist"}}
    for name in ("last", "last-ema", "best"):
        save_model(constant_cnn(1e-2), tmp_path / "run" / f"{name}.safetensors", meta)
    assert ship.main([str(tmp_path / "run" / "best.safetensors")]) == 1
    assert "only last.safetensors or last-ema.safetensors" in capsys.readouterr().err
    for name in ("capsnet-mnist", "cnn-multimnist", "cnn-mnist-", "cnn-mnist-R3", "cnn-mnist/x", "cnn"):
        assert ship.main([str(tmp_path / "run" / "last-ema.safetensors"), "--name", name]) == 1
        assert "a shipped name is cnn-mnist or cnn-mnist-<variant>" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()
    # the default name: the model kind from the file, the data set from its JSON
    capsnet = CapsNet(CapsNetConfig(routing_iterations=1))
    capsnet.metadata = {"train_config": {"dataset": "multimnist"}}
    assert ship.target(capsnet, None).name == "capsnet-multimnist.safetensors"
    assert ship.target(capsnet, "capsnet-multimnist-r1-norecon").name == "capsnet-multimnist-r1-norecon.safetensors"


def test_ship_records_every_run_that_trained_the_weights(tmp_path, monkeypatch):
    """A run started from a shipped model (--init-from) recorded less of it before SOURCE_KEYS grew:
    shipping it completes the record from the starting checkpoint's JSON while that file is the one
    it started from (same sha256), so that the shipped JSON, Table 1 and the picker count the epochs
    and the time of both runs, not of the last one alone."""
    from capsules.zoo import Shipped

    ship = ship_module(monkeypatch, tmp_path)
    monkeypatch.setattr(ship, "ROOT", tmp_path)
    parent = tmp_path / "checkpoints" / "cnn-mnist.safetensors"
    theirs = save_model(constant_cnn(1e-2), parent, {"epoch": 29, "epochs": 50, "train_seconds": 14132.3,
                                                     "hardware": "CPU: AMD EPYC, 2 threads", "precision": "bf16",
                                                     "train_config": {"model": "cnn", "lr": 1e-3}})
    recorded = {"path": "checkpoints/cnn-mnist.safetensors", "sha256": theirs["sha256"], "epoch": 29, "steps": 13572}
    info = {"epoch": 15, "train_seconds": 8000.0, "hardware": "CPU: Intel Xeon, 2 threads", "init_from": recorded,
            "format": "capsules.baseline-cnn", "train_config": {"model": "cnn", "lr": 1e-4}}

    done = ship.complete_source(info)
    assert done["init_from"] == {**recorded, "train_seconds": 14132.3, "hardware": "CPU: AMD EPYC, 2 threads",
                                 "precision": "bf16", "train_config": {"model": "cnn", "lr": 1e-3}}
    assert {k: v for k, v in done.items() if k != "init_from"} == {k: v for k, v in info.items() if k != "init_from"}
    m = Shipped.of(parent, done)
    assert (m.epochs, m.train_seconds, m.epochs_text) == (44, 22132.3, "44 (29 + 15)")
    assert m.training_text == "3.9 h on CPU: AMD EPYC, 2 threads, then 2.2 h on CPU: Intel Xeon, 2 threads"
    assert Shipped.of(parent, info).epochs_text == "44 (29 + 15)"  # the time of the first run unknown:
    assert Shipped.of(parent, info).train_seconds is None and "time not recorded, then 2.2 h" in \
        Shipped.of(parent, info).training_text

    # another file at that path now, or none: the record stays as the run wrote it
    assert ship.complete_source({**info, "init_from": {**recorded, "sha256": "0" * 64}})["init_from"] == {
        **recorded, "sha256": "0" * 64}
    parent.with_suffix(".json").unlink()
    assert ship.complete_source(info) == info
    assert ship.complete_source({"epoch": 3}) == {"epoch": 3}  # trained from scratch
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
    shipped = load_model_cpu(dest)
    errors = evaluate_multimnist(model, load_multimnist_test(data_dir)[:20]).errors
    assert shipped.metadata["test_errors"] == errors and shipped.metadata["half_precision_check"]["total"] == 20
    assert shipped.metadata["half_precision_check"]["fp32_correct"] == 20 - errors


# ---------------------------------------------------------------------------- the baseline CNN


def test_cnn_refuses_capsnet_options_with_one_line(tmp_path, capsys):
    from capsules.train.__main__ import main

    for args, named in ((["--iterations", "1"], "--iterations"), (["--reconstruction-weight", "0"],
                                                                    "--reconstruction-weight"),
                        (["--detach-inner"], "--detach-inner"), (["--iterations", "3"], "--iterations")):
        assert main(["--model", "cnn", "--out", str(tmp_path / "run"), *args]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: {named}: CapsNet options; --model cnn") and err.count("\n") == 1, err
    assert main(["--model", "cnn", "--dataset", "multimnist", "--out", str(tmp_path / "run")]) == 1
    assert capsys.readouterr().err == "error: --model cnn trains on mnist only, not --dataset multimnist\n"
    with pytest.raises(TrainingError, match="--reconstruction-weight: CapsNet options"):
        train(TrainConfig(model="cnn", reconstruction_weight=0.0, out=str(tmp_path / "run")))  # set in code
    assert not (tmp_path / "run").exists(), "refused before anything is written"


def test_cnn_objective_is_cross_entropy_with_dropout_in_training():
    from capsules.train import model_objective

    torch.manual_seed(0)
    model = BaselineCNN(SMALL_CNN)
    x, y = torch.rand(6, 1, 28, 28), torch.tensor([0, 1, 2, 3, 4, 5])
    objective = model_objective({}, "fp32")
    model.eval()
    loss, correct = objective(model, (x, y))
    logits = model(x).logits
    assert torch.equal(loss, torch.nn.functional.cross_entropy(logits, y))
    assert int(correct) == int((logits.argmax(-1) == y).sum())
    model.train()
    assert not torch.equal(objective(model, (x, y))[0], objective(model, (x, y))[0]), "dropout draws anew"


@pytest.mark.data
@pytest.mark.slow
def test_cnn_smoke_training_checkpoints_and_resume_matches_an_uninterrupted_run(data_dir, tmp_path, mnist_test):
    # the paper's 35.4M-parameter CNN; dropout draws from torch's global generator, which the
    # resume state keeps: without it the resumed weights would differ
    common = dict(model="cnn", data_dir=str(data_dir), train_subset=192, test_subset=50, batch_size=32,
                  ema_decay=0.9, eval_batch_size=50)  # default precision: bf16 where native
    full = train(TrainConfig(out=str(tmp_path / "full"), epochs=2, **common))
    log = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [6, 12]
    assert log[1]["train_loss"] < log[0]["train_loss"]
    assert full["train_config"]["model"] == "cnn" and "iterations" not in full["train_config"]
    last = load_model_cpu(tmp_path / "full" / "last.safetensors")
    ema = load_model_cpu(tmp_path / "full" / "last-ema.safetensors")
    assert type(last) is type(ema) is BaselineCNN and last.config == BaselineCNNConfig()
    assert last.metadata["format"] == "capsules.baseline-cnn" and ema.metadata["weights_average"]["decay"] == 0.9
    images, labels = mnist_test
    prediction = last(to_float(images[:50])).prediction
    assert prediction.shape == (50,) and int((prediction == labels[:50]).sum()) == log[1]["test_correct"]

    # --init-from a CNN checkpoint (lr 0: the weights stay where they start); not from a CapsNet's
    tiny_run(tmp_path, data_dir, "init", model="cnn", init_from=str(tmp_path / "full" / "last.safetensors"), lr=0.0)
    started = load_model_cpu(tmp_path / "init" / "last.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(started.state_dict().values(), last.state_dict().values()))
    save_model(CapsNet(), tmp_path / "capsnet.safetensors")
    with pytest.raises(TrainingError, match="holds a CapsNet; this run trains a BaselineCNN"):
        tiny_run(tmp_path, data_dir, "init2", model="cnn", init_from=str(tmp_path / "capsnet.safetensors"))

    train(TrainConfig(out=str(tmp_path / "cut"), epochs=1, **common))
    with pytest.raises(TrainingError, match="--model capsnet \\(the run has cnn\\).*--resume continues the run"):
        train(TrainConfig(out=str(tmp_path / "cut"), epochs=2, resume=True), given={"out", "resume", "model"})
    resumed = train(TrainConfig(out=str(tmp_path / "cut"), epochs=2, resume=True, data_dir=str(data_dir)),
                    given={"out", "epochs", "resume", "data_dir"})
    assert resumed["epoch"] == 2 and resumed["test_correct"] == full["test_correct"]
    for name in ("last", "last-ema"):
        a = load_model_cpu(tmp_path / "full" / f"{name}.safetensors")
        b = load_model_cpu(tmp_path / "cut" / f"{name}.safetensors")
        for (k, ta), tb in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(ta, tb), (name, k)


@pytest.mark.data
def test_evaluate_a_cnn_checkpoint(tmp_path, data_dir, mnist_test, capsys):
    from capsules.evaluate import evaluate, main

    torch.manual_seed(0)
    model = BaselineCNN(SMALL_CNN).eval()
    path = tmp_path / "cnn.safetensors"
    save_model(model, path)
    images, labels = mnist_test
    with torch.no_grad():
        logits = torch.cat([model(to_float(images[k:k + 2000])).logits for k in range(0, 10000, 2000)])
    correct = int((logits.argmax(-1) == labels).sum())
    loss = float(torch.nn.functional.cross_entropy(logits, labels))

    result = evaluate(model, images, labels)
    assert result.correct == correct and result.loss == pytest.approx(loss, rel=1e-5)
    with pytest.raises(ValueError, match="routing iterations apply to a CapsNet, not to a baseline CNN"):
        evaluate(model, images, labels, iterations=3)

    assert main(["--checkpoint", str(path), "--data-dir", str(data_dir), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"accuracy: {100 * correct / 10000:.2f}% ({correct}/10000)" in out and "(baseline CNN)" in out
    assert f"loss: {loss:.5f}" in out
    for args in (["--iterations", "2"], ["--dataset", "multimnist"]):
        assert main(["--checkpoint", str(path), "--data-dir", str(data_dir), "--device", "cpu", *args]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "baseline CNN" in err and err.count("\n") == 1, err


# ------------------------------------------------------------------------------ precision "auto"


def test_auto_is_bf16_on_a_gpu_that_has_it_and_fp32_on_a_cpu(monkeypatch):
    """Whatever this machine's CPU: its native bf16 is mocked both ways."""
    from capsules import device as D

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    for native in (True, False):
        monkeypatch.setattr(D, "bf16_supported", lambda device, native=native: native)
        assert D.resolve_precision("auto", cpu) == "fp32"
        assert D.resolve_precision("auto", gpu) == ("bf16" if native else "fp32")
        assert D.resolve_precision("auto", cpu, saved=True) == ("bf16" if native else "fp32")  # the old rule
        assert D.resolve_precision("bf16", cpu) == "bf16" and D.resolve_precision("fp32", gpu) == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        D.resolve_precision("fp8", cpu)


@pytest.mark.slow
def test_a_run_keeps_the_precision_auto_gave_it_when_it_resumes(data_dir, tmp_path, monkeypatch):
    """A run started with auto records what auto chose (fp32 on a CPU) and resumes in it; a run
    saved with "auto" itself (before runs recorded the choice) resumes by the rule it trained
    under, bf16 wherever native."""
    from capsules import device as D

    monkeypatch.setattr(D, "bf16_supported", lambda device: True)
    common = dict(data_dir=str(data_dir), train_subset=64, test_subset=16, batch_size=32, eval_batch_size=16)
    first = train(TrainConfig(out=str(tmp_path / "run"), epochs=1, **common))
    assert first["precision"] == "fp32" and first["train_config"]["precision"] == "fp32"
    # a resume may repeat the first command line (--precision auto, the same --lr), not change the recipe
    with pytest.raises(TrainingError, match=r"--lr 0.0005 \(the run has 0.001\); --shift 1 \(the run has 2\): "
                                            r"--resume continues the run in .* as it started"):
        train(TrainConfig(out=str(tmp_path / "run"), epochs=2, resume=True, lr=5e-4, shift=1, **common),
              given={"out", "epochs", "resume", "lr", "shift", "precision"})
    resumed = train(TrainConfig(out=str(tmp_path / "run"), epochs=2, resume=True, lr=1e-3, precision="auto", **common),
                    given={"out", "epochs", "resume", "lr", "precision", "batch_size"})
    assert resumed["precision"] == "fp32" and resumed["train_config"]["precision"] == "fp32"

    # a state written before the measurement: its config says "auto", which then meant bf16 here
    from safetensors.torch import save_file

    state = tmp_path / "run" / "state.safetensors"
    tensors, header, _ = read_tensors(state)
    meta = json.loads(header["meta"])
    meta["config"] = json.dumps({**json.loads(meta["config"]), "precision": "auto"})
    save_file(tensors, str(state), metadata={**header, "meta": json.dumps(meta)})
    legacy = train(TrainConfig(out=str(tmp_path / "run"), epochs=3, resume=True, **common),
                   given={"out", "epochs", "resume"})
    assert legacy["precision"] == "bf16" and legacy["epoch"] == 3


def test_the_hardware_line_counts_threads_in_words():
    from capsules.device import describe

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert describe(torch.device("cpu")).endswith(", 1 thread")
        torch.set_num_threads(2)
        assert describe(torch.device("cpu")).endswith(", 2 threads")
    finally:
        torch.set_num_threads(before)
