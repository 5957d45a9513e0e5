"""The training queue's decisions (scripts/train_queue.py), read from a run's metrics log with
``--dry-run``: what it would train next, and when a piece has ended by its own rule."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def queue():
    spec = importlib.util.spec_from_file_location("train_queue", ROOT / "scripts" / "train_queue.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_curve(out: Path, val_accuracies: list[float]) -> None:
    out.mkdir(parents=True)
    lines = [json.dumps({"epoch": k + 1, "val_accuracy": a}) for k, a in enumerate(val_accuracies)]
    (out / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (out / "state.safetensors").write_bytes(b"")  # a run folder to resume


@pytest.fixture
def run_cnn(queue, monkeypatch, capsys):
    def run(runs: Path, ended: str = "") -> str:
        monkeypatch.setattr(queue, "CNN_ENDED", ended)  # the rule, not the run this repo records
        queue.train_cnn(runs, "fp32", dry_run=True)
        return capsys.readouterr().out
    return run


def test_the_cnn_trains_on_while_its_best_epoch_is_recent(run_cnn, tmp_path):
    write_curve(tmp_path / "cnn", [98.5, 99.1, 99.0, 99.1, 99.2])  # best at 5; a tie at 4 is no gain
    out = run_cnn(tmp_path)
    assert "would start" in out and "--epochs 6" in out and "--resume" in out


def test_the_cnn_ends_after_patience_epochs_without_a_gain(run_cnn, tmp_path):
    # epoch 5 is the first of the highest accuracy: the tie at 8 does not count as a gain
    write_curve(tmp_path / "cnn", [98.5, 98.7, 99.1, 99.0, 99.2, 99.1, 99.0, 99.2])
    out = run_cnn(tmp_path)
    assert "would start" not in out
    assert "cnn done: epoch 8, best validation accuracy 99.2% at epoch 5" in out


def test_one_epoch_short_of_the_patience_it_trains_another(run_cnn, tmp_path):
    write_curve(tmp_path / "cnn", [98.5, 99.2, 99.1, 99.0])
    assert "--epochs 5" in run_cnn(tmp_path)


def test_a_cnn_run_recorded_as_ended_is_not_trained_again(run_cnn, tmp_path):
    # a new machine: no run folder, the shipped CNN to warm-start from, but the run ended
    out = run_cnn(tmp_path, ended="epoch 16, best validation accuracy 99.5% at epoch 13")
    assert "would start" not in out
    assert "cnn done: epoch 16, best validation accuracy 99.5% at epoch 13" in out
    assert "would start" in run_cnn(tmp_path)  # the same folder with the run still open
