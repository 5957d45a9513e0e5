"""Adversarial attacks in the L-infinity ball: FGSM (Goodfellow et al. 2015) and PGD (Madry et al.
2018), untargeted, each on the model's own classification loss, and an adaptive PGD against the
CapsNet's reconstruction-distance detector (Frosst, Sabour & Hinton 2018, "DARCCC").

Images ``x`` are (B, 1, 28, 28) in [0, 1], ``y`` (B,) the classes attacked (the true labels, or
the model's own predictions for a drawn digit), ``eps`` the radius of the ball, in pixel units.

- **Loss** (:func:`attack_loss`, per image): the CapsNet's margin loss on the capsule lengths
  (eq. 4), ``L = T_y max(0, m+ - |v_y|)^2 + lambda sum_{k != y} max(0, |v_k| - m-)^2``, with
  ``m+ = 1, m- = 0`` instead of the paper's 0.9 and 0.1: with the paper's margins the loss and its
  gradient are exactly zero for every image whose own capsule is longer than 0.9 and the others
  shorter than 0.1 (most clean test images), so FGSM and PGD would not move at all and the CapsNet
  would look robust for a reason that has nothing to do with capsules. The CNN: cross-entropy on
  its logits.
- **FGSM** (:func:`fgsm`): ``x' = clip_[0,1](x + eps sign(grad_x L(x, y)))``.
- **PGD** (:func:`pgd`): ``x_0 = x`` (no random start, so a run is reproducible),
  ``x_{t+1} = clip_[0,1](clip_[x-eps, x+eps](x_t + alpha sign(grad_x L(x_t, y))))``, 20 steps of
  ``alpha = eps / 4`` (torchattacks' default ratio, 2/255 for 8/255: the steps can cross the ball
  five times; Madry et al.'s ``2.5 eps / steps`` took a fifth more steps on the first 100 test
  images and fooled no more of them). Per image the attack stops at the first iterate the model
  misclassifies and returns it (a success is a success: an image counts as right only when none of
  its iterates is misclassified), which spares the steps of the images already fooled. Accuracy and
  detection are both judged on the images returned, from the same forward pass. FGSM and the first
  PGD step share the gradient at ``x`` (:func:`start`).
- **Adaptive PGD** (``threshold=tau``): the attacker knows the detector, which flags an image
  whose reconstruction distance ``d(x) = |x - r(x)|_2`` (the decoder masked by the longest capsule)
  exceeds ``tau``. It ascends ``L(x, y) - lambda_ max(0, d(x) - tau)`` and stops at the first
  iterate that is misclassified *and* not flagged. The hinge spends the gradient on the distance
  only while the image would be flagged, so below ``tau`` nothing holds the attack back from the
  class boundary; ``lambda_ = 1`` (:data:`ADAPTIVE_LAMBDA`) weighs one unit of distance (about the
  gap between a typical clean digit and a flagged one: the shipped CapsNet's median is 3.2, its
  threshold 5.0) like one unit of margin loss (about the whole way from a confident digit, near 0,
  to a misclassified one), so that neither term drowns the other in ``sign()``. While the path stays
  below ``tau`` it is PGD's, so :func:`pgd_pair` runs both attacks on one path until it crosses.

Gradients are taken with respect to the input only: the parameters are frozen and the model in
eval mode for the duration (:func:`frozen`). ``precision="bf16"`` runs the attack's forward and
backward passes under CPU/CUDA bfloat16 autocast (twice as fast on a CPU with bf16 units); the
verdicts then come from those bf16 passes too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .inputs import _np, prepare
from .outliers import check_decoder, has_decoder, reconstruction_distances

EPSILONS = (0.05, 0.1, 0.2, 0.3)  # the radii of the shipped results, pixel units of [0, 1] images
STEPS = 20  # PGD iterations
ALPHA_FACTOR = 5.0  # alpha = ALPHA_FACTOR * eps / steps: eps / 4 with 20 steps
ADAPTIVE_LAMBDA = 1.0  # weight of the detector's hinge in the adaptive objective
M_POSITIVE, M_NEGATIVE, DOWN_WEIGHT = 1.0, 0.0, 0.5  # the attack's margin loss (eq. 4 without the dead zone)
METHODS = ("fgsm", "pgd", "pgd_adaptive")

Progress = Callable[[float, str], None]


def check_eps(eps: float) -> float:
    """``eps`` as a float, refused with one line unless it lies in [0, 1] (pixel units)."""
    eps = float(eps)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must be in [0, 1] (an L-infinity radius in pixel units of images in [0, 1]), "
                         f"got {eps:g}")
    return eps


@contextlib.contextmanager
def frozen(model) -> Iterator[None]:
    """The model in eval mode with its parameters' ``requires_grad`` off, both restored after."""
    was_training, flags = model.training, [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(was_training)


def margin_losses(lengths: Tensor, y: Tensor, m_positive: float = M_POSITIVE, m_negative: float = M_NEGATIVE,
                  down_weight: float = DOWN_WEIGHT) -> Tensor:
    """Eq. 4 per image: (B, k) capsule lengths, (B,) classes -> (B,) losses (summed over ``k``)."""
    t = F.one_hot(y, lengths.shape[-1]).to(lengths.dtype)  # T_k
    present = t * F.relu(m_positive - lengths) ** 2
    absent = down_weight * (1.0 - t) * F.relu(lengths - m_negative) ** 2
    return (present + absent).sum(dim=-1)


def attack_loss(model, out, y: Tensor) -> Tensor:
    """The loss the attacks ascend, per image (B,): the margin loss on the lengths for a CapsNet
    (:func:`margin_losses`, ``m+ = 1, m- = 0``), cross-entropy on the logits for the CNN."""
    if hasattr(out, "lengths"):
        return margin_losses(out.lengths.float(), y)
    return F.cross_entropy(out.logits.float(), y, reduction="none")


def _autocast(x: Tensor, precision: str):
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
    return torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@dataclass
class Attack:
    """What an attack returns for a batch (all on the input's device)."""

    images: Tensor  # (B, 1, 28, 28) the adversarial images, within eps of the input, in [0, 1]
    predictions: Tensor  # (B,) the model's classes for them
    steps: Tensor  # (B,) gradient steps taken to reach them (FGSM: 1)
    distances: Tensor | None  # (B,) reconstruction distances (a CapsNet with a trained decoder), else None
    loss: Tensor  # (B,) attack_loss at the returned images
    fork: tuple[Tensor, Tensor] | None = None  # PGD with ``watch``: first iterate over it, its step (-1: none)


def _evaluate(model, x: Tensor, y: Tensor, precision: str, *, grad: bool, want_distance: bool,
              threshold: float | None = None):
    """One forward pass at ``x``: (objective (B,), predictions, distances or None, loss (B,))."""
    with torch.enable_grad() if grad else torch.no_grad(), _autocast(x, precision):
        out = model(x)
        loss = attack_loss(model, out, y)
        d = reconstruction_distances(x, out) if want_distance else None
        objective = loss if threshold is None else loss - ADAPTIVE_LAMBDA * F.relu(d - threshold)
    return objective, out.prediction, d, loss


@dataclass
class Start:
    """The forward and backward pass at the clean images, which FGSM and PGD's first step share."""

    gradient: Tensor  # (B, 1, 28, 28) grad_x of attack_loss at x
    predictions: Tensor  # (B,)
    distances: Tensor | None  # (B,) with a trained decoder
    loss: Tensor  # (B,)


def start(model, x: Tensor, y: Tensor, *, precision: str = "fp32", batch_size: int = 250) -> Start:
    """:class:`Start` of images ``x`` with classes ``y``, in batches of ``batch_size``."""
    want_d, parts = has_decoder(model), []
    with frozen(model):
        for lo in range(0, x.shape[0], batch_size):
            xb = x[lo:lo + batch_size].detach().float().requires_grad_(True)
            _, p, d, loss = _evaluate(model, xb, y[lo:lo + batch_size], precision, grad=True, want_distance=want_d)
            (g,) = torch.autograd.grad(loss.sum(), xb)
            parts.append((g, p, None if d is None else d.detach(), loss.detach()))
    return Start(*(None if parts[0][k] is None else torch.cat([q[k] for q in parts]) for k in range(4)))


def fgsm(model, x: Tensor, y: Tensor, eps: float, *, precision: str = "fp32") -> Attack:
    """FGSM: one signed-gradient step of size ``eps`` from ``x``, clipped to [0, 1]."""
    return fgsm_many(model, x, y, [eps], precision=precision)[0]


def fgsm_many(model, x: Tensor, y: Tensor, epsilons, *, precision: str = "fp32", batch_size: int = 250,
              begin: Start | None = None) -> list[Attack]:
    """:func:`fgsm` at several radii from one gradient at ``x`` (``begin``, computed when not given)."""
    epsilons = [check_eps(e) for e in epsilons]
    begin = start(model, x, y, precision=precision, batch_size=batch_size) if begin is None else begin
    want_d, out = has_decoder(model), []
    with frozen(model):
        for eps in epsilons:
            adv = (x.detach().float() + eps * begin.gradient.sign()).clamp(0.0, 1.0)
            parts = [_evaluate(model, adv[lo:lo + batch_size], y[lo:lo + batch_size], precision, grad=False,
                               want_distance=want_d)[1:] for lo in range(0, x.shape[0], batch_size)]
            pred, d, loss = (None if parts[0][k] is None else torch.cat([q[k] for q in parts]) for k in range(3))
            out.append(Attack(adv, pred, torch.ones_like(y), d, loss))
    return out


def pgd(model, x: Tensor, y: Tensor, eps: float, *, steps: int = STEPS, alpha: float | None = None,
        threshold: float | None = None, early_stop: bool = True, precision: str = "fp32", batch_size: int = 250,
        begin: Start | None = None, resume: tuple[Tensor, Tensor] | None = None, watch: float | None = None,
        progress: Progress | None = None) -> Attack:
    """PGD in the L-infinity ball of radius ``eps`` around ``x`` (see the module docstring); with
    ``threshold`` the adaptive attack against the detector flagging distances above it.

    ``early_stop`` returns per image the first iterate that succeeds (misclassified, and unflagged
    for the adaptive attack); without it, the last iterate. Each image's result is independent of
    the others in the batch: the images still attacked are regrouped into batches of
    ``batch_size`` at every step, so the batches stay full while the attack thins them out.
    ``begin`` (:func:`start`, in the same precision) spares the first pass where its gradient is the
    objective's: everywhere for PGD, where the clean image is not flagged for the adaptive PGD (the
    hinge is flat there). ``resume`` = (iterates, steps taken) continues each image from a point of
    its path; ``watch`` records each image's first iterate whose distance exceeds it
    (:attr:`Attack.fork`), where the adaptive attack's path leaves this one (:func:`pgd_pair`).
    """
    eps = check_eps(eps)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if threshold is not None or watch is not None:
        check_decoder(model)
    alpha = ALPHA_FACTOR * eps / steps if alpha is None else float(alpha)
    want_d = threshold is not None or watch is not None or has_decoder(model)
    x = x.detach().float()
    adv, taken = (x.clone(), torch.zeros_like(y)) if resume is None else (resume[0].clone(), resume[1].clone())
    pred, loss = torch.empty_like(y), torch.empty(y.shape[0], device=x.device)
    dist = torch.empty(y.shape[0], device=x.device) if want_d else None
    fork = (x.clone(), torch.full_like(y, -1)) if watch is not None else None

    def advance(idx: Tensor, p: Tensor, d: Tensor | None, l_: Tensor, g: Tensor | None) -> Tensor:
        """Record the verdicts at ``adv[idx]``; step the images not yet done; return those."""
        pred[idx], loss[idx] = p, l_
        if dist is not None:
            dist[idx] = d
        if fork is not None:
            first = idx[(d > watch) & (fork[1][idx] < 0)]
            fork[0][first], fork[1][first] = adv[first], taken[first]
        keep = taken[idx] < steps
        if early_stop:
            keep &= (p == y[idx]) | (d > threshold if threshold is not None else False)
        if g is None:
            return idx[:0]
        idx = idx[keep]
        stepped = adv[idx] + alpha * g[keep].sign()  # ascend, then project onto the ball and [0, 1]
        adv[idx] = torch.minimum(torch.maximum(stepped, x[idx] - eps), x[idx] + eps).clamp(0.0, 1.0)
        taken[idx] += 1
        return idx

    active = torch.arange(y.shape[0], device=x.device)  # images still attacked
    with frozen(model):
        for rnd in range(steps + 1):
            kept = []
            if rnd == 0 and begin is not None and resume is None:
                reuse = torch.ones_like(active, dtype=torch.bool) if threshold is None else begin.distances <= threshold
                idx = active[reuse]
                kept.append(advance(idx, begin.predictions[idx], None if dist is None else begin.distances[idx],
                                    begin.loss[idx], begin.gradient[idx]))
                active = active[~reuse]
            for chunk in active.split(batch_size):
                grad = bool((taken[chunk] < steps).any())  # a pass at the last iterates only judges them
                xa = adv[chunk].requires_grad_(grad)
                objective, p, d, l_ = _evaluate(model, xa, y[chunk], precision, grad=grad, want_distance=want_d,
                                                threshold=threshold)
                g = torch.autograd.grad(objective.sum(), xa)[0] if grad else None
                kept.append(advance(chunk, p, None if d is None else d.detach(), l_.detach(), g))
            active = torch.cat(kept) if kept else active[:0]
            if progress is not None:
                progress((rnd + 1) / (steps + 1), f"step {rnd + 1}/{steps}: {active.numel():,} images left")
            if active.numel() == 0:
                break
    return Attack(adv, pred, taken, dist, loss, fork)


def pgd_pair(model, x: Tensor, y: Tensor, eps: float, threshold: float, *, steps: int = STEPS,
             precision: str = "fp32", batch_size: int = 250, begin: Start | None = None,
             progress: Progress | None = None) -> tuple[Attack, Attack]:
    """PGD and the adaptive PGD at ``threshold``, the second sharing the first's path while they agree.

    Until an iterate's distance exceeds the threshold the hinge is flat, so both attacks take the
    same steps, and at a misclassified unflagged iterate both stop: an image whose PGD path never
    crosses the threshold gets the same result from both. Only the others run the adaptive attack,
    from the first iterate that crossed (the first iterate is evaluated again, with the adaptive
    objective), which spares the adaptive attack the steps of the paths that stay below it.
    """
    half = None if progress is None else (lambda lo: lambda f, m: progress(lo + f / 2, m))
    plain = pgd(model, x, y, eps, steps=steps, precision=precision, batch_size=batch_size, begin=begin,
                watch=threshold, progress=half(0.0) if half else None)
    adaptive = Attack(plain.images.clone(), plain.predictions.clone(), plain.steps.clone(), plain.distances.clone(),
                      plain.loss.clone())
    forked = plain.fork[1] >= 0
    if forked.any():
        a = pgd(model, x[forked], y[forked], eps, steps=steps, precision=precision, batch_size=batch_size,
                threshold=threshold, resume=(plain.fork[0][forked], plain.fork[1][forked]),
                progress=half(0.5) if half else None)
        for field in ("images", "predictions", "steps", "distances", "loss"):
            getattr(adaptive, field)[forked] = getattr(a, field)
    if progress is not None:
        progress(1.0, f"{int(forked.sum()):,} of {y.shape[0]:,} paths left the detector's side")
    return plain, adaptive


def attack(model, x: Tensor, y: Tensor, method: str, eps: float, *, steps: int = STEPS,
           threshold: float | None = None, precision: str = "fp32") -> Attack:
    """One of :data:`METHODS` on a batch (``pgd_adaptive`` needs the detector's ``threshold``)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "fgsm":
        return fgsm(model, x, y, eps, precision=precision)
    if method == "pgd_adaptive" and threshold is None:
        raise ValueError("the adaptive PGD needs the detector's threshold (ood results: detector.threshold)")
    return pgd(model, x, y, eps, steps=steps, precision=precision,
               threshold=threshold if method == "pgd_adaptive" else None)


@dataclass(frozen=True)
class AttackedImage:
    """One image before and after an attack (:func:`attack_image`), for the page."""

    method: str
    eps: float
    target: int  # the class attacked (the label given, else the model's prediction)
    clean: np.ndarray  # (28, 28) float32 in [0, 1]
    adversarial: np.ndarray  # (28, 28) float32 in [0, 1]
    prediction_before: int
    prediction_after: int
    steps: int  # gradient steps taken
    distance_before: float | None  # reconstruction distances (CapsNet), else None
    distance_after: float | None

    @property
    def perturbation(self) -> np.ndarray:
        """(28, 28) adversarial minus clean, in [-eps, eps]."""
        return self.adversarial - self.clean

    @property
    def fooled(self) -> bool:
        return self.prediction_after != self.target


def attack_image(model, image, method: str = "pgd", eps: float = 0.1, *, label: int | None = None,
                 steps: int = STEPS, threshold: float | None = None, precision: str = "fp32") -> AttackedImage:
    """Attack one image (a (28, 28) array or tensor, as :func:`capsules.analysis.prepare` reads it)
    with ``method`` at ``eps``: untargeted against ``label``, or against the model's own prediction
    when there is none (a drawn digit has no true label)."""
    eps = check_eps(eps)
    x = prepare(image, model.device, side=model.config.image_size)
    want_d = has_decoder(model)
    with frozen(model):
        with torch.no_grad():
            out = model(x)
        before = int(out.prediction[0])
        d0 = float(reconstruction_distances(x, out)[0]) if want_d else None
    y = torch.tensor([before if label is None else int(label)], device=x.device)
    a = attack(model, x, y, method, eps, steps=steps, threshold=threshold, precision=precision)
    return AttackedImage(method=method, eps=eps, target=int(y[0]), clean=_np(x[0, 0]), adversarial=_np(a.images[0, 0]),
                         prediction_before=before, prediction_after=int(a.predictions[0]), steps=int(a.steps[0]),
                         distance_before=d0, distance_after=float(a.distances[0]) if a.distances is not None else None)
