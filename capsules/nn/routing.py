"""Digit capsules by dynamic routing: the Router (Procedure 1, eqs. 2 and 3), its iterations, and
the fused backward pass of all of them (DynamicRouting, each gradient equation beside its line).

Index letters follow the paper: ``i`` is a lower (primary) capsule, ``j`` an upper (digit)
capsule, ``n`` a lower capsule's dimension and ``m`` an upper capsule's dimension.

The routing arithmetic always runs in float32, also inside a bfloat16 autocast region: the
coupling coefficients differ from 1/10 by a few thousandths in a trained network, well below
bfloat16's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .primary import Squash, squash


@dataclass
class RoutingTrace:
    """Everything routing did, one row per iteration ``t = 0 .. r-1``.

    ``b[t]`` and ``c[t]`` are the logits and coupling coefficients iteration ``t`` used
    (``b[0] = 0`` and ``c[0] = 1/out_caps`` exactly); ``v[t]`` is the output it produced and
    ``agreement[t] = u_hat . v[t]`` the update it made, so ``b[t + 1] = b[t] + agreement[t]``.
    """

    b: Tensor  # (r, B, in_caps, out_caps)
    c: Tensor  # (r, B, in_caps, out_caps)
    v: Tensor  # (r, B, out_caps, out_d)
    agreement: Tensor  # (r, B, in_caps, out_caps)
    u_hat: Tensor  # (B, in_caps, out_caps, out_d): the prediction vectors W_ij u_i

    @property
    def iterations(self) -> int:
        return self.c.shape[0]


class Router(nn.Module):
    """Digit capsules by dynamic routing (Procedure 1, eqs. 2 and 3).

    ``u_hat_{j|i} = W_ij u_i``; ``b_ij = 0``; ``r`` times: ``c_i = softmax_j(b_i)``,
    ``s_j = sum_i c_ij u_hat_{j|i}``, ``v_j = squash(s_j)``, ``b_ij += u_hat_{j|i} . v_j``.
    The logits ``b`` are per example and start from zero on every call; the softmax runs over
    the parent capsules ``j``.

    Args:
        in_caps, out_caps: number of lower / upper capsules (1152 and 10 for MNIST).
        in_d, out_d: their dimensions (8 and 16).
        iterations: routing iterations ``r`` (3 in the paper).
        init_std: std of the truncated-normal init of ``W`` (the official code's 0.1).
        detach_inner: a variant, off by default: stop gradients through ``u_hat`` in all but
            the last iteration (cheaper; the official code lets them flow through every one).
    """

    def __init__(
        self,
        in_caps: int,
        out_caps: int,
        in_d: int,
        out_d: int,
        iterations: int,
        *,
        init_std: float = 0.1,
        detach_inner: bool = False,
    ):
        super().__init__()
        if iterations < 1:
            raise ValueError(f"routing needs at least 1 iteration, got {iterations}")
        self.in_caps, self.out_caps = in_caps, out_caps
        self.in_d, self.out_d = in_d, out_d
        self.iterations = iterations
        self.detach_inner = detach_inner
        self.squash = Squash()
        self.weight = nn.Parameter(torch.empty(in_caps, out_caps, in_d, out_d))
        nn.init.trunc_normal_(self.weight, std=init_std, a=-2 * init_std, b=2 * init_std)

    def predictions(self, u: Tensor) -> Tensor:
        """Prediction vectors ``u_hat_{j|i} = W_ij u_i``: u (B, in_caps, in_d) -> (B, out_caps, in_caps, out_d).

        The layout puts ``j`` before ``i`` so that eq. 2 and the agreement are contiguous batched
        matrix-vector products (about 4x faster than the (B, i, j, m) layout on a CPU).
        """
        if u.dim() != 3 or u.shape[1:] != (self.in_caps, self.in_d):
            raise ValueError(
                f"Router expects u of shape (batch, {self.in_caps}, {self.in_d}), got {tuple(u.shape)}"
            )
        with torch.autocast(u.device.type, enabled=False):
            # one batched matmul over i: (i, B, n) @ (i, n, j*m) -> (i, B, j*m)
            w = self.weight.float().permute(0, 2, 1, 3).reshape(self.in_caps, self.in_d, -1)
            u_hat = torch.bmm(u.float().transpose(0, 1), w)
            u_hat = u_hat.view(self.in_caps, u.shape[0], self.out_caps, self.out_d)  # (i, B, j, m)
            return u_hat.permute(1, 2, 0, 3).contiguous()  # (B, j, i, m)

    def route(self, u_hat: Tensor, iterations: int | None = None, trace: bool = False):
        """Procedure 1 on prediction vectors ``u_hat`` (B, out_caps, in_caps, out_d).

        Returns ``(v, trace)``: ``v`` (B, out_caps, out_d), and a :class:`RoutingTrace` when
        ``trace`` is true, else ``None``. With gradients enabled the backward pass is the fused
        one of :class:`DynamicRouting` (identical values, a fraction of the memory traffic).
        """
        r = self.iterations if iterations is None else int(iterations)
        if r < 1:
            raise ValueError(f"routing needs at least 1 iteration, got {r}")
        with torch.autocast(u_hat.device.type, enabled=False):
            u_hat = u_hat.float()
            if not trace:
                if torch.is_grad_enabled() and u_hat.requires_grad:
                    return DynamicRouting.apply(u_hat, r, self.detach_inner, self.squash.epsilon), None
                return routing_iterations(u_hat, r, self.squash.epsilon, agreement_last=False)[-1][3], None
            steps = routing_iterations(u_hat, r, self.squash.epsilon, detach_inner=self.detach_inner)
        bs, cs, vs, as_ = (torch.stack([step[k] for step in steps]) for k in (0, 1, 3, 4))
        return steps[-1][3], RoutingTrace(
            b=bs.transpose(2, 3),  # (r, B, i, j)
            c=cs.transpose(2, 3),
            v=vs,
            agreement=as_.transpose(2, 3),
            u_hat=u_hat.transpose(1, 2),  # (B, i, j, m)
        )

    def forward(self, u: Tensor, iterations: int | None = None) -> Tensor:
        """(B, in_caps, in_d) -> (B, out_caps, out_d)."""
        v, _ = self.route(self.predictions(u), iterations)
        return v

    def extra_repr(self) -> str:
        return (
            f"in_caps={self.in_caps}, out_caps={self.out_caps}, in_d={self.in_d}, "
            f"out_d={self.out_d}, iterations={self.iterations}, detach_inner={self.detach_inner}"
        )


def routing_iterations(u_hat: Tensor, r: int, epsilon: float = 1e-8, *, detach_inner: bool = False,
                       agreement_last: bool = True) -> list[tuple[Tensor, ...]]:
    """Procedure 1, step by step: ``[(b, c, s, v, a) for t in 0 .. r-1]`` on ``u_hat`` (B, j, i, m).

    ``b`` and ``c`` (B, j, i) are the logits and coupling coefficients iteration ``t`` used,
    ``s`` and ``v`` (B, j, m) what it produced, ``a`` (B, j, i) the agreement ``u_hat . v`` it
    adds to the logits (None for the last iteration unless ``agreement_last``).
    """
    inner = u_hat.detach() if detach_inner else u_hat
    b = u_hat.new_zeros(u_hat.shape[0], u_hat.shape[1], u_hat.shape[2])  # per example, from 0
    steps = []
    for t in range(r):
        last = t == r - 1
        uh = u_hat if last else inner
        c = torch.softmax(b, dim=1)  # eq. 3, softmax over the parents j
        s = torch.matmul(c.unsqueeze(2), uh).squeeze(2)  # eq. 2, sum_i c_ij u_hat_j|i
        v = squash(s, epsilon)  # eq. 1
        a = torch.matmul(uh, v.unsqueeze(-1)).squeeze(-1) if (agreement_last or not last) else None
        steps.append((b, c, s, v, a))
        if not last:
            b = b + a
    return steps


class DynamicRouting(torch.autograd.Function):
    """Procedure 1 with a hand-written backward pass, for training.

    Autograd would write a full-size gradient of ``u_hat`` for each of the ``2r - 1`` products that
    read it and add them up; here the adjoints are accumulated per iteration in small tensors and
    ``d u_hat = sum_t c_t (x) g_s_t + sum_t g_a_t (x) v_t`` is formed once, as one batched matmul.
    Gradients flow through every iteration as in the official code (``detach_inner`` keeps only
    the last iteration's direct term). Checked against autograd and a literal loop in the tests.
    """

    @staticmethod
    def forward(ctx, u_hat: Tensor, r: int, detach_inner: bool, epsilon: float) -> Tensor:
        steps = routing_iterations(u_hat, r, epsilon, agreement_last=False)
        cs = torch.stack([st[1] for st in steps])  # (r, B, j, i)
        ss = torch.stack([st[2] for st in steps])  # (r, B, j, m)
        vs = torch.stack([st[3] for st in steps])
        ctx.save_for_backward(u_hat, cs, ss, vs)
        ctx.r, ctx.detach_inner, ctx.epsilon = r, detach_inner, epsilon
        return steps[-1][3]

    @staticmethod
    def backward(ctx, grad_v: Tensor):
        """The adjoints ``dL/dx`` of Procedure 1, from iteration ``t = r-1`` down to 0. Per example::

            c_t = softmax_j(b_t),  b_0 = 0        s_t[j] = sum_i c_t[j,i] u_hat[j,i]
            v_t = squash(s_t)                     a_t[j,i] = u_hat[j,i] . v_t[j]
            b_{t+1} = b_t + a_t                   output v_{r-1}

        ``u_hat`` enters every ``s_t`` and every ``a_t`` (t < r-1); ``b_t`` enters ``c_t`` and ``b_{t+1}``.
        """
        u_hat, cs, ss, vs = ctx.saved_tensors  # (B, j, i, m); (r, B, j, i); (r, B, j, m); (r, B, j, m)
        r, eps = ctx.r, ctx.epsilon
        # With detach_inner every c_t (and every v_t, t < r-1) is computed from the detached u_hat:
        # u_hat reaches the output only through s_{r-1} = sum_i c_{r-1} u_hat, so only the last
        # iteration is differentiated and nothing flows back through the logits.
        through_logits = not ctx.detach_inner
        g_s = [None] * r  # g_s[t] = dL/ds_t (B, j, m)
        g_a = [None] * (r - 1)  # g_a[t] = dL/da_t (B, j, i)
        g_b = None  # dL/db_{t+1} (B, j, i) on entering iteration t: all that b_{t+1} feeds, accumulated
        for t in reversed(range(r)) if through_logits else [r - 1]:
            if t == r - 1:
                gv = grad_v  # v_{r-1} is the output
            else:
                g_a[t] = g_b  # b_{t+1} = b_t + a_t:  dL/da_t = dL/db_{t+1}
                # a_t[j,i] = u_hat[j,i] . v_t[j]:  dL/dv_t[j] = sum_i dL/da_t[j,i] u_hat[j,i]
                gv = torch.matmul(g_b.unsqueeze(2), u_hat).squeeze(2)  # (B, j, m)
            g_s[t] = _squash_backward(ss[t], gv, eps)  # v_t = squash(s_t): dL/ds_t = (dv_t/ds_t)^T dL/dv_t
            logits_vary = t > 0  # c_0 = softmax(b_0 = 0) = 1/out_caps is a constant
            if through_logits and logits_vary:
                # s_t[j] = sum_i c_t[j,i] u_hat[j,i]:  dL/dc_t[j,i] = u_hat[j,i] . dL/ds_t[j]
                gc = torch.matmul(u_hat, g_s[t].unsqueeze(-1)).squeeze(-1)  # (B, j, i)
                c = cs[t]
                # c_t = softmax_j(b_t):  dL/db_t[j,i] = c_t[j,i] (dL/dc_t[j,i] - sum_k c_t[k,i] dL/dc_t[k,i])
                gb = c * (gc - (c * gc).sum(dim=1, keepdim=True))
                # b_t feeds c_t and b_{t+1}:  dL/db_t = (the softmax term) + dL/db_{t+1}
                g_b = gb if g_b is None else g_b + gb
        if ctx.detach_inner:
            # s_{r-1}[j] = sum_i c_{r-1}[j,i] u_hat[j,i], c_{r-1} constant:
            # dL/du_hat[j,i] = c_{r-1}[j,i] dL/ds_{r-1}[j]
            grad_u = cs[-1].unsqueeze(-1) * g_s[-1].unsqueeze(2)
            return grad_u, None, None, None
        # dL/du_hat[b, j, i, m] = sum_t c_t[b, j, i] g_s_t[b, j, m] + sum_{t < r-1} g_a_t[b, j, i] v_t[b, j, m]
        # (through s_t and a_t), one matmul over the 2r - 1 terms
        left = torch.stack([*cs.unbind(0), *g_a], dim=-1)  # (B, j, i, 2r - 1)
        right = torch.stack([*g_s, *vs[:r - 1].unbind(0)], dim=2)  # (B, j, 2r - 1, m)
        return torch.matmul(left, right), None, None, None


def _squash_backward(s: Tensor, grad_v: Tensor, epsilon: float) -> Tensor:
    """Vector-Jacobian product of eq. 1 at ``s`` (..., m) for the upstream gradient ``grad_v``.

    v = f(n2) s with n2 = |s|^2 and f = n2 / ((1 + n2) sqrt(n2 + eps)); dv/ds = f I + 2 f'(n2) s s^T.
    """
    n2 = (s * s).sum(dim=-1, keepdim=True)
    root = torch.sqrt(n2 + epsilon)
    f = n2 / ((1.0 + n2) * root)
    # f'(n2) = [ (1+n2) root - n2 (root + (1+n2) / (2 root)) ] / ((1+n2) root)^2
    df = ((1.0 + n2) * root - n2 * (root + (1.0 + n2) / (2.0 * root))) / ((1.0 + n2) * root) ** 2
    return f * grad_v + 2.0 * df * s * (s * grad_v).sum(dim=-1, keepdim=True)
