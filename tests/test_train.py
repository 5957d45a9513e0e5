"""Training: the step, augmentation, schedule, the loop's resume, and its error messages."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from capsules import CapsNet
from capsules.checkpoint import save_model
from capsules.data import DatasetError, load_mnist, shift_augment
from capsules.train import (TrainConfig, TrainingError, WeightAverage, _shard, epoch_batches, learning_rate, eval_size,
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
def test_smoke_training_lowers_loss_and_resume_matches_an_uninterrupted_run(data_dir, tmp_path):
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
    import capsules.data as D

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
    import capsules.train as T

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

    import capsules.train as T

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
    info = save_model(source, src, {"epoch": 7, "test_accuracy": 12.5})
    # lr 0: Adam leaves the weights where they start, and the moving average with them
    summary = tiny_run(tmp_path, data_dir, "run", init_from=str(src), lr=0.0, ema_decay=0.5)
    assert summary["init_from"] == {"path": str(src), "sha256": info["sha256"], "epoch": 7, "test_accuracy": 12.5}
    for name in ("last", "last-ema"):
        trained = load_model_cpu(tmp_path / "run" / f"{name}.safetensors")
        for (k, a), b in zip(trained.state_dict().items(), source.state_dict().values()):
            assert torch.equal(a, b), (name, k)
    assert json.loads((tmp_path / "run" / "last.json").read_text())["train_config"]["init_from"] == str(src)


@pytest.mark.slow
def test_init_from_refuses_a_checkpoint_of_another_model(tmp_path, data_dir):
    from capsules import CapsNetConfig

    save_model(CapsNet(CapsNetConfig(routing_iterations=1)), tmp_path / "r1.safetensors")
    with pytest.raises(TrainingError, match=r"routing_iterations 1 \(this run: 3\)"):
        tiny_run(tmp_path, data_dir, "a", init_from=str(tmp_path / "r1.safetensors"))
    save_model(CapsNet(CapsNetConfig(image_size=36)), tmp_path / "multi.safetensors")
    with pytest.raises(TrainingError, match=r"image_size 36 \(this run: 28\)"):
        tiny_run(tmp_path, data_dir, "b", init_from=str(tmp_path / "multi.safetensors"))
    assert not (tmp_path / "a" / "last.safetensors").exists() and not (tmp_path / "b" / "last.safetensors").exists()
    with pytest.raises(TrainingError, match="--init-from starts a new run"):
        train(TrainConfig(out=str(tmp_path / "a"), init_from=str(tmp_path / "r1.safetensors"), resume=True),
              given={"out", "init_from", "resume"})


# ------------------------------------------------------------------------------------ shipping


def test_ship_checkpoint_ships_last_or_its_moving_average_and_refuses_anything_else(tmp_path, monkeypatch, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("ship_checkpoint", ROOT / "scripts" / "ship_checkpoint.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    monkeypatch.setattr(ship, "CHECKPOINTS", tmp_path / "checkpoints")
    torch.manual_seed(0)
    model = CapsNet()
    meta = {"test_accuracy": 99.0, "epoch": 3, "train_config": {"dataset": "mnist"}}
    for name in ("last", "last-ema", "best"):
        save_model(model, tmp_path / "run" / f"{name}.safetensors", meta)

    assert ship.main([str(tmp_path / "run" / "best.safetensors")]) == 1
    assert "only last.safetensors or last-ema.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()

    assert ship.main([str(tmp_path / "run" / "last-ema.safetensors")]) == 0
    shipped = load_model_cpu(tmp_path / "checkpoints" / "capsnet-mnist.safetensors")
    assert shipped.metadata["shipped_from"].endswith("last-ema.safetensors") and shipped.metadata["epoch"] == 3
    assert "test accuracy 99.00% after epoch 3" in capsys.readouterr().out
    assert ship.main([str(tmp_path / "run" / "last.safetensors"), "--name", "capsnet-r3"]) == 0
    assert (tmp_path / "checkpoints" / "capsnet-r3.json").exists()
