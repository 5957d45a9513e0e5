"""torchrun: DistributedDataParallel training on the CPU with 2 processes (gloo)."""

import json
import os
import subprocess
import sys

import pytest

from capsules.checkpoint import read_tensors


def torchrun(*args, env):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "capsules.train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_torchrun_two_processes_trains_and_resumes(tmp_path, data_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CAPSULES_DATA": str(data_dir)}
    out = tmp_path / "run"
    common = ["--out", str(out), "--train-subset", "256", "--test-subset", "100", "--batch-size", "64",
              "--device", "cpu"]
    first = torchrun(*common, "--epochs", "1", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    second = torchrun(*common, "--epochs", "2", "--resume", env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming" in second.stdout

    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2], "one process writes the log, once per epoch"
    # 256 images / global batch 64 = 4 steps per epoch, shared by the two processes
    assert [r["step"] for r in log] == [4, 8]
    meta = json.loads((out / "last.json").read_text())
    assert "x 2 processes" in meta["hardware"] and meta["command"].startswith("torchrun --nproc_per_node 2")
    _, header, _ = read_tensors(out / "state.safetensors")
    assert json.loads(header["meta"])["epoch"] == 2
