"""The benchmark runs end to end (tiny settings; speed itself is measured, never asserted)."""

import json
import subprocess
import sys


def test_bench_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "capsules.bench", "--device", "cpu", "--batch-size", "4",
                           "--inference-batch", "4", "--repeats", "1", "--warmup", "0", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    for key in ("train_default", "train_fp32", "interaction", "inference_fp32"):
        assert r[key], key
    assert r["train_default"]["images_per_second"] > 0 and r["interaction"]["milliseconds"] > 0
    assert "dashboard interaction" in proc.stdout
    if r["train_seed"] is not None:  # labml-nn installed: the seed is measured side by side
        assert "vs seed" in proc.stdout and r["train_seed"]["images_per_second"] > 0
