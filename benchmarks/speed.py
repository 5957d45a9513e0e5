"""Benchmark: this implementation against the seed's (labml-nn), side by side on one device.

    python -m benchmarks.speed [--device auto] [--batch-size 128] [--repeats 5] [--json out.json]

Measures, with medians over repeats:
  (a) training-step throughput (forward + backward + Adam, images/s) of ``capsules.train.train_step``
      in the default configuration, in fp32, and of the seed's MNIST model at the same batch size;
  (b) one dashboard interaction: one image with the full routing trace plus the paper's Fig. 4 grid
      (16 dimensions x 11 offsets = 176 decodes);
  (c) batch inference throughput;
  (d) peak memory (CUDA: allocated by PyTorch; CPU: the peak resident set of a fresh process
      that makes only that measurement, so it includes PyTorch itself, about 300 MB);
  (e) the distance to the machine's limit: the floating-point work of a training step and of
      inference per image (counted by ``torch.utils.flop_counter``), the achieved GFLOP/s, and
      beside them the peak of a large GEMM and of the PrimaryCaps convolution in the default
      precision, measured on the same machine in the same run; the limit in images/s is that
      peak divided by the work per image;
  (f) this step against the seed's in one process at batch 64, alternating the two, the median
      of the per-pair ratios (so that a machine whose speed drifts affects both alike).

The seed is the ``labml-nn`` package (``pip install --no-deps labml-nn``; its capsule modules need
only torch); its MNIST model is assembled from its own Squash and Router as its ``mnist.py`` does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.tables import markdown, table
from capsules.device import (
    DEVICE_HELP,
    bf16_supported,
    describe,
    pick_device,
    resolve_precision,
)
from capsules.nn import CapsNet
from capsules.train import make_optimizer, train_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones, waiting
    for the GPU to finish each call (the project's one timing helper)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


# ----------------------------------------------------------------------------- the seed's model


def seed_model():
    """The seed's MNIST CapsNet, from labml-nn's own Squash and Router (as its mnist.py builds it)."""
    try:
        from labml_nn.capsule_networks import MarginLoss, Router, Squash
    except ImportError:
        return None

    class SeedCapsNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 256, kernel_size=9, stride=1)
            self.conv2 = nn.Conv2d(256, 32 * 8, kernel_size=9, stride=2, padding=0)
            self.squash = Squash()
            self.digit_capsules = Router(32 * 6 * 6, 10, 8, 16, 3)
            self.decoder = nn.Sequential(nn.Linear(160, 512), nn.ReLU(), nn.Linear(512, 1024), nn.ReLU(),
                                         nn.Linear(1024, 784), nn.Sigmoid())

        def forward(self, data):
            x = self.conv2(F.relu(self.conv1(data)))
            caps = self.squash(x.view(x.shape[0], 8, 32 * 6 * 6).permute(0, 2, 1))
            caps = self.digit_capsules(caps)
            with torch.no_grad():
                pred = (caps**2).sum(-1).argmax(-1)
                mask = torch.eye(10, device=data.device)[pred]
            recon = self.decoder((caps * mask[:, :, None]).view(x.shape[0], -1)).view(-1, 1, 28, 28)
            return caps, recon, pred

    return SeedCapsNet, MarginLoss


def seed_train_step(model, optimizer, margin_loss, images, labels):
    """The seed's step: margin loss + 0.0005 x MSE reconstruction, Adam (its mnist.py)."""
    caps, recon, _ = model(images)
    loss = margin_loss(caps, labels) + 0.0005 * F.mse_loss(recon, images)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()


# ---------------------------------------------------------------------------------- measurements


def bench_train(device, batch_size, repeats, warmup, precision):
    torch.manual_seed(0)
    model = CapsNet().to(device)
    opt = make_optimizer(model, 1e-3)
    x = torch.rand(batch_size, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    _reset_peak(device)
    sec = median_seconds(lambda: train_step(model, opt, x, y, precision=precision),
                         device, repeats, warmup)
    return {"seconds_per_step": sec, "images_per_second": batch_size / sec, "peak_memory_mb": _peak_memory_mb(device)}


def bench_seed_train(device, batch_size, repeats, warmup):
    built = seed_model()
    if built is None:
        return None
    cls, margin = built
    torch.manual_seed(0)
    model = cls().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = margin(n_labels=10)
    x = torch.rand(batch_size, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    _reset_peak(device)
    sec = median_seconds(lambda: seed_train_step(model, opt, loss, x, y), device, repeats, warmup)
    return {"seconds_per_step": sec, "images_per_second": batch_size / sec, "peak_memory_mb": _peak_memory_mb(device)}


def flops_per_image(device, precision: str, batch_size: int = 8) -> dict[str, float]:
    """Floating-point operations per image of one training step (forward, backward; the Adam
    update is not counted) and of one inference forward pass, counted by
    :class:`torch.utils.flop_counter.FlopCounterMode` (a multiply-add is 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    from capsules.device import autocast

    torch.manual_seed(0)
    model = CapsNet().to(device)
    opt = make_optimizer(model, 1e-3)
    x = torch.rand(batch_size, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    with FlopCounterMode(display=False) as counter:
        train_step(model, opt, x, y, precision=precision)
    train = counter.get_total_flops() / batch_size
    model.eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter, autocast(device, precision):
        model(x)
    return {"train": train, "inference": counter.get_total_flops() / batch_size}


def bench_peaks(device, precision: str, repeats: int, warmup: int) -> dict[str, float]:
    """GFLOP/s of a 2048^3 GEMM and of the PrimaryCaps convolution (batch 128, 256 -> 256
    channels, 9x9, stride 2, on 20x20 maps: the model's costliest op) in ``precision``: what
    this machine can do, the yardstick for the rows above."""
    from capsules.device import autocast

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    n = 2048
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    gemm = median_seconds(lambda: a @ b, device, repeats, warmup)
    conv = nn.Conv2d(256, 256, 9, stride=2).to(device)
    x = torch.randn(128, 256, 20, 20, device=device)

    @torch.inference_mode()
    def conv_forward():
        with autocast(device, precision):
            return conv(x)

    sec = median_seconds(conv_forward, device, repeats, warmup)
    conv_flops = 2 * 128 * 256 * 6 * 6 * 256 * 9 * 9
    return {"precision": precision, "gemm_gflops": 2 * n**3 / gemm / 1e9, "conv_gflops": conv_flops / sec / 1e9}


def bench_paired(device, batch_size, pairs, warmup, precision):
    """This step against the seed's in one process, alternating: the median of the per-pair
    ratios of images/s (ours over the seed's), and each side's median images/s."""
    built = seed_model()
    if built is None:
        return None
    cls, margin = built
    torch.manual_seed(0)
    ours, seed = CapsNet().to(device), cls().to(device)
    opt_ours, opt_seed = make_optimizer(ours, 1e-3), torch.optim.Adam(seed.parameters(), lr=1e-3)
    loss_seed = margin(n_labels=10)
    x = torch.rand(batch_size, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    step_ours = lambda: train_step(ours, opt_ours, x, y, precision=precision)  # noqa: E731
    step_seed = lambda: seed_train_step(seed, opt_seed, loss_seed, x, y)  # noqa: E731
    t_ours, t_seed = [], []
    for _ in range(pairs):
        t_ours.append(median_seconds(step_ours, device, 1, warmup))
        t_seed.append(median_seconds(step_seed, device, 1, warmup))
        warmup = 0
    ratios = [s / o for o, s in zip(t_ours, t_seed)]
    return {"batch_size": batch_size, "pairs": pairs, "ratio": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios),
            "ours_images_per_second": batch_size / statistics.median(t_ours),
            "seed_images_per_second": batch_size / statistics.median(t_seed)}


def bench_interaction(device, repeats, warmup):
    from capsules.analysis import perturbation_grid

    torch.manual_seed(0)
    model = CapsNet().to(device).eval()
    x = torch.rand(1, 1, 28, 28, device=device)

    @torch.inference_mode()
    def interaction():
        out = model(x, trace=True)
        digit = int(out.lengths[0].argmax())
        return perturbation_grid(model, out.v[0, digit], digit)

    _reset_peak(device)
    sec = median_seconds(interaction, device, repeats, warmup)
    return {"milliseconds": 1000 * sec, "peak_memory_mb": _peak_memory_mb(device)}


def bench_inference(device, batch_size, repeats, warmup, precision):
    from capsules.device import autocast

    torch.manual_seed(0)
    model = CapsNet().to(device).eval()
    x = torch.rand(batch_size, 1, 28, 28, device=device)

    @torch.inference_mode()
    def infer():
        with autocast(device, precision):
            return model(x).lengths

    _reset_peak(device)
    sec = median_seconds(infer, device, repeats, warmup)
    return {"images_per_second": batch_size / sec, "peak_memory_mb": _peak_memory_mb(device)}


def _isolated(fn, *args):
    """On the CPU, run one measurement in a fresh process so that its peak resident memory is its
    own (the process-wide peak only grows); on a GPU the allocator's peak is reset instead."""
    device = args[0]
    if device.type == "cuda":
        return fn(*args)
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def run(device: torch.device, batch_size: int = 128, repeats: int = 5, warmup: int = 2,
        inference_batch: int = 500, skip_seed: bool = False, pairs: int = 7, pair_batch: int = 64) -> dict:
    default = resolve_precision("auto", device)
    results: dict = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": describe(device), "torch": torch.__version__, "python": platform.python_version(),
        "batch_size": batch_size, "repeats": repeats, "default_precision": default,
        "command": "python -m benchmarks.speed " + " ".join(sys.argv[1:]),
    }
    results["train_default"] = _isolated(bench_train, device, batch_size, repeats, warmup, "auto")
    results["train_fp32"] = _isolated(bench_train, device, batch_size, repeats, warmup, "fp32")
    native_bf16 = bf16_supported(device)
    if native_bf16 and default != "bf16":  # what auto turned down here, for the record
        results["train_bf16"] = _isolated(bench_train, device, batch_size, repeats, warmup, "bf16")
    results["train_seed"] = None if skip_seed else _isolated(bench_seed_train, device, batch_size, repeats, warmup)
    results["interaction"] = _isolated(bench_interaction, device, max(repeats, 20), warmup + 3)
    results["inference_fp32"] = _isolated(bench_inference, device, inference_batch, repeats, warmup, "fp32")
    if default != "fp32":
        results["inference_default"] = _isolated(bench_inference, device, inference_batch, repeats, warmup, default)
    results["paired"] = None if skip_seed else _isolated(bench_paired, device, pair_batch, pairs, warmup, "auto")
    precisions = sorted({default, "fp32"} | ({"bf16"} if native_bf16 else set()))
    results["flops_per_image"] = {p: _isolated(flops_per_image, device, p) for p in precisions}
    results["peaks"] = {p: _isolated(bench_peaks, device, p, repeats, warmup) for p in precisions}
    add_limits(results)
    return results


def add_limits(r: dict) -> None:
    """Beside each throughput row: the GFLOP/s it achieves and its share of the machine's limit in
    its precision (the larger of the measured GEMM and convolution peaks)."""
    rows = {"train_default": ("train", r["default_precision"]), "train_fp32": ("train", "fp32"),
            "train_bf16": ("train", "bf16"),
            "inference_default": ("inference", r["default_precision"]), "inference_fp32": ("inference", "fp32")}
    for key, (kind, precision) in rows.items():
        m = r.get(key)
        if not m:
            continue
        flops = r["flops_per_image"][precision][kind]
        peak = max(r["peaks"][precision]["gemm_gflops"], r["peaks"][precision]["conv_gflops"])
        m["gflops"] = m["images_per_second"] * flops / 1e9
        m["limit_images_per_second"] = peak * 1e9 / flops
        m["share_of_limit"] = m["gflops"] / peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size (default: 128)")
    parser.add_argument("--inference-batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--skip-seed", action="store_true", help="do not measure the seed implementation")
    parser.add_argument("--pairs", type=int, default=7, help="alternating pairs of the one-process comparison "
                        "with the seed (default: 7)")
    parser.add_argument("--pair-batch", type=int, default=64, help="batch of that comparison (default: 64)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--markdown", nargs="+", metavar="JSON", default=None,
                        help="measure nothing: print the speed table of docs/speed.md from a saved --json file "
                             "(and the page benchmark's, benchmarks/page.py --json)")
    args = parser.parse_args(argv)
    if args.markdown:
        cpu, *rest = (json.loads(open(f).read()) for f in args.markdown)
        print(markdown(cpu, rest[0] if rest else None))
        return 0
    try:
        device = pick_device(args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    results = run(device, args.batch_size, args.repeats, args.warmup, args.inference_batch, args.skip_seed,
                  args.pairs, args.pair_batch)
    print(table(results))
    if args.json:
        from capsules.checkpoint import atomic_write_json

        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
