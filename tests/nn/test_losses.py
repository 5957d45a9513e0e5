"""Margin loss (eq. 4) and the reconstruction loss's scale."""

import torch

from capsules import MarginLoss, reconstruction_loss
from capsules.nn import CapsuleLoss


def caps_with_lengths(lengths):
    lengths = torch.tensor(lengths, dtype=torch.float32)
    v = torch.zeros(*lengths.shape, 16)
    v[..., 3] = lengths  # a capsule of exactly that length
    return v


def test_margin_loss_hand_computed():
    v = caps_with_lengths([[0.95, 0.05, 0.5], [0.3, 0.2, 0.0]])
    labels = torch.tensor([0, 2])
    # example 0: present k=0 at 0.95 -> 0; absent 0.05 -> 0; absent 0.5 -> 0.5 * 0.4^2 = 0.08
    # example 1: absent 0.3 -> 0.5 * 0.2^2 = 0.02; absent 0.2 -> 0.5 * 0.1^2 = 0.005; present 0 -> 0.81
    expected = (0.08 + (0.02 + 0.005 + 0.81)) / 2
    loss = MarginLoss(n_labels=3)(v, labels)
    torch.testing.assert_close(loss, torch.tensor(expected), rtol=1e-6, atol=1e-7)


def test_margin_loss_parameters_and_squares():
    v = caps_with_lengths([[0.5, 0.5]])
    loss = MarginLoss(n_labels=2, lambda_=1.0, m_positive=0.8, m_negative=0.2)(v, torch.tensor([1]))
    torch.testing.assert_close(loss, torch.tensor(0.3**2 + 0.3**2))


def test_margin_loss_gradient_finite_at_zero_length():
    v = torch.zeros(2, 10, 16, requires_grad=True)
    MarginLoss(n_labels=10)(v, torch.tensor([1, 2])).backward()
    assert torch.isfinite(v.grad).all()


def test_reconstruction_loss_is_sum_of_squares_times_0005():
    images = torch.zeros(2, 1, 28, 28)
    recon = torch.full((2, 1, 28, 28), 0.5)
    # per image: 784 * 0.25 = 196 ; x 0.0005 = 0.098 ; mean over the batch
    torch.testing.assert_close(reconstruction_loss(recon, images), torch.tensor(0.098))
    # = per-pixel MSE x 0.392 (784 x 0.0005), the paper's scale, not MSE x 0.0005
    mse = torch.nn.functional.mse_loss(recon, images)
    torch.testing.assert_close(reconstruction_loss(recon, images), mse * 0.392)


def test_capsule_loss_adds_both():
    v = caps_with_lengths([[0.95, 0.05]])
    images, recon = torch.zeros(1, 1, 28, 28), torch.full((1, 1, 28, 28), 0.5)
    total = CapsuleLoss(n_labels=2)(v, recon, images, torch.tensor([0]))
    torch.testing.assert_close(total, torch.tensor(0.098))
