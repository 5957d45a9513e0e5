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

Sizes (the 6x6 grid of 32 types, the 17x17 fields, the 28x28 input) come from the model's
:class:`~capsules.nn.CapsNetConfig` through :class:`Geometry`; the numbers above are the
paper's MNIST model. Every function takes the MultiMNIST CapsNet as well (36x36 input, a 10x10
grid: 3200 primaries); for its two digits, :func:`read_pair` decodes the two longest capsules
and one the model rejects (the paper's Fig. 5), :func:`match_sources` pairs reconstructions with
the digits they redraw and :func:`source_shares` splits an evidence map between the two digits'
ink.
"""

from __future__ import annotations

import ast
import functools
import itertools
import json
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .nn import primary_position
from .nn import CapsNetConfig

__all__ = [
    "Analysis", "COUPLING_VIEWS", "Classification", "CouplingView", "EVIDENCE_MODES", "EVIDENCE_SPREADS", "Geometry",
    "IterationSweep", "LONG", "M_MINUS", "M_PLUS", "MNIST", "PairReading", "Reading", "RoutingStep", "TRANSFORMS",
    "TransformSweep", "analyse", "as_image", "classify", "coverage", "evidence_map", "evidence_maps", "field_ink",
    "is_identity", "longest", "match_sources", "offset_pose", "perturbation_deltas", "perturbation_grid", "prepare",
    "read_pair", "reading", "receptive_field", "reconstruct", "source_shares", "training_iterations",
    "transform_image", "transform_images", "transform_sweep", "transform_values",
]

M_PLUS, M_MINUS = 0.9, 0.1  # the margin loss's thresholds (eq. 4; capsules.nn.MarginLoss)
LONG = 0.5  # a capsule longer than this gives its digit a probability above one half
TIE = 1e-7  # coupling coefficients closer than this are equal (float32 rounding of 1/10)


@dataclass(frozen=True)
class Geometry:
    """Where the primary capsules sit on the input, from a model's :class:`CapsNetConfig`.

    Conv1 (stride 1) followed by PrimaryCaps (kernel ``k``, stride ``s``): a primary capsule sees
    a ``conv1_kernel + k - 1`` pixel square of the input (9 + 9 - 1 = 17 for the paper's model),
    and moving one step on the primary grid moves that window by ``s`` pixels.
    """

    side: int  # input side, pixels (28)
    grid: int  # primary-capsule grid side (6)
    types: int  # primary-capsule types (32)
    field: int  # receptive-field side of a primary capsule, pixels (17)
    stride: int  # input pixels per grid step (2)

    @classmethod
    def of(cls, config: CapsNetConfig) -> "Geometry":
        return cls(side=config.image_size, grid=config.primary_grid, types=config.primary_types,
                   field=config.conv1_kernel + config.primary_kernel - 1, stride=config.primary_stride)

    @property
    def caps(self) -> int:
        """Number of primary capsules, ``types * grid**2`` (1152)."""
        return self.types * self.grid * self.grid

    def position(self, i: int) -> tuple[int, int, int]:
        """Primary capsule ``i`` -> (type, row, col) on the grid."""
        return tuple(int(v) for v in primary_position(int(i), self.grid))


MNIST = Geometry.of(CapsNetConfig())  # the paper's model: 28x28 input, 32 types on a 6x6 grid

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


def prepare(image, device: torch.device | str | None = None, side: int | None = None) -> Tensor:
    """One image as the model's input: (1, 1, side, side) float32 in [0, 1].

    ``image`` is a (side, side) (or (1, side, side) / (1, 1, side, side)) numpy array or tensor;
    integer arrays are read as 0..255 grey levels, floats as 0..1. ``side`` None accepts any
    square image.
    """
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, Tensor) else image)
    if x.dim() == 4 and x.shape[:2] == (1, 1):
        x = x[0, 0]
    elif x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 2 or x.shape[0] != x.shape[1] or (side is not None and x.shape[0] != side):
        want = f"{side}x{side}" if side is not None else "square"
        raise ValueError(f"expected one {want} image, got shape {tuple(x.shape)}")
    x = x.float() / 255.0 if not x.is_floating_point() else x.float()
    return x.clamp(0.0, 1.0)[None, None].to(device or "cpu")


def as_image(image) -> np.ndarray:
    """:func:`prepare`'s image as a (side, side) float32 numpy array in [0, 1]."""
    return _np(prepare(image)[0, 0])


def _np(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


@dataclass(frozen=True)
class Classification:
    """What a softmax classifier (the baseline CNN) says about one image."""

    prediction: int
    probability: float  # the softmax probability of the prediction
    probabilities: np.ndarray  # (n_classes,) float32, sums to 1


@torch.inference_mode()
def classify(model, image) -> Classification:
    """One image through a model whose output has softmax ``probabilities`` (the baseline CNN),
    in eval mode as loaded: its prediction and the probability it gives it."""
    x = prepare(image, model.device, side=model.config.image_size)
    p = model(x).probabilities[0]  # (10,)
    k = int(p.argmax())
    return Classification(prediction=k, probability=float(p[k]), probabilities=_np(p))


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

    @property
    def changes(self) -> list[int]:
        """The iteration counts ``k`` whose prediction differs from that of ``k - 1``."""
        p = self.predictions
        return [int(k) + 1 for k in np.flatnonzero(p[1:] != p[:-1]) + 1]

    def long(self, k: int, threshold: float = M_PLUS) -> list[int]:
        """Digits whose capsule is longer than ``threshold`` when routing with ``k`` iterations,
        longest first."""
        row = self.lengths[k - 1]
        return [int(j) for j in np.argsort(-row, kind="stable") if row[j] > threshold]


@dataclass
class Reading:
    """What the lengths say about an input, against the margin loss's lines (eq. 4): trained
    digits come out above ``m+ = 0.9``, absent ones below ``m- = 0.1``."""

    prediction: int  # the longest capsule
    length: float  # its length
    long: list[int]  # digits longer than LONG (0.5), longest first
    confident: bool  # the longest reaches m+ = 0.9

    @property
    def nothing(self) -> bool:
        """No capsule is long: the model gives no digit a probability above one half."""
        return not self.long

    @property
    def several(self) -> bool:
        """Two or more long capsules: two digits, or one shape that reads as both."""
        return len(self.long) > 1


def longest(lengths, k: int | None = None) -> list[int]:
    """The digit capsules by length, longest first (equal lengths: the lower digit first); the
    first ``k`` of them, or all."""
    order = np.argsort(-np.asarray(lengths, dtype=np.float64), kind="stable")
    return [int(j) for j in order[:k]]


def reading(lengths, long: float = LONG, m_plus: float = M_PLUS) -> Reading:
    """:class:`Reading` of the 10 capsule lengths of one input."""
    lengths = np.asarray(lengths, dtype=np.float64)
    order = longest(lengths)
    top = int(order[0])
    return Reading(prediction=top, length=float(lengths[top]),
                   long=[int(j) for j in order if lengths[j] > long],
                   confident=bool(lengths[top] >= m_plus))


@dataclass
class RoutingStep:
    """Summary numbers of one routing iteration ``t`` (1-based) for digit capsule ``digit``."""

    iteration: int
    digit: int
    entropy: float  # mean over primaries of -sum_j c_ij ln c_ij, nats
    uniform_entropy: float  # ln(number of digits): the entropy of uniform coupling
    max_deviation: float  # max over i, j of |c_ij - 1/10|
    mass: float  # sum_i c_ij, in float64
    primaries: int  # number of primary capsules (1152)
    digits: int  # number of digit capsules (10)
    top: tuple[int, int, int] | None  # (type, row, col) of the largest c_ij; None when all are equal
    top_c: float  # that c_ij (the common value when all are equal)

    @property
    def uniform_mass(self) -> float:
        """primaries / digits: the mass of uniform coupling (115.2)."""
        return self.primaries / self.digits

    @property
    def entropy_gap(self) -> float:
        return self.entropy - self.uniform_entropy

    @property
    def mass_gap(self) -> float:
        return self.mass - self.uniform_mass


# Coupling maps of "Routing step by step": c - 1/10, c[t] - c[t-1], or c itself.
COUPLING_VIEWS = ("deviation", "step", "raw")


@dataclass
class CouplingView:
    """One digit's coupling coefficients of every iteration as drawn: ``values`` (r, 1152) around
    ``centre`` (0, or 1/10 for raw c), with ``spread`` the largest |value - centre| over all
    iterations, so that every iteration is drawn on the same scale."""

    values: np.ndarray
    centre: float
    spread: float


# Evidence maps: what each primary capsule sends digit j (see :func:`evidence_maps`).
EVIDENCE_MODES = ("votes", "projected", "change")  # c|u_hat|, c u_hat . v/|v|, c|u_hat| - iteration 1
EVIDENCE_SPREADS = ("ink", "mean", "sum")


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
    geometry: Geometry = MNIST  # where the primary capsules sit on the input

    @property
    def confidence(self) -> float:
        return float(self.lengths[self.prediction])

    @property
    def runner_up(self) -> int:
        """The second-longest digit capsule."""
        return longest(self.lengths, 2)[1]

    @property
    def reading(self) -> Reading:
        return reading(self.lengths)

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
        """(r, 10): sum_i c_ij, the number of primaries' worth of coupling each digit receives
        (summed in float64: 1152 float32 tenths add up to 115.2 to within 1e-5)."""
        return self.c.astype(np.float64).sum(axis=1)

    @property
    def vote_mass(self) -> np.ndarray:
        """(r, 10): sum_i c_ij |u_hat_{j|i}|, the vote length flowing into s_j (eq. 2)."""
        return (self.c * self.u_hat_norm[None]).sum(axis=1)

    def routing_step(self, t: int, digit: int) -> RoutingStep:
        """:class:`RoutingStep` of iteration ``t`` (1-based) for capsule ``digit``. At iteration 1
        every c_ij is 1/10 (b = 0, eq. 3): no primary is the most coupled, ``top`` is None."""
        c = self.c[t - 1, :, digit]
        n_caps, n_digits = self.c.shape[1:]
        i = int(np.argmax(c))
        return RoutingStep(
            iteration=int(t), digit=int(digit), entropy=float(self.entropy[t - 1]),
            uniform_entropy=math.log(n_digits),
            max_deviation=float(np.abs(self.c_deviation[t - 1]).max()),
            mass=float(self.mass[t - 1, digit]), primaries=int(n_caps), digits=int(n_digits),
            top=None if float(np.ptp(c)) <= TIE else self.geometry.position(i), top_c=float(c[i]),
        )

    def coupling(self, digit: int, view: str = "deviation") -> CouplingView:
        """:class:`CouplingView` of capsule ``digit``: ``view`` one of :data:`COUPLING_VIEWS`."""
        if view not in COUPLING_VIEWS:
            raise ValueError(f"unknown coupling view {view!r}; one of {', '.join(COUPLING_VIEWS)}")
        values = {"deviation": self.c_deviation, "step": self.c_step, "raw": self.c}[view][:, :, digit]
        centre = 1.0 / self.c.shape[-1] if view == "raw" else 0.0
        return CouplingView(values=values, centre=centre, spread=float(np.abs(values - centre).max()))

    def evidence(self, spread: str = "mean", projected: bool = False) -> np.ndarray:
        """(r, 10, 28, 28): :func:`evidence_maps` of every iteration and digit; ``projected``
        projects the votes on each iteration's own output ``v``, decomposing ``|s_j|``."""
        along = self.v_per_iteration if projected else None
        return evidence_maps(self.c, self.u_hat, self.geometry, spread=spread, image=self.image,
                             along=along)

    def evidence_for(self, digit: int, mode: str = "votes", spread: str = "ink") -> np.ndarray:
        """(r, 28, 28): the evidence map of capsule ``digit`` after each iteration, as the page
        shows it, NaN on the pixels no receptive field reaches.

        ``mode``: ``"votes"`` c_ij |u_hat_{j|i}| (>= 0), ``"projected"`` c_ij u_hat_{j|i} . v_j/|v_j|
        (signed, decomposes |s_j|), ``"change"`` the votes minus those of iteration 1 (signed).
        ``spread``: see :func:`evidence_maps`. Only this digit's maps are computed.
        """
        if mode not in EVIDENCE_MODES:
            raise ValueError(f"unknown evidence mode {mode!r}; one of {', '.join(EVIDENCE_MODES)}")
        along = self.v_per_iteration[:, digit:digit + 1] if mode == "projected" else None
        maps = evidence_maps(self.c[:, :, digit:digit + 1], self.u_hat[:, digit:digit + 1],
                             self.geometry, spread=spread, image=self.image, along=along)[:, 0]
        if mode == "change":
            maps = maps - maps[:1]
        return np.where(coverage(self.geometry) > 0, maps, np.nan).astype(np.float32)


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
    x = prepare(image, model.device, side=model.config.image_size)
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
        geometry=Geometry.of(model.config),
    )


def training_iterations(metadata: dict) -> int | None:
    """The routing iterations r the checkpoint was trained with, from its ``train_config``
    (a dict, or its JSON or Python-literal text as the sidecar stores it); None when not recorded."""
    cfg = metadata.get("train_config")
    if isinstance(cfg, str):
        try:
            cfg = json.loads(cfg)
        except ValueError:
            try:
                cfg = ast.literal_eval(cfg)
            except (ValueError, SyntaxError):
                return None
    if not isinstance(cfg, dict) or cfg.get("iterations") is None:
        return None
    return int(cfg["iterations"])


# --------------------------------------------------------------------------------------------
# evidence maps


def receptive_field(row: int, col: int, geometry: Geometry = MNIST) -> tuple[slice, slice]:
    """Input pixels seen by the primary capsules at grid position (row, col).

    Conv1 (9x9, stride 1) maps 28 -> 20 and PrimaryCaps (9x9, stride 2) maps 20 -> 6, so the
    capsule at (row, col) sees rows 2*row .. 2*row + 16 and cols 2*col .. 2*col + 16.
    (Row and column 27 of the input are in no receptive field at all.)
    """
    g = geometry
    return slice(g.stride * row, g.stride * row + g.field), slice(g.stride * col, g.stride * col + g.field)


@functools.lru_cache(maxsize=8)
def _fields(geometry: Geometry) -> np.ndarray:
    """(side * side, grid * grid) float32: 1 where a pixel lies in a grid position's field.

    Spreading values over the fields is a product with this matrix, which for one image is far
    cheaper in numpy than a transposed convolution in torch (no thread start-up per call).
    """
    g = geometry
    member = np.zeros((g.side, g.side, g.grid, g.grid), np.float32)
    for row in range(g.grid):
        for col in range(g.grid):
            rows, cols = receptive_field(row, col, g)
            member[rows, cols, row, col] = 1.0
    member.flags.writeable = False
    return member.reshape(g.side * g.side, g.grid * g.grid)


def _spread(values: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(N, grid, grid) values per grid position -> (N, side, side): each added over its field."""
    n = values.shape[0]
    flat = values.reshape(n, -1) @ _fields(geometry).T
    return flat.reshape(n, geometry.side, geometry.side)


def coverage(geometry: Geometry = MNIST) -> np.ndarray:
    """(side, side): how many of the grid's receptive fields contain each input pixel (0 .. 36)."""
    return _fields(geometry).sum(axis=1).reshape(geometry.side, geometry.side)


def field_ink(image, geometry: Geometry = MNIST) -> np.ndarray:
    """(grid, grid): the total ink (sum of the image) inside each grid position's field."""
    x = as_image(image).reshape(-1)
    if x.size != geometry.side * geometry.side:
        raise ValueError(f"expected one {geometry.side}x{geometry.side} image, got {x.size} pixels")
    return (x @ _fields(geometry)).reshape(geometry.grid, geometry.grid)


def evidence_maps(c, u_hat, geometry: Geometry = MNIST, spread: str = "mean", image=None,
                  along=None) -> np.ndarray:
    """Project the primary capsules' votes back onto the input.

    ``c`` (..., 1152, 10) coupling coefficients (any leading axes, e.g. iterations) and ``u_hat``
    (1152, 10, 16) prediction vectors. The vote of primary ``i`` for digit ``j`` is
    ``c_ij * |u_hat_{j|i}|``, the length of its term in ``s_j = sum_i c_ij u_hat_{j|i}`` (eq. 2).
    With ``along`` (..., 10, 16), the digit capsules ``v`` (one set per leading index), the vote
    is instead the signed projection ``c_ij * u_hat_{j|i} . v_j / |v_j|``: these add up to
    ``|s_j|`` exactly (``v_j`` is parallel to ``s_j``), so the map decomposes the capsule's
    length over the input; negative values push ``s_j`` backwards.

    The votes of the 32 types at one grid position are summed, then ``spread`` over that
    position's 17x17 receptive field:

    - ``"ink"``: shared among the field's pixels in proportion to their ink (``image``, needed),
      so the map lies on the strokes and adds up to the votes of all fields that hold ink (a
      field without ink has no pixel to give its vote to). A field that holds only the tip of a
      stroke puts its whole vote on that tip: stroke ends can look strong.
    - ``"mean"``: each pixel gets the mean vote of the fields covering it (1 at the corners up
      to 36 in the middle); the border, seen by few fields, shows single fields' votes.
    - ``"sum"``: each pixel gets the sum of the votes of the fields covering it (favours the
      centre); the map totals 289 times the votes.

    Pixels in no field (row and column 27) are 0. Returns (..., 10, 28, 28) float32,
    non-negative unless ``along`` is given.
    """
    if spread not in EVIDENCE_SPREADS:
        raise ValueError(f"unknown spread {spread!r}; one of {', '.join(EVIDENCE_SPREADS)}")
    if spread == "ink" and image is None:
        raise ValueError("spread='ink' needs the input image")
    g = geometry
    c = np.asarray(c, dtype=np.float32)
    u_hat = np.asarray(u_hat, dtype=np.float32)
    lead = c.shape[:-2]
    n_caps, n_digits = c.shape[-2:]
    if along is None:
        votes = c * np.linalg.norm(u_hat, axis=-1)  # (..., 1152, 10)
    else:
        v = np.asarray(along, dtype=np.float32)  # (..., 10, 16)
        unit = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
        votes = c * np.einsum("ijm,...jm->...ij", u_hat, unit)
    per_pos = votes.reshape(-1, n_caps // (g.grid * g.grid), g.grid, g.grid, n_digits).sum(1)
    per_pos = per_pos.transpose(0, 3, 1, 2).reshape(-1, g.grid, g.grid)  # (N * 10, grid, grid)
    if spread == "ink":
        # pixel p of field f gets vote_f * x_p / ink_f: summed over the fields covering p
        x = as_image(image)
        ink = field_ink(x, g)
        share = np.where(ink > 0, per_pos / np.maximum(ink, 1e-12), 0.0)
        maps = _spread(share, g) * x
    else:
        maps = _spread(per_pos, g)
        if spread == "mean":
            cov = coverage(g)
            maps = np.where(cov > 0, maps / np.maximum(cov, 1), 0.0)
    return maps.reshape(*lead, n_digits, g.side, g.side).astype(np.float32)


def evidence_map(c, u_hat, digit: int, geometry: Geometry = MNIST, spread: str = "mean",
                 image=None) -> np.ndarray:
    """(28, 28) evidence map of one ``digit`` for one iteration's ``c`` (1152, 10); see
    :func:`evidence_maps`."""
    c = np.asarray(c)
    if c.ndim != 2:
        raise ValueError(f"evidence_map takes one iteration's c of shape (1152, 10), got {c.shape}")
    return evidence_maps(c[:, digit:digit + 1], np.asarray(u_hat)[:, digit:digit + 1], geometry,
                         spread=spread, image=image)[0]


# --------------------------------------------------------------------------------------------
# two digits (MultiMNIST, section 6)


@dataclass
class PairReading:
    """An image of two digits as the paper reads it (section 6): the two longest capsules are the
    digits, each decoded from its own capsule alone (the others masked to zero, as the decoder is
    trained on MultiMNIST), and a capsule outside the two decoded the same way, to show the digit
    the model rejects (Fig. 5's starred reconstructions)."""

    digits: tuple[int, int]  # the two longest capsules, longest first
    lengths: np.ndarray  # (10,) every capsule's length
    reconstructions: np.ndarray  # (2, side, side): row k decoded from capsule digits[k]
    absent: int  # the rejected capsule decoded below
    absent_reconstruction: np.ndarray  # (side, side) decoded from capsule ``absent``

    def correct(self, labels) -> bool:
        """The paper's criterion for a pair whose true digits are ``labels`` (two classes): the
        two longest capsules are exactly those digits
        (:func:`capsules.evaluate.two_digit_correct`, the metric the test error counts)."""
        from .evaluate import two_digit_correct

        lengths = torch.as_tensor(np.asarray(self.lengths, dtype=np.float32))[None]
        return bool(two_digit_correct(lengths, torch.as_tensor([[int(d) for d in labels]]))[0])


def read_pair(model, res: Analysis, absent: int | None = None) -> PairReading:
    """:class:`PairReading` of the analysis ``res`` of one image: its two longest capsules
    decoded, each from its own pose, and capsule ``absent`` (default: the third-longest, the
    strongest digit the model rejects), all in one decoder call."""
    digits = longest(res.lengths, 2)
    absent = longest(res.lengths, 3)[2] if absent is None else int(absent)
    if absent in digits or not 0 <= absent < len(res.lengths):
        raise ValueError(f"capsule {absent} is not one the model rejects: the digits read are {digits}")
    chosen = [*digits, absent]
    images = reconstruct(model, res.v[chosen], chosen)
    return PairReading(digits=(digits[0], digits[1]), lengths=res.lengths, reconstructions=images[:2],
                       absent=absent, absent_reconstruction=images[2])


def match_sources(images, sources) -> tuple[int, ...]:
    """Which source each of ``images`` (K, H, W) redraws: ``order[k]`` is the index in
    ``sources`` (K, H, W) of the one image ``k`` is matched with, the one-to-one assignment with
    the largest total cosine similarity (a source without ink matches nothing better than any
    other). For the two reconstructions of a pair and its two digits (or two pens' ink)."""
    a = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    b = np.asarray(sources, dtype=np.float64).reshape(len(sources), -1)
    if a.shape != b.shape:
        raise ValueError(f"{a.shape[0]} images of {a.shape[1]} pixels against {b.shape[0]} sources of "
                         f"{b.shape[1]}: expected as many of the same size")

    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    similarity = unit(a) @ unit(b).T  # (K, K)
    orders = itertools.permutations(range(len(a)))
    return tuple(int(k) for k in max(orders, key=lambda o: similarity[np.arange(len(o)), list(o)].sum()))


def source_shares(maps, sources) -> np.ndarray:
    """How an evidence map divides between the ink of several sources (the two digits of a
    pair, or the two pens of a drawing): ``maps`` (..., H, W) non-negative (NaN pixels left out),
    ``sources`` (K, H, W) ink of each source, the same frame. Each pixel's value is shared among
    the sources in proportion to their ink there (where both digits overlap, half and half when
    equally bright); returns (..., K), each source's part of the map's total. The parts add up to
    1 when the map lies on the sources' ink (the "ink" spread of :func:`evidence_maps`), to less
    when some of it lies elsewhere; a map without evidence gives zeros."""
    m = np.nan_to_num(np.asarray(maps, dtype=np.float64), nan=0.0)
    ink = np.clip(np.asarray(sources, dtype=np.float64), 0.0, None)
    if ink.ndim != 3 or ink.shape[1:] != m.shape[-2:]:
        raise ValueError(f"sources of shape {ink.shape} do not match maps of shape {m.shape}")
    weight = ink / np.maximum(ink.sum(axis=0), 1e-12)  # (K, H, W): each pixel's split
    parts = np.einsum("...hw,khw->...k", m, weight)
    total = m.sum(axis=(-2, -1))[..., None]
    return np.where(total > 0, parts / np.where(total > 0, total, 1.0), 0.0)


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
# input transforms


def _theta(side: int, rotate: float = 0.0, scale: float = 1.0, shift_x: float = 0.0,
           shift_y: float = 0.0, shear: float = 0.0) -> Tensor:
    """The (2, 3) ``affine_grid`` matrix (output -> input, normalised coordinates) of the forward
    map ``p_out = R(rotate) Sh(shear) S(scale) p_in + shift`` about the centre of a
    ``side x side`` image (shifts in pixels)."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    a = math.radians(rotate)
    # x right, y down: a counter-clockwise rotation on screen is [[cos, sin], [-sin, cos]]
    rot = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]], dtype=torch.float64)
    sh = torch.tensor([[1.0, shear], [0.0, 1.0]], dtype=torch.float64)
    m = rot @ sh * scale
    t = torch.tensor([shift_x, shift_y], dtype=torch.float64) * (2.0 / side)  # pixels -> [-1, 1]
    inv = torch.linalg.inv(m)
    return torch.cat([inv, (-inv @ t)[:, None]], dim=1).float()


def transform_images(image, params: list[dict]) -> Tensor:
    """One image (28, 28) under several transforms: (N, 28, 28) float32 tensor, bilinear, zeros
    outside. Each dict in ``params`` holds keyword arguments of :func:`transform_image`."""
    x = prepare(image)  # (1, 1, 28, 28)
    side = x.shape[-1]
    unknown = {k for p in params for k in p} - set(TRANSFORMS)
    if unknown:
        raise ValueError(f"unknown transform parameters: {', '.join(sorted(unknown))}")
    theta = torch.stack([_theta(side, **p) for p in params])  # (N, 2, 3)
    grid = F.affine_grid(theta, [len(params), 1, side, side], align_corners=False)
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


def is_identity(params: dict) -> bool:
    """Whether the transform parameters ``params`` (keyword arguments of :func:`transform_image`)
    leave the image as it is."""
    return all(float(v) == TRANSFORMS[k][2] for k, v in params.items())


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
