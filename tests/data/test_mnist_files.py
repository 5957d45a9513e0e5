"""MNIST on disk and in batches (capsules.data.mnist): one data-folder lookup, clear messages for a
missing or corrupt file, and the paper's 2-pixel shifts."""

import pytest
import torch

from capsules.data import DatasetError, load_mnist, shift_augment


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


def test_missing_dataset_names_the_fetch_command(tmp_path):
    with pytest.raises(DatasetError, match="capsules.data fetch"):
        load_mnist("train", tmp_path)


def test_one_data_folder_lookup_explicit_then_environment_then_beside_the_clone_then_cache(tmp_path, monkeypatch):
    from capsules.data import mnist

    shared, cache = tmp_path / "shared" / "data", tmp_path / "cache"
    monkeypatch.setattr(mnist, "BESIDE_CHECKOUT", shared)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("CAPSULES_DATA", raising=False)
    assert mnist.resolve_data_dir(beside_checkout=True) == cache / "capsules" / "data"  # no shared/data
    shared.mkdir(parents=True)
    assert mnist.resolve_data_dir(beside_checkout=True) == shared
    assert mnist.resolve_data_dir() == cache / "capsules" / "data", "the library's own default is the cache"
    monkeypatch.setenv("CAPSULES_DATA", str(tmp_path / "env"))
    assert mnist.resolve_data_dir(beside_checkout=True) == tmp_path / "env"
    assert mnist.resolve_data_dir(tmp_path / "given", beside_checkout=True) == tmp_path / "given"


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


def test_the_data_command_lines_print_a_dataset_error_as_one_line_and_exit_1(tmp_path, capsys):
    from capsules.data.__main__ import main as data_main
    from capsules.data.fashion import main as fashion_main

    assert data_main(["check", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: MNIST not found") and err.count("\n") == 1
    assert fashion_main(["--out", str(tmp_path / "s.npz"), "--folder", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Fashion-MNIST not found") and err.count("\n") == 1
    assert not (tmp_path / "s.npz").exists()
