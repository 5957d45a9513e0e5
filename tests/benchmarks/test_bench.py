"""The benchmark runs end to end (tiny settings; speed itself is measured, never asserted)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_bench_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--device", "cpu", "--batch-size", "4",
                           "--inference-batch", "4", "--repeats", "1", "--warmup", "0",
                           "--pairs", "2", "--pair-batch", "4", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    for key in ("train_default", "train_fp32", "interaction", "inference_fp32"):
        assert r[key], key
    assert r["train_default"]["images_per_second"] > 0 and r["interaction"]["milliseconds"] > 0
    assert "dashboard interaction" in proc.stdout
    # the distance to the limit: work per image counted, peaks measured in the same run
    default = r["default_precision"]
    assert 1.1e9 < r["flops_per_image"]["fp32"]["train"] < 1.3e9  # the convolutions' 1.2 GFLOP
    assert 0.38e9 < r["flops_per_image"]["fp32"]["inference"] < 0.43e9
    for precision in {default, "fp32"}:
        assert r["peaks"][precision]["gemm_gflops"] > 0 and r["peaks"][precision]["conv_gflops"] > 0
    for key, precision in (("train_default", default), ("train_fp32", "fp32"), ("inference_fp32", "fp32")):
        m, peak = r[key], max(r["peaks"][precision]["gemm_gflops"], r["peaks"][precision]["conv_gflops"])
        assert m["gflops"] > 0 and abs(m["share_of_limit"] - m["gflops"] / peak) < 1e-9
    assert "limit, fp32: GEMM" in proc.stdout
    if r["train_seed"] is not None:  # labml-nn installed: the seed is measured side by side
        assert "vs seed" in proc.stdout and r["train_seed"]["images_per_second"] > 0
        p = r["paired"]
        assert p["pairs"] == 2 and p["ratio_min"] <= p["ratio"] <= p["ratio_max"]
    # the table of docs/speed.md is made from the same JSON, every figure read from it
    from benchmarks.tables import markdown

    table = markdown(r)
    assert f"{r['train_default']['images_per_second']:.1f} img/s" in table
    assert f"{100 * r['train_default']['share_of_limit']:.0f}%" in table
    assert "GPU rows" in table and "not measured" in table  # a CPU run: the GPU rows say so
