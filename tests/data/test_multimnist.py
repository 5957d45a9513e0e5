"""MultiMNIST (paper section 6): the pair generator, the two-digit loss and the two-digit metric."""

import json
import math

import pytest
import torch

from capsules import CapsNet, CapsNetConfig, load_model
from capsules.data import (MULTI_PAD, MULTI_SHIFT, MultiMNIST, box_overlap, ink_boxes, load_mnist,
                           load_multimnist_test, pair_overlap, place_digits)
from capsules.evaluate import evaluate_multimnist, main, two_digit_correct
from capsules.stats import binomial_interval
from capsules.nn import MarginLoss, TwoDigitLoss, decode_pair
from capsules.train import TrainConfig, two_digit_objective, train


def synthetic_digits(n=200, classes=10, seed=0):
    """Random uint8 28x28 'digits' with ink up to the frame's edge, and unequal class counts."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, classes, (n,), generator=g) ** 2 % classes  # skewed class counts
    return images, labels


def placed_by_hand(digit, dy, dx, pad):
    """The 28x28 digit on a (28 + 2 pad) canvas with its corner at (pad + dy, pad + dx), cropped."""
    side = 28 + 2 * pad
    canvas = torch.zeros(side + 2 * 28, side + 2 * 28, dtype=digit.dtype)  # room for any shift
    canvas[28 + pad + dy:28 + pad + dy + 28, 28 + pad + dx:28 + pad + dx + 28] = digit
    return canvas[28:28 + side, 28:28 + side]


# ------------------------------------------------------------------------------------ generator


def test_pairs_keep_both_shifted_sources_within_bounds():
    images, labels = synthetic_digits()
    ds = MultiMNIST(images, labels)
    batch = ds.pairs(torch.arange(len(ds)).repeat(5), torch.Generator().manual_seed(1))
    assert ds.image_size == 36 and MULTI_PAD == 4 and MULTI_SHIFT == 4
    assert batch.merged.shape == batch.first.shape == batch.second.shape == (1000, 36, 36)
    assert batch.merged.dtype == torch.uint8 and batch.labels.shape == (1000, 2)
    assert batch.shifts.abs().max() <= 4
    assert batch.shifts.min() == -4 and batch.shifts.max() == 4  # the extremes are drawn
    for n in range(0, 1000, 37):
        for k, source in enumerate((batch.first, batch.second)):
            digit = images[batch.index[n, k]]
            dy, dx = batch.shifts[n, k].tolist()
            assert torch.equal(source[n], placed_by_hand(digit, dy, dx, 4))
            assert int(source[n].sum()) == int(digit.sum())  # shifts of up to 4 lose no ink
    assert torch.equal(batch.labels, labels[batch.index])


def test_digit_offsets_span_0_to_8_in_the_36_frame():
    digit = torch.zeros(1, 28, 28, dtype=torch.uint8)
    digit[0, 0, 0] = 255  # the frame's top-left pixel
    for d in range(-4, 5):
        canvas = place_digits(digit, torch.tensor([[d, -d]]))[0]
        assert canvas.shape == (36, 36)
        assert canvas.nonzero().tolist() == [[4 + d, 4 - d]]


def test_shift_beyond_the_padding_crops_like_the_official_code():
    images, labels = synthetic_digits(50)
    batch = MultiMNIST(images, labels, max_shift=6).pairs(torch.arange(50), torch.Generator().manual_seed(2))
    assert batch.shifts.abs().max() == 6
    for n in range(50):
        dy, dx = batch.shifts[n, 0].tolist()
        assert torch.equal(batch.first[n], placed_by_hand(images[n], dy, dx, 4))


def test_merge_is_the_clipped_sum_of_the_two_sources():
    images, labels = synthetic_digits()
    batch = MultiMNIST(images, labels).pairs(torch.arange(200), torch.Generator().manual_seed(3))
    total = batch.first.int() + batch.second.int()
    assert (total > 255).any()  # the clip is exercised
    assert torch.equal(batch.merged.int(), total.clamp(max=255))
    merged, first, second = batch.floats()
    assert merged.shape == (200, 1, 36, 36) and merged.max() <= 1.0
    torch.testing.assert_close(merged, (first + second).clamp(max=1.0), rtol=0, atol=1e-6)


def test_partners_are_another_class_drawn_in_proportion_to_its_digits():
    images, labels = synthetic_digits(300)
    ds = MultiMNIST(images, labels)
    first = torch.zeros(60000, dtype=torch.long)  # always digit 0
    partners = ds.partners(first, torch.Generator().manual_seed(4))
    assert (labels[partners] != labels[0]).all()
    counts = torch.bincount(labels, minlength=10).double()
    counts[labels[0]] = 0
    expected = counts / counts.sum()
    observed = torch.bincount(labels[partners], minlength=10).double() / partners.numel()
    assert (observed - expected).abs().max() < 0.01, (observed, expected)
    # every digit of another class can be drawn
    assert set(partners.tolist()) == set((labels != labels[0]).nonzero().flatten().tolist())


def test_epoch_pairs_every_digit_once_and_repeats_with_the_generator_state():
    images, labels = synthetic_digits(100)
    ds = MultiMNIST(images, labels)
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    batches = list(ds.epoch(32, g))
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    firsts = torch.cat([b.index[:, 0] for b in batches])
    assert sorted(firsts.tolist()) == list(range(100))
    again = list(ds.epoch(32, g))  # the next epoch: fresh pairs
    assert not torch.equal(torch.cat([b.merged for b in again]), torch.cat([b.merged for b in batches]))
    g.set_state(state)
    replay = list(ds.epoch(32, g))
    assert all(torch.equal(a.merged, b.merged) and torch.equal(a.labels, b.labels) for a, b in zip(batches, replay))


def test_bad_input_is_refused_with_a_message():
    images, labels = synthetic_digits(10)
    with pytest.raises(ValueError, match="uint8"):
        MultiMNIST(images.float(), labels)
    with pytest.raises(ValueError, match="two classes"):
        MultiMNIST(images, torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="pairs_per_digit"):
        MultiMNIST(images, labels).test_set(0)


def test_overlap_measures_on_hand_made_boxes():
    a = torch.zeros(2, 36, 36, dtype=torch.uint8)
    b = torch.zeros(2, 36, 36, dtype=torch.uint8)
    a[0, 2:12, 4:9] = 1  # rows 2..11, cols 4..8: 10 x 5 = 50
    b[0, 7:17, 4:9] = 1  # rows 7..16: overlap rows 7..11 x cols 4..8 = 25
    a[1, 0, 0] = b[1, 35, 35] = 1  # disjoint single pixels
    assert ink_boxes(a).tolist() == [[2, 4, 11, 8], [0, 0, 0, 0]]
    overlap = box_overlap(ink_boxes(a), ink_boxes(b))
    torch.testing.assert_close(overlap["iou"], torch.tensor([25 / 75, 0.0], dtype=torch.float64))
    torch.testing.assert_close(overlap["of_smaller"], torch.tensor([0.5, 0.0], dtype=torch.float64))
    images, labels = synthetic_digits(4)
    batch = MultiMNIST(images, labels).pairs(torch.arange(4), torch.Generator().manual_seed(6))
    batch.shifts[:] = torch.tensor([[[0, 0], [0, 0]], [[4, -4], [-4, 4]], [[1, 2], [-1, 0]], [[0, 0], [0, 3]]])
    torch.testing.assert_close(pair_overlap(batch)["frame"],
                               torch.tensor([1.0, 20 * 20 / 784, 26 * 26 / 784, 28 * 25 / 784], dtype=torch.float64))


@pytest.mark.data
def test_fixed_test_set_from_mnist_is_deterministic(data_dir):
    test = load_multimnist_test(data_dir)
    assert len(test) == 10_000 and test.merged.shape == (10_000, 36, 36)
    assert torch.equal(test.index[:, 0], torch.arange(10_000))
    assert (test.labels[:, 0] != test.labels[:, 1]).all()
    _, labels = load_mnist("test", data_dir)
    assert torch.equal(test.labels, labels[test.index])
    again = load_multimnist_test(data_dir)
    for name in ("merged", "first", "second", "labels", "index", "shifts"):
        assert torch.equal(getattr(test, name), getattr(again, name)), name
    other = load_multimnist_test(data_dir, seed=1)
    assert not torch.equal(test.merged, other.merged)
    assert len(load_multimnist_test(data_dir, pairs_per_digit=2)) == 20_000
    # the paper: "about 80%" overlap, which is what the two 28x28 frames give (the ink boxes less)
    assert 0.78 < float(pair_overlap(test)["frame"].mean()) < 0.82


# ----------------------------------------------------------------------------------------- loss


def caps(lengths, pose_dim=16):
    """Capsules (B, k, 16) of the given lengths, along axis 3."""
    lengths = torch.tensor(lengths, dtype=torch.float32)
    v = torch.zeros(*lengths.shape, pose_dim)
    v[..., 3] = lengths
    return v


def test_margin_loss_with_both_digits_present_hand_computed():
    v = caps([[0.95, 0.5, 0.2], [0.3, 0.0, 0.85]])
    labels = torch.tensor([[0, 1], [2, 0]])
    # example 0: present 0.95 -> 0; present 0.5 -> 0.4^2 = 0.16; absent 0.2 -> 0.5 * 0.1^2 = 0.005
    # example 1: present 0.3 -> 0.6^2 = 0.36; absent 0 -> 0; present 0.85 -> 0.05^2 = 0.0025
    expected = ((0.16 + 0.005) + (0.36 + 0.0025)) / 2
    torch.testing.assert_close(MarginLoss(n_labels=3)(v, labels), torch.tensor(expected))
    # one label per example is still the MNIST loss: example 0 (label 0): 0 + 0.5 * 0.4^2 + 0.005;
    # example 1 (label 2): 0.5 * 0.2^2 + 0 + 0.0025
    torch.testing.assert_close(MarginLoss(n_labels=3)(v, labels[:, 0]),
                               torch.tensor(((0.08 + 0.005) + (0.02 + 0.0025)) / 2))


def test_two_digit_loss_hand_computed_and_each_digit_against_its_own_image():
    v = caps([[0.95, 0.5, 0.2]])
    labels = torch.tensor([[0, 1]])
    first, second = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    recon_first, recon_second = torch.full((1, 1, 2, 2), 0.5), torch.zeros(1, 1, 2, 2)
    # margin 0.165; first: 4 x 0.25 x 0.0005 = 0.0005; second: 4 x 1 x 0.0005 = 0.002
    loss = TwoDigitLoss(n_labels=3)(v, (recon_first, recon_second), first, second, labels)
    torch.testing.assert_close(loss, torch.tensor(0.165 + 0.0005 + 0.002))
    swapped = TwoDigitLoss(n_labels=3)(v, (recon_first, recon_second), second, first, labels)
    torch.testing.assert_close(swapped, torch.tensor(0.165 + 4 * 0.25 * 0.0005 + 0.0))
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        TwoDigitLoss(n_labels=3)(v, (recon_first, recon_second), first, second, labels[:, 0])


def test_two_digit_loss_decodes_each_digit_from_its_own_capsule():
    calls = []

    def decode(poses, digits):  # an image that shows which pose and which digit it came from
        calls.append((poses.clone(), digits.clone()))
        return (poses[:, :4] + digits[:, None]).view(-1, 1, 2, 2)

    v = torch.arange(2 * 3 * 16, dtype=torch.float32).view(2, 3, 16) / 100
    labels = torch.tensor([[2, 0], [1, 2]])
    recon_a, recon_b = decode_pair(decode, v, labels)
    assert len(calls) == 1  # one decoder pass for both digits
    torch.testing.assert_close(recon_a[1].flatten(), v[1, 1, :4] + 1)
    torch.testing.assert_close(recon_b[0].flatten(), v[0, 0, :4] + 0)
    torch.testing.assert_close(recon_b[1].flatten(), v[1, 2, :4] + 2)
    first, second = torch.rand(2, 1, 2, 2), torch.rand(2, 1, 2, 2)
    loss_fn = TwoDigitLoss(n_labels=3)
    torch.testing.assert_close(loss_fn(v, decode, first, second, labels),
                               loss_fn(v, (recon_a, recon_b), first, second, labels))


# --------------------------------------------------------------------------------------- metric


def test_two_digit_correct_hand_made():
    lengths = torch.tensor([
        [0.1, 0.9, 0.2, 0.8, 0.0],  # top two {1, 3}
        [0.1, 0.9, 0.2, 0.8, 0.0],
        [0.1, 0.9, 0.2, 0.8, 0.0],
        [0.7, 0.1, 0.1, 0.1, 0.6],  # top two {0, 4}
    ])
    labels = torch.tensor([[3, 1], [1, 3], [1, 2], [4, 1]])
    assert two_digit_correct(lengths, labels).tolist() == [True, True, False, False]


def test_binomial_interval_known_wilson_values():
    lo, hi = binomial_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = binomial_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = binomial_interval(520, 10_000)
    assert lo < 0.052 < hi and hi - lo == pytest.approx(2 * 1.96 * math.sqrt(0.052 * 0.948 / 10_000), rel=0.01)


def test_evaluate_multimnist_counts_the_pairs_the_metric_rejects():
    images, labels = synthetic_digits(60)
    pairs = MultiMNIST(images, labels).test_set()
    torch.manual_seed(0)
    model = CapsNet(CapsNetConfig(image_size=36))
    result = evaluate_multimnist(model, pairs, batch_size=25)
    with torch.no_grad():
        lengths = model(pairs.floats()[0]).lengths
    expected = int((~two_digit_correct(lengths, pairs.labels)).sum())
    assert (result.errors, result.total) == (expected, 60)
    assert result.error == pytest.approx(100 * expected / 60)
    lo, hi = result.interval
    assert lo <= result.error <= hi and math.isfinite(result.loss) and result.loss > 0
    assert result.line().startswith(f"error: {result.error:.2f}% ({expected}/60), 95% interval")


@pytest.mark.data
def test_evaluate_cli_refuses_a_28x28_model_for_multimnist(data_dir, capsys):
    assert main(["--dataset", "multimnist", "--data-dir", str(data_dir), "--device", "cpu"]) == 1
    assert "36x36" in capsys.readouterr().err


# ------------------------------------------------------------------------------ model and smoke


def test_capsnet_for_36x36_input_runs_forward_and_backward():
    cfg = CapsNetConfig(image_size=36)
    assert (cfg.primary_grid, cfg.primary_caps) == (10, 3200)
    torch.manual_seed(0)
    model = CapsNet(cfg)
    assert sum(p.numel() for p in model.parameters()) == 11_361_808  # the paper's 11.36M (section 6)
    x = torch.rand(3, 1, 36, 36)
    labels = torch.tensor([[0, 1], [2, 3], [9, 4]])
    out = model(x, labels[:, 0])
    assert out.v.shape == (3, 10, 16) and out.u.shape == (3, 3200, 8)
    assert out.reconstruction.shape == (3, 1, 36, 36)
    TwoDigitLoss()(out.v, model.decode, x, x, labels).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.data
@pytest.mark.slow
def test_a_few_steps_on_a_tiny_subset_lower_the_two_digit_loss(data_dir):
    images, labels = load_mnist("train", data_dir)
    batch = MultiMNIST(images[:200], labels[:200]).pairs(torch.arange(16), torch.Generator().manual_seed(0))
    x, first, second = batch.floats()
    torch.manual_seed(0)
    model = CapsNet(CapsNetConfig(image_size=36))
    # lr 1e-4: with 16 examples the first Adam step at 1e-3 pushes every capsule length to ~0.98
    # (squash saturated), and 8 steps are too few to come back; 1e-4 shows the descent directly
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = TwoDigitLoss()
    losses = []
    for _ in range(8):
        out = model(x, batch.labels[:, 0])
        loss = loss_fn(out.v, model.decode, first, second, batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses


# ------------------------------------------------------------------------------------- training


def test_two_digit_objective_decodes_each_digit_from_its_own_capsule_inside_autocast():
    images, labels = synthetic_digits(40)
    batch = MultiMNIST(images, labels).pairs(torch.arange(4), torch.Generator().manual_seed(7))
    merged, first, second = batch.floats()
    torch.manual_seed(0)
    model = CapsNet(CapsNetConfig(image_size=36))
    seen = []
    model.decoder.register_forward_hook(lambda module, inputs, output: seen.append((inputs[0], output.dtype)))
    loss_fn = TwoDigitLoss()
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        seen.clear()
        loss, correct = two_digit_objective(loss_fn, precision)(model, (merged, batch.labels, first, second))
        assert [d for _, d in seen] == [dtype, dtype], "both digits decoded under the autocast"
        for (masked, _), digit in zip(seen, (batch.labels[:, 0], batch.labels[:, 1])):
            active = masked.view(4, 10, 16).abs().sum(-1) > 0  # the one capsule the decoder sees
            assert torch.equal(active.float().argmax(-1), digit) and int(active.sum()) == 4
        assert loss.dtype == torch.float32 and 0 <= int(correct) <= 4
    with torch.no_grad():
        out = model(merged)
        expected = loss_fn(out.v, model.decode, first, second, batch.labels)
        loss, correct = two_digit_objective(loss_fn, "fp32")(model, (merged, batch.labels, first, second))
    torch.testing.assert_close(loss, expected)
    assert int(correct) == int(two_digit_correct(out.lengths, batch.labels).sum())


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.data
@pytest.mark.slow
def test_multimnist_training_lowers_the_loss_and_resumes_bit_identically_with_the_moving_average(data_dir, tmp_path):
    # lr 1e-4: at 1e-3 the 36x36 model's capsules saturate in the first steps (see docs/training.md)
    common = dict(dataset="multimnist", data_dir=str(data_dir), train_subset=48, test_subset=24, batch_size=16,
                  lr=1e-4, ema_decay=0.5, eval_batch_size=24)  # default precision: bf16 where native
    full = train(TrainConfig(out=str(tmp_path / "full"), epochs=2, **common))
    log = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and [r["step"] for r in log] == [3, 6]
    assert log[1]["train_loss"] < log[0]["train_loss"]
    for r in log:  # the paper's metric, for the weights and for their moving average
        assert r["test_total"] == r["ema_test_total"] == 24
        assert r["test_error"] == pytest.approx(100 * r["test_errors"] / 24)
        assert r["ema_test_error"] == pytest.approx(100 * r["ema_test_errors"] / 24)
    assert full["dataset"] == "multimnist" and full["test_error"] == log[1]["test_error"]
    last = load_model(tmp_path / "full" / "last.safetensors", "cpu")
    ema = load_model(tmp_path / "full" / "last-ema.safetensors", "cpu")
    assert last.config.image_size == ema.config.image_size == 36
    assert not same_weights(last, ema)
    assert ema.metadata["weights_average"]["decay"] == 0.5
    assert ema.metadata["test_errors"] == log[1]["ema_test_errors"]
    pairs = load_multimnist_test(data_dir)[:24]
    assert evaluate_multimnist(ema, pairs).errors == log[1]["ema_test_errors"]

    # stop after one epoch, then resume to two: the same weights and the same average
    train(TrainConfig(out=str(tmp_path / "cut"), epochs=1, **common))
    resumed = train(TrainConfig(out=str(tmp_path / "cut"), epochs=2, resume=True, **common),
                    given={"out", "epochs", "resume"})
    assert resumed["epoch"] == 2 and resumed["test_errors"] == full["test_errors"]
    for name in ("last", "last-ema"):
        assert same_weights(load_model(tmp_path / "cut" / f"{name}.safetensors", "cpu"),
                            load_model(tmp_path / "full" / f"{name}.safetensors", "cpu")), name
