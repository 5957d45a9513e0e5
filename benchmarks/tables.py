"""The speed tables: :func:`table`, what ``python -m benchmarks.speed`` prints, and :func:`markdown`,
the table of docs/speed.md, from the JSON of ``python -m benchmarks.speed --json`` and, when given,
of ``python -m benchmarks.page --json``: every figure read from them, none typed in."""

from __future__ import annotations


def table(r: dict) -> str:
    seed = r.get("train_seed")
    rows = [("training step, default (" + r["default_precision"] + ")", r["train_default"]),
            ("training step, fp32", r["train_fp32"])]
    if r.get("train_bf16"):
        rows.append(("training step, bf16 (auto chose fp32 here)", r["train_bf16"]))
    if seed:
        rows.append(("training step, seed (labml-nn, fp32)", seed))
    lines = [f"device: {r['device']}   torch {r['torch']}   batch {r['batch_size']}   {r['date']}", "",
             f"{'measurement':44s} {'value':>16s} {'vs seed':>9s} {'peak MB':>9s} {'GFLOP/s':>8s} {'of limit':>8s}"]

    def limit(m):
        return f" {m['gflops']:8.0f} {100 * m['share_of_limit']:7.0f}%" if "gflops" in m else ""

    for name, m in rows:
        ratio = f"{m['images_per_second'] / seed['images_per_second']:.2f}x" if seed else "-"
        lines.append(f"{name:44s} {m['images_per_second']:10.1f} img/s {ratio:>9s} {m['peak_memory_mb']:9.0f}"
                     + limit(m))
    i = r["interaction"]
    lines.append(f"{'dashboard interaction (trace + Fig. 4 grid)':44s} {i['milliseconds']:13.2f} ms {'':>9s} "
                 f"{i['peak_memory_mb']:9.0f}")
    for key in ("inference_fp32", "inference_default"):
        if key in r:
            m = r[key]
            name = "batch inference, " + ("fp32" if key.endswith("fp32") else r["default_precision"])
            lines.append(f"{name:44s} {m['images_per_second']:10.1f} img/s {'':>9s} {m['peak_memory_mb']:9.0f}"
                         + limit(m))
    p = r.get("paired")
    if p:
        lines.append(f"{'step vs seed, one process, batch ' + str(p['batch_size']):44s} {p['ratio']:12.2f}x    "
                     f"median of {p['pairs']} alternating pairs ({p['ratio_min']:.2f}-{p['ratio_max']:.2f}x; "
                     f"{p['ours_images_per_second']:.0f} vs {p['seed_images_per_second']:.0f} img/s)")
    lines.append("")
    for precision, peak in r.get("peaks", {}).items():
        work = {k: v / 1e9 for k, v in r["flops_per_image"][precision].items()}  # GFLOP an image
        lines.append(f"limit, {precision}: GEMM {peak['gemm_gflops']:.0f} GFLOP/s, PrimaryCaps convolution "
                     f"{peak['conv_gflops']:.0f} GFLOP/s; a training image costs {work['train']:.2f} GFLOP "
                     f"(-> at most {max(peak['gemm_gflops'], peak['conv_gflops']) / work['train']:.0f} img/s), "
                     f"an inference image {work['inference']:.2f} GFLOP "
                     f"(-> {max(peak['gemm_gflops'], peak['conv_gflops']) / work['inference']:.0f} img/s)")
    if not seed:
        lines.append("(seed not measured: pip install --no-deps labml-nn)")
    return "\n".join(lines)


PAGE_ROWS = (  # docs/bench-page.json (benchmarks/page.py): what a person waits for in the browser
    ("pen_up_to_prediction", "page: pen-up to the new prediction shown"),
    ("tab_settled", "page: a tab switch to the open tab settled"),
    ("slider_to_picture", "page: a pose slider to its picture"),
    ("cold_start", "page: cold start (server launched) to the first prediction"),
    ("page_load_to_prediction", "page: a new visitor on a running server to the first prediction"),
)


def markdown(cpu: dict, page: dict | None = None) -> str:
    """The speed table of docs/speed.md from the JSON of ``python -m benchmarks.speed --json`` and, when
    given, of ``benchmarks/page.py --json``: every figure read from them, none typed in. The GPU
    rows say that they were not measured unless ``cpu`` is a GPU run."""
    lines = [f"Measured {cpu['date'][:10]} on {cpu['device']}, torch {cpu['torch']}, training batch "
             f"{cpu['batch_size']}, medians of {cpu['repeats']} repeats (`{cpu['command'].strip()}`)"
             + (f"; page figures {page['date'][:10]}, chromium {page['software']['chromium']} on the same "
                f"machine, medians of {page['repeats']} (`{page['command'].split(' --note')[0]}`)" if page else "")
             + ".", "", "| measurement | value | vs seed | share of the limit | peak memory |", "|---|---|---|---|---|"]
    seed = cpu.get("train_seed")

    def row(name, m, value):
        ratio = f"{m['images_per_second'] / seed['images_per_second']:.2f}x" if seed and "images_per_second" in m \
            and name.startswith("training") else ""
        share = f"{100 * m['share_of_limit']:.0f}% ({m['gflops']:.0f} GFLOP/s)" if "share_of_limit" in m else ""
        memory = f"{m['peak_memory_mb']:.0f} MB" if "peak_memory_mb" in m else ""
        lines.append(f"| {name} | {value} | {ratio} | {share} | {memory} |")

    default = cpu["default_precision"]
    said = "bf16 autocast, routing fp32" if default == "bf16" else default
    row(f"training step, default (auto: {said})", cpu["train_default"],
        f"{cpu['train_default']['images_per_second']:.1f} img/s")
    row("training step, fp32", cpu["train_fp32"], f"{cpu['train_fp32']['images_per_second']:.1f} img/s")
    if cpu.get("train_bf16"):
        row("training step, bf16 autocast (slower here: auto chose fp32)", cpu["train_bf16"],
            f"{cpu['train_bf16']['images_per_second']:.1f} img/s")
    if seed:
        row("training step, seed (labml-nn, fp32)", seed, f"{seed['images_per_second']:.1f} img/s")
    paired = cpu.get("paired")
    if paired:
        lines.append(f"| training step against the seed's, one process, batch {paired['batch_size']}, "
                     f"median of {paired['pairs']} alternating pairs | {paired['ratio']:.2f}x "
                     f"({paired['ratio_min']:.2f}-{paired['ratio_max']:.2f}x) | | | |")
    for key, precision in (("inference_default", default), ("inference_fp32", "fp32")):
        if key in cpu:
            row(f"batch inference, {precision}", cpu[key], f"{cpu[key]['images_per_second']:.1f} img/s")
    row("dashboard interaction: one image, full routing trace + Fig. 4 grid (176 decodes)", cpu["interaction"],
        f"{cpu['interaction']['milliseconds']:.1f} ms")
    for precision, peak in cpu.get("peaks", {}).items():
        work = cpu["flops_per_image"][precision]
        best = max(peak["gemm_gflops"], peak["conv_gflops"])
        lines.append(f"| the limit, {precision}: GEMM {peak['gemm_gflops']:.0f}, PrimaryCaps convolution "
                     f"{peak['conv_gflops']:.0f} GFLOP/s; a training image {work['train'] / 1e9:.2f} GFLOP, an "
                     f"inference image {work['inference'] / 1e9:.2f} | training at most {best * 1e9 / work['train']:.0f} "
                     f"img/s, inference {best * 1e9 / work['inference']:.0f} img/s | | | |")
    if page:
        for key, name in PAGE_ROWS:
            f = page["figures"].get(key)
            if f:
                goal = f" (goal {f['goal_s']:g} s{', met' if f.get('met') else ', not met'})" if "goal_s" in f else ""
                lines.append(f"| {name} | {f['median_s']:.2f} s{goal} | | | |")
    if not cpu["device"].startswith("CUDA"):
        lines.append("| GPU rows (training step, inference, interaction on a CUDA device) | not measured: no GPU "
                     "here | | | |")
    return "\n".join(lines)
