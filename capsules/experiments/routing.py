"""Does routing matter? One traced pass of Procedure 1 (:func:`routing_pass`: accuracy, margins and
dynamics for k = 1 ... K iterations) and fixed coupling rules at inference (:func:`coupling_ablations`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data import to_float
from ..nn import capsule_lengths, routing_iterations, squash
from ..stats import wilson_interval
from .common import Progress, _percent, _report


def changed_from_k1(results: dict, k: int) -> tuple[int, int] | None:
    """Routing with ``k`` iterations against k = 1 in a results file (:func:`load_results`), image
    by image: (right answers turned wrong, wrong ones turned right), the discordant pairs of
    :func:`mcnemar_p`; None for results computed before they were recorded."""
    dyn = results.get("dynamics", {})
    if "right_to_wrong_from_k1" not in dyn or "wrong_to_right_from_k1" not in dyn:
        return None
    return int(dyn["right_to_wrong_from_k1"][k - 1]), int(dyn["wrong_to_right_from_k1"][k - 1])


# --------------------------------------------------------------------------------------------
# routing with a fixed coupling


def route_fixed(u_hat: Tensor, c: Tensor, epsilon: float = 1e-8) -> Tensor:
    """Eqs. 2 and 1 with a fixed coupling and no routing iterations: ``v_j = squash(sum_i c_ij u_hat_{j|i})``.

    ``u_hat`` (B, j, i, m) is :meth:`Router.predictions`' layout; ``c`` is (i, j), one coupling
    for every image, or (B, i, j), one per image (the layout of :class:`RoutingTrace`).
    Returns ``v`` (B, j, m).
    """
    if c.dim() == 2:
        c = c.unsqueeze(0)
    if c.dim() != 3 or c.shape[1:] != (u_hat.shape[2], u_hat.shape[1]):
        raise ValueError(f"coupling must be (i, j) or (B, i, j) with i, j = {u_hat.shape[2]}, "
                         f"{u_hat.shape[1]}; got {tuple(c.shape)}")
    cj = c.to(u_hat.dtype).transpose(1, 2)  # (B or 1, j, i)
    s = torch.matmul(cj.unsqueeze(2), u_hat).squeeze(2)  # (B, j, m), eq. 2
    return squash(s, epsilon)


def random_logits(n: int, in_caps: int, out_caps: int, std: float, generator: torch.Generator) -> Tensor:
    """Gaussian routing logits ``z ~ N(0, std^2)``, (n, in_caps, out_caps), drawn one image at a
    time from ``generator`` so that the draw for an image does not depend on the batch size."""
    return torch.stack([torch.randn(in_caps, out_caps, generator=generator) for _ in range(n)]) * std


# --------------------------------------------------------------------------------------------
# one traced pass


@dataclass
class RoutingPass:
    """What one pass of ``K`` routing iterations over a test set records (all on the CPU).

    ``model_iterations`` is the ``r`` the model routes with; "final" below means its iteration
    ``r``: the coupling and logits that produced the model's own output.
    """

    labels: Tensor  # (N,) int64
    lengths: Tensor  # (K, N, J) capsule lengths after iteration k = 1 .. K
    logit_change: Tensor  # (K,) mean |b(t+1) - b(t)| = mean |u_hat . v(t)| over images, i and j
    entropy: Tensor  # (K,) mean routing entropy -sum_j c_ij ln c_ij of iteration t's c, nats
    class_coupling: Tensor  # (I, J) column j: mean final c_ij over the images predicted as j
    class_counts: Tensor  # (J,) images predicted as each class (model's own routing)
    logit_std: float  # sigma: sqrt of the mean over images and i of the variance over j (n - 1) of the final b_ij
    u: Tensor  # (N, I, n) primary capsules, for the fixed-coupling ablations
    model_iterations: int
    seconds: float

    @property
    def iterations(self) -> int:
        return self.lengths.shape[0]

    @property
    def predictions(self) -> Tensor:
        """(K, N) prediction after iteration k."""
        return self.lengths.argmax(dim=-1)

    @property
    def correct(self) -> list[int]:
        """Correct predictions after iteration k = 1 .. K."""
        return [int(n) for n in (self.predictions == self.labels).sum(dim=1)]

    @property
    def margins(self) -> list[float]:
        """Mean over images of longest minus second-longest capsule length, k = 1 .. K."""
        top2 = self.lengths.topk(2, dim=-1).values
        return [float(m) for m in (top2[..., 0] - top2[..., 1]).mean(dim=1)]

    @property
    def changed(self) -> list[float]:
        """Percent of images whose prediction after iteration k differs from the k = 1 prediction."""
        p = self.predictions
        return [float(x) for x in 100.0 * (p != p[:1]).double().mean(dim=1)]

    @property
    def paired(self) -> tuple[list[int], list[int]]:
        """Per k = 1 .. K against k = 1, image by image: (right answers turned wrong, wrong answers
        turned right), the discordant pairs of :func:`mcnemar_p`."""
        right = self.predictions == self.labels  # (K, N)
        broke, fixed = (right[:1] & ~right).sum(dim=1), (~right[:1] & right).sum(dim=1)
        return [int(x) for x in broke], [int(x) for x in fixed]

    @property
    def own(self) -> Tensor:
        """(N, J) lengths from the model's own routing (iteration ``model_iterations``)."""
        return self.lengths[self.model_iterations - 1]


@torch.inference_mode()
def routing_pass(model, images: Tensor, labels: Tensor, *, iterations: int = 10, batch_size: int = 250,
                 progress: Progress | None = None) -> RoutingPass:
    """Route uint8 ``images`` (N, 28, 28) with ``iterations`` iterations of Procedure 1, recording
    every iteration (see :class:`RoutingPass`). Float32 throughout."""
    r = model.config.routing_iterations
    if iterations < r:
        raise ValueError(f"iterations ({iterations}) must be at least the model's {r}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    start = time.perf_counter()
    device, router = model.device, model.digits
    n, n_in, n_out = images.shape[0], router.in_caps, router.out_caps
    lengths = torch.empty(iterations, n, n_out)
    u_all = torch.empty(n, n_in, router.in_d)
    change = torch.zeros(iterations, dtype=torch.float64)
    entropy = torch.zeros(iterations, dtype=torch.float64)
    sums = torch.zeros(n_out, n_in, dtype=torch.float64)  # sum of final c_ij over images predicted j
    counts = torch.zeros(n_out, dtype=torch.int64)
    var_sum = 0.0
    for lo in range(0, n, batch_size):
        x = to_float(images[lo:lo + batch_size].to(device))
        u = model.primary_capsules(x)  # (B, i, n)
        u_hat = router.predictions(u)  # (B, j, i, m)
        steps = routing_iterations(u_hat, iterations, router.squash.epsilon)  # [(b, c, s, v, a)], (B, j, i)
        if lo == 0:  # the steps are the model's own routing
            own, _ = router.route(u_hat, r)
            if not torch.allclose(own, steps[r - 1][3], rtol=1e-5, atol=1e-6):
                raise RuntimeError("routing_iterations no longer reproduces the model's routing")
        for t, (b, c, _, v, a) in enumerate(steps):
            lengths[t, lo:lo + x.shape[0]] = capsule_lengths(v).cpu()
            change[t] += float(a.abs().sum(dtype=torch.float64))
            entropy[t] += float(torch.special.entr(c).sum(dtype=torch.float64))  # -c ln c
        b, c, _, v, _ = steps[r - 1]
        pred = capsule_lengths(v).argmax(dim=-1)  # (B,)
        own_c = c.gather(1, pred[:, None, None].expand(-1, 1, n_in))[:, 0]  # (B, i): c_{i, pred}
        sums.index_add_(0, pred.cpu(), own_c.double().cpu())
        counts += torch.bincount(pred.cpu(), minlength=n_out)
        var_sum += float(b.var(dim=1, correction=1).sum(dtype=torch.float64))
        u_all[lo:lo + x.shape[0]] = u.cpu()
        _report(progress, min(lo + batch_size, n) / n, f"routing {iterations} iterations: "
                f"{min(lo + batch_size, n):,}/{n:,} test images")
    coupling = torch.full((n_in, n_out), 1.0 / n_out, dtype=torch.float64)  # a class never predicted: uniform
    seen = counts > 0
    coupling[:, seen] = (sums[seen] / counts[seen, None]).T
    weights = max(n, 1) * n_in
    return RoutingPass(
        labels=labels.cpu().long(), lengths=lengths,
        logit_change=(change / (weights * n_out)).float(), entropy=(entropy / weights).float(),
        class_coupling=coupling.float(), class_counts=counts, logit_std=math.sqrt(var_sum / weights),
        u=u_all, model_iterations=r, seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------------
# coupling ablations


@dataclass
class Ablation:
    """Accuracy of one coupling rule over the test set, with its 95% Wilson interval (percent)."""

    name: str
    correct: int
    total: int
    predictions: Tensor  # (N,)

    @property
    def accuracy(self) -> float:
        return _percent(self.correct, self.total)

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.total)

    def to_dict(self) -> dict:
        lo, hi = self.interval
        return {"accuracy": self.accuracy, "correct": self.correct, "total": self.total, "interval": [lo, hi]}


def _predict_fixed(u_hat: Tensor, c: Tensor, epsilon: float) -> Tensor:
    return capsule_lengths(route_fixed(u_hat, c, epsilon)).argmax(dim=-1).cpu()


@torch.inference_mode()
def coupling_ablations(model, rp: RoutingPass, *, seed: int = 0, batch_size: int = 500,
                       progress: Progress | None = None) -> dict[str, Ablation]:
    """The model's own routing against fixed couplings (uniform, random, class-mean), all over the
    images of ``rp``; the fixed ones route once with :func:`route_fixed`, no iterations."""
    device, router = model.device, model.digits
    n, n_in, n_out = rp.u.shape[0], router.in_caps, router.out_caps
    generator = torch.Generator().manual_seed(seed)
    fixed = {"uniform": torch.full((n_in, n_out), 1.0 / n_out, device=device),
             "class_mean": rp.class_coupling.to(device)}
    preds: dict[str, list[Tensor]] = {"uniform": [], "random": [], "class_mean": []}
    for lo in range(0, n, batch_size):
        u_hat = router.predictions(rp.u[lo:lo + batch_size].to(device))  # (B, j, i, m)
        for name, c in fixed.items():
            preds[name].append(_predict_fixed(u_hat, c, router.squash.epsilon))
        c = torch.softmax(random_logits(u_hat.shape[0], n_in, n_out, rp.logit_std, generator), dim=-1)
        preds["random"].append(_predict_fixed(u_hat, c.to(device), router.squash.epsilon))
        _report(progress, min(lo + batch_size, n) / n, f"coupling ablations: {min(lo + batch_size, n):,}/{n:,}")
    own = rp.own.argmax(-1)
    out = {"routing": Ablation("routing", int((own == rp.labels).sum()), n, own)}
    for name, p in preds.items():
        p = torch.cat(p) if p else torch.empty(0, dtype=torch.int64)
        out[name] = Ablation(name, int((p == rp.labels).sum()), n, p)
    return out
