"""Checkpoints of every model kind: save, load, identical outputs, half precision; everything unsafe or
broken is refused clearly."""

import json
import os
import pickle
import struct

import pytest
import torch
from safetensors.torch import save as st_save

from capsules import BaselineCNN, BaselineCNNConfig, CapsNet, CapsNetConfig, CheckpointError, load_model, save_model
from capsules.checkpoint import INT8_BLOCK, INT8_SCALE, dequantize_int8, quantize_int8, read_tensors, sidecar


@pytest.fixture()
def saved(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    save_model(tiny_model, path, {"test_accuracy": 12.5})
    return path, tiny_model


def test_save_load_identical_outputs(saved):
    path, model = saved
    loaded = load_model(path, device="cpu")
    assert not loaded.training
    assert loaded.metadata["test_accuracy"] == 12.5 and loaded.metadata["config"] == model.config.to_dict()
    x = torch.rand(3, 1, 28, 28)
    model.eval()
    a, b = model(x, trace=True), loaded(x, trace=True)
    assert torch.equal(a.v, b.v) and torch.equal(a.reconstruction, b.reconstruction)
    assert torch.equal(a.routing.c, b.routing.c)
    assert not list(path.parent.glob("*.tmp")), "no temporary files left behind"


def test_config_travels_with_the_weights(tmp_path):
    model = CapsNet(CapsNetConfig(routing_iterations=5))
    save_model(model, tmp_path / "r5.safetensors")
    sidecar(tmp_path / "r5.safetensors").unlink()  # the weights file alone is enough
    assert load_model(tmp_path / "r5.safetensors", "cpu").config.routing_iterations == 5


class WritesAFile:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickle_is_refused_and_not_executed(tmp_path):
    target = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"weights": WritesAFile(str(target))}))
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(evil, "cpu")
    assert not target.exists()


def test_torch_save_archive_is_refused(tmp_path, tiny_model):
    path = tmp_path / "model.pt"
    torch.save(tiny_model.state_dict(), path)
    with pytest.raises(CheckpointError, match="zip|pickle"):
        load_model(path, "cpu")


def test_truncated_file_is_refused(saved):
    path, _ = saved
    data = path.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        sidecar(path).unlink(missing_ok=True)
        with pytest.raises(CheckpointError, match="truncated|not a safetensors"):
            load_model(path, "cpu")


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "random.safetensors"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError):
        load_model(path, "cpu")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.safetensors", "cpu")


def _write(path, tensors, config):
    path.write_bytes(st_save(tensors, metadata={"format": "capsules.capsnet", "config": json.dumps(config)}))


def test_missing_extra_and_misshapen_tensors_are_refused(tmp_path, tiny_model):
    state = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    cfg = tiny_model.config.to_dict()
    path = tmp_path / "x.safetensors"
    _write(path, {k: v for k, v in state.items() if k != "decoder.0.weight"}, cfg)
    with pytest.raises(CheckpointError, match="lacks.*decoder.0.weight"):
        load_model(path, "cpu")
    _write(path, {**state, "extra.bias": torch.zeros(3)}, cfg)
    with pytest.raises(CheckpointError, match="does not use.*extra.bias"):
        load_model(path, "cpu")
    _write(path, {**state, "digits.weight": torch.zeros(1152, 10, 8, 8)}, cfg)
    with pytest.raises(CheckpointError, match="digits.weight.*shape"):
        load_model(path, "cpu")


def test_config_that_does_not_match_the_weights(tmp_path, tiny_model):
    state = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    path = tmp_path / "x.safetensors"
    _write(path, state, {**tiny_model.config.to_dict(), "digit_dim": 8})
    with pytest.raises(CheckpointError, match="shape"):
        load_model(path, "cpu")
    _write(path, state, {**tiny_model.config.to_dict(), "secret": 1})
    with pytest.raises(CheckpointError, match="config"):
        load_model(path, "cpu")


def test_foreign_safetensors_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    path.write_bytes(st_save({"w": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match="not a capsules"):
        load_model(path, "cpu")


def test_changed_weights_fail_the_recorded_sha256(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    data[8 + n + 10] ^= 0xFF  # flip one byte of tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(path, "cpu")


def test_bad_device_names(saved):
    path, _ = saved
    with pytest.raises(ValueError, match="unknown device"):
        load_model(path, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            load_model(path, device="cuda")


# ----------------------------------------------------------------- every model kind, half precision

SMALL_CNN = BaselineCNNConfig(conv_channels=(8, 8, 4), fc_hidden=(32, 16))


def _models():
    torch.manual_seed(0)
    return {"capsnet": CapsNet(CapsNetConfig(routing_iterations=2)), "cnn": BaselineCNN(SMALL_CNN)}


@pytest.mark.parametrize("kind", ["capsnet", "cnn"])
def test_every_kind_round_trips(tmp_path, kind):
    model = _models()[kind].eval()
    path = tmp_path / f"{kind}.safetensors"
    save_model(model, path, {"test_accuracy": 50.0})
    loaded = load_model(path, "cpu")
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    assert loaded.metadata["test_accuracy"] == 50.0 and loaded.metadata["format"] == model.FORMAT
    assert loaded.metadata["weights_dtype"] == "fp32" and loaded.checkpoint_path == path
    x = torch.rand(5, 1, 28, 28)
    a, b = model(x), loaded(x)
    assert b.prediction.shape == (5,) and torch.equal(a.prediction, b.prediction)
    for k, t in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], t)


def test_a_file_written_before_weights_dtype_loads_as_float32(tmp_path):
    """Checkpoints written before half precision name no ``weights_dtype`` in their header (nor in
    their JSON): they hold float32 tensors and load as before."""
    import hashlib

    model = _models()["capsnet"].eval()
    path = tmp_path / "old.safetensors"
    save_model(model, path, {"test_accuracy": 50.0})
    tensors, meta, _ = read_tensors(path)
    assert meta.pop("weights_dtype") == "fp32"
    path.write_bytes(st_save(tensors, metadata=meta))  # the header as the old code wrote it
    info = json.loads(sidecar(path).read_text())
    del info["weights_dtype"]
    info["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar(path).write_text(json.dumps(info))
    assert "weights_dtype" not in read_tensors(path)[1]
    loaded = load_model(path, "cpu")
    assert type(loaded) is CapsNet and loaded.checkpoint_path == path and loaded.metadata["test_accuracy"] == 50.0
    for k, t in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], t)


@pytest.mark.parametrize("weights_dtype", ["fp16", "bf16"])
@pytest.mark.parametrize("kind", ["capsnet", "cnn"])
def test_half_precision_round_trip(tmp_path, kind, weights_dtype):
    model = _models()[kind].eval()
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    save_model(model, full)
    info = save_model(model, half, weights_dtype=weights_dtype)
    assert info["weights_dtype"] == weights_dtype
    assert json.loads(sidecar(half).read_text())["weights_dtype"] == weights_dtype
    tensors, meta, _ = read_tensors(half)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[weights_dtype]
    assert meta["weights_dtype"] == weights_dtype and {t.dtype for t in tensors.values()} == {dtype}
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = load_model(half, "cpu")
    for k, t in model.state_dict().items():  # float32 again, each weight rounded once
        assert loaded.state_dict()[k].dtype == torch.float32
        assert torch.equal(loaded.state_dict()[k], t.to(dtype).float())
    x = torch.rand(3, 1, 28, 28)
    a, b = model(x), loaded(x)
    scores = (lambda o: o.lengths) if kind == "capsnet" else (lambda o: o.probabilities)
    torch.testing.assert_close(scores(b), scores(a), atol=2e-2, rtol=0)


def test_bad_weights_dtype(tmp_path, tiny_model):
    with pytest.raises(ValueError, match="weights_dtype"):
        save_model(tiny_model, tmp_path / "x.safetensors", weights_dtype="int4")
    state = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    meta = {"format": "capsules.capsnet", "config": json.dumps(tiny_model.config.to_dict())}
    path = tmp_path / "x.safetensors"
    path.write_bytes(st_save(state, metadata={**meta, "weights_dtype": "fp8"}))
    with pytest.raises(CheckpointError, match="weights_dtype 'fp8'"):
        load_model(path, "cpu")
    path.write_bytes(st_save(state, metadata={**meta, "weights_dtype": "fp16"}))  # says fp16, holds fp32
    with pytest.raises(CheckpointError, match="dtype torch.float32, its header records torch.float16"):
        load_model(path, "cpu")
    path.write_bytes(st_save({k: v.half() for k, v in state.items()}, metadata=meta))  # fp16, not recorded
    with pytest.raises(CheckpointError, match="dtype torch.float16, its header records torch.float32"):
        load_model(path, "cpu")


def test_int8_quantization_is_blockwise_and_within_half_a_step():
    torch.manual_seed(0)
    w = torch.randn(6, 256) * torch.logspace(-3, 1, 6)[:, None]  # rows of very different scales
    w[2, :128] = 0.0  # an all-zero block
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and q.shape == w.shape and scale.dtype == torch.float16
    assert scale.shape == (w.numel() // INT8_BLOCK,) and int(q.abs().max()) == 127
    back = dequantize_int8(q, scale)
    step = scale.float().repeat_interleave(INT8_BLOCK).reshape(w.shape)
    assert ((back - w).abs() <= step / 2 + 1e-7 * w.abs()).all()  # each weight off by half a step at most
    assert torch.equal(back[2, :128], torch.zeros(128))
    again = quantize_int8(back)  # storing what was read back changes nothing
    assert torch.equal(again[0], q) and torch.equal(again[1], scale)


@pytest.mark.parametrize("kind", ["capsnet", "cnn"])
def test_int8_round_trip(tmp_path, kind):
    """int8 storage: weight matrices and kernels in blocks of 128 with a float16 scale each, the
    rest float32; loading gives float32 weights within half a step, and the same predictions here."""
    model = _models()[kind].eval()
    full, small = tmp_path / "full.safetensors", tmp_path / "int8.safetensors"
    save_model(model, full)
    assert save_model(model, small, weights_dtype="int8")["weights_dtype"] == "int8"
    tensors, meta, _ = read_tensors(small)
    assert meta["weights_dtype"] == "int8"
    quantized = {k for k, t in tensors.items() if t.dtype == torch.int8}
    assert quantized and {k + INT8_SCALE for k in quantized} == {k for k in tensors if k.endswith(INT8_SCALE)}
    assert all(tensors[k].dtype == torch.float32 for k in tensors
               if k not in quantized and not k.endswith(INT8_SCALE))
    assert small.stat().st_size < 0.3 * full.stat().st_size
    loaded = load_model(small, "cpu")
    for k, t in model.state_dict().items():
        got = loaded.state_dict()[k]
        assert got.dtype == torch.float32
        if k in quantized:
            assert torch.equal(got, dequantize_int8(*quantize_int8(t)))
        else:
            assert torch.equal(got, t)
    x = torch.rand(3, 1, 28, 28)
    scores = (lambda o: o.lengths) if kind == "capsnet" else (lambda o: o.probabilities)
    torch.testing.assert_close(scores(loaded(x)), scores(model(x)), atol=2e-2, rtol=0)


def test_damaged_int8_checkpoint_is_refused(tmp_path):
    model = _models()["cnn"]
    good = _int8_tensors(model)
    meta = {"format": "capsules.baseline-cnn", "config": json.dumps(SMALL_CNN.to_dict()), "weights_dtype": "int8"}
    path = tmp_path / "x.safetensors"
    key = next(k for k in good if k.endswith(INT8_SCALE))
    weight = key[:-len(INT8_SCALE)]
    cases = {
        "belongs to no tensor": {**good, "nothing" + INT8_SCALE: good[key].clone()},
        "is not a float16 vector": {**good, key: good[key].float()},
        "is not int8 in blocks of 128": {**good, weight: good[weight].float()},
        "no int8 scale": {**{k: v for k, v in good.items() if k != key}},
    }
    for message, tensors in cases.items():
        path.write_bytes(st_save(tensors, metadata=meta))
        with pytest.raises(CheckpointError, match=message):
            load_model(path, "cpu")
    path.write_bytes(st_save(good, metadata=meta))
    assert type(load_model(path, "cpu")) is BaselineCNN


@pytest.mark.parametrize("kind", ["capsnet", "cnn"])
def test_encoded_bytes_counts_what_encoding_makes(kind):
    """The size a storage gives, counted without encoding, is the encoded tensors' (int8 included:
    one byte a quantized weight, a float16 scale per block, the rest in float32)."""
    from capsules.checkpoint import STORAGES, encode_weights, encoded_bytes

    state = _models()[kind].state_dict()
    for storage in STORAGES:
        encoded = encode_weights(state, storage)
        assert encoded_bytes(state, storage) == sum(t.numel() * t.element_size() for t in encoded.values())
    with pytest.raises(ValueError, match="weights_dtype must be one of"):
        encoded_bytes(state, "int4")


def _int8_tensors(model):
    from capsules.checkpoint import encode_weights
    return encode_weights(model.state_dict(), "int8")


def test_kinds_are_not_confused(tmp_path):
    """A CNN's tensors under the CapsNet format (or the reverse), or a CNN config with unknown
    keys, are refused; so is a model that is no capsules kind."""
    models = _models()
    cnn_state = {k: v.contiguous() for k, v in models["cnn"].state_dict().items()}
    path = tmp_path / "x.safetensors"
    _write(path, cnn_state, models["capsnet"].config.to_dict())
    with pytest.raises(CheckpointError, match="lacks"):
        load_model(path, "cpu")
    path.write_bytes(st_save(cnn_state, metadata={"format": "capsules.baseline-cnn",
                                                  "config": json.dumps(models["capsnet"].config.to_dict())}))
    with pytest.raises(CheckpointError, match="invalid config.*unknown baseline CNN config keys"):
        load_model(path, "cpu")
    path.write_bytes(st_save(cnn_state, metadata={"format": "capsules.baseline-cnn",
                                                  "config": json.dumps({**SMALL_CNN.to_dict(), "pool": 2})}))
    with pytest.raises(CheckpointError, match="unknown baseline CNN config keys: pool"):
        load_model(path, "cpu")
    path.write_bytes(st_save(cnn_state, metadata={"format": "capsules.resnet", "config": "{}"}))
    with pytest.raises(CheckpointError, match="not a capsules checkpoint.*capsules.resnet"):
        load_model(path, "cpu")
    with pytest.raises(TypeError, match="not a capsules model"):
        save_model(torch.nn.Linear(2, 2), tmp_path / "linear.safetensors")


def test_damaged_cnn_checkpoint_is_refused(tmp_path):
    path = tmp_path / "cnn.safetensors"
    save_model(_models()["cnn"], path, weights_dtype="fp16")
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    data[8 + n + 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(path, "cpu")


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="file modes are POSIX")
def test_atomic_writes_get_the_mode_of_any_new_file(tmp_path):
    """The temporary file behind an atomic write is created 0600; the file it becomes has the mode
    open() gives a new file under this umask, so that other users can read a shipped checkpoint."""
    from capsules.checkpoint import atomic_write_bytes

    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    atomic_write_bytes(tmp_path / "atomic.bin", b"x")
    assert (tmp_path / "atomic.bin").stat().st_mode == plain.stat().st_mode


def test_portable_paths_name_no_folder_of_this_machine(tmp_path):
    from pathlib import Path

    from capsules.checkpoint import portable

    root, home = tmp_path / "repo", Path.home()
    out = portable({"command": f"python -m capsules.train --out {home}/runs/a --data-dir {tmp_path}/shared/data",
                    "paths": [f"{root}/checkpoints/x.safetensors", "checkpoints/y", "lr 1e-4/2", 3]}, root)
    assert out == {"command": "python -m capsules.train --out ~/runs/a --data-dir ../shared/data",
                   "paths": ["checkpoints/x.safetensors", "checkpoints/y", "lr 1e-4/2", 3]}
