"""Training killed with SIGKILL at any moment, also in the middle of writing a checkpoint, resumes
and loses at most the epoch in progress; no file is ever left half-written."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from capsules import load_model
from capsules.checkpoint import read_tensors

ROOT = Path(__file__).resolve().parents[2]

# Runs training with file writes slowed down (chunked, with pauses), so that a kill can land in
# the middle of one: the test waits until a temporary file exists, then kills.
SLOW_WRITER = textwrap.dedent("""
    import os, sys, time
    import capsules.checkpoint as ck
    real_fdopen = os.fdopen
    class Slow:
        def __init__(self, f): self.f = f
        def write(self, data):
            for k in range(0, len(data), 1 << 20):
                self.f.write(data[k:k + (1 << 20)]); self.f.flush(); time.sleep(0.02)
        def __getattr__(self, name): return getattr(self.f, name)
        def __enter__(self): return self
        def __exit__(self, *a): return self.f.__exit__(*a)
    ck.os.fdopen = lambda fd, mode: Slow(real_fdopen(fd, mode))
    from capsules.train.__main__ import main
    sys.exit(main(sys.argv[1:]))
""")


def start(out, data_dir, epochs, resume):
    args = ["--out", str(out), "--data-dir", str(data_dir), "--train-subset", "128", "--test-subset", "50",
            "--batch-size", "64", "--epochs", str(epochs), "--device", "cpu"] + (["--resume"] if resume else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", SLOW_WRITER, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def check_files(out):
    """Every checkpoint in the folder is complete and loads; the log has no duplicate epochs."""
    for path in out.glob("*.safetensors"):
        if path.name == "state.safetensors":
            read_tensors(path)
        else:
            load_model(path, "cpu")
    log = out / "metrics.jsonl"
    if log.exists():
        epochs = [json.loads(line)["epoch"] for line in log.read_text().splitlines() if line]
        assert epochs == sorted(set(epochs))


def state_epoch(out):
    path = out / "state.safetensors"
    return json.loads(read_tensors(path)[1]["meta"])["epoch"] if path.exists() else 0


@pytest.mark.slow
def test_sigkill_anywhere_then_resume(tmp_path, data_dir):
    out = tmp_path / "run"
    target = 5
    kills_during_write = kills_elsewhere = 0
    rng = random.Random(0)
    for attempt in range(10):
        before = state_epoch(out)
        proc = start(out, data_dir, target, resume=before > 0)
        deadline = time.time() + 240
        while proc.poll() is None and time.time() < deadline:
            if attempt % 2 == 0 and list(out.glob(".*.tmp")):  # in the middle of writing a file
                kills_during_write += 1
                break
            if attempt % 2 == 1 and state_epoch(out) > before:  # an epoch done: kill at a random moment
                time.sleep(rng.uniform(0, 1.5))
                kills_elsewhere += 1
                break
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        check_files(out)
        after = state_epoch(out)
        assert after >= before, "a kill never loses a finished epoch"
        if after >= 3 and kills_during_write >= 2 and kills_elsewhere >= 2:
            break
    assert kills_during_write >= 2 and kills_elsewhere >= 2
    assert state_epoch(out) < target
    proc = start(out, data_dir, target, resume=True)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-2000:]
    check_files(out)
    log = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert log == list(range(1, target + 1))
    assert not list(out.glob(".*.tmp")), "temporary files of killed writes are cleaned up on resume"
    assert json.loads((out / "last.json").read_text())["epoch"] == target
