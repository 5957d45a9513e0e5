"""The Models page: capsules/zoo/cards.py (a shipped model's story from its JSON), its figures
(dashboard/figures/model_cards.py, without Streamlit) and, under AppTest, a learning curve drawn
for a model whose JSON keeps one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from capsules.checkpoint import SHIPPED, read_metadata
from capsules.zoo import Shipped, list_shipped, table1
from capsules.zoo.cards import architecture, model_card, parameters
from dashboard.figures.model_cards import learning_curve_figure, table1_figure


def curve(epochs: int, held: str = "test") -> list[dict]:
    """A learning curve as capsules.train keeps it (capsules/train/loop.py, end_of_epoch)."""
    return [{"epoch": e, "step": 100 * e, "lr": 1e-3 * 0.9 ** e, "train_loss": 0.1 / e, "train_accuracy": 95 + e / 10,
             f"{held}_accuracy": 96 + e / 10, f"{held}_correct": 960 + e, f"{held}_total": 1000,
             f"{held}_loss": 0.05 / e, "epoch_seconds": 60.0, "train_seconds": 60.0 * e, "images_per_second": 100.0}
            for e in range(1, epochs + 1)]


def test_the_shipped_capsnet_s_card_says_what_its_json_says():
    from capsules import load_model
    from capsules.nn.capsnet import count_parameters

    info = read_metadata(SHIPPED)
    card = model_card(Shipped.of(SHIPPED, info), info)
    assert card.parameters == count_parameters(load_model(SHIPPED, "cpu")) == 8_215_568
    assert card.architecture.startswith("28×28 input → Conv1 256 × 9×9 → PrimaryCaps 32 types × 6×6 (1,152 capsules")
    assert card.architecture.endswith("decoder 512-1024-784")
    assert [r.epochs for r in card.runs] == [29, 11] and card.first_epoch == 29
    assert card.runs[0].commands[0] == info["init_from"]["commands"][0]
    assert card.runs[-1].commands == tuple(info["commands"])
    assert "lr 0.0001" in card.runs[-1].recipe_text and "ema_decay 0.999" in card.runs[-1].recipe_text
    assert "train_subset" not in card.runs[-1].recipe_text  # 0: not used, not said
    assert card.ship_command == f"python -m capsules.ship {info['shipped_from']}"  # the default name: no --name
    assert card.weights_average and card.curve == () and card.held_out is None
    assert card.test_point == (40, info["test_accuracy"])


def test_every_shipped_model_has_a_card():
    for m in list_shipped():
        info = read_metadata(m.path)
        card = model_card(m, info)
        assert card.parameters and card.architecture != "not recorded", m.name
        assert card.runs and card.runs[-1].commands, m.name
        if m.name != f"{m.kind}-{m.dataset}":
            assert card.ship_command.endswith(f"--name {m.name}")
    cnn = read_metadata(SHIPPED.with_name("cnn-mnist.safetensors"))
    assert architecture(cnn).endswith("fc 328 → fc 192 (dropout 0.5) → 10 logits")
    assert 35.0e6 < parameters(cnn) < 35.6e6  # the paper: 35.4M
    assert parameters({"format": "capsules.capsnet", "config": {"no_such": 1}}) is None
    assert architecture({"format": "capsules.capsnet"}) == "not recorded"


def test_a_warm_started_run_counts_its_epochs_from_the_earlier_runs_on_its_data_set():
    info = read_metadata(SHIPPED)
    warm = {**info, "dataset": "multimnist", "epoch": 3, "learning_curve": curve(3, "val"),
            "init_from": {**info["init_from"], "dataset": "mnist", "init_from": None}}
    card = model_card(Shipped.of(SHIPPED, warm), warm)
    assert [r.dataset for r in card.runs] == ["mnist", "multimnist"] and card.first_epoch == 0
    assert card.held_out == "val" and card.series("val_accuracy") == ([1, 2, 3], [96.1, 96.2, 96.3])
    longer = {**info, "learning_curve": curve(2)}
    card = model_card(Shipped.of(SHIPPED, longer), longer)
    assert card.held_out == "test" and card.series("train_loss")[0] == [30, 31]  # after the first run's 29
    assert card.series("no_such_key") == ([], [])


def test_the_learning_curve_figure():
    import plotly.graph_objects as go

    records = curve(5)
    series = {k: ([r["epoch"] for r in records], [r[k] for r in records])
              for k in ("train_accuracy", "test_accuracy", "train_loss", "test_loss", "lr")}
    fig = learning_curve_figure(series, "test", (5, 99.2))
    assert isinstance(fig, go.Figure)
    names = [(t.name, t.yaxis) for t in fig.data]
    assert names == [("training batches", "y"), ("test", "y"), ("training batches", "y2"), ("test", "y2"),
                     ("learning rate", "y3"), ("shipped weights, full test set", "y")]
    np.testing.assert_allclose(fig.data[1].y, [r["test_accuracy"] for r in records])
    assert fig.layout.yaxis2.type == "log" and fig.layout.yaxis3.type == "log"
    assert [t.showlegend for t in fig.data[:5]] == [True, True, False, False, False]  # one legend entry each
    validation = learning_curve_figure({"val_accuracy": ([1], [90.0])}, "val")
    assert [t.name for t in validation.data] == ["validation"]


def test_the_table1_figure_draws_the_intervals_beside_the_paper():
    table = table1(list_shipped())
    points = [{"dataset": r.dataset, "label": f"{r.paper.label} · {r.model.name if r.model else '-'}",
               "paper": r.paper.error(r.dataset), "error": r.model.error if r.model else None,
               "lo": r.model.error_interval[0] if r.model else None,
               "hi": r.model.error_interval[1] if r.model else None} for r in table.rows]
    fig = table1_figure(points)
    paper, measured = fig.data[0], fig.data[1]
    mnist = [p for p in points if p["dataset"] == "mnist"]
    assert list(paper.x) == [p["paper"] for p in mnist if p["paper"] is not None]
    shown = [p for p in mnist if p["error"] is not None]
    assert list(measured.x) == pytest.approx([p["error"] for p in shown])
    np.testing.assert_allclose(np.array(measured.x) + np.array(measured.error_x.array), [p["hi"] for p in shown])
    np.testing.assert_allclose(np.array(measured.x) - np.array(measured.error_x.arrayminus), [p["lo"] for p in shown])
    assert len(fig.layout.annotations) == len({p["dataset"] for p in points})  # a panel per data set


def test_the_models_page_draws_a_kept_learning_curve(tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from tests.dashboard.helpers import APP, charts

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for path in SHIPPED.parent.glob("capsnet-mnist.*"):
        (folder / path.name).symlink_to(path)
    info = read_metadata(SHIPPED)
    (folder / "capsnet-mnist.json").unlink()
    (folder / "capsnet-mnist.json").write_text(json.dumps({**info, "learning_curve": curve(11)}))
    monkeypatch.setenv("CAPSULES_CHECKPOINT_DIR", str(folder))
    monkeypatch.setenv("CAPSULES_DEVICE", "cpu")
    monkeypatch.delenv("CAPSULES_CHECKPOINT", raising=False)
    app = AppTest.from_file(str(APP), default_timeout=90).run()
    app.switch_page("app_pages/model_cards.py").run()
    assert not app.exception, [e.value for e in app.exception]
    found = charts(app)
    assert "fig_table1" in found and "fig_curve" in found
    lines = {t["name"]: t for t in found["fig_curve"]["data"] if t.get("yaxis", "y") == "y"}
    assert lines["test"]["x"] == list(range(30, 41))  # the last run's epochs, after the first run's 29
    assert lines["shipped weights, full test set"]["y"] == [info["test_accuracy"]]
    assert not [i for i in app.info if "no learning curve" in i.value]


@pytest.mark.slow
@pytest.mark.data
def test_a_trained_checkpoint_s_curve_is_what_the_card_reads(tmp_path, data_dir):
    """The keys the card reads are those training writes (a two-epoch run on 32 images)."""
    from capsules.train import TrainConfig, train

    summary = train(TrainConfig(out=str(tmp_path / "run"), data_dir=str(data_dir), train_subset=32, test_subset=16,
                                batch_size=32, epochs=2, precision="fp32"))
    path = tmp_path / "run" / "last.safetensors"
    info = read_metadata(path)
    card = model_card(Shipped.of(path, info), info)
    assert card.held_out == "test" and len(card.curve) == 2 == len(summary["learning_curve"])
    for key in ("train_accuracy", "test_accuracy", "train_loss", "test_loss", "lr"):
        assert card.series(key)[0] == [1, 2], key
    assert card.ship_command is None  # not shipped: no command to say
