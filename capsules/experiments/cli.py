"""The command line of :mod:`capsules.experiments` (``python -m capsules.experiments``)."""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

from ..data import DatasetError, load_mnist
from ..device import DEVICE_HELP, describe, pick_device
from ..nn import CapsNet
from .common import _span
from .results import (
    SECTIONS, merge_results, parse_sections, read_results, results_path, robustness_experiments, run_experiments,
)
from .robustness import curve_mean


def keep_freed_memory() -> bool:
    """Have glibc keep large freed blocks for reuse instead of handing them back to the kernel.

    glibc serves every block over 32 MB with its own ``mmap`` and unmaps it when freed, so the next
    batch faults every page in again: a CapsNet's (250, 10, 1152, 16) prediction vectors are 184 MB
    in float32, and an attack allocates several such tensors at every step (in the first timed run
    of the adversarial section a fifth of the CPU time went to the kernel, page faults serialising
    the two threads). ``M_MMAP_MAX = 0`` serves them from the heap and ``M_TRIM_THRESHOLD = 1 GiB``
    keeps up to that much freed heap for reuse. For the command line's own process; False where
    there is no glibc (nothing changes)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-4, 0)) and bool(libc.mallopt(-1, 1 << 30))  # M_MMAP_MAX, M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    from tqdm.auto import tqdm

    from ..analysis.pose import POSE_KEY, pose_distribution
    from ..analysis.trust import ATTACK_IMAGES, OOD_SIZE, trust_sections
    from ..checkpoint import SHIPPED, CheckpointError, load_model
    from ..data.fashion import load_fashion

    parser = argparse.ArgumentParser(prog="python -m capsules.experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help=f"a .safetensors checkpoint (default: {SHIPPED})")
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: $CAPSULES_DATA or the cache)")
    parser.add_argument("--json", default=None, help="write the results here (default: NAME.experiments.json "
                        "beside the checkpoint)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--sections", default="core", help="what to compute, comma-separated: core (the routing "
                        "experiments and robustness curves; a CNN: the curves), ood (is it a digit? outlier scores "
                        "against Fashion-MNIST, noise and blank images), adversarial (FGSM and PGD), pose (a "
                        "CapsNet's: how each pose value spreads over each class, for the pose view), or all. "
                        "Without core the others are merged into the existing results of these weights")
    parser.add_argument("--iterations", type=int, default=10, help="routing iterations of the traced pass")
    parser.add_argument("--robustness-size", type=int, default=500, help="test images in the robustness curves")
    parser.add_argument("--seed", type=int, default=0, help="seeds the robustness subset and the random coupling, "
                        "and the outlier sets' subsets, noise and bootstrap")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N test images (smoke runs)")
    parser.add_argument("--ood-size", type=int, default=OOD_SIZE, help="MNIST and Fashion-MNIST test images scored "
                        "as digits and outliers (a seeded subset of each)")
    parser.add_argument("--attack-images", type=int, default=ATTACK_IMAGES, help="the first N test images attacked")
    parser.add_argument("--attack-precision", default="bf16", choices=["bf16", "fp32"],
                        help="precision of the attacks' passes (bf16: twice as fast on a CPU with bf16 units)")
    parser.add_argument("--fashion-dir", default=None, help="Fashion-MNIST folder (default: $CAPSULES_FASHION or "
                        "Debian's /usr/share/datasets/fashion-mnist)")
    args = parser.parse_args(argv)
    for name in ("iterations", "robustness_size", "batch_size", "limit", "ood_size", "attack_images"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1, got {value}", file=sys.stderr)
            return 2
    sections = parse_sections(args.sections)
    if sections is None:
        print(f"error: --sections takes a comma-separated list of {', '.join(SECTIONS)} or all, got "
              f"{args.sections!r}", file=sys.stderr)
        return 2
    try:
        model = load_model(args.checkpoint, pick_device(args.device))
        images, labels = load_mnist("test", args.data_dir)
        fashion = load_fashion("test", args.fashion_dir)[0] if "ood" in sections else None
    except (CheckpointError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.limit is not None:
        images, labels = images[:args.limit], labels[:args.limit]
    keep_freed_memory()
    out = Path(args.json) if args.json else results_path(model.checkpoint_path)
    if "core" not in sections and read_results(out, model.checkpoint_path) is None:
        print(f"error: no results of these weights in {out} to merge {', '.join(sections)} into: run "
              f"python -m capsules.experiments --checkpoint {model.checkpoint_path} first, or add core to --sections",
              file=sys.stderr)
        return 1
    print(f"checkpoint: {model.checkpoint_path}  device: {describe(model.device)}  sections: {', '.join(sections)}")
    with tqdm(total=1000, desc="experiments", unit="") as bar:
        def progress(fraction: float, message: str) -> None:
            bar.set_postfix_str(message, refresh=False)
            bar.update(round(1000 * fraction) - bar.n)

        split = 0.2 if "core" in sections and len(sections) > 1 else (1.0 if "core" in sections else 0.0)
        results: dict = {}
        try:
            if "core" in sections and not isinstance(model, CapsNet):  # the baseline CNN: the robustness curves only
                results = robustness_experiments(model, images, labels, robustness_size=args.robustness_size,
                                                 seed=args.seed, batch_size=args.batch_size,
                                                 progress=_span(progress, 0.0, split))
            elif "core" in sections:
                results = run_experiments(model, images, labels, iterations=args.iterations,
                                          robustness_size=args.robustness_size, seed=args.seed,
                                          batch_size=args.batch_size, progress=_span(progress, 0.0, split))
            if "pose" in sections and isinstance(model, CapsNet):  # each pose value's spread over each class
                results[POSE_KEY] = pose_distribution(model, images, batch_size=2 * args.batch_size)
            trust = [s for s in sections if s in ("ood", "adversarial")]
            if trust:
                start = time.perf_counter()
                new = trust_sections(model, images, labels, fashion, sections=trust, ood_size=args.ood_size,
                                     attack_images=args.attack_images, seed=args.seed,
                                     precision=args.attack_precision, batch_size=args.batch_size,
                                     progress=_span(progress, split, 1.0))
                for section in new.values():
                    section.update(device=describe(model.device), run_seconds=time.perf_counter() - start,
                                   date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
                results.update(new)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    results = merge_results(out, model.checkpoint_path, results)
    _print_summary(results, sections)
    print(f"wrote {out}")
    return 0


def _print_summary(results: dict, sections: list[str]) -> None:
    if "core" in sections and "iterations" not in results:
        print("robustness (mean accuracy over each curve): " + "  ".join(
            f"{kind}: {curve_mean(curve):.1f}%" for kind, curve in results["robustness"].items()))
    elif "core" in sections:
        print("accuracy by iterations: " + "  ".join(f"{k}: {a:.2f}%" for k, a in results["iterations"].items()))
        print("ablations: " + "  ".join(f"{k}: {a['accuracy']:.2f}% [{a['interval'][0]:.2f}, {a['interval'][1]:.2f}]"
                                         for k, a in results["ablations"].items()))
    if "ood" in sections:
        ood = results["ood"]
        print("AUROC against MNIST test: " + "  ".join(
            f"{key} {name} {v['auroc']:.3f} [{v['interval'][0]:.3f}, {v['interval'][1]:.3f}]"
            for key in ("fashion-mnist", "noise", "blank") for name, v in ood[key].items()))
    if "adversarial" in sections:
        adv = results["adversarial"]
        for method in ("fgsm", "pgd", "pgd_adaptive"):
            if method in adv:
                print(f"{method} accuracy: " + "  ".join(f"eps {e:g}: {a:.1f}%" for e, a in
                                                          zip(adv[method]["eps"], adv[method]["accuracy"])))
    if "seconds" in results and "core" in sections:
        print(f"time: {results['seconds']:.1f} s")
    for key in ("ood", "adversarial"):
        if key in sections:
            print(f"time, {key}: {results[key]['seconds']:.1f} s")

