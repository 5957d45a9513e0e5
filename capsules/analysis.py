"""Model-side analysis behind the dashboard: routing traces, evidence maps, pose perturbations and
input transforms, as plain functions on tensors and numpy arrays (no Streamlit, no plotting).

Every function runs the model under :func:`torch.inference_mode` and returns CPU numpy arrays
(float32), one image at a time, batch axis removed. Notation follows Sabour, Frosst & Hinton
(2017): ``i`` is one of the 1152 primary capsules, ``j`` one of the 10 digit capsules, ``t`` the
routing iteration (0-based in arrays, "iteration t + 1" in words).

Quantities (all per image):

- ``c[t, i, j]``: the coupling coefficients iteration ``t + 1`` used (eq. 3); ``c[0] = 1/10``.
- ``b[t, i, j]``: their logits; ``agreement[t] = u_hat . v[t]`` so ``b[t + 1] = b[t] + agreement[t]``.
- ``mass[t, j] = sum_i c[t, i, j]``: how much of the 1152 primaries' coupling goes to digit ``j``
  (a count; sums to 1152 over ``j``, 115.2 per digit when uniform).
- ``vote_mass[t, j] = sum_i c[t, i, j] * |u_hat_{j|i}|``: the same weighted by the length of the
  prediction vectors, i.e. how much vote actually flows into ``s_j`` (eq. 2).
- ``entropy[t]``: the mean over primaries of ``-sum_j c log c`` in nats (``ln 10 = 2.3026`` when
  uniform).
- evidence maps: ``c[t, i, j] * |u_hat_{j|i}|`` of each primary capsule spread over its 17x17
  receptive field in the 28x28 input (see :func:`evidence_maps`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Analysis", "IterationSweep", "TRANSFORMS", "TransformSweep", "analyse", "coverage",
    "evidence_map", "evidence_maps", "perturbation_deltas", "perturbation_grid", "prepare",
    "receptive_field", "reconstruct", "transform_image", "transform_images", "transform_sweep",
    "transform_values",
]

SIDE = 28  # MNIST input side, pixels
GRID = 6  # primary-capsule grid side
TYPES = 32  # primary capsule types
FIELD = 17  # receptive-field side of a primary capsule: conv1 9x9 s1, then 9x9 s2 -> 9 + 8 = 17
STRIDE = 2  # the field moves 2 input pixels per primary-grid step

# Transform parameters of :func:`transform_image`: (minimum, maximum, identity value, unit).
TRANSFORMS: dict[str, tuple[float, float, float, str]] = {
    "rotate": (-45.0, 45.0, 0.0, "degrees, counter-clockwise"),
    "scale": (0.6, 1.4, 1.0, "factor"),
    "shift_x": (-6.0, 6.0, 0.0, "pixels, right"),
    "shift_y": (-6.0, 6.0, 0.0, "pixels, down"),
    "shear": (-0.6, 0.6, 0.0, "x += shear * y"),
}


# --------------------------------------------------------------------------------------------
# inputs


def prepare(image, device: torch.device | str | None = None) -> Tensor:
    """One image as the model's input: (1, 1, 28, 28) float32 in [0, 1].

    ``image`` is a (28, 28) (or (1, 28, 28) / (1, 1, 28, 28)) numpy array or tensor; integer
    arrays are read as 0..255 grey levels, floats as 0..1.
    """
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, Tensor) else image)
    if x.dim() == 4 and x.shape[:2] == (1, 1):
        x = x[0, 0]
    elif x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if tuple(x.shape) != (SIDE, SIDE):
        raise ValueError(f"expected one {SIDE}x{SIDE} image, got shape {tuple(x.shape)}")
    x = x.float() / 255.0 if not x.is_floating_point() else x.float()
    return x.clamp(0.0, 1.0).reshape(1, 1, SIDE, SIDE).to(device or "cpu")


def _np(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


# --------------------------------------------------------------------------------------------
# routing analysis


@dataclass
class IterationSweep:
    """The same input routed with 1, 2, ..., ``n`` iterations (row ``k - 1`` = ``k`` iterations)."""

    lengths: np.ndarray  # (n, 10) digit-capsule lengths
    predictions: np.ndarray  # (n,) int64, argmax of each row
    reconstructions: np.ndarray  # (n, 28, 28) decoded from each row's winning capsule

    @property
    def iterations(self) -> np.ndarray:
        return np.arange(1, self.lengths.shape[0] + 1)


@dataclass
class Analysis:
    """One image through the model with ``iterations`` routing iterations, fully traced."""

    image: np.ndarray  # (28, 28) float32 in [0, 1]: what the model sees
    iterations: int  # r
    prediction: int  # longest digit capsule after r iterations
    lengths: np.ndarray  # (10,) |v_j| after r iterations
    v: np.ndarray  # (10, 16) digit capsules after r iterations
    reconstruction: np.ndarray  # (28, 28) decoded from the winning capsule
    u: np.ndarray  # (1152, 8) primary capsules
    u_hat: np.ndarray  # (1152, 10, 16) prediction vectors u_hat_{j|i} = W_ij u_i
    c: np.ndarray  # (r, 1152, 10) coupling coefficients used by each iteration
    b: np.ndarray  # (r, 1152, 10) their logits
    agreement: np.ndarray  # (r, 1152, 10) u_hat_{j|i} . v_j after each iteration
    v_per_iteration: np.ndarray  # (r, 10, 16) v_j after each iteration
    sweep: IterationSweep  # the same input with 1 .. max(r, sweep_iterations) iterations

    @property
    def confidence(self) -> float:
        return float(self.lengths[self.prediction])

    @property
    def lengths_per_iteration(self) -> np.ndarray:
        """(r, 10): |v_j| after iterations 1 .. r."""
        return np.linalg.norm(self.v_per_iteration, axis=-1)

    @property
    def length_change(self) -> np.ndarray:
        """(r, 10): |v_j| after iteration t minus after iteration t - 1 (row 0 is zero)."""
        lengths = self.lengths_per_iteration
        return np.diff(lengths, axis=0, prepend=lengths[:1])

    @property
    def u_hat_norm(self) -> np.ndarray:
        """(1152, 10): |u_hat_{j|i}|."""
        return np.linalg.norm(self.u_hat, axis=-1)

    @property
    def c_deviation(self) -> np.ndarray:
        """(r, 1152, 10): c - 1/10, the move away from uniform coupling."""
        return self.c - 1.0 / self.c.shape[-1]

    @property
    def c_step(self) -> np.ndarray:
        """(r, 1152, 10): c[t] - c[t - 1], per-capsule change between iterations (row 0 is zero)."""
        return np.diff(self.c, axis=0, prepend=self.c[:1])

    @property
    def entropy(self) -> np.ndarray:
        """(r,): mean over the 1152 primaries of the routing entropy -sum_j c_ij ln c_ij, nats."""
        c = self.c.astype(np.float64)
        return (-(c * np.log(np.clip(c, 1e-30, None))).sum(-1)).mean(-1)

    @property
    def mass(self) -> np.ndarray:
        """(r, 10): sum_i c_ij, the number of primaries' worth of coupling each digit receives."""
        return self.c.sum(axis=1)

    @property
    def vote_mass(self) -> np.ndarray:
        """(r, 10): sum_i c_ij |u_hat_{j|i}|, the vote length flowing into s_j (eq. 2)."""
        return (self.c * self.u_hat_norm[None]).sum(axis=1)

    def evidence(self, normalize: bool = True, projected: bool = False) -> np.ndarray:
        """(r, 10, 28, 28): :func:`evidence_maps` of every iteration and digit; ``projected``
        projects the votes on each iteration's own output ``v``, decomposing ``|s_j|``."""
        along = self.v_per_iteration if projected else None
        return evidence_maps(self.c, self.u_hat, normalize=normalize, along=along)


@torch.inference_mode()
def analyse(model, image, iterations: int | None = None, sweep_iterations: int = 10) -> Analysis:
    """Run one image through ``model`` with a full routing trace.

    ``iterations`` is r (the model's own, 3, when None). The convolutions run once; routing runs
    ``max(r, sweep_iterations)`` iterations, and since the first ``k`` iterations of a longer
    routing are exactly routing with ``k`` iterations, that one trace gives both the r-iteration
    analysis and :class:`IterationSweep` for 1 .. ``sweep_iterations`` iterations.
    """
    r = int(iterations or model.config.routing_iterations)
    if r < 1:
        raise ValueError(f"routing needs at least 1 iteration, got {r}")
    n = max(r, int(sweep_iterations))
    x = prepare(image, model.device)
    u = model.primary_capsules(x)  # (1, 1152, 8)
    u_hat = model.digits.predictions(u)  # (1, 10, 1152, 16)
    _, tr = model.digits.route(u_hat, n, trace=True)
    vs = tr.v[:, 0]  # (n, 10, 16)
    lengths = torch.linalg.vector_norm(vs, dim=-1)  # (n, 10)
    preds = lengths.argmax(-1)  # (n,)
    recons = model.decode(vs[torch.arange(n, device=vs.device), preds], preds)[:, 0]  # (n, 28, 28)
    sweep = IterationSweep(lengths=_np(lengths), predictions=preds.cpu().numpy().astype(np.int64),
                           reconstructions=_np(recons))
    return Analysis(
        image=_np(x[0, 0]),
        iterations=r,
        prediction=int(preds[r - 1]),
        lengths=_np(lengths[r - 1]),
        v=_np(vs[r - 1]),
        reconstruction=_np(recons[r - 1]),
        u=_np(u[0]),
        u_hat=_np(tr.u_hat[0]),
        c=_np(tr.c[:r, 0]),
        b=_np(tr.b[:r, 0]),
        agreement=_np(tr.agreement[:r, 0]),
        v_per_iteration=_np(vs[:r]),
        sweep=sweep,
    )


# --------------------------------------------------------------------------------------------
# evidence maps


def receptive_field(row: int, col: int) -> tuple[slice, slice]:
    """Input pixels seen by the primary capsules at grid position (row, col): a 17x17 window.

    Conv1 (9x9, stride 1) maps 28 -> 20 and PrimaryCaps (9x9, stride 2) maps 20 -> 6, so the
    capsule at (row, col) sees rows 2*row .. 2*row + 16 and cols 2*col .. 2*col + 16.
    (Row and column 27 of the input are in no receptive field at all.)
    """
    return slice(STRIDE * row, STRIDE * row + FIELD), slice(STRIDE * col, STRIDE * col + FIELD)


def _spread(grid: Tensor) -> Tensor:
    """(N, 6, 6) values per primary-grid position -> (N, 28, 28): each added over its 17x17 field."""
    ones = grid.new_ones(1, 1, FIELD, FIELD)
    out = F.conv_transpose2d(grid[:, None], ones, stride=STRIDE)  # (N, 1, 27, 27)
    pad = SIDE - out.shape[-1]
    return F.pad(out, (0, pad, 0, pad))[:, 0]


def coverage() -> np.ndarray:
    """(28, 28): how many of the 6x6 receptive fields contain each input pixel (0 .. 36)."""
    return _np(_spread(torch.ones(1, GRID, GRID)))[0]


def evidence_maps(c, u_hat, normalize: bool = True, along=None) -> np.ndarray:
    """Project the primary capsules' votes back onto the input.

    ``c`` (..., 1152, 10) coupling coefficients (any leading axes, e.g. iterations) and ``u_hat``
    (1152, 10, 16) prediction vectors. The vote of primary ``i`` for digit ``j`` is
    ``c_ij * |u_hat_{j|i}|``, the length of its term in ``s_j = sum_i c_ij u_hat_{j|i}`` (eq. 2).
    With ``along`` (..., 10, 16), the digit capsules ``v`` (one set per leading index), the vote
    is instead the signed projection ``c_ij * u_hat_{j|i} . v_j / |v_j|``: these add up to
    ``|s_j|`` exactly (``v_j`` is parallel to ``s_j``), so the map decomposes the capsule's
    length over the input; negative values push ``s_j`` backwards.

    The votes of the 32 types at one grid position are summed and spread uniformly over that
    position's 17x17 receptive field. ``normalize=True`` divides each pixel by the number of
    receptive fields covering it (1 at the corners up to 36 in the middle), giving the mean vote
    of the capsules that see the pixel; without it the sum is returned, which favours the
    centre. Pixels in no field (row and column 27) are 0. Returns (..., 10, 28, 28) float32,
    non-negative unless ``along`` is given.
    """
    c = torch.as_tensor(np.asarray(c), dtype=torch.float32)
    u_hat = torch.as_tensor(np.asarray(u_hat), dtype=torch.float32)
    lead = c.shape[:-2]
    n_caps, n_digits = c.shape[-2:]
    if along is None:
        votes = c * torch.linalg.vector_norm(u_hat, dim=-1)  # (..., 1152, 10)
    else:
        v = torch.as_tensor(np.asarray(along), dtype=torch.float32)  # (..., 10, 16)
        unit = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp(min=1e-12)
        votes = c * torch.einsum("ijm,...jm->...ij", u_hat, unit)
    per_pos = votes.reshape(-1, n_caps // (GRID * GRID), GRID, GRID, n_digits).sum(1)  # (N, 6, 6, 10)
    per_pos = per_pos.permute(0, 3, 1, 2).reshape(-1, GRID, GRID)  # (N * 10, 6, 6)
    maps = _spread(per_pos)
    if normalize:
        cov = _spread(torch.ones(1, GRID, GRID))
        maps = torch.where(cov > 0, maps / cov.clamp(min=1), torch.zeros_like(maps))
    return _np(maps.reshape(*lead, n_digits, SIDE, SIDE))


def evidence_map(c, u_hat, digit: int, normalize: bool = True) -> np.ndarray:
    """(28, 28) evidence map of one ``digit`` for one iteration's ``c`` (1152, 10); see
    :func:`evidence_maps`."""
    c = np.asarray(c)
    if c.ndim != 2:
        raise ValueError(f"evidence_map takes one iteration's c of shape (1152, 10), got {c.shape}")
    return evidence_maps(c[:, digit:digit + 1], np.asarray(u_hat)[:, digit:digit + 1],
                         normalize=normalize)[0]


# --------------------------------------------------------------------------------------------
# pose perturbation (Fig. 4)


def perturbation_deltas(step: float = 0.05, steps: int = 5) -> np.ndarray:
    """The paper's Fig. 4 offsets: -0.25, -0.20, ..., 0.25 (11 values, the middle one exactly 0)."""
    return (np.arange(-steps, steps + 1) * step).astype(np.float32)


@torch.inference_mode()
def reconstruct(model, poses, digit: int) -> np.ndarray:
    """Decode one pose (16,) -> (28, 28), or several (N, 16) -> (N, 28, 28), as digit ``digit``."""
    p = torch.as_tensor(np.asarray(poses), dtype=torch.float32, device=model.device)
    single = p.dim() == 1
    p = p.reshape(-1, p.shape[-1])
    digits = torch.full((p.shape[0],), int(digit), dtype=torch.long, device=model.device)
    out = _np(model.decode(p, digits)[:, 0])
    return out[0] if single else out


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
    return reconstruct(model, poses.reshape(dims * k, dims), digit).reshape(dims, k, SIDE, SIDE)


# --------------------------------------------------------------------------------------------
# input transforms


def _theta(rotate: float = 0.0, scale: float = 1.0, shift_x: float = 0.0, shift_y: float = 0.0,
           shear: float = 0.0) -> Tensor:
    """The (2, 3) ``affine_grid`` matrix (output -> input, normalised coordinates) of the forward
    map ``p_out = R(rotate) Sh(shear) S(scale) p_in + shift`` about the image centre."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    a = math.radians(rotate)
    # x right, y down: a counter-clockwise rotation on screen is [[cos, sin], [-sin, cos]]
    rot = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]], dtype=torch.float64)
    sh = torch.tensor([[1.0, shear], [0.0, 1.0]], dtype=torch.float64)
    m = rot @ sh * scale
    t = torch.tensor([shift_x, shift_y], dtype=torch.float64) * (2.0 / SIDE)  # pixels -> [-1, 1]
    inv = torch.linalg.inv(m)
    return torch.cat([inv, (-inv @ t)[:, None]], dim=1).float()


def transform_images(image, params: list[dict]) -> Tensor:
    """One image (28, 28) under several transforms: (N, 28, 28) float32 tensor, bilinear, zeros
    outside. Each dict in ``params`` holds keyword arguments of :func:`transform_image`."""
    x = prepare(image)  # (1, 1, 28, 28)
    unknown = {k for p in params for k in p} - set(TRANSFORMS)
    if unknown:
        raise ValueError(f"unknown transform parameters: {', '.join(sorted(unknown))}")
    theta = torch.stack([_theta(**p) for p in params])  # (N, 2, 3)
    grid = F.affine_grid(theta, [len(params), 1, SIDE, SIDE], align_corners=False)
    return F.grid_sample(x.expand(len(params), -1, -1, -1), grid, mode="bilinear",
                         padding_mode="zeros", align_corners=False)[:, 0]


def transform_image(image, rotate: float = 0.0, scale: float = 1.0, shift_x: float = 0.0,
                    shift_y: float = 0.0, shear: float = 0.0):
    """Rotate (degrees, counter-clockwise), scale (factor), shift (pixels; +x right, +y down) and
    shear (``x += shear * y``) a (28, 28) image about its centre, with ``affine_grid`` /
    ``grid_sample`` (bilinear, zeros outside).

    Returns the type it is given: a numpy array for a numpy array (float32 in [0, 1]), a tensor
    for a tensor.
    """
    out = transform_images(image, [dict(rotate=rotate, scale=scale, shift_x=shift_x,
                                        shift_y=shift_y, shear=shear)])[0]
    return out if isinstance(image, Tensor) else _np(out)


def transform_values(kind: str, n: int = 21) -> np.ndarray:
    """``n`` evenly spaced values of transform ``kind`` over its range in :data:`TRANSFORMS`."""
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transform {kind!r}; one of {', '.join(TRANSFORMS)}")
    lo, hi, _, _ = TRANSFORMS[kind]
    return np.linspace(lo, hi, n).astype(np.float32)


@dataclass
class TransformSweep:
    """One image transformed along one parameter, with the tracked capsule's pose at each value."""

    kind: str
    values: np.ndarray  # (N,) the swept parameter
    digit: int  # the digit capsule whose pose is tracked
    images: np.ndarray  # (N, 28, 28) the transformed inputs
    lengths: np.ndarray  # (N, 10) digit-capsule lengths
    poses: np.ndarray  # (N, 16) the tracked capsule's pose vector v_digit
    predictions: np.ndarray  # (N,) int64


@torch.inference_mode()
def transform_sweep(model, image, kind: str, values=None, base: dict | None = None,
                    digit: int | None = None, iterations: int | None = None) -> TransformSweep:
    """Sweep transform ``kind`` over ``values`` (default :func:`transform_values`) with the other
    parameters at ``base``, and record the lengths and the pose vector of capsule ``digit``.

    ``digit`` None tracks the digit predicted for the untransformed image. All transformed
    images run through the model in one batch.
    """
    values = transform_values(kind) if values is None else np.asarray(values, dtype=np.float32)
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transform {kind!r}; one of {', '.join(TRANSFORMS)}")
    base = dict(base or {})
    params = [{**base, kind: float(v)} for v in values]
    images = transform_images(image, params)
    x = images[:, None].to(model.device)
    if digit is None:
        x = torch.cat([x, prepare(image, model.device)])
    out = model(x, iterations=iterations)
    if digit is None:
        digit = int(out.prediction[-1])
    n = len(values)
    return TransformSweep(
        kind=kind, values=values, digit=int(digit), images=_np(images),
        lengths=_np(out.lengths[:n]), poses=_np(out.v[:n, int(digit)]),
        predictions=out.prediction[:n].cpu().numpy().astype(np.int64),
    )
