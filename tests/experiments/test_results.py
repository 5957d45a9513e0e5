"""capsules.experiments.results and the command line: the results file, its schema, the shipped ones."""

import json

import pytest
import torch
from torch import nn

from capsules.analysis.transforms import ROBUSTNESS
from capsules.checkpoint import SHIPPED, atomic_write_json
from capsules.experiments import (
    FORMAT, VERSION, checkpoint_sha256, confusion_matrix, load_results, main, misclassified, results_path,
    routing_pass, run_experiments,
)
from tests.experiments.helpers import random_images


def test_confusion_and_errors_agree():
    labels = torch.tensor([0, 1, 2, 2, 9])
    lengths = torch.full((5, 10), 0.1)
    lengths[torch.arange(5), torch.tensor([0, 7, 2, 3, 9])] = 0.9
    m = confusion_matrix(labels, lengths.argmax(-1))
    assert m[1][7] == 1 and m[2][3] == 1 and m[2][2] == 1 and sum(map(sum, m)) == 5
    errors = misclassified(labels, lengths)
    assert [(e["index"], e["label"], e["prediction"]) for e in errors] == [(1, 1, 7), (3, 2, 3)]
    assert errors[0]["lengths"][7] == 0.9


def check_schema(results: dict, n: int, iterations: int = 10) -> None:
    keys = [str(k) for k in range(1, iterations + 1)]
    assert results["format"] == FORMAT and results["version"] == VERSION
    assert results["test_images"] == n
    assert list(results["iterations"]) == keys and list(results["margins"]) == keys
    assert all(0 <= a <= 100 for a in results["iterations"].values())
    for key in ("logit_change", "entropy", "changed_from_k1", "right_to_wrong_from_k1", "wrong_to_right_from_k1"):
        assert len(results["dynamics"][key]) == iterations
    dyn = results["dynamics"]
    assert dyn["right_to_wrong_from_k1"][0] == dyn["wrong_to_right_from_k1"][0] == 0
    for k in range(1, iterations + 1):  # the changed predictions: every discordant one among them
        assert dyn["right_to_wrong_from_k1"][k - 1] + dyn["wrong_to_right_from_k1"][k - 1] <= \
            round(dyn["changed_from_k1"][k - 1] * n / 100)
    assert set(results["ablations"]) == {"routing", "uniform", "random", "class_mean"}
    for a in results["ablations"].values():
        assert a["total"] == n and a["interval"][0] <= a["accuracy"] <= a["interval"][1]
    assert results["ablations"]["uniform"]["accuracy"] == results["iterations"]["1"]
    assert results["ablations"]["routing"]["accuracy"] == results["iterations"][str(results["model_iterations"])]
    curves = results["robustness"]
    assert set(curves) == {"rotate", "scale", "shear", "shift_x"}
    assert curves["rotate"][0][0] <= -60 and curves["rotate"][-1][0] >= 60
    assert curves["scale"][0][0] <= 0.5 and curves["scale"][-1][0] >= 1.5
    assert curves["shift_x"][0][0] <= -8 and curves["shift_x"][-1][0] >= 8
    assert all(len(p) == 2 and 0 <= p[1] <= 100 for c in curves.values() for p in c)
    assert 0 < results["robustness_subset"] <= n and isinstance(results["robustness_seed"], int)
    confusion = results["confusion"]
    assert len(confusion) == 10 and sum(map(sum, confusion)) == n
    wrong = n - sum(confusion[k][k] for k in range(10))
    assert len(results["errors"]) == wrong
    assert results["seconds"] > 0 and results["torch"] == torch.__version__ and results["device"]


@pytest.mark.data
def test_command_line_writes_the_json(tmp_path, data_dir):
    out = tmp_path / "r.json"
    assert main(["--data-dir", str(data_dir), "--limit", "30", "--robustness-size", "8",
                 "--json", str(out), "--device", "cpu"]) == 0
    results = json.loads(out.read_text())
    check_schema(results, 30)
    assert results["robustness_subset"] == 8
    assert results["checkpoint_sha256"] == checkpoint_sha256(SHIPPED)


def test_run_experiments_reports_progress_and_refuses_other_models(tiny_model):
    tiny_model.checkpoint_path = None  # an untrained model has no file
    images, labels = random_images(20, seed=4)
    seen = []
    results = run_experiments(tiny_model, images, labels, iterations=4, robustness_size=3, batch_size=8,
                              progress=lambda f, msg: seen.append((f, msg)))
    check_schema(json.loads(json.dumps(results)), 20, iterations=4)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0 <= fractions[0] < 0.5
    assert results["checkpoint_sha256"] is None
    with pytest.raises(ValueError, match="need a CapsNet"):
        run_experiments(nn.Linear(2, 2), images, labels)
    with pytest.raises(ValueError, match="at least the model's 3"):
        routing_pass(tiny_model, images, labels, iterations=2)


def shipped_mnist_models():
    from capsules.zoo import list_shipped

    return [m for m in list_shipped(SHIPPED.parent) if m.dataset == "mnist"]


@pytest.mark.parametrize("model", shipped_mnist_models(), ids=lambda m: m.name)
def test_each_shipped_mnist_model_ships_its_results(model):
    """Every shipped MNIST model has its experiments beside it, computed for its weights, so that the
    experiments page shows them at once whichever model is picked: a CapsNet's all of them (with
    its own test score at the iterations it was trained with), the CNN's robustness curves."""
    results = load_results(model.path)
    assert results is not None, (f"{results_path(model.path)} is missing or was computed for other weights: "
                                 f"run python -m capsules.experiments --checkpoint checkpoints/{model.path.name}")
    info = json.loads(model.path.with_suffix(".json").read_text())
    right = results["robustness_right"]  # per digit, so that two models compare image by image
    assert {k: len(v) for k, v in right.items()} == {k: results["robustness_subset"] for k in results["robustness"]}
    if model.kind == "cnn":
        assert results["kind"] == "capsules.baseline-cnn" and set(results["robustness"]) == set(ROBUSTNESS)
        assert results["test_images"] == 10000
        return
    check_schema(results, 10000)
    assert results["model_iterations"] == model.iterations
    assert results["iterations_correct"][str(results["model_iterations"])] == info["test_correct"]


def test_the_main_model_is_shipped_with_its_results():
    assert SHIPPED in [m.path for m in shipped_mnist_models()]


def test_load_results_refuses_a_sha256_mismatch(tmp_path):
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"weights one")
    assert load_results(ckpt) is None  # no results file
    good = {"format": FORMAT, "version": VERSION, "checkpoint_sha256": checkpoint_sha256(ckpt), "x": 1}
    atomic_write_json(results_path(ckpt), good)
    assert results_path(ckpt).name == "m.experiments.json"
    assert load_results(ckpt) == good
    ckpt.write_bytes(b"weights two")
    assert load_results(ckpt) is None
    ckpt.write_bytes(b"weights one")
    atomic_write_json(results_path(ckpt), {**good, "version": VERSION + 1})
    assert load_results(ckpt) is None
    results_path(ckpt).write_text("{not json")
    assert load_results(ckpt) is None


def test_command_line_errors_are_one_line(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "missing.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not found" in err and err.count("\n") == 1
    assert main(["--robustness-size", "0"]) == 2
