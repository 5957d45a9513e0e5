"""capsules.analysis.trust: the ood and adversarial sections of a results file, Fashion-MNIST
(capsules.data.fashion) and the command line (the shipped numbers: tests/analysis/test_trust_shipped.py)."""

import gzip
import json
import shutil

import numpy as np
import pytest
import torch

from capsules import CapsNet
from capsules.analysis import attacks
from capsules.analysis import trust
from capsules.data import DatasetError
from capsules.data.fashion import CLASSES, INSTALL, load_fashion
from capsules.experiments import main, merge_results, parse_sections, read_results, save_results
from tests.analysis.helpers import ROOT, small_capsnet, small_cnn


def test_sections_of_a_capsnet_and_a_cnn():
    g = torch.Generator().manual_seed(0)
    mnist = torch.randint(0, 256, (30, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (30,), generator=g)
    fashion = torch.randint(0, 256, (20, 28, 28), generator=g, dtype=torch.uint8)
    for model, names in ((small_capsnet(), {"max_length", "reconstruction_distance"}), (small_cnn(), {"max_softmax"})):
        seen = []
        r = trust.trust_sections(model, mnist, labels, fashion, ood_size=12, noise=9, blank=3, attack_images=5,
                             resamples=50, precision="fp32", progress=lambda f, m: seen.append(f))
        r = json.loads(json.dumps(r))  # JSON-ready
        assert [f for f in seen] == sorted(seen) and seen[-1] == pytest.approx(1.0)
        ood, adv = r["ood"], r["adversarial"]
        for key in ("fashion-mnist", "noise", "blank"):
            assert set(ood[key]) == names
            for v in ood[key].values():
                assert v["interval"][0] <= v["auroc"] <= v["interval"][1]
        assert ood["sets"] == {"mnist-test": 12, "fashion-mnist": 12, "noise": 9, "blank": 3}
        assert set(ood["histograms"]) == names and set(ood["thresholds"]) == names
        assert adv["images"] == 5 and adv["eps"] == list(attacks.EPSILONS) and adv["steps"] == attacks.STEPS
        for method in ("fgsm", "pgd"):
            assert len(adv[method]["accuracy"]) == 4 and all(len(s) == 5 for s in adv[method]["right"])
            assert adv[method]["accuracy"] == pytest.approx([100 * s.count("1") / 5 for s in adv[method]["right"]])
        capsnet = isinstance(model, CapsNet)
        assert ("pgd_adaptive" in adv) == capsnet and ("detected" in adv["pgd"]) == capsnet
        assert (adv["detector"] is not None) == capsnet
    with pytest.raises(ValueError, match="unknown sections"):
        trust.trust_sections(small_cnn(), mnist, labels, fashion, sections=["routing"])


def test_parse_sections_and_merge(tmp_path):
    assert parse_sections("ood,adversarial") == ["ood", "adversarial"]
    assert parse_sections("adversarial, core") == ["core", "adversarial"] and parse_sections("all")[0] == "core"
    assert parse_sections("ood,pgd") is None and parse_sections("") is None
    checkpoint = tmp_path / "m.safetensors"
    checkpoint.write_bytes(b"weights")
    from capsules.experiments import FORMAT, VERSION, checkpoint_sha256

    path = tmp_path / "m.experiments.json"
    save_results({"format": FORMAT, "version": VERSION, "checkpoint_sha256": checkpoint_sha256(checkpoint),
                  "robustness": {"rotate": []}, "ood": {"old": 1}}, path)
    merged = merge_results(path, checkpoint, {"ood": {"new": 2}})
    assert merged["robustness"] == {"rotate": []} and merged["ood"] == {"new": 2}
    assert read_results(path, checkpoint) == merged
    checkpoint.write_bytes(b"other weights")  # results of other weights are not merged into
    assert read_results(path, checkpoint) is None and "robustness" not in merge_results(path, checkpoint, {"x": 1})


def test_fashion_loader(tmp_path, monkeypatch):
    def idx(array: np.ndarray, code: int) -> bytes:
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        return gzip.compress(header + array.astype(np.uint8).tobytes())

    pixels = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(idx(pixels, 3))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(idx(np.array([9, 0, 4]), 1))
    x, y = load_fashion("test", tmp_path)
    assert x.dtype == torch.uint8 and x.shape == (3, 28, 28) and np.array_equal(x.numpy(), pixels)
    assert y.tolist() == [9, 0, 4] and CLASSES[9] == "Ankle boot"
    monkeypatch.setenv("CAPSULES_FASHION", str(tmp_path))
    assert load_fashion("test")[1].tolist() == [9, 0, 4]
    monkeypatch.setenv("CAPSULES_FASHION", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match=f"Fashion-MNIST not found.*`{INSTALL}`"):
        load_fashion("test")
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_fashion("train", tmp_path / "nowhere")


@pytest.mark.data
def test_the_command_line_says_how_to_install_fashion_mnist(tmp_path, capsys, data_dir):
    results = tmp_path / "r.json"
    shutil.copy(ROOT / "checkpoints" / "capsnet-mnist.experiments.json", results)
    assert main(["--sections", "ood", "--json", str(results), "--fashion-dir", str(tmp_path / "none"),
                 "--data-dir", str(data_dir), "--device", "cpu"]) == 1
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
    assert main(["--sections", "ood,adversarial", "--json", str(tmp_path / "missing.json"), "--data-dir",
                 str(data_dir), "--device", "cpu"]) == 1
    assert "no results of these weights" in capsys.readouterr().err
    assert main(["--sections", "robustness"]) == 2
