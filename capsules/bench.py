"""Benchmark: this implementation against the seed's (labml-nn), side by side on one device.

    python -m capsules.bench [--device auto] [--batch-size 128] [--repeats 5] [--json out.json]

Measures, with medians over repeats:
  (a) training-step throughput (forward + backward + Adam, images/s) of ``capsules.train.train_step``
      in the default configuration, in fp32, and of the seed's MNIST model at the same batch size;
  (b) one dashboard interaction: one image with the full routing trace plus the paper's Fig. 4 grid
      (16 dimensions x 11 offsets = 176 decodes);
  (c) batch inference throughput;
  (d) peak memory (CUDA: allocated by PyTorch; CPU: the peak resident set of a fresh process
      that makes only that measurement, so it includes PyTorch itself, about 300 MB).

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

from .device import DEVICE_HELP, describe, pick_device, resolve_precision
from .losses import CapsuleLoss
from .model import CapsNet
from .train import make_optimizer, train_step


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
    loss_fn = CapsuleLoss()
    x = torch.rand(batch_size, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    _reset_peak(device)
    sec = median_seconds(lambda: train_step(model, opt, x, y, loss_fn=loss_fn, precision=precision),
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


def bench_interaction(device, repeats, warmup):
    from .analysis import perturbation_grid

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
    from .device import autocast

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
        inference_batch: int = 500, skip_seed: bool = False) -> dict:
    default = resolve_precision("auto", device)
    results: dict = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": describe(device), "torch": torch.__version__, "python": platform.python_version(),
        "batch_size": batch_size, "repeats": repeats, "default_precision": default,
        "command": "python -m capsules.bench " + " ".join(sys.argv[1:]),
    }
    results["train_default"] = _isolated(bench_train, device, batch_size, repeats, warmup, "auto")
    results["train_fp32"] = _isolated(bench_train, device, batch_size, repeats, warmup, "fp32")
    results["train_seed"] = None if skip_seed else _isolated(bench_seed_train, device, batch_size, repeats, warmup)
    results["interaction"] = _isolated(bench_interaction, device, max(repeats, 20), warmup + 3)
    results["inference_fp32"] = _isolated(bench_inference, device, inference_batch, repeats, warmup, "fp32")
    if default != "fp32":
        results["inference_default"] = _isolated(bench_inference, device, inference_batch, repeats, warmup, default)
    return results


def table(r: dict) -> str:
    seed = r.get("train_seed")
    rows = [("training step, default (" + r["default_precision"] + ")", r["train_default"]),
            ("training step, fp32", r["train_fp32"])]
    if seed:
        rows.append(("training step, seed (labml-nn, fp32)", seed))
    lines = [f"device: {r['device']}   torch {r['torch']}   batch {r['batch_size']}   {r['date']}", "",
             f"{'measurement':44s} {'value':>16s} {'vs seed':>9s} {'peak MB':>9s}"]
    for name, m in rows:
        ratio = f"{m['images_per_second'] / seed['images_per_second']:.2f}x" if seed else "-"
        lines.append(f"{name:44s} {m['images_per_second']:10.1f} img/s {ratio:>9s} {m['peak_memory_mb']:9.0f}")
    i = r["interaction"]
    lines.append(f"{'dashboard interaction (trace + Fig. 4 grid)':44s} {i['milliseconds']:13.2f} ms {'':>9s} "
                 f"{i['peak_memory_mb']:9.0f}")
    for key in ("inference_fp32", "inference_default"):
        if key in r:
            m = r[key]
            name = "batch inference, " + ("fp32" if key.endswith("fp32") else r["default_precision"])
            lines.append(f"{name:44s} {m['images_per_second']:10.1f} img/s {'':>9s} {m['peak_memory_mb']:9.0f}")
    if not seed:
        lines.append("(seed not measured: pip install --no-deps labml-nn)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capsules.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size (default: 128)")
    parser.add_argument("--inference-batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--skip-seed", action="store_true", help="do not measure the seed implementation")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    try:
        device = pick_device(args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    results = run(device, args.batch_size, args.repeats, args.warmup, args.inference_batch, args.skip_seed)
    print(table(results))
    if args.json:
        from .checkpoint import atomic_write_json

        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
