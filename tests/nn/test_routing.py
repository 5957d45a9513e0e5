"""Squash (eq. 1) and dynamic routing (Procedure 1) against the paper."""

import math

import pytest
import torch

from capsules import Router, Squash


def test_squash_length_below_one_and_direction_kept():
    torch.manual_seed(0)
    s = torch.randn(64, 10, 16) * torch.logspace(-3, 1.5, 64)[:, None, None]
    v = Squash()(s)
    n_s, n_v = s.norm(dim=-1), v.norm(dim=-1)
    assert (n_v < 1).all()
    expected = n_s**2 / (1 + n_s**2)  # eq. 1 length
    torch.testing.assert_close(n_v, expected, rtol=1e-4, atol=1e-6)
    cos = torch.nn.functional.cosine_similarity(s, v, dim=-1)
    torch.testing.assert_close(cos, torch.ones_like(cos), rtol=0, atol=1e-5)


def test_squash_finite_gradient_at_zero():
    s = torch.zeros(3, 16, requires_grad=True)
    v = Squash()(s)
    assert torch.equal(v, torch.zeros_like(v))
    v.sum().backward()
    assert torch.isfinite(s.grad).all()


def slow_routing(weight, u, iterations):
    """Procedure 1 written out literally, one example, one capsule pair at a time."""
    in_caps, out_caps, _, _ = weight.shape
    outs = []
    for x in u:  # each example on its own: b is per example
        u_hat = [[weight[i, j].T @ x[i] for j in range(out_caps)] for i in range(in_caps)]  # W_ij u_i
        b = [[torch.zeros(()) for _ in range(out_caps)] for _ in range(in_caps)]
        for _ in range(iterations):
            c = []
            for i in range(in_caps):  # softmax over the parents j
                e = [torch.exp(b[i][j]) for j in range(out_caps)]
                total = sum(e)
                c.append([e[j] / total for j in range(out_caps)])
            v = []
            for j in range(out_caps):
                s = sum(c[i][j] * u_hat[i][j] for i in range(in_caps))
                norm2 = (s * s).sum()
                v.append(norm2 / (1 + norm2) * s / torch.sqrt(norm2 + 1e-8))
            for i in range(in_caps):
                for j in range(out_caps):
                    b[i][j] = b[i][j] + (u_hat[i][j] * v[j]).sum()
        outs.append(torch.stack(v))
    return torch.stack(outs)


@pytest.mark.parametrize("iterations", [1, 3])
def test_router_matches_literal_procedure(iterations):
    torch.manual_seed(0)
    router = Router(in_caps=7, out_caps=4, in_d=3, out_d=5, iterations=iterations, init_std=0.5).double()
    u = torch.randn(3, 7, 3, dtype=torch.float64, requires_grad=True)
    v_fast = router(u)
    grad_w_fast, grad_u_fast = torch.autograd.grad((v_fast * torch.arange(20).view(4, 5)).sum(), [router.weight, u])

    w = router.weight.detach().clone().requires_grad_(True)
    u2 = u.detach().clone().requires_grad_(True)
    v_slow = slow_routing(w, u2, iterations)
    grad_w_slow, grad_u_slow = torch.autograd.grad((v_slow * torch.arange(20).view(4, 5)).sum(), [w, u2])

    # The router computes in float32 (also for double parameters), hence the tolerances.
    torch.testing.assert_close(v_fast.double(), v_slow, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_w_fast.double(), grad_w_slow, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad_u_fast.double(), grad_u_slow, rtol=1e-4, atol=1e-5)


def test_router_weight_shape_and_output():
    router = Router(1152, 10, 8, 16, 3)
    assert router.weight.shape == (1152, 10, 8, 16)
    assert router(torch.randn(2, 1152, 8)).shape == (2, 10, 16)


def test_coupling_coefficients_sum_to_one_over_parents_and_start_uniform():
    torch.manual_seed(1)
    router = Router(1152, 10, 8, 16, 3)
    u = Squash()(torch.randn(2, 1152, 8))
    _, trace = router.route(router.predictions(u), trace=True)
    assert trace.c.shape == (3, 2, 1152, 10) and trace.b.shape == (3, 2, 1152, 10)
    assert trace.v.shape == (3, 2, 10, 16)
    torch.testing.assert_close(trace.c.sum(-1), torch.ones(3, 2, 1152))
    assert torch.equal(trace.c[0], torch.full_like(trace.c[0], 0.1))
    assert torch.equal(trace.b[0], torch.zeros_like(trace.b[0]))
    # later iterations move away from uniform, and b accumulates the agreement
    assert (trace.c[1] - 0.1).abs().max() > 1e-4
    torch.testing.assert_close(trace.b[1], trace.b[0] + trace.agreement[0])
    agreement = torch.einsum("bijm,bjm->bij", trace.u_hat, trace.v[0])
    torch.testing.assert_close(trace.agreement[0], agreement, rtol=1e-4, atol=1e-5)


def test_routing_is_per_example():
    """Two inputs batched together give what each gives alone: the logits are not shared."""
    torch.manual_seed(2)
    router = Router(1152, 10, 8, 16, 3)
    u = Squash()(torch.randn(2, 1152, 8))
    both = router(u)
    torch.testing.assert_close(both[0:1], router(u[0:1]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(both[1:2], router(u[1:2]), rtol=1e-5, atol=1e-6)


def test_router_iterations_override_and_validation():
    torch.manual_seed(3)
    router = Router(20, 4, 3, 5, 3, init_std=0.5)
    u = torch.randn(2, 20, 3)
    v1 = router(u, iterations=1)
    c_uniform = torch.full((2, 4, 20), 0.25)
    s = torch.matmul(c_uniform.unsqueeze(2), router.predictions(u)).squeeze(2)
    torch.testing.assert_close(v1, Squash()(s))
    assert not torch.allclose(v1, router(u, iterations=3))
    with pytest.raises(ValueError, match="iteration"):
        router(u, iterations=0)
    with pytest.raises(ValueError, match="shape"):
        router(torch.randn(2, 19, 3))


def test_router_stays_fp32_under_bf16_autocast():
    torch.manual_seed(4)
    router = Router(1152, 10, 8, 16, 3)
    u = Squash()(torch.randn(2, 1152, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = router(u)
    assert v.dtype == torch.float32
    torch.testing.assert_close(v, router(u))


def test_detach_inner_variant_changes_gradients_not_values():
    torch.manual_seed(5)
    full = Router(30, 4, 3, 5, 3, init_std=0.5)
    cheap = Router(30, 4, 3, 5, 3, init_std=0.5, detach_inner=True)
    cheap.load_state_dict(full.state_dict())
    u = torch.randn(2, 30, 3)
    torch.testing.assert_close(full(u), cheap(u))
    g_full = torch.autograd.grad(full(u).sum(), full.weight)[0]
    g_cheap = torch.autograd.grad(cheap(u).sum(), cheap.weight)[0]
    assert not torch.allclose(g_full, g_cheap)
    assert math.isfinite(g_cheap.abs().sum().item())


@pytest.mark.parametrize("r", [1, 2, 3, 4])
@pytest.mark.parametrize("detach_inner", [False, True])
def test_fused_routing_backward_matches_autograd(r, detach_inner):
    from capsules.nn import DynamicRouting, routing_iterations

    torch.manual_seed(r)
    u_hat = (0.5 * torch.randn(2, 3, 6, 4, dtype=torch.float64)).requires_grad_()
    weights = torch.randn(2, 3, 4, dtype=torch.float64)
    v_fused = DynamicRouting.apply(u_hat, r, detach_inner, 1e-8)
    v_ref = routing_iterations(u_hat, r, detach_inner=detach_inner)[-1][3]
    torch.testing.assert_close(v_fused, v_ref)
    g_fused = torch.autograd.grad((v_fused * weights).sum(), u_hat)[0]
    g_ref = torch.autograd.grad((v_ref * weights).sum(), u_hat)[0]
    torch.testing.assert_close(g_fused, g_ref, rtol=1e-9, atol=1e-12)
    if not detach_inner:  # (the variant's gradient is, by design, not the function's derivative)
        assert torch.autograd.gradcheck(lambda x: DynamicRouting.apply(x, r, detach_inner, 1e-8), (u_hat,))


def test_training_inference_and_trace_paths_agree():
    """The fused (grad), the no-grad and the traced routing give the same v."""
    torch.manual_seed(6)
    router = Router(1152, 10, 8, 16, 3)
    u = Squash()(torch.randn(3, 1152, 8))
    v_grad = router(u)
    assert v_grad.requires_grad
    with torch.no_grad():
        v_nograd = router(u)
    with torch.inference_mode():
        v_trace, trace = router.route(router.predictions(u), trace=True)
    torch.testing.assert_close(v_nograd, v_grad.detach())
    torch.testing.assert_close(v_trace, v_grad.detach())
    torch.testing.assert_close(trace.v[-1], v_grad.detach())
    assert (v_nograd.norm(dim=-1) < 1).all()
