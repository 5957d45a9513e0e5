"""Training and evaluating the baseline CNN (the paper's comparison model) with the same loop."""

import json

import pytest
import torch

from capsules import BaselineCNN, BaselineCNNConfig, CapsNet, load_model
from capsules.checkpoint import save_model
from capsules.data import to_float
from capsules.train import TrainConfig, TrainingError, train
from tests.train.helpers import SMALL_CNN, tiny_run


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
    last = load_model(tmp_path / "full" / "last.safetensors", "cpu")
    ema = load_model(tmp_path / "full" / "last-ema.safetensors", "cpu")
    assert type(last) is type(ema) is BaselineCNN and last.config == BaselineCNNConfig()
    assert last.metadata["format"] == "capsules.baseline-cnn" and ema.metadata["weights_average"]["decay"] == 0.9
    images, labels = mnist_test
    prediction = last(to_float(images[:50])).prediction
    assert prediction.shape == (50,) and int((prediction == labels[:50]).sum()) == log[1]["test_correct"]

    # --init-from a CNN checkpoint (lr 0: the weights stay where they start); not from a CapsNet's
    tiny_run(tmp_path, data_dir, "init", model="cnn", init_from=str(tmp_path / "full" / "last.safetensors"), lr=0.0)
    started = load_model(tmp_path / "init" / "last.safetensors", "cpu")
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
        a = load_model(tmp_path / "full" / f"{name}.safetensors", "cpu")
        b = load_model(tmp_path / "cut" / f"{name}.safetensors", "cpu")
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
