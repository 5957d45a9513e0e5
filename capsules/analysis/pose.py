"""Pose perturbation (the paper's Fig. 4): each of the 16 dimensions of a digit capsule tweaked by
-0.25 ... +0.25 and decoded; and how far each pose value ranges over the test digits of a class
(:func:`pose_distribution`), the yardstick for such a tweak, which ships in each CapsNet's
experiments results (``python -m capsules.experiments --sections pose`` computes it and merges it
into them)."""

from __future__ import annotations

import numpy as np
import torch

from .inputs import _np



# --------------------------------------------------------------------------------------------
# pose perturbation (Fig. 4)


def perturbation_deltas(step: float = 0.05, steps: int = 5) -> np.ndarray:
    """The paper's Fig. 4 offsets: -0.25, -0.20, ..., 0.25 (11 values, the middle one exactly 0)."""
    return (np.arange(-steps, steps + 1) * step).astype(np.float32)


@torch.inference_mode()
def reconstruct(model, poses, digit) -> np.ndarray:
    """Decode one pose (16,) -> (side, side), or several (N, 16) -> (N, side, side), as digit
    ``digit``: one digit for all, or one per pose (a sequence of N)."""
    p = torch.as_tensor(np.asarray(poses), dtype=torch.float32, device=model.device)
    single = p.dim() == 1
    p = p.reshape(-1, p.shape[-1])
    digits = torch.as_tensor(np.asarray(digit), dtype=torch.long, device=model.device).reshape(-1)
    if digits.numel() == 1:
        digits = digits.expand(p.shape[0])
    elif digits.numel() != p.shape[0]:
        raise ValueError(f"{p.shape[0]} poses but {digits.numel()} digits")
    out = _np(model.decode(p, digits)[:, 0])
    return out[0] if single else out


def offset_pose(model, pose, offsets, digit: int) -> tuple[np.ndarray, np.ndarray]:
    """``pose + offsets`` (16,) and its decode as digit ``digit`` (28, 28): the pose sliders."""
    moved = np.asarray(pose, dtype=np.float32) + np.asarray(offsets, dtype=np.float32)
    return moved, reconstruct(model, moved, digit)


@torch.inference_mode()
def perturbation_grid(model, pose, digit: int, deltas=None) -> np.ndarray:
    """Fig. 4: each of the 16 pose dimensions tweaked by each offset in ``deltas``, decoded.

    ``pose`` (16,) is a digit capsule's instantiation vector; ``deltas`` defaults to
    :func:`perturbation_deltas` (-0.25 .. 0.25 in steps of 0.05). Returns (16, len(deltas), 28, 28):
    row ``d`` is dimension ``d``, column ``k`` adds ``deltas[k]`` to it. All 16 * len(deltas)
    images are decoded in one batched call.
    """
    deltas = perturbation_deltas() if deltas is None else np.asarray(deltas, dtype=np.float32)
    pose = np.asarray(pose, dtype=np.float32).reshape(-1)
    dims, k = pose.shape[0], deltas.shape[0]
    poses = np.broadcast_to(pose, (dims, k, dims)).copy()  # (dim, delta, 16)
    poses[np.arange(dims), :, np.arange(dims)] += deltas[None, :]
    images = reconstruct(model, poses.reshape(dims * k, dims), digit)
    return images.reshape(dims, k, *images.shape[-2:])


# --------------------------------------------------------------------------------------------
# how far each pose value ranges over a class


POSE_QUANTILES = (1, 5, 25, 50, 75, 95, 99)  # percent, the quantiles of pose_distribution
POSE_KEY = "pose_distribution"  # its key in a checkpoint's experiments results


@torch.inference_mode()
def pose_distribution(model, images, *, batch_size: int = 500, quantiles=POSE_QUANTILES) -> dict:
    """How far each pose value ranges over the images the model reads as each class: for digit
    capsule ``j`` and dimension ``d``, the quantiles of ``v[j, d]`` (the model's own routing)
    over the ``images`` (uint8 (N, side, side)) it predicts as ``j``, so that an offset of the
    pose sliders (or Fig. 4's +-0.25) reads against the spread of real digits.

    Returns a JSON-ready dict: ``quantiles`` (percent), ``counts`` (10,) images per predicted
    class, ``values`` (10, 16, Q) the quantiles, ``test_images``. A class the model predicts for
    no image has ``null`` rows."""
    from ..data import to_float

    poses, predictions = [], []
    for start in range(0, images.shape[0], batch_size):
        x = to_float(torch.as_tensor(images[start:start + batch_size])).to(model.device)
        out = model(x)
        pred = out.lengths.argmax(dim=-1)  # (B,)
        poses.append(out.v[torch.arange(pred.shape[0], device=pred.device), pred].float().cpu())  # (B, 16)
        predictions.append(pred.cpu())
    v, pred = torch.cat(poses), torch.cat(predictions)  # (N, 16), (N,)
    n_classes, dims = model.config.n_classes, v.shape[1]
    q = torch.tensor([p / 100 for p in quantiles], dtype=torch.float32)
    values, counts = [], []
    for j in range(n_classes):
        mine = v[pred == j]  # (N_j, 16)
        counts.append(int(mine.shape[0]))
        rows = torch.quantile(mine, q, dim=0).T.tolist() if len(mine) else [None] * dims  # (16, Q)
        values.append([row and [round(x, 4) for x in row] for row in rows])
    return {"quantiles": list(quantiles), "counts": counts, "values": values, "test_images": int(v.shape[0])}
