"""The chunked exact gradient equals naive sequential autograd (docs/design.md)."""

from __future__ import annotations

import pytest
import torch

from rtb_lab.diffusion import (
    EulerMaruyama,
    sample_trajectories,
    sequential_log_prob,
    trajectory_log_prob,
)
from rtb_lab.nets import DriftMLP, posterior_from_prior
from rtb_lab.rtb import LogZ, backward_through_trajectories, freeze, rtb_loss


def _naive_loss(posterior, prior, family, traj, log_r, log_z, beta):
    """The textbook implementation: call the networks once per step, sum, square."""
    log_q = sequential_log_prob(posterior, family, traj)
    with torch.no_grad():
        log_p = sequential_log_prob(prior, family, traj)
    return rtb_loss(log_q, log_p, log_r, log_z(), beta)


@pytest.mark.parametrize("chunk_steps", [None, 1, 3, 7])
def test_chunked_gradient_equals_sequential_autograd(chunk_steps):
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        family = EulerMaruyama(num_steps=10, sigma2=5.0)
        prior = freeze(DriftMLP(hidden=16))
        posterior = posterior_from_prior(prior)
        with torch.no_grad():  # move the posterior away from the prior
            for p in posterior.parameters():
                p.add_(0.1 * torch.randn_like(p))
        traj = sample_trajectories(posterior, family, 12, (2,), explore=0.5,
                                   generator=torch.Generator().manual_seed(1))
        log_r = torch.randn(12, dtype=torch.float64)
        log_z, beta = LogZ(0.3), 1.3

        _naive_loss(posterior, prior, family, traj, log_r, log_z, beta).backward()
        expected = [p.grad.clone() for p in posterior.parameters()] + [log_z.value.grad.clone()]
        for p in list(posterior.parameters()) + [log_z.value]:
            p.grad = None

        with torch.no_grad():
            log_p = trajectory_log_prob(prior, family, traj)

        def loss_of(log_q):
            return rtb_loss(log_q, log_p, log_r, log_z(), beta)

        backward_through_trajectories(loss_of, posterior, family, traj, chunk_steps)
        got = [p.grad for p in posterior.parameters()] + [log_z.value.grad]
        assert max(float(g.abs().max()) for g in expected) > 1e-3  # a real gradient
        for g_exp, g_got in zip(expected, got, strict=True):
            torch.testing.assert_close(g_got, g_exp, atol=1e-5, rtol=1e-5)
    finally:
        torch.set_default_dtype(torch.float32)


def test_subsampled_steps_give_an_unbiased_gradient():
    # Backprop through S of T steps, scaled by T/S: the average over draws must match
    # the exact gradient, and a single draw must differ from it (it is an estimate).
    torch.manual_seed(0)
    family = EulerMaruyama(num_steps=6, sigma2=5.0)
    prior = freeze(DriftMLP(hidden=8))
    posterior = posterior_from_prior(prior)
    with torch.no_grad():
        for p in posterior.parameters():
            p.add_(0.1 * torch.randn_like(p))
    traj = sample_trajectories(posterior, family, 16, (2,), explore=0.5,
                               generator=torch.Generator().manual_seed(1))
    log_r = torch.randn(16)
    with torch.no_grad():
        log_p = trajectory_log_prob(prior, family, traj)

    def loss_of(log_q):
        return rtb_loss(log_q, log_p, log_r, torch.tensor(0.2), 1.0)

    def flat_grad(**kwargs):
        posterior.zero_grad(set_to_none=True)
        backward_through_trajectories(loss_of, posterior, family, traj, **kwargs)
        return torch.cat([p.grad.flatten() for p in posterior.parameters()])

    exact = flat_grad(chunk_steps=None)
    generator = torch.Generator().manual_seed(2)
    draws = torch.stack([flat_grad(chunk_steps=None, grad_steps=2, generator=generator)
                         for _ in range(600)])
    single_error = float((draws[0] - exact).norm() / exact.norm())
    mean_error = float((draws.mean(0) - exact).norm() / exact.norm())
    assert single_error > 0.05
    assert mean_error < 0.05, f"average of 600 subsampled gradients is off by {mean_error:.3f}"
    # grad_steps >= T is the exact gradient.
    torch.testing.assert_close(flat_grad(chunk_steps=2, grad_steps=6), exact)
