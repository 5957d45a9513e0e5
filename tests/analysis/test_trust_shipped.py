"""Can it be fooled? The shipped results: the ood and adversarial sections of the main CapsNet's
and the CNN's results files, the Fashion-MNIST sample, the tables of docs/experiments.md, and a rerun
of the command line that must agree with them (tests/analysis/test_attacks.py, test_outliers.py and test_trust.py test the code itself)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from capsules.analysis import attacks
from capsules.analysis import trust
from capsules.data import DatasetError
from capsules.data.fashion import SAMPLE, load_fashion, load_fashion_sample
from capsules.experiments import load_results, main

ROOT = Path(__file__).resolve().parents[2]
CAPSNET = ROOT / "checkpoints" / "capsnet-mnist.safetensors"
CNN = ROOT / "checkpoints" / "cnn-mnist.safetensors"
DOC = ROOT / "docs" / "experiments.md"


@pytest.fixture(scope="session")
def fashion_test():
    """Debian's Fashion-MNIST test images; skips without them (a failure under .ci/run)."""
    try:
        return load_fashion("test")
    except DatasetError as exc:
        if os.environ.get("CAPSULES_REQUIRE_DATA", "") not in ("", "0", "false", "no"):
            pytest.fail(f"Fashion-MNIST is required here but: {exc}")
        pytest.skip(str(exc))


def test_the_shipped_sample(fashion_test):
    x, y = load_fashion_sample()
    assert SAMPLE.stat().st_size < 300 * 1024 and x.shape == (300, 28, 28) and x.dtype == torch.uint8
    with np.load(SAMPLE) as f:
        idx = torch.from_numpy(f["indices"])
    assert torch.equal(x, fashion_test[0][idx]) and torch.equal(y, fashion_test[1][idx])


@pytest.fixture(scope="module")
def shipped():
    results = {name: load_results(path) for name, path in (("capsnet", CAPSNET), ("cnn", CNN))}
    for name, r in results.items():
        assert r is not None, f"the {name} results are missing or stale"
        assert "ood" in r and "adversarial" in r, (f"{name}: run python -m capsules.experiments --sections "
                                                   "ood,adversarial --checkpoint ...")
    return results


def test_the_shipped_sections(shipped):
    for name, r in shipped.items():
        ood, adv = r["ood"], r["adversarial"]
        names = ("max_length", "reconstruction_distance") if name == "capsnet" else ("max_softmax",)
        for key in ("fashion-mnist", "noise", "blank"):
            assert tuple(ood[key]) == names
            for v in ood[key].values():
                assert 0.5 < v["auroc"] <= 1.0 and v["interval"][0] <= v["auroc"] <= v["interval"][1]
        assert ood["sets"]["mnist-test"] == trust.OOD_SIZE and ood["sets"]["fashion-mnist"] == trust.OOD_SIZE
        assert adv["images"] == 1000 and adv["eps"] == [0.05, 0.1, 0.2, 0.3] and adv["steps"] >= 20
        assert adv["clean"]["accuracy"] > 98.5 and adv["library"]["torch"]
        methods = ("fgsm", "pgd", "pgd_adaptive") if name == "capsnet" else ("fgsm", "pgd")
        assert tuple(m for m in attacks.METHODS if m in adv) == methods
        for method in methods:
            acc = adv[method]["accuracy"]
            assert acc == pytest.approx([100 * s.count("1") / 1000 for s in adv[method]["right"]])
            assert acc[0] < adv["clean"]["accuracy"] and acc[-1] <= acc[0]
        assert all(b <= a for a, b in zip(adv["fgsm"]["accuracy"], adv["pgd"]["accuracy"]))
        assert ood["seconds"] + adv["seconds"] <= 600, f"{name}: over ten minutes"
    det = shipped["capsnet"]["adversarial"]["detector"]
    assert det["threshold"] == pytest.approx(shipped["capsnet"]["ood"]["thresholds"]["reconstruction_distance"]["value"],
                                             rel=0.02)  # the bf16 threshold against the fp32 one
    assert abs(shipped["capsnet"]["adversarial"]["clean"]["flagged"] - 5.0) < 3.0  # 5% false positives, 1000 images
    assert shipped["cnn"]["adversarial"]["detector"] is None


def test_the_doc_table_is_the_shipped_numbers(shipped):
    table = trust.markdown(shipped["capsnet"], shipped["cnn"])
    assert table in DOC.read_text(), "docs/experiments.md is stale: run python -m capsules.zoo --update-docs"
    ood = shipped["capsnet"]["ood"]["fashion-mnist"]["max_length"]
    assert f"{ood['auroc']:.3f} [{ood['interval'][0]:.3f}, {ood['interval'][1]:.3f}]" in table


@pytest.mark.slow
@pytest.mark.data
def test_a_rerun_agrees_with_the_shipped_numbers(tmp_path, data_dir, fashion_test, shipped):
    """The command line again on the same subsets with the same seed: the outlier section in full
    (the same 2,000 + 2,000 + 1,100 images: the same AUROCs, intervals and thresholds up to float
    noise) and the attacks on the first 20 of the 1,000 images (each image's verdicts depend on that
    image alone: at most one image of 20 may differ at each radius, by float noise near a boundary)."""
    out = tmp_path / "capsnet.experiments.json"
    shutil.copy(ROOT / "checkpoints" / "capsnet-mnist.experiments.json", out)
    assert main(["--checkpoint", str(CAPSNET), "--sections", "ood,adversarial", "--attack-images", "20",
                 "--json", str(out), "--data-dir", str(data_dir), "--device", "cpu"]) == 0
    new, old = json.loads(out.read_text()), shipped["capsnet"]
    assert new["robustness"] == old["robustness"]  # the other sections stay
    for key in ("fashion-mnist", "noise", "blank"):
        for name, v in old["ood"][key].items():
            assert new["ood"][key][name]["auroc"] == pytest.approx(v["auroc"], abs=1e-3)
            assert new["ood"][key][name]["interval"] == pytest.approx(v["interval"], abs=2e-3)
    for name, v in old["ood"]["thresholds"].items():
        assert new["ood"]["thresholds"][name]["value"] == pytest.approx(v["value"], rel=1e-4)
    a, b = new["adversarial"], old["adversarial"]
    assert a["detector"]["threshold"] == pytest.approx(b["detector"]["threshold"], rel=1e-3)
    assert a["clean"]["right"] == b["clean"]["right"][:20]
    for method in ("fgsm", "pgd", "pgd_adaptive"):
        for key in ("right", "flagged_images"):
            for mine, theirs in zip(a[method][key], b[method][key]):
                assert sum(x != y for x, y in zip(mine, theirs[:20])) <= 1, (method, key)
