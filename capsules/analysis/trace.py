"""Routing per iteration for one image (:func:`analyse` -> :class:`Analysis`): the coupling
coefficients, logits, agreements, masses and entropies of every iteration, the iteration sweep,
and what the capsule lengths say (:func:`reading`). The quantities and the notation are those of
:mod:`capsules.analysis`."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .evidence import EVIDENCE_MODES, coverage, evidence_maps
from .inputs import MNIST, Geometry, _np, prepare



M_PLUS, M_MINUS = 0.9, 0.1  # the margin loss's thresholds (eq. 4; capsules.nn.MarginLoss)
LONG = 0.5  # a capsule longer than this gives its digit a probability above one half
TIE = 1e-7  # coupling coefficients closer than this are equal (float32 rounding of 1/10)


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
    """The routing iterations r the checkpoint was trained with, from the ``train_config`` its JSON
    records; None when not recorded."""
    cfg = metadata.get("train_config")
    if not isinstance(cfg, dict) or cfg.get("iterations") is None:
        return None
    return int(cfg["iterations"])
