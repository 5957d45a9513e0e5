"""The pose explorer: how far each pose value ranges over a class
(capsules.analysis.pose_distribution), the strip drawn under each slider, Fig. 4 on one colour
scale, the experiments command's pose section, and under AppTest the strips with the shipped
results (or the note without them)."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
import torch

from capsules import analysis
from dashboard.figures.pose import perturbation_figure, pose_spread_svg, svg_image


def test_pose_distribution_is_per_predicted_class(tiny_model):
    images = torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8)
    found = analysis.pose_distribution(tiny_model.eval(), images, batch_size=16)
    with torch.inference_mode():
        out = tiny_model(images.unsqueeze(1).float() / 255)
    pred = out.lengths.argmax(-1)
    assert found["counts"] == torch.bincount(pred, minlength=10).tolist() and found["test_images"] == 40
    assert found["quantiles"] == list(analysis.POSE_QUANTILES)
    for j in range(10):
        mine = out.v[pred == j, j]  # (N_j, 16): each image's own capsule j
        if not len(mine):
            assert found["values"][j] == [None] * 16  # a class nobody is read as
            continue
        q = np.array(found["values"][j])  # (16, 7)
        assert q.shape == (16, 7) and (np.diff(q, axis=1) >= 0).all()
        np.testing.assert_allclose(q[:, 3], mine.median(0).values.numpy() if len(mine) % 2 else
                                   np.quantile(mine.numpy(), 0.5, axis=0), atol=1e-4)
        np.testing.assert_allclose(q[:, 0], np.quantile(mine.numpy(), 0.01, axis=0), atol=1e-4)


def _x(svg: str, what: str) -> list[float]:
    return [float(v) for v in re.findall(rf'<{what} x1="([-\d.]+)"', svg)]


def test_the_strip_puts_the_spread_on_the_slider_s_scale():
    spread = [-0.30, -0.20, -0.10, 0.0, 0.10, 0.20, 0.30]  # the 1 … 99% quantiles
    svg = pose_spread_svg(spread, analysis.POSE_QUANTILES, value=0.05, moved=0.30, limit=0.5, what="9 digits")
    assert svg.startswith("<svg") and 'width="100%"' in svg
    # x in percent of the slider's range, value - 0.5 … value + 0.5
    line, median, value, moved = _x(svg, "line")
    assert line == pytest.approx(100 * (-0.30 + 0.45))  # the 1% end
    assert median == pytest.approx(45.0) and value == pytest.approx(50.0) and moved == pytest.approx(75.0)
    boxes = re.findall(r'<rect x="([-\d.]+)" y="\d+" width="([-\d.]+)"', svg)
    assert [(float(a), float(b)) for a, b in boxes] == [pytest.approx((25.0, 40.0)), pytest.approx((35.0, 20.0))]
    assert "Over 9 digits: 1%: -0.30" in svg and "with the offset: +0.30" in svg
    far = pose_spread_svg([v + 2 for v in spread], analysis.POSE_QUANTILES, 0.0, 0.0)
    assert set(_x(far, "line")[:2]) == {100.0}  # off the range: cut at its end
    img = svg_image(svg)  # st.html drops inline SVG: an <img> of it, its title the tooltip
    assert img.startswith('<img class="pose-spread" alt="Over 9 digits: 1%: -0.30') and 'title="Over 9' in img
    data = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', img)[1]
    assert base64.b64decode(data).decode() == svg


def test_fig4_is_drawn_on_one_colour_scale(tiny_model):
    pose = np.linspace(-0.2, 0.2, 16).astype(np.float32)
    grid = analysis.perturbation_grid(tiny_model.eval(), pose, 3)
    deltas = analysis.perturbation_deltas()
    plain = perturbation_figure(grid, deltas, 3)
    bar = plain.data[1]
    assert (bar.zmin, bar.zmax, bar.showscale, bar.opacity) == (0.0, 1.0, True, 0)  # the ink's one scale
    change = perturbation_figure(grid, deltas, 3, change=True)
    top = float(np.abs(grid - grid[:, 5:6]).max())
    assert change.data[1].zmin == pytest.approx(-top) and change.data[1].zmax == pytest.approx(top)
    assert "change from offset 0" in change.layout.title.text
    assert change.data[0].source != plain.data[0].source
    import io

    from PIL import Image

    png = np.asarray(Image.open(io.BytesIO(base64.b64decode(change.data[0].source.split(",", 1)[1]))))
    middle = png[:28, 5 * 30:5 * 30 + 28]  # row 1, offset 0: no change, the scale's white middle
    assert (middle[..., 3] == 255).all() and (np.abs(middle[..., :3].astype(int) - 247) < 10).all()
    assert (png[28:30, :, 3] == 0).all()  # the gaps stay transparent


def test_the_pose_view_draws_a_strip_under_each_slider(monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from capsules.experiments import load_results
    from tests.dashboard.helpers import APP

    monkeypatch.setenv("CAPSULES_DEVICE", "cpu")
    monkeypatch.delenv("CAPSULES_CHECKPOINT", raising=False)
    app = AppTest.from_file(str(APP), default_timeout=90)
    app.query_params["tab"] = "pose-perturbation"
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    shipped = (load_results() or {}).get(analysis.POSE_KEY)
    strips = [h for h in app.get("html") if "pose-spread" in h.proto.body]
    notes = " ".join(c.value for c in app.caption)
    if shipped is None:  # results from before the section: the page says how to compute it
        assert not strips and "No spread of the pose values ships with `capsnet-mnist.safetensors`" in notes
        assert "--sections pose` computes it" in notes
        return
    assert len(strips) == 16
    j = app.session_state["pose_digit"] or int(app.metric[0].value.split()[0])
    assert f"the {shipped['counts'][j]:,} test digits the model reads as {j}" in notes
    app.selectbox(key="pose_digit").set_value((j + 1) % 10).run()
    other = [h.proto.body for h in app.get("html") if "pose-spread" in h.proto.body]
    assert len(other) == 16 and other != [h.proto.body for h in strips]


@pytest.mark.data
def test_the_experiments_command_merges_the_pose_section(tmp_path, tiny_model, data_dir, capsys):
    from capsules import experiments
    from capsules.checkpoint import save_model
    from capsules.data import load_mnist

    path = tmp_path / "capsnet-mnist.safetensors"
    save_model(tiny_model, path, {"epoch": 1})
    command = ["--checkpoint", str(path), "--sections", "pose", "--limit", "40", "--data-dir", str(data_dir),
               "--device", "cpu"]
    assert experiments.main(command) == 1  # no results of these weights yet: nothing to merge into
    assert "no results of these weights" in capsys.readouterr().err
    results = {"format": experiments.FORMAT, "version": experiments.VERSION, "checkpoint": path.name,
               "checkpoint_sha256": experiments.checkpoint_sha256(path), "test_images": 40}
    experiments.save_results(results, experiments.results_path(path))
    assert experiments.main(command) == 0
    merged = experiments.load_results(path)
    images, _ = load_mnist("test", data_dir)
    assert merged == {**results, analysis.POSE_KEY: analysis.pose_distribution(tiny_model.eval(), images[:40])}
