"""Fixtures of the zoo tests: a folder of fake shipped models."""

from __future__ import annotations

import json

import pytest

from tests.zoo.helpers import fake


@pytest.fixture()
def folder(tmp_path):
    fake(tmp_path, "capsnet-mnist", iterations=3, recon=0.0005, correct=9956, epoch=29, weights_dtype=None)
    fake(tmp_path, "capsnet-mnist-r1", iterations=1, recon=0.0005, correct=9946)
    fake(tmp_path, "capsnet-mnist-r3-norecon", iterations=3, recon=0.0, correct=9900)
    fake(tmp_path, "cnn-mnist", kind="cnn", correct=9940, weights_dtype="fp32")
    fake(tmp_path, "capsnet-multimnist", iterations=3, correct=9400, dataset="multimnist")
    (tmp_path / "stray.safetensors").write_bytes(b"no JSON beside it")
    (tmp_path / "other.safetensors").write_bytes(b"")
    (tmp_path / "other.json").write_text(json.dumps({"format": "someone.else"}))
    (tmp_path / "broken.safetensors").write_bytes(b"")
    (tmp_path / "broken.json").write_text("{not json")
    return tmp_path
