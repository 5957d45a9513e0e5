"""capsules.zoo.comparisons: routing at inference across the zoo, and the CapsNet's robustness against
the CNN's on the same digits."""

from __future__ import annotations

import json
from pathlib import Path

from capsules import zoo
from tests.zoo.helpers import fake


def fake_results(path: Path, correct: dict[int, int], *, random: float = 99.5, class_mean: float = 99.0,
                 sha: str | None = None, paired: dict[int, tuple[int, int]] | None = None) -> None:
    """Test-set experiments beside a fake shipped model, as capsules.experiments writes them."""
    import hashlib

    from capsules import experiments

    results = {"format": experiments.FORMAT, "version": experiments.VERSION, "kind": "capsules.capsnet",
               "test_images": 10000,
               "checkpoint_sha256": sha or hashlib.sha256(path.read_bytes()).hexdigest(),
               "iterations_correct": {str(k): correct.get(k, 9900) for k in range(1, 11)},
               "ablations": {"random": {"accuracy": random}, "class_mean": {"accuracy": class_mean}}}
    if paired is not None:  # right answers turned wrong, wrong ones right, against k = 1
        results["dynamics"] = {"right_to_wrong_from_k1": [paired.get(k, (0, 0))[0] for k in range(1, 11)],
                               "wrong_to_right_from_k1": [paired.get(k, (0, 0))[1] for k in range(1, 11)]}
    experiments.results_path(path).write_text(json.dumps(results))


def test_routing_at_inference_across_the_zoo(tmp_path):
    fake_results(fake(tmp_path, "capsnet-mnist", epoch=29), {1: 9960, 3: 9956, 10: 9950})
    fake_results(fake(tmp_path, "capsnet-mnist-r3", epoch=10), {1: 9950, 3: 9951, 10: 9900})  # routing ahead
    fake_results(fake(tmp_path, "capsnet-mnist-r1", iterations=1), {1: 9946, 3: 9942, 10: 9902},
                 random=99.46, class_mean=99.46)
    fake(tmp_path, "capsnet-mnist-r1-norecon", iterations=1, recon=0.0)  # no results: left out
    fake_results(fake(tmp_path, "capsnet-mnist-r3-norecon", recon=0.0), {1: 9943}, sha="0" * 64)  # other weights
    fake(tmp_path, "cnn-mnist", kind="cnn")
    fake_results(fake(tmp_path, "capsnet-multimnist", dataset="multimnist"), {1: 6000})
    table = zoo.routing_at_inference(zoo.list_shipped(tmp_path))
    assert [m.name for m, _ in table.models] == ["capsnet-mnist-r1", "capsnet-mnist-r3", "capsnet-mnist"]
    rows = table.records()
    assert rows[0] == {"model": "capsnet-mnist-r1", "trained with": "r = 1, with reconstruction", "epochs": "10",
                       "k = 1 (uniform c)": "99.46% (own)", "k = 3": "99.42%", "k = 10": "99.02%",
                       "random c": "99.46%", "class-mean c": "99.46%"}
    assert rows[2]["k = 3"] == "99.56% (own)" and rows[2]["k = 1 (uniform c)"] == "99.60%" and rows[2]["epochs"] == "29"
    md = table.markdown().splitlines()
    assert md[0] == "| " + " | ".join(zoo.ROUTING_COLUMNS) + " |" and len(md) == 5
    summary = table.summary
    assert ("Trained with r = 1 (capsnet-mnist-r1): k = 3 at inference, more than trained with, against their own "
            "k = 1: \u22120.04 points (routing ahead in 0 of 1); the difference is within the noise") in summary
    # 99.02% [98.81, 99.20] against 99.46% [99.31, 99.58]: apart
    assert "k = 10 against k = 1: \u22120.44 points (routing ahead in 0 of 1); beyond the noise (95% intervals " \
           "apart) for capsnet-mnist-r1." in summary
    assert ("Trained with r = 3 (capsnet-mnist-r3, capsnet-mnist): own routing (k = 3) against uniform coupling "
            "(k = 1): +0.01, \u22120.04 points (routing ahead in 1 of 2); every difference is within the noise"
            ) in summary
    assert ("k = 10 against k = 1: \u22120.50, \u22120.10 points (routing ahead in 0 of 2); beyond the noise (95% "
            "intervals apart) for capsnet-mnist-r3, within it for capsnet-mnist.") in summary
    assert zoo.routing_at_inference([]).summary == "No shipped MNIST CapsNet has its test-set experiments yet."


def test_routing_at_inference_judges_the_noise_on_the_changed_predictions(tmp_path):
    """With the changed predictions recorded, routing against k = 1 is a paired comparison: an
    exact McNemar test judges it. 10 right answers turned wrong and none right (p = 0.002) is
    beyond the noise even where the two accuracies' intervals overlap."""
    fake_results(fake(tmp_path, "capsnet-mnist", epoch=29), {1: 9960, 3: 9956, 10: 9950},
                 paired={3: (4, 0), 10: (10, 0)})
    fake_results(fake(tmp_path, "capsnet-mnist-r3"), {1: 9950, 3: 9946, 10: 9946}, paired={3: (6, 2), 10: (5, 1)})
    summary = zoo.routing_at_inference(zoo.list_shipped(tmp_path)).summary
    assert ("own routing (k = 3) against uniform coupling (k = 1): \u22120.04, \u22120.04 points (routing ahead in 0 "
            "of 2); changed predictions, right \u2192 wrong / wrong \u2192 right: 6/2, 4/0 (exact McNemar p = 0.29, "
            "0.12); every difference is within the noise (p \u2265 0.05).") in summary
    assert ("k = 10 against k = 1: \u22120.04, \u22120.10 points (routing ahead in 0 of 2); changed predictions, right "
            "\u2192 wrong / wrong \u2192 right: 5/1, 10/0 (exact McNemar p = 0.22, 0.002); beyond the noise "
            "(p < 0.05) for capsnet-mnist, within it for capsnet-mnist-r3.") in summary
    # one model without the changed predictions (results computed before they were recorded): intervals for all
    fake_results(fake(tmp_path, "capsnet-mnist-r3-norecon", recon=0.0), {1: 9943, 3: 9939})
    assert "(95% intervals overlap)" in zoo.routing_at_inference(zoo.list_shipped(tmp_path)).summary


def fake_robustness(path: Path, hits: dict[str, list[list[bool]]], *, kind: str = "capsules.capsnet",
                    counts: bool = True, seed: int = 0) -> None:
    """Robustness results beside a fake shipped model from ``hits[transform][digit][point]``: the
    curve is each point's share of digits right, the per-image counts each digit's points right."""
    import hashlib

    from capsules import experiments
    from capsules.analysis.transforms import TRANSFORMS

    values = {"rotate": [-10.0, 0.0, 10.0], "scale": [0.9, 1.0, 1.1], "shear": [-10.0, 0.0, 10.0],
              "shift_x": [-2.0, 0.0, 2.0]}
    n = len(next(iter(hits.values())))
    results = {"format": experiments.FORMAT, "version": experiments.VERSION, "kind": kind, "test_images": 10000,
               "checkpoint_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
               "robustness": {k: [[v, 100 * sum(d[i] for d in hits[k]) / n] for i, v in enumerate(values[k])]
                              for k in values},
               "robustness_subset": n, "robustness_seed": seed, "robustness_units": {k: TRANSFORMS[k].unit for k in values}}
    if counts:
        results["robustness_right"] = {k: [sum(d) for d in hits[k]] for k in values}
    experiments.results_path(path).write_text(json.dumps(results))


def test_robustness_against_the_cnn_tests_each_transform_on_the_same_digits(tmp_path):
    """Per transform: the range each model keeps at 95% or more, the ends, the means, the digits
    each gets right at more points and the paired test; ahead, behind and within, each said."""
    import math
    every, none, middle = [True] * 3, [False] * 3, [False, True, False]  # middle: the identity
    n = 40
    capsnet = {"rotate": [every] * 20 + [middle] * 20,  # ahead on 20 digits, behind on none
               "scale": [middle] * 12 + [every] * 28,  # behind on 12
               "shear": [every] * 3 + [none] * 2 + [every] * 35,  # 3 against 2: within the noise
               "shift_x": [every] * n}
    cnn = {"rotate": [middle] * n, "scale": [every] * n, "shear": [none] * 3 + [every] * 2 + [every] * 35,
           "shift_x": [every] * n}
    main, other = fake(tmp_path, "capsnet-mnist", epoch=29), fake(tmp_path, "cnn-mnist", kind="cnn")
    fake_robustness(main, capsnet)
    assert zoo.robustness_against_cnn(zoo.list_shipped(tmp_path)).cnn is None  # the CNN has no results yet
    assert "no baseline CNN is shipped with robustness curves" in zoo.robustness_against_cnn(
        zoo.list_shipped(tmp_path)).summary
    fake_robustness(other, cnn, kind="capsules.baseline-cnn")
    found = zoo.robustness_against_cnn(zoo.list_shipped(tmp_path))
    assert found.capsnet[0].name == "capsnet-mnist" and found.cnn[0].name == "cnn-mnist"
    md = found.markdown().splitlines()
    assert md[0] == ("| transform | range | capsnet-mnist: \u2265 95% for | cnn-mnist: \u2265 95% for | capsnet-mnist: "
                     "at the ends | cnn-mnist: at the ends | mean over the curve | digits right at more points: "
                     "CapsNet / CNN (paired test) |")
    # per-digit differences: rotate 20 x 2 and 20 x 0 (z = sqrt(39)); scale 12 x -2 and 28 x 0
    p20 = math.erfc(math.sqrt(39) / math.sqrt(2))
    p12 = math.erfc(0.6 / math.sqrt((12 * 1.4**2 + 28 * 0.6**2) / 39 / 40) / math.sqrt(2))
    p_shear = math.erfc(0.075 / math.sqrt((3 * 2.925**2 + 2 * 3.075**2 + 35 * 0.075**2) / 39 / 40) / math.sqrt(2))
    assert md[2] == (f"| rotation (degrees, counter-clockwise) | \u221210 \u2026 10 | 0 \u2026 0 | 0 \u2026 0 | "
                     f"50.0% at \u221210, 50.0% at 10 | 0.0% at \u221210, 0.0% at 10 | 66.7% / 33.3% | 20 / 0 "
                     f"(p = {p20:.2g}) |")
    assert md[3].endswith(f"| 80.0% / 100.0% | 0 / 12 (p = {p12:.2g}) |") and "| 0.9 \u2026 1.1 |" in md[3]
    assert md[4].endswith(f"| 3 / 2 (p = {p_shear:.2g}) |") and md[5].endswith("| 100.0% / 100.0% | 0 / 0 (p = 1) |")
    summary = found.summary
    assert summary.startswith("capsnet-mnist against cnn-mnist on the same 40 test digits (seed 0)")
    assert f"The CapsNet is ahead beyond the noise under rotation (66.7% against 33.3%, p = {p20:.2g})" in summary
    assert f"the CNN is ahead beyond the noise under scale (80.0% against 100.0%, p = {p12:.2g})" in summary
    assert (f"the difference is within the noise under shear (95.0% against 92.5%, p = {p_shear:.2g}), horizontal "
            "shift (100.0% against 100.0%, p = 1).") in summary

    fake_robustness(other, cnn, kind="capsules.baseline-cnn", counts=False)  # computed before the counts
    old = zoo.robustness_against_cnn(zoo.list_shipped(tmp_path))
    assert "not recorded" in old.markdown() and "the difference is not tested" in old.summary
    fake_robustness(other, cnn, kind="capsules.baseline-cnn", seed=1)  # other digits: not compared
    assert zoo.robustness_against_cnn(zoo.list_shipped(tmp_path)).cnn is None
    main.with_suffix(".experiments.json").unlink()
    assert zoo.robustness_against_cnn(zoo.list_shipped(tmp_path)) is None  # no results for the main model
