"""capsules.analysis: routing traces, evidence maps, Fig. 4 grid and input transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from capsules import analysis as A
from capsules.nn import primary_index


@pytest.fixture()
def image():
    rng = np.random.default_rng(0)
    img = np.zeros((28, 28), np.float32)
    img[6:22, 12:16] = 1.0  # a thick vertical bar, a "1"
    img += 0.1 * rng.random((28, 28), dtype=np.float32)
    return np.clip(img, 0, 1)


@pytest.fixture()
def result(tiny_model, image):
    return A.analyse(tiny_model, image, iterations=3, sweep_iterations=10)


def test_prepare_reads_uint8_and_float():
    u8 = np.full((28, 28), 255, np.uint8)
    assert torch.equal(A.prepare(u8), torch.ones(1, 1, 28, 28))
    assert A.prepare(np.full((28, 28), 0.5)).dtype == torch.float32
    with pytest.raises(ValueError, match="square"):
        A.prepare(np.zeros((27, 28)))
    with pytest.raises(ValueError, match="28x28"):
        A.prepare(np.zeros((27, 27)), side=28)
    np.testing.assert_array_equal(A.as_image(u8), np.ones((28, 28), np.float32))


def test_geometry_from_the_config():
    from capsules import CapsNetConfig

    g = A.Geometry.of(CapsNetConfig())
    assert (g.side, g.grid, g.types, g.field, g.stride, g.caps) == (28, 6, 32, 17, 2, 1152)
    assert g.position(primary_index(7, 2, 3)) == (7, 2, 3)
    small = A.Geometry.of(CapsNetConfig(image_size=20, primary_types=4))
    assert (small.grid, small.caps) == (2, 16)
    cov = A.coverage(small)
    assert cov.shape == (20, 20) and cov.max() == 4 and cov.sum() == 4 * 17 * 17


def test_analyse_shapes(result):
    r = result
    assert r.iterations == 3
    assert r.image.shape == (28, 28) and r.reconstruction.shape == (28, 28)
    assert r.lengths.shape == (10,) and r.v.shape == (10, 16)
    assert r.u.shape == (1152, 8) and r.u_hat.shape == (1152, 10, 16)
    for name in ("c", "b", "agreement", "c_deviation", "c_step"):
        assert getattr(r, name).shape == (3, 1152, 10), name
    assert r.v_per_iteration.shape == (3, 10, 16)
    assert r.lengths_per_iteration.shape == (3, 10) and r.length_change.shape == (3, 10)
    assert r.mass.shape == (3, 10) and r.vote_mass.shape == (3, 10)
    assert r.entropy.shape == (3,)
    assert r.geometry == A.MNIST
    assert r.sweep.lengths.shape == (10, 10) and r.sweep.predictions.shape == (10,)
    assert r.sweep.reconstructions.shape == (10, 28, 28)
    assert r.prediction == int(np.argmax(r.lengths))
    assert r.confidence == pytest.approx(float(r.lengths.max()))
    assert r.runner_up == int(np.argsort(r.lengths)[-2])


def test_first_iteration_is_uniform(result):
    c = result.c
    np.testing.assert_allclose(c[0], 0.1, atol=1e-7)
    assert result.entropy[0] == pytest.approx(np.log(10), abs=1e-6)
    np.testing.assert_allclose(result.mass[0], 115.2, atol=1e-5)  # summed in float64
    np.testing.assert_allclose(result.c_deviation[0], 0.0, atol=1e-7)
    np.testing.assert_array_equal(result.c_step[0], 0.0)
    # later iterations move away from uniform and stay distributions over the 10 digits
    assert np.abs(result.c_deviation[1:]).max() > 0
    np.testing.assert_allclose(c.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(result.c_step[2], c[2] - c[1])


def test_routing_recursion(result):
    # b[t + 1] = b[t] + agreement[t], and c = softmax_j(b)
    np.testing.assert_allclose(result.b[1:], result.b[:-1] + result.agreement[:-1], atol=1e-5)
    b = result.b.astype(np.float64)
    soft = np.exp(b - b.max(-1, keepdims=True))
    np.testing.assert_allclose(result.c, soft / soft.sum(-1, keepdims=True), atol=1e-6)
    agreement = np.einsum("ijm,tjm->tij", result.u_hat, result.v_per_iteration)
    np.testing.assert_allclose(result.agreement, agreement, rtol=1e-4, atol=1e-6)


def test_analysis_matches_forward_pass(tiny_model, image, result):
    with torch.inference_mode():
        out = tiny_model(A.prepare(image), iterations=3)
    np.testing.assert_allclose(result.lengths, out.lengths[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(result.reconstruction, out.reconstruction[0, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(result.lengths_per_iteration[-1], result.lengths, atol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 7])
def test_iteration_sweep_is_routing_with_k_iterations(tiny_model, image, result, k):
    with torch.inference_mode():
        out = tiny_model(A.prepare(image), iterations=k)
    np.testing.assert_allclose(result.sweep.lengths[k - 1], out.lengths[0].numpy(), atol=1e-6)
    assert result.sweep.predictions[k - 1] == int(out.prediction[0])
    np.testing.assert_allclose(result.sweep.reconstructions[k - 1], out.reconstruction[0, 0].numpy(),
                               atol=1e-5)


def test_evidence_map_shape_and_sign(result):
    for spread in A.EVIDENCE_SPREADS:
        m = A.evidence_map(result.c[-1], result.u_hat, result.prediction, spread=spread, image=result.image)
        assert m.shape == (28, 28) and m.dtype == np.float32
        assert (m >= 0).all() and m.max() > 0
    maps = result.evidence()
    assert maps.shape == (3, 10, 28, 28)
    np.testing.assert_allclose(maps[1, 4], A.evidence_map(result.c[1], result.u_hat, 4), rtol=1e-6)
    with pytest.raises(ValueError, match="image"):
        A.evidence_map(result.c[-1], result.u_hat, 4, spread="ink")
    with pytest.raises(ValueError, match="spread"):
        A.evidence_map(result.c[-1], result.u_hat, 4, spread="blur")


@pytest.mark.parametrize("spread", ["mean", "sum"])
@pytest.mark.parametrize("capsule_type,row,col", [(0, 0, 0), (7, 2, 3), (31, 5, 5)])
def test_vote_lands_in_its_receptive_field(spread, capsule_type, row, col):
    rng = np.random.default_rng(1)
    u_hat = rng.normal(size=(1152, 10, 16)).astype(np.float32)
    c = np.zeros((1152, 10), np.float32)
    i = primary_index(capsule_type, row, col)
    c[i, 3] = 0.7
    m = A.evidence_map(c, u_hat, 3, spread=spread)
    rows, cols = A.receptive_field(row, col)
    inside = np.zeros((28, 28), bool)
    inside[rows, cols] = True
    assert inside.sum() == 17 * 17
    assert (m[inside] > 0).all()
    assert (m[~inside] == 0).all()
    vote = 0.7 * np.linalg.norm(u_hat[i, 3])
    if spread == "sum":
        np.testing.assert_allclose(m[inside], vote, rtol=1e-5)
    # another digit receives nothing
    assert (A.evidence_map(c, u_hat, 2, spread=spread) == 0).all()


def test_ink_spread_shares_each_vote_among_the_ink_it_sees():
    rng = np.random.default_rng(2)
    u_hat = rng.normal(size=(1152, 10, 16)).astype(np.float32)
    image = np.zeros((28, 28), np.float32)
    image[10, 12], image[11, 12], image[20, 5] = 1.0, 0.5, 0.25  # three inked pixels
    c = np.zeros((1152, 10), np.float32)
    i = primary_index(4, 1, 2)  # field rows 2..18, cols 4..20: holds the first two pixels only
    c[i, 6] = 0.4
    m = A.evidence_map(c, u_hat, 6, spread="ink", image=image)
    vote = 0.4 * np.linalg.norm(u_hat[i, 6])
    np.testing.assert_allclose([m[10, 12], m[11, 12]], [vote / 1.5, vote * 0.5 / 1.5], rtol=1e-5)
    assert m.sum() == pytest.approx(vote, rel=1e-5)  # the whole vote, on the ink
    assert m[20, 5] == 0 and (m[image == 0] == 0).all()
    np.testing.assert_allclose(A.field_ink(image)[1, 2], 1.5)
    # a field with no ink has nowhere to put its vote
    corner = np.zeros((28, 28), np.float32)
    corner[0, 0] = 1.0  # seen by the field at grid (0, 0) only
    c[:] = 0
    c[primary_index(4, 5, 5), 6] = 0.4
    assert (A.evidence_map(c, u_hat, 6, spread="ink", image=corner) == 0).all()
    c[primary_index(4, 0, 0), 6] = 0.4
    m = A.evidence_map(c, u_hat, 6, spread="ink", image=corner)
    assert m[0, 0] == pytest.approx(0.4 * np.linalg.norm(u_hat[primary_index(4, 0, 0), 6]), rel=1e-5)


def test_coverage_counts_fields():
    cov = A.coverage()
    assert cov[0, 0] == 1 and cov[14, 14] == 36 and cov[27, 27] == 0
    assert cov.sum() == 36 * 17 * 17


def test_evidence_for_one_digit_as_the_page_shows_it(result):
    j = result.prediction
    for spread in ("ink", "mean"):
        votes = result.evidence_for(j, "votes", spread)
        assert votes.shape == (3, 28, 28)
        assert np.isnan(votes[:, 27, :]).all() and np.isnan(votes[:, :, 27]).all()  # in no field
        assert np.isfinite(votes[:, :27, :27]).all() and (votes[:, :27, :27] >= 0).all()
        np.testing.assert_allclose(votes[:, :27, :27], result.evidence(spread)[:, j, :27, :27], rtol=1e-6)
        change = result.evidence_for(j, "change", spread)
        np.testing.assert_allclose(change[:, :27, :27], votes[:, :27, :27] - votes[:1, :27, :27], atol=1e-6)
        proj = result.evidence_for(j, "projected", spread)
        np.testing.assert_allclose(proj[:, :27, :27],
                                   result.evidence(spread, projected=True)[:, j, :27, :27], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="mode"):
        result.evidence_for(j, "loudness")


def test_routing_step_and_the_tie_at_iteration_1(result):
    first = result.routing_step(1, 2)
    assert first.top is None  # every c is 1/10: no primary is the most coupled
    assert first.top_c == pytest.approx(0.1)
    assert abs(first.mass_gap) < 1e-5 and abs(first.entropy_gap) < 1e-6
    assert (first.primaries, first.digits, first.uniform_mass) == (1152, 10, pytest.approx(115.2))
    last = result.routing_step(3, 2)
    i = int(np.argmax(result.c[2, :, 2]))
    assert last.top == result.geometry.position(i)
    assert last.top_c == pytest.approx(float(result.c[2, i, 2]))
    assert last.mass == pytest.approx(float(result.c[2, :, 2].astype(np.float64).sum()))
    assert last.max_deviation == pytest.approx(float(np.abs(result.c[2] - 0.1).max()))


def test_coupling_views(result):
    raw = result.coupling(5, "raw")
    np.testing.assert_array_equal(raw.values, result.c[:, :, 5])
    assert raw.centre == pytest.approx(0.1)
    assert raw.spread == pytest.approx(float(np.abs(result.c[:, :, 5] - 0.1).max()))
    dev = result.coupling(5, "deviation")
    assert dev.centre == 0 and dev.spread == pytest.approx(raw.spread)
    np.testing.assert_allclose(result.coupling(5, "step").values, result.c_step[:, :, 5])
    with pytest.raises(ValueError, match="coupling view"):
        result.coupling(5, "sideways")


def test_reading_of_the_lengths():
    confident = A.reading([0.01, 0.95, 0.02, 0, 0, 0, 0, 0.3, 0, 0])
    assert (confident.prediction, confident.long, confident.confident) == (1, [1], True)
    assert not confident.nothing and not confident.several
    hesitant = A.reading([0.1, 0.7, 0, 0, 0, 0, 0, 0, 0, 0])
    assert hesitant.long == [1] and not hesitant.confident
    nothing = A.reading([0.47, 0.2, 0, 0, 0, 0, 0, 0, 0, 0.3])  # a smiley: 0 at 0.47
    assert nothing.nothing and nothing.prediction == 0 and nothing.length == pytest.approx(0.47)
    two = A.reading([0, 0, 0, 0, 0.88, 0, 0, 0.67, 0, 0])  # "#": 4 at 0.88, 7 at 0.67
    assert two.several and two.long == [4, 7] and not two.confident


def test_sweep_changes_and_long_capsules():
    sweep = A.IterationSweep(lengths=np.array([[0.2, 0.95, 0.1], [0.3, 0.96, 0.92], [0.95, 0.97, 0.5]]),
                             predictions=np.array([1, 1, 0]), reconstructions=np.zeros((3, 28, 28)))
    assert sweep.changes == [3]
    assert sweep.long(1) == [1] and sweep.long(2) == [1, 2] and sweep.long(3) == [1, 0]
    assert sweep.long(3, threshold=0.4) == [1, 0, 2]


def test_training_iterations_from_the_sidecar():
    assert A.training_iterations({"train_config": {"iterations": 2}}) == 2
    assert A.training_iterations({"train_config": {"lr": 1e-3}}) is None  # the CNN: no routing
    assert A.training_iterations({}) is None
    assert A.training_iterations({"train_config": "not a dict ("}) is None


def test_shipped_checkpoint_records_its_routing_iterations():
    from capsules.checkpoint import SHIPPED, read_metadata

    if not SHIPPED.is_file():
        pytest.skip("no shipped checkpoint")
    assert A.training_iterations(read_metadata(SHIPPED)) == 3


def test_perturbation_grid(tiny_model, result):
    pose, digit = result.v[result.prediction], result.prediction
    deltas = A.perturbation_deltas()
    np.testing.assert_allclose(deltas, np.round(np.arange(-0.25, 0.2501, 0.05), 2), atol=1e-7)
    assert deltas[5] == 0.0
    grid = A.perturbation_grid(tiny_model, pose, digit)
    assert grid.shape == (16, 11, 28, 28)
    plain = A.reconstruct(tiny_model, pose, digit)
    assert plain.shape == (28, 28)
    for d in range(16):
        np.testing.assert_allclose(grid[d, 5], plain, atol=1e-6)
    np.testing.assert_allclose(plain, result.reconstruction, atol=1e-5)
    # a non-zero offset in dimension d is the decode of the pose with d moved
    moved = pose.copy()
    moved[4] += 0.25
    np.testing.assert_allclose(grid[4, 10], A.reconstruct(tiny_model, moved, digit), atol=1e-6)
    assert np.abs(grid[4, 10] - plain).max() > 0


def test_transform_identity_returns_same_image(image):
    out = A.transform_image(image)
    assert isinstance(out, np.ndarray) and out.shape == (28, 28)
    np.testing.assert_allclose(out, image, atol=1e-5)
    t = torch.from_numpy(image)
    out_t = A.transform_image(t, rotate=0, scale=1, shift_x=0, shift_y=0, shear=0)
    assert isinstance(out_t, torch.Tensor)
    torch.testing.assert_close(out_t, t, atol=1e-5, rtol=0)


def test_transform_directions():
    dot = np.zeros((28, 28), np.float32)
    dot[14, 20] = 1.0  # right of the centre (the centre is at 13.5)

    def peak(img):
        return tuple(int(v) for v in np.unravel_index(np.argmax(img), img.shape))

    assert peak(A.transform_image(dot, shift_x=3)) == (14, 23)
    assert peak(A.transform_image(dot, shift_y=-2)) == (12, 20)
    r, c = peak(A.transform_image(dot, rotate=90))  # counter-clockwise: right -> up
    assert r < 10 and abs(c - 13.5) <= 1
    r, c = peak(A.transform_image(dot, scale=1.5))  # away from the centre
    assert r in (13, 14, 15) and c > 21
    blob = np.zeros((28, 28), np.float32)
    blob[20, 14] = 1.0  # below the centre: shear (degrees, x += tan(shear) * y) moves it right
    assert peak(A.transform_image(blob, shear=30))[1] > 16 and peak(A.transform_image(blob, shear=-30))[1] < 11
    assert A.transform_image(blob, rotate=-30, shear=10, scale=1.2)[20:26].sum() > 0  # one call, all of them
    with pytest.raises(ValueError):
        A.transform_image(dot, scale=0)
    with pytest.raises(ValueError, match="unknown transform"):
        A.transform_images(dot, [{"twist": 1.0}])


def test_identity_and_offset_pose(tiny_model, result):
    assert A.is_identity({"rotate": 0.0, "scale": 1.0, "shift_x": 0.0, "shift_y": 0.0, "shear": 0.0})
    assert not A.is_identity({"rotate": 0.0, "scale": 1.02})
    pose, digit = result.v[result.prediction], result.prediction
    offsets = np.zeros(16, np.float32)
    offsets[3] = 0.25
    moved, image = A.offset_pose(tiny_model, pose, offsets, digit)
    np.testing.assert_allclose(moved, pose + offsets)
    np.testing.assert_allclose(image, A.reconstruct(tiny_model, pose + offsets, digit), atol=1e-6)


def test_transform_sweep(tiny_model, image):
    sweep = A.transform_sweep(tiny_model, image, "rotate", values=[-30, 0, 30])
    assert sweep.poses.shape == (3, 16) and sweep.lengths.shape == (3, 10)
    assert sweep.images.shape == (3, 28, 28) and sweep.predictions.shape == (3,)
    plain = A.analyse(tiny_model, image)
    assert sweep.digit == plain.prediction
    np.testing.assert_allclose(sweep.images[1], image, atol=1e-5)
    np.testing.assert_allclose(sweep.lengths[1], plain.lengths, atol=1e-4)
    np.testing.assert_allclose(sweep.poses[1], plain.v[plain.prediction], atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(sweep.poses, axis=1), sweep.lengths[:, sweep.digit],
                               rtol=1e-5)
    default = A.transform_sweep(tiny_model, image, "scale", base={"rotate": 10.0}, digit=2)
    assert default.digit == 2 and default.values.shape == (21,)
    assert default.values[0] == pytest.approx(A.TRANSFORMS["scale"].explore[0])
    with pytest.raises(ValueError):
        A.transform_sweep(tiny_model, image, "bend")


def test_projected_evidence_decomposes_the_length_of_s(result):
    # Summed without normalisation, every primary's projected vote lands on 17*17 pixels, so the
    # map's total is 289 * sum_i c_ij u_hat . v/|v| = 289 * |s_j| for every iteration and digit.
    maps = result.evidence("sum", projected=True)
    assert maps.shape == (3, 10, 28, 28)
    s = np.einsum("tij,ijm->tjm", result.c, result.u_hat)
    np.testing.assert_allclose(maps.sum(axis=(-1, -2)) / 289, np.linalg.norm(s, axis=-1), rtol=1e-4)
    # and v = squash(s) is parallel to s
    np.testing.assert_allclose(np.linalg.norm(result.v_per_iteration, axis=-1),
                               np.linalg.norm(s, axis=-1) ** 2 / (1 + np.linalg.norm(s, axis=-1) ** 2),
                               rtol=1e-4)
    # the plain maps are non-negative and total 289 * sum_i c_ij |u_hat|, i.e. the vote mass
    plain = result.evidence("sum")
    np.testing.assert_allclose(plain.sum(axis=(-1, -2)) / 289, result.vote_mass, rtol=1e-4)
    # shared over the ink, an image inked everywhere it is seen gives each field's vote to its
    # 289 pixels equally: the map totals |s_j| itself
    full = A.evidence_maps(result.c, result.u_hat, spread="ink", image=np.ones((28, 28), np.float32),
                           along=result.v_per_iteration)
    np.testing.assert_allclose(full.sum(axis=(-1, -2)), np.linalg.norm(s, axis=-1), rtol=1e-4)


def test_classify_gives_the_cnns_prediction_and_softmax_probability(image):
    from capsules import BaselineCNN, BaselineCNNConfig

    torch.manual_seed(0)
    cnn = BaselineCNN(BaselineCNNConfig(conv_channels=(4, 4, 2), fc_hidden=(8, 8))).eval()
    with torch.no_grad():
        logits = cnn(torch.from_numpy(image)[None, None]).logits[0].double()
    p = torch.exp(logits - logits.logsumexp(0))  # the softmax, computed apart
    answer = A.classify(cnn, image)
    assert answer.prediction == int(logits.argmax()) and answer.probability == pytest.approx(float(p.max()), rel=1e-5)
    np.testing.assert_allclose(answer.probabilities, p.numpy(), rtol=1e-5)
    assert A.classify(cnn, (image * 255).astype(np.uint8)).prediction == answer.prediction  # 0..255 grey levels too
    with pytest.raises(ValueError, match="28x28"):
        A.classify(cnn, np.zeros((36, 36), np.float32))


# ------------------------------------------------------------------------------ two digits (MultiMNIST)


@pytest.fixture(scope="module")
def pair_model():
    """A small untrained CapsNet for MultiMNIST's 36x36 input: 4 types on a 10x10 grid."""
    from capsules import CapsNet, CapsNetConfig

    torch.manual_seed(0)
    return CapsNet(CapsNetConfig(image_size=36, conv1_channels=16, primary_types=4, decoder_hidden=(16, 16))).eval()


@pytest.fixture(scope="module")
def pair_image():
    """A "1" and a "7" overlaid in the 36x36 frame, and each alone."""
    one = np.zeros((36, 36), np.float32)
    one[8:28, 16:19] = 1.0
    seven = np.zeros((36, 36), np.float32)
    seven[9:12, 10:26] = 1.0
    for k in range(16):  # the diagonal
        seven[11 + k, 24 - k // 2:26 - k // 2] = 1.0
    return np.minimum(one + seven, 1.0), np.stack([one, seven])


def test_the_analysis_takes_the_36x36_model(pair_model, pair_image):
    image, _ = pair_image
    res = A.analyse(pair_model, image, iterations=3)
    g = res.geometry
    assert (g.side, g.grid, g.types, g.caps) == (36, 10, 4, 400)
    assert res.c.shape == (3, 400, 10) and res.u_hat.shape == (400, 10, 16)
    assert res.reconstruction.shape == (36, 36) and res.sweep.reconstructions.shape == (10, 36, 36)
    maps = res.evidence_for(res.prediction)
    assert maps.shape == (3, 36, 36)
    assert np.isnan(maps[:, 35]).all() and np.isnan(maps[:, :, 35]).all()  # row and column 35: in no field
    out = pair_model(A.prepare(image))
    np.testing.assert_allclose(res.lengths, out.lengths[0].detach().numpy(), atol=1e-5)


def test_longest_orders_by_length_ties_to_the_lower_digit():
    lengths = np.array([0.1, 0.8, 0.3, 0.8, 0.05, 0.0, 0.3, 0.2, 0.9, 0.0])
    assert A.longest(lengths, 3) == [8, 1, 3]
    assert A.longest(lengths) == [8, 1, 3, 2, 6, 7, 0, 4, 5, 9]
    res = A.Analysis.__new__(A.Analysis)
    res.lengths = lengths
    assert res.runner_up == 1


def test_reconstruct_takes_one_digit_per_pose(tiny_model, result):
    poses = result.v[[3, 5, 3]]
    both = A.reconstruct(tiny_model, poses, [3, 5, 3])
    assert both.shape == (3, 28, 28)
    np.testing.assert_allclose(both[0], A.reconstruct(tiny_model, poses[0], 3), atol=1e-6)
    np.testing.assert_allclose(both[1], A.reconstruct(tiny_model, poses[1], 5), atol=1e-6)
    assert np.abs(both[0] - both[2]).max() == 0
    with pytest.raises(ValueError, match="3 poses but 2 digits"):
        A.reconstruct(tiny_model, poses, [3, 5])


def test_read_pair_decodes_the_two_longest_and_the_rejected_capsule(pair_model, pair_image):
    image, _ = pair_image
    res = A.analyse(pair_model, image, iterations=3)
    pair = A.read_pair(pair_model, res)
    order = A.longest(res.lengths)
    assert pair.digits == (order[0], order[1]) and pair.absent == order[2]
    assert pair.reconstructions.shape == (2, 36, 36) and pair.absent_reconstruction.shape == (36, 36)
    for k, d in enumerate(pair.digits):  # each digit from its own capsule, masked as the decoder is trained
        np.testing.assert_allclose(pair.reconstructions[k], A.reconstruct(pair_model, res.v[d], d), atol=1e-6)
    np.testing.assert_allclose(pair.reconstructions[0], res.reconstruction, atol=1e-6)  # the winner's, as ever
    chosen = order[7]
    other = A.read_pair(pair_model, res, absent=chosen)
    assert other.absent == chosen
    np.testing.assert_allclose(other.absent_reconstruction, A.reconstruct(pair_model, res.v[chosen], chosen), atol=1e-6)
    with pytest.raises(ValueError, match="not one the model rejects"):
        A.read_pair(pair_model, res, absent=order[1])
    # the paper's criterion, as the test error counts it
    assert pair.correct(pair.digits) and pair.correct(pair.digits[::-1])
    assert not pair.correct((order[0], order[2]))


def test_match_sources_pairs_each_reconstruction_with_the_digit_it_redraws(pair_image):
    _, sources = pair_image
    blurred = sources + 0.2  # a reconstruction is never the digit itself
    assert A.match_sources(blurred, sources) == (0, 1)
    assert A.match_sources(blurred[::-1], sources) == (1, 0)
    assert A.match_sources(np.stack([sources[1], sources[1]]), sources) in ((1, 0), (0, 1))
    empty = np.stack([sources[0], np.zeros_like(sources[1])])
    assert A.match_sources(blurred[::-1], empty) == (1, 0)  # the one with ink decides
    with pytest.raises(ValueError, match="expected as many of the same size"):
        A.match_sources(sources, sources[:, :30, :30])


def test_source_shares_split_a_map_between_the_two_digits_ink():
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    a[0, 0] = 1.0  # only digit A
    b[3, 3] = 1.0  # only digit B
    a[1, 1], b[1, 1] = 1.0, 1.0  # both, equally
    a[2, 2], b[2, 2] = 0.75, 0.25  # both, A brighter
    m = np.zeros((4, 4))
    m[0, 0], m[3, 3], m[1, 1], m[2, 2] = 2.0, 1.0, 4.0, 1.0  # total 8
    shares = A.source_shares(m, np.stack([a, b]))
    np.testing.assert_allclose(shares, [(2 + 2 + 0.75) / 8, (1 + 2 + 0.25) / 8])
    assert shares.sum() == pytest.approx(1.0)
    m[0, 3] = 8.0  # evidence on no digit's ink counts in the total only
    np.testing.assert_allclose(A.source_shares(m, np.stack([a, b])).sum(), 0.5)
    m[0, 1] = np.nan  # left out, as the pixels no field reaches
    stacked = A.source_shares(np.stack([m, np.zeros((4, 4))]), np.stack([a, b]))  # leading axes kept
    assert stacked.shape == (2, 2) and (stacked[1] == 0).all()
    with pytest.raises(ValueError, match="do not match"):
        A.source_shares(m, np.stack([a, b])[:, :3])


def test_shares_of_the_ink_evidence_add_up_to_one(pair_model, pair_image):
    image, sources = pair_image
    res = A.analyse(pair_model, image, iterations=3)
    maps = np.stack([res.evidence_for(d, "votes", "ink") for d in A.longest(res.lengths, 2)])  # (2, 3, 36, 36)
    shares = A.source_shares(maps, sources)
    assert shares.shape == (2, 3, 2)
    np.testing.assert_allclose(shares.sum(-1), 1.0, atol=1e-5)  # the "ink" spread puts every vote on ink
    # the "1" is about a third of the ink: at uniform coupling (iteration 1) its share is near that
    assert 0.15 < shares[0, 0, 0] < 0.6
