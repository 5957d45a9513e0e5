"""dashboard.figures: every view is a plotly Figure with the right shapes, frames and lines."""

from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
import pytest

from capsules import analysis
from dashboard.figures.base import (
    DIGIT_COLORS, DIM_COLORS, DIVERGING, PAIR_COLORS, REJECTED_COLOR, SEQUENTIAL, digit_thumbnail, image_figure,
    image_pair_figure, length_change_figure, lengths_figure, lengths_per_iteration_figure, mosaic,
)
from dashboard.figures.experiments import (
    _log_ticks, ablation_figure, confusion_figure, dynamics_figure, iterations_figure, robustness_figure,
)
from dashboard.figures.pose import perturbation_figure, pose_figure, transform_figure
from dashboard.figures.routing import (
    agreement_figure, coupling_figure, coupling_tiles, evidence_figure, evidence_grid_figure, iteration_strip_figure,
    routing_mass_figure,
)
from dashboard.figures.two_digits import overlay, pair_figure


@pytest.fixture(scope="module")
def result():
    import torch

    from capsules import CapsNet

    torch.manual_seed(0)
    model = CapsNet().eval()
    img = np.zeros((28, 28), np.float32)
    img[5:23, 11:16] = 1.0
    res = analysis.analyse(model, img, iterations=3)
    res.grid = analysis.perturbation_grid(model, res.v[res.prediction], res.prediction)
    res.tsweep = analysis.transform_sweep(model, img, "rotate", values=np.linspace(-30, 30, 7))
    return res


def _png_size(uri: str) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).size


def _hlines(fig: go.Figure) -> set[float]:
    return {round(float(s.y0), 6) for s in fig.layout.shapes if s.y0 is not None and s.y0 == s.y1}


def test_palette():
    assert len(DIGIT_COLORS) == 10 and len(set(DIGIT_COLORS)) == 10
    assert len(DIM_COLORS) == 16


def test_image_pair(result):
    fig = image_pair_figure(result.image, result.reconstruction, result.prediction)
    assert isinstance(fig, go.Figure)
    heatmaps = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heatmaps) == 2
    assert all(np.asarray(t.z).shape == (28, 28) for t in heatmaps)
    np.testing.assert_allclose(np.asarray(heatmaps[0].z), result.image)
    assert fig.layout.paper_bgcolor == "rgba(0,0,0,0)"
    single = image_figure(result.image, "x")
    assert np.asarray(single.data[0].z).shape == (28, 28)


def test_lengths_bars_and_thresholds(result):
    fig = lengths_figure(result.lengths, result.prediction)
    assert isinstance(fig, go.Figure)
    bar = fig.data[0]
    assert isinstance(bar, go.Bar) and len(bar.y) == 10
    assert list(bar.marker.color) == list(DIGIT_COLORS)
    assert {0.9, 0.1} <= _hlines(fig)
    assert fig.layout.title.text
    # every digit has its tick label, however narrow the chart
    assert list(fig.layout.xaxis.tickvals) == [str(j) for j in range(10)]
    # the m+ / m- labels sit in the right margin, right of the plot, where no bar label reaches
    labels = {a.text: a for a in fig.layout.annotations}
    for text in ("m⁺ = 0.9", "m⁻ = 0.1"):
        assert labels[text].xref == "paper" and labels[text].x >= 1.0 and labels[text].xanchor == "left"
    assert fig.layout.margin.r >= 50


def test_lengths_per_iteration(result):
    fig = lengths_per_iteration_figure(result.sweep.lengths, highlight=3)
    assert len(fig.data) == 10
    assert all(len(t.y) == 10 for t in fig.data)
    assert [t.line.color for t in fig.data] == list(DIGIT_COLORS)
    assert {0.9, 0.1} <= _hlines(fig)
    # points above m+ stand out: r = 10 driving capsules towards 1 is visible
    lengths = np.full((10, 10), 0.05)
    lengths[:, 4] = np.linspace(0.5, 1.0, 10)
    big = lengths_per_iteration_figure(lengths, highlight=3).data[4].marker.size
    assert [s_ > 5 for s_ in big] == list(lengths[:, 4] > 0.9)
    change = length_change_figure(result.length_change)
    assert len(change.data) == 10 and all(len(t.y) == 2 for t in change.data)  # 1->2, 2->3


def test_coupling_layout(result):
    tiles = coupling_tiles(np.arange(1152))
    assert tiles.shape == (4 * 6 + 3, 8 * 6 + 7)
    assert tiles[0, 0] == 0 and tiles[0, 7] == 36  # type 1 starts right of type 0's tile
    assert tiles[7, 0] == 8 * 36  # row 2 of tiles starts at type 8
    assert np.isnan(tiles[6, 0]) and np.isnan(tiles[0, 6])
    fig = coupling_figure(result.c_deviation[-1, :, 2], 2)
    assert isinstance(fig, go.Figure) and len(fig.frames) == 0
    assert np.asarray(fig.data[0].z).shape == tiles.shape
    assert fig.data[0].zmid == 0
    # raw c: the colour bar shows c itself, white at 1/10, named "c"
    view = result.coupling(2, "raw")
    raw = coupling_figure(view.values[-1], 2, zmax=view.spread, centre=view.centre, colorbar_title="c")
    heat = raw.data[0]
    assert heat.zmid == pytest.approx(0.1) and heat.colorbar.title.text == "c"
    assert heat.zmin == pytest.approx(0.1 - view.spread) and heat.zmax == pytest.approx(0.1 + view.spread)
    np.testing.assert_allclose(np.nanmax(np.asarray(heat.z, dtype=float)), view.values[-1].max(), rtol=1e-6)
    # another geometry: 4 types on a 2x2 grid
    from capsules import CapsNetConfig

    small = analysis.Geometry.of(CapsNetConfig(image_size=20, primary_types=4))
    assert coupling_tiles(np.arange(16), small).shape == (2, 8 * 2 + 7)


def test_coupling_animation_has_one_frame_per_iteration(result):
    fig = coupling_figure(result.c_deviation[:, :, 2], 2)
    assert len(fig.frames) == result.iterations == 3
    assert len(fig.layout.sliders[0].steps) == 3
    # the first frame is iteration 1: uniform coupling, c - 1/10 = 0 everywhere
    z0 = np.asarray(fig.frames[0].data[0].z, dtype=float)
    assert np.nanmax(np.abs(z0)) < 1e-7


def test_routing_mass_and_agreement(result):
    fig = routing_mass_figure(result.mass, result.vote_mass)
    assert len(fig.data) == 20
    np.testing.assert_allclose(fig.data[0].y[0], 10.0, atol=1e-4)  # uniform share at iteration 1
    agr = agreement_figure(result.agreement[1], 2)
    assert np.asarray(agr.data[0].z).shape == (10, 1152)


def test_evidence_frames(result):
    maps = result.evidence_for(result.prediction, "votes", "mean")
    fig = evidence_figure(result.image, maps, result.prediction)
    assert len(fig.frames) == result.iterations
    heat, outline = fig.data
    assert isinstance(heat, go.Heatmap) and isinstance(outline, go.Contour)
    assert np.asarray(heat.z).shape == (28, 28) and np.asarray(outline.z).shape == (28, 28)
    np.testing.assert_allclose(np.asarray(heat.z, dtype=float), maps[-1])  # opens on the last iteration
    assert all(np.asarray(f.data[0].z).shape == (28, 28) for f in fig.frames)
    assert [list(f.traces) for f in fig.frames] == [[0]] * 3
    # magnitudes: a sequential scale from 0; the pixels no field covers are gaps, not a colour
    assert heat.colorscale == go.Heatmap(colorscale=SEQUENTIAL).colorscale and heat.zmid is None
    assert heat.zmin == 0 and heat.zmax == pytest.approx(float(np.nanmax(maps)))
    assert np.isnan(np.asarray(heat.z, dtype=float)[27]).all() and heat.hoverongaps is False
    change = evidence_figure(result.image, maps - maps[:1], result.prediction, diverging=True,
                               iteration=1, outline=False)
    assert len(change.frames) == 3 and change.data[0].zmid == 0 and len(change.data) == 1
    assert change.data[0].colorscale == go.Heatmap(colorscale=DIVERGING).colorscale
    assert change.layout.sliders[0].active == 0


def test_fig4_grid_is_16_by_11(result):
    fig = perturbation_figure(result.grid, analysis.perturbation_deltas(), result.prediction)
    assert isinstance(fig, go.Figure)
    assert len(fig.layout.yaxis.tickvals) == 16 and len(fig.layout.xaxis.tickvals) == 11
    assert fig.layout.meta == {"rows": 16, "cols": 11}
    ticks = list(fig.layout.xaxis.ticktext)
    assert (ticks[0], ticks[5], ticks[10]) == ("-0.25", "+0.00", "+0.25")  # first, middle, last
    assert ticks.count("") == 8 and "steps of 0.05" in fig.layout.xaxis.title.text
    w, h = _png_size(fig.data[0].source)
    assert (h, w) == (16 * 28 + 15 * 2, 11 * 28 + 10 * 2)
    mos = mosaic(result.grid)
    np.testing.assert_array_equal(mos[:28, :28], result.grid[0, 0])
    np.testing.assert_array_equal(mos[30:58, 30:58], result.grid[1, 1])


def test_strip_pose_and_transform(result):
    strip = iteration_strip_figure(result.sweep.reconstructions, result.sweep.predictions)
    assert len(strip.layout.xaxis.tickvals) == 10
    pose = pose_figure(result.v[2], 2, result.v[2] + 0.1)
    assert len(pose.data) == 2 and len(pose.data[0].y) == 16
    # the legend sits under the plot, never over the title
    assert pose.layout.legend.y <= 0 and pose.layout.legend.yref == "container"
    s = result.tsweep
    fig = transform_figure(s.values, s.poses, s.lengths, "rotate", s.digit, current=0.0)
    assert len(fig.data) == 16 + 10
    assert all(len(t.x) == 7 for t in fig.data)
    assert [t.line.color for t in fig.data[16:]] == list(DIGIT_COLORS)
    # every line is named in a legend and in its hover
    assert [t.name for t in fig.data[:16]] == [f"dim {d}" for d in range(1, 17)]
    assert {t.legend for t in fig.data[:16]} == {"legend2"} and fig.layout.legend2.title.text == "pose dim"
    assert all(t.showlegend is not False for t in fig.data)
    assert all(f"<extra>{t.name}</extra>" in t.hovertemplate for t in fig.data)


def test_image_pair_titles_are_short(result):
    fig = image_pair_figure(result.image, result.reconstruction, 7, first="Transformed")
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["Transformed (28×28)", "Reconstruction (7)"]
    assert max(len(t) for t in titles) <= 20  # fits over half of a 300-pixel figure


# ------------------------------------------------------------------------------ test-set experiments


def _vlines(fig: go.Figure) -> list[float]:
    return [float(s.x0) for s in fig.layout.shapes if s.x0 is not None and s.x0 == s.x1]


def test_iterations_figure(shipped_results):
    from dashboard.figures.experiments_notes import iteration_intervals

    acc = np.array(list(shipped_results["iterations"].values()))
    margins = np.array(list(shipped_results["margins"].values()))
    iv = iteration_intervals(shipped_results)
    fig = iterations_figure(acc, iv, margins, trained=3)
    accuracy, margin = fig.data
    np.testing.assert_allclose(accuracy.y, acc)
    np.testing.assert_allclose(np.asarray(accuracy.y) + np.asarray(accuracy.error_y.array), iv[:, 1])
    np.testing.assert_allclose(np.asarray(accuracy.y) - np.asarray(accuracy.error_y.arrayminus), iv[:, 0])
    np.testing.assert_allclose(margin.y, margins)
    assert list(accuracy.x) == list(range(1, 11))
    assert _vlines(fig) == [3.0, 3.0]  # the training r in both panels, and the title says what it is
    assert "r = 3, as trained" in fig.layout.title.text
    assert not _vlines(iterations_figure(acc, iv, margins)) and "as trained" not in \
        iterations_figure(acc, iv, margins).layout.title.text


def test_dynamics_figure(shipped_results):
    dyn = shipped_results["dynamics"]
    fig = dynamics_figure(dyn["logit_change"], dyn["entropy"], dyn["changed_from_k1"], trained=3)
    assert len(fig.data) == 3 and all(len(t.y) == 10 for t in fig.data)
    assert fig.layout.yaxis.type == "log"  # Appendix A's scale
    ticks = list(fig.layout.yaxis.tickvals)
    assert ticks[0] <= min(dyn["logit_change"]) and ticks[-1] >= max(dyn["logit_change"])
    assert all(f"{v:.0e}" == t for v, t in zip(ticks, fig.layout.yaxis.ticktext))
    assert round(np.log(10), 6) in _hlines(fig)  # uniform coupling's entropy
    assert _vlines(fig) == [3.0] * 3
    assert _log_ticks(np.array([6.3e-3, 5.1e-2])) == [5e-3, 1e-2, 2e-2, 5e-2, 1e-1]


def test_ablation_figure_shades_the_reference_interval():
    names = ["own routing", "uniform", "class-mean"]
    acc = np.array([99.56, 99.60, 99.37])
    iv = np.array([[99.41, 99.67], [99.46, 99.71], [99.19, 99.51]])
    fig = ablation_figure(names, acc, iv, reference=0)
    point = fig.data[0]
    assert list(point.y) == names and list(point.text) == ["99.56%", "99.60%", "99.37%"]
    np.testing.assert_allclose(np.asarray(point.x) + np.asarray(point.error_x.array), iv[:, 1])
    np.testing.assert_allclose(np.asarray(point.x) - np.asarray(point.error_x.arrayminus), iv[:, 0])
    band = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(band) == 1 and (band[0].x0, band[0].x1) == (99.41, 99.67)
    lo, hi = fig.layout.xaxis.range
    assert lo < iv[:, 0].min() and hi > iv[:, 1].max()


def test_robustness_figure_takes_several_models(shipped_results):
    from capsules.experiments import accuracy_interval

    caps = shipped_results["robustness"]
    cnn = {kind: [[v, max(0.0, a - 5)] for v, a in curve] for kind, curve in caps.items()}  # a second model
    intervals = {"CapsNet": {k: [list(accuracy_interval(a, 500)) for _, a in c] for k, c in caps.items()}}
    fig = robustness_figure({"CapsNet": caps, "CNN": cnn}, intervals, subset=500)
    assert len(fig.data) == 2 * 4
    assert [t.name for t in fig.data] == ["CapsNet"] * 4 + ["CNN"] * 4
    assert [t.showlegend for t in fig.data] == [True, False, False, False] * 2  # each model once in the legend
    assert len({t.line.color for t in fig.data[:4]}) == 1 and fig.data[0].line.color != fig.data[4].line.color
    rotate = fig.data[0]
    assert list(rotate.x) == [v for v, _ in caps["rotate"]] and list(rotate.y) == [a for _, a in caps["rotate"]]
    assert rotate.error_y.array is not None and fig.data[4].error_y.array is None  # bars only where given
    assert "500 test images" in fig.layout.title.text
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["Rotation", "Scale", "Shear", "Horizontal shift"]
    assert sorted(_vlines(fig)) == [0.0, 0.0, 0.0, 1.0]  # the identity of each transform


def test_confusion_figure_colours_only_the_errors(shipped_results):
    m = np.array(shipped_results["confusion"])
    fig = confusion_figure(m)
    diagonal, errors = fig.data
    z = np.asarray(errors.z, dtype=float)
    assert np.isnan(np.diag(z)).all()
    off = ~np.eye(10, dtype=bool)
    np.testing.assert_array_equal(z[off], m[off])
    assert errors.zmax == m[off].max()
    assert errors.text[5][3] == str(m[5, 3]) and errors.text[0][0] == str(m[0, 0])  # every count printed
    assert errors.text[0][1] == ""  # no zeros
    assert np.isnan(np.asarray(diagonal.z, dtype=float)[off]).all()


def test_digit_thumbnail():
    img = np.zeros((28, 28), np.uint8)
    img[3, 4] = 200
    big = digit_thumbnail(img, 3)
    assert big.shape == (84, 84) and big.dtype == np.uint8
    assert (big[9:12, 12:15] == 200).all() and big.sum() == 200 * 9
    assert digit_thumbnail(img.astype(np.float32) / 255, 2).max() == 200


# ------------------------------------------------------------------------------ two digits (Fig. 5)


def test_lengths_outline_both_digits_of_a_pair(result):
    fig = lengths_figure(result.lengths, (3, 7))
    widths = list(fig.data[0].marker.line.width)
    assert [j for j, w in enumerate(widths) if w] == [3, 7]
    one = lengths_figure(result.lengths, 5)
    assert [j for j, w in enumerate(one.data[0].marker.line.width) if w] == [5]


def test_overlay_draws_each_digit_in_its_colour_over_the_dimmed_input():
    image = np.zeros((4, 4), np.float32)
    image[0, :] = 1.0
    a = np.zeros((4, 4), np.float32)
    b = np.zeros((4, 4), np.float32)
    a[1, 1], b[2, 2] = 1.0, 1.0
    a[3, 3] = b[3, 3] = 1.0  # both read here: red + green = yellow
    a[0, 0] = 0.2  # fainter than the input: the input shows
    out = overlay(image, [a, b], ["#ff0000", "#00ff00"], base=0.5)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert tuple(out[0, 1]) == (128, 128, 128)  # grey input at half strength
    assert tuple(out[0, 0]) == (128, 128, 128)  # the brighter of the two, channel by channel
    assert tuple(out[1, 1]) == (255, 0, 0) and tuple(out[2, 2]) == (0, 255, 0)
    assert tuple(out[3, 3]) == (255, 255, 0) and tuple(out[1, 2]) == (0, 0, 0)
    np.testing.assert_array_equal(overlay(image, base=1.0)[..., 0], (image * 255).astype(np.uint8))
    coloured = digit_thumbnail(out, 3)  # enlarged as a grey digit is
    assert coloured.shape == (12, 12, 3) and tuple(coloured[4, 4]) == (255, 0, 0)


def test_pair_figure_is_the_papers_fig_5():
    import base64
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    image = rng.random((36, 36)).astype(np.float32)
    recons = rng.random((2, 36, 36)).astype(np.float32)
    lengths = np.linspace(0.0, 0.9, 10)
    fig = pair_figure(image, recons, (9, 8), lengths, recons[0], 2, colors=PAIR_COLORS[::-1])
    assert len(fig.data) == 5 and all(isinstance(t, go.Image) for t in fig.data)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["Input", "9 (0.90)", "8 (0.80)", "9 and 8", "2 (0.20): rejected"]
    colours = [a.font.color for a in fig.layout.annotations]
    assert colours[1:3] == list(PAIR_COLORS[::-1]) and colours[4] == REJECTED_COLOR
    panels = [np.asarray(Image.open(io.BytesIO(base64.b64decode(t.source.split(",", 1)[1]))).convert("RGB"))
              for t in fig.data]
    assert all(p.shape == (36, 36, 3) for p in panels)
    np.testing.assert_array_equal(panels[0], overlay(image, base=1.0))
    np.testing.assert_array_equal(panels[1], overlay(image, [recons[0]], [PAIR_COLORS[1]]))
    np.testing.assert_array_equal(panels[3], overlay(image, recons, PAIR_COLORS[::-1]))
    np.testing.assert_array_equal(panels[4], overlay(image, [recons[0]], [REJECTED_COLOR]))
    assert fig.layout.paper_bgcolor == "rgba(0,0,0,0)"


def test_evidence_grid_has_one_panel_per_capsule_and_iteration_on_one_scale():
    rng = np.random.default_rng(1)
    image = (rng.random((36, 36)) > 0.7).astype(np.float32)
    maps = rng.random((2, 3, 36, 36)).astype(np.float32)
    maps[:, :, 35] = np.nan
    fig = evidence_grid_figure(image, maps, (4, 1), colors=PAIR_COLORS)
    heats = [t for t in fig.data if isinstance(t, go.Heatmap)]
    outlines = [t for t in fig.data if isinstance(t, go.Contour)]
    assert len(heats) == 6 and len(outlines) == 6
    for k in range(2):
        for t in range(3):
            np.testing.assert_allclose(np.asarray(heats[3 * k + t].z, dtype=float), maps[k, t])
    assert {h.coloraxis for h in heats} == {"coloraxis"}
    axis = fig.layout.coloraxis
    assert axis.cmin == 0 and axis.cmax == pytest.approx(float(np.nanmax(maps)))
    assert [a.text for a in fig.layout.annotations] == ["iteration 1", "iteration 2", "iteration 3"]
    assert fig.layout.yaxis.title.text == "<b>capsule 4</b>" and fig.layout.yaxis.title.font.color == PAIR_COLORS[0]
    assert fig.layout.yaxis4.title.text == "<b>capsule 1</b>" and fig.layout.yaxis4.title.font.color == PAIR_COLORS[1]
    signed = evidence_grid_figure(image, maps - 0.5, (4, 1), diverging=True, outline=False)
    assert len(signed.data) == 6 and signed.layout.coloraxis.cmid == 0
    assert signed.layout.coloraxis.cmin == -signed.layout.coloraxis.cmax
