"""The two-digit page (MultiMNIST, dashboard/app_pages/two_digits.py) under Streamlit's AppTest."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
from tests.dashboard.helpers import charts, metric, texts, two_digits_app  # noqa: E402

PAIR_CHARTS = {"Reconstructions (Fig. 5)": ("fig_pair_lengths", "fig_pair"),
               "Routing for the pair": ("fig_pair_lengths", "fig_pair_evidence"),
               "Routing iterations": ("fig_pair_lengths", "fig_pair_sweep")}


def sample_pairs(samples):
    import torch

    from capsules.data import MultiMNIST

    return MultiMNIST(torch.from_numpy(samples["images"]), torch.from_numpy(samples["labels"])).test_set()


def expected_pair(model, merged_u8, iterations: int = 3) -> tuple[str, str]:
    """The two longest capsules of ``model`` for a pair, as the page's metrics show them."""
    from capsules import analysis

    merged = merged_u8.numpy() if hasattr(merged_u8, "numpy") else merged_u8
    res = analysis.analyse(model, merged, iterations=iterations)
    a, b = analysis.longest(res.lengths, 2)
    return f"{a} ({res.lengths[a]:.2f})", f"{b} ({res.lengths[b]:.2f})"


def pair_metrics(app) -> tuple[str, str]:
    return metric(app, "Longest capsule"), metric(app, "Second longest")


def test_the_two_digit_page_reads_a_pair_with_its_checkpoint(monkeypatch, tmp_path, pair_checkpoint, samples):
    """Without MNIST: the pairs of the built-in samples (and how to get MNIST); the two longest
    capsules of the tiny checkpoint for the pair shown, every view, the pair picker, the rejected
    capsule picker and r reach the figures."""
    path, model = pair_checkpoint
    app = two_digits_app(monkeypatch, path, tmp_path / "empty")
    assert not app.error and not app.warning  # a trained (if tiny) checkpoint: no untrained warning
    info = " ".join(i.value for i in app.info)
    assert "could not be read" in info and "python -m capsules.data fetch" in info and "built-in sample digits" in info
    pairs = sample_pairs(samples)
    assert pair_metrics(app) == expected_pair(model, pairs.merged[0])
    a, b = (int(d) for d in pairs.labels[0])
    assert f"True digits: **{a}** and **{b}**" in texts(app)
    assert "MultiMNIST test error **42.50 %** [41.53, 43.47] (95% interval, 10,000 pairs); the paper, same " \
           "recipe: 5.2%" in texts(app)  # the sidebar's model panel (the interval: Wilson, 4250 of 10,000)
    assert app.selectbox(key="model_multimnist").value == str(path.resolve())
    for view, keys in PAIR_CHARTS.items():
        app.session_state["pair_view"] = view
        app.run()
        assert not app.exception, [e.value for e in app.exception]
        found = charts(app)
        assert all(k in found for k in keys), (view, list(found))
    # the routing view: each of the two capsules at each of the 3 iterations, and whose ink the votes land on
    app.session_state["pair_view"] = "Routing for the pair"
    app.run()
    evidence = charts(app)["fig_pair_evidence"]
    assert sum(t["type"] == "heatmap" for t in evidence["data"]) == 6
    assert f"% digit {a} · " in texts(app)
    app.slider(key="iterations").set_value(2).run()
    assert sum(t["type"] == "heatmap" for t in charts(app)["fig_pair_evidence"]["data"]) == 4
    # Fig. 5 with another rejected capsule
    app.slider(key="iterations").set_value(3).run()
    app.session_state["pair_view"] = "Reconstructions (Fig. 5)"
    app.run()
    from capsules import analysis

    res = analysis.analyse(model, pairs.merged[0].numpy())
    last = analysis.longest(res.lengths)[-1]
    app.selectbox(key="absent_digit").set_value(last).run()
    assert not app.exception
    titles = [a_["text"] for a_ in charts(app)["fig_pair"]["layout"]["annotations"]]
    assert titles[-1] == f"{last} ({res.lengths[last]:.2f}): rejected"
    # another pair
    app.number_input(key="pair").set_value(3).run()
    assert not app.exception and pair_metrics(app) == expected_pair(model, pairs.merged[3])
    assert f"Pair #3: **{int(pairs.labels[3, 0])}** (red) is built-in sample digit #3" in texts(app)


def test_the_two_digit_page_without_a_checkpoint_runs_an_untrained_capsnet(monkeypatch, tmp_path, samples):
    """No MultiMNIST checkpoint: the page says so with the commands that train and ship one, and
    runs on the seeded, untrained 36x36 CapsNet, labelled untrained."""
    import torch

    from capsules import CapsNet, CapsNetConfig

    app = two_digits_app(monkeypatch, tmp_path / "capsnet-multimnist.safetensors", tmp_path / "empty")
    assert "this is an **untrained** CapsNet" in " ".join(w.value for w in app.warning)
    info = " ".join(i.value for i in app.info)
    assert "No MultiMNIST CapsNet here yet" in info and "**untrained** 36×36 CapsNet" in info
    assert "python -m capsules.train --dataset multimnist --lr 1e-4 --out runs/multimnist" in info
    assert "python -m capsules.ship runs/multimnist/last.safetensors" in info
    assert "checkpoints/capsnet-multimnist.safetensors" in info
    torch.manual_seed(0)
    untrained = CapsNet(CapsNetConfig(image_size=36)).eval()
    assert pair_metrics(app) == expected_pair(untrained, sample_pairs(samples).merged[0])
    assert "An **untrained** CapsNet: these lengths are noise" in texts(app)
    for view in PAIR_CHARTS:
        app.session_state["pair_view"] = view
        app.run()
        assert not app.exception and pair_metrics(app)


@pytest.mark.data
def test_the_two_digit_page_shows_the_multimnist_test_pairs(monkeypatch, data_dir, pair_checkpoint):
    """With MNIST: pair k of the fixed, seeded test set the model is scored on, its true digits
    and the paper's criterion."""
    import torch

    from capsules.data import load_multimnist_test
    from capsules.evaluate import two_digit_correct

    path, model = pair_checkpoint
    app = two_digits_app(monkeypatch, path, data_dir)
    assert not app.info and not app.error
    pairs = load_multimnist_test(data_dir)
    assert app.number_input(key="pair").max == len(pairs) - 1 == 9999
    app.number_input(key="pair").set_value(5).run()
    assert not app.exception
    p = pairs[5]
    a, b = (int(d) for d in p.labels)
    assert f"Pair #5: **{a}** (red) is MNIST test digit #5" in texts(app)
    assert pair_metrics(app) == expected_pair(model, p.merged)
    lengths = model(torch.from_numpy(p.merged.numpy()).float()[None, None] / 255).lengths.detach()
    right = bool(two_digit_correct(lengths, p.labels[None])[0])
    assert ("✓ both read" if right else "✗ not both read") in texts(app)


def test_a_28x28_checkpoint_is_refused_on_the_two_digit_page(monkeypatch, tmp_path):
    from capsules.checkpoint import SHIPPED

    app = two_digits_app(monkeypatch, SHIPPED, tmp_path / "empty")
    error = " ".join(e.value for e in app.error)
    assert f"`{SHIPPED.name}` holds a CapsNet for 28×28 images" in error
    assert "this page shows a MultiMNIST CapsNet (36×36 input)" in error and not app.metric
