"""Training (capsules.train): the step, the schedule, the loop's resume, the moving average of the
weights, the precision, and its error messages."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

import capsules.train.loop as train_module
from capsules import CapsNet, load_model
from capsules.checkpoint import read_tensors
from capsules.train import (
    TrainConfig, TrainingError, WeightAverage, epoch_batches, eval_size, learning_rate, train, train_step,
)
from capsules.train.datasets import _shard


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
    a = load_model(tmp_path / "full" / "last.safetensors", "cpu")
    b = load_model(tmp_path / "cut" / "last.safetensors", "cpu")
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
        b = load_model(out / "last.safetensors", "cpu")
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


def test_resume_without_state_is_a_clear_error(tmp_path):
    with pytest.raises(TrainingError, match="no training state"):
        train(TrainConfig(out=str(tmp_path), resume=True))


def test_unwritable_output_is_reported_before_training(tmp_path, data_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(TrainingError, match="cannot write"):
        train(TrainConfig(out=str(blocker / "run"), data_dir=str(data_dir)))


def test_nan_loss_stops_training_and_keeps_checkpoints(tmp_path, data_dir, monkeypatch):
    from capsules.train import loop

    real = loop._train_step

    def poisoned(*args, **kwargs):
        loss, correct = real(*args, **kwargs)
        return loss * float("nan"), correct

    monkeypatch.setattr(loop, "_train_step", poisoned)
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

    from capsules.train import state

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(state.shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 5 * 2**20, 5 * 2**20))
    with pytest.raises(TrainingError, match="only 5 MiB free"):
        train(TrainConfig(out=str(tmp_path / "run"), data_dir=str(data_dir)))
    assert not (tmp_path / "run" / "state.safetensors").exists()


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


AMD_ZEN4 = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
INTEL_NO_AMX = "vendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
AMD_NO_AVX512 = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 fma\n"


def test_auto_is_bf16_on_a_gpu_that_has_it_and_on_a_cpu_measured_faster_in_it(monkeypatch):
    """Whatever this machine's CPU: its native bf16 and its /proc/cpuinfo are mocked."""
    from capsules import device as precision_rules

    assert precision_rules.cpu_prefers_bf16(AMD_ZEN4) and not precision_rules.cpu_prefers_bf16(INTEL_NO_AMX)
    assert not precision_rules.cpu_prefers_bf16(AMD_NO_AVX512) and not precision_rules.cpu_prefers_bf16("")
    assert not precision_rules.cpu_prefers_bf16(AMD_ZEN4.replace("avx512_bf16", "avx512_bf16x"))  # a whole flag
    cpu, gpu, rule = torch.device("cpu"), torch.device("cuda", 0), precision_rules.cpu_prefers_bf16
    for native, info in ((True, AMD_ZEN4), (True, INTEL_NO_AMX), (False, AMD_ZEN4), (False, AMD_NO_AVX512)):
        monkeypatch.setattr(precision_rules, "bf16_supported", lambda device, native=native: native)
        monkeypatch.setattr(precision_rules, "cpu_prefers_bf16", lambda info=info: rule(info))
        assert precision_rules.resolve_precision("auto", cpu) == ("bf16" if native and info is AMD_ZEN4 else "fp32")
        assert precision_rules.resolve_precision("auto", gpu) == ("bf16" if native else "fp32")
        # the old rule
        assert precision_rules.resolve_precision("auto", cpu, saved=True) == ("bf16" if native else "fp32")
        assert precision_rules.resolve_precision("bf16", cpu) == "bf16"
        assert precision_rules.resolve_precision("fp32", gpu) == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        precision_rules.resolve_precision("fp8", cpu)


@pytest.mark.slow
def test_a_run_keeps_the_precision_auto_gave_it_when_it_resumes(data_dir, tmp_path, monkeypatch):
    """A run started with auto records what auto chose (fp32 on a CPU not measured faster in bf16)
    and resumes in it; a run saved with "auto" itself (before runs recorded the choice) resumes by
    the rule it trained under, bf16 wherever native."""
    from capsules import device as precision_rules

    monkeypatch.setattr(precision_rules, "bf16_supported", lambda device: True)
    monkeypatch.setattr(precision_rules, "cpu_prefers_bf16", lambda: False)
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
