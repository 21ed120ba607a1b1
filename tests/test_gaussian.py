"""Transition families: log-probs against torch.distributions, shapes, exploration."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from rtb_lab.diffusion import (
    DDPM,
    EulerMaruyama,
    Trajectory,
    TransitionFamily,
    gaussian_log_prob,
    sample_trajectories,
    sequential_log_prob,
    step_log_probs,
    trajectory_log_prob,
)


def test_gaussian_log_prob_equals_torch_normal():
    g = torch.Generator().manual_seed(0)
    x, mean = torch.randn(7, 3, 4, generator=g), torch.randn(7, 3, 4, generator=g)
    std = torch.rand(7, 3, 4, generator=g) + 0.1
    expected = Normal(mean, std).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(gaussian_log_prob(x, mean, std), expected)


def test_euler_maruyama_mean_and_std_by_hand():
    fam = EulerMaruyama(num_steps=4, sigma2=5.0)
    x, drift = torch.tensor([[1.0, -2.0]]), torch.tensor([[4.0, 8.0]])
    mean, std = fam.mean_std(drift, x, torch.tensor([0]))
    torch.testing.assert_close(mean, torch.tensor([[2.0, 0.0]]))  # x + f * 0.25
    assert float(std.flatten()[0]) == pytest.approx(math.sqrt(5.0 * 0.25))
    # Exploration adds explore^2 to the per-step variance.
    inflated = fam.explore_std(std, torch.tensor([0]), 0.5)
    assert float(inflated.flatten()[0]) == pytest.approx(math.sqrt(5 * 0.25 + 0.25))


def test_sampling_matches_the_scoring_distribution(tiny_prior):
    """Empirical step increments have the mean and variance the log-prob assumes."""
    fam = EulerMaruyama(num_steps=2, sigma2=5.0)
    traj = sample_trajectories(tiny_prior, fam, 20000, (2,),
                               generator=torch.Generator().manual_seed(3))
    first = traj.states[:, 1]  # one step from x = 0
    drift = tiny_prior(torch.zeros(1, 2), torch.zeros(1)).detach()
    torch.testing.assert_close(first.mean(0), (drift * fam.dt)[0], atol=0.03, rtol=0)
    assert float(first.var(0).mean()) == pytest.approx(5.0 * fam.dt, rel=0.03)


def test_batched_step_log_probs_equal_sequential(tiny_prior, family, traj):
    sequential = torch.stack([
        family.log_prob(traj.states[:, k + 1], tiny_prior(traj.states[:, k],
                        family.time(torch.full((6,), k)), None), traj.states[:, k],
                        torch.full((6,), k))
        for k in range(family.num_steps)], 1)
    torch.testing.assert_close(step_log_probs(tiny_prior, family, traj), sequential)
    torch.testing.assert_close(trajectory_log_prob(tiny_prior, family, traj, chunk_steps=3),
                               sequential.sum(1))
    torch.testing.assert_close(sequential_log_prob(tiny_prior, family, traj), sequential.sum(1))


def test_ddpm_family_recovers_clean_image_with_oracle_noise():
    """With the true noise as the network output, the mean of the last step is x0."""
    fam = DDPM(DDPM.linear_schedule(1000), num_steps=10, clip_x0=None)
    x0 = torch.rand(3, 1, 4, 4) * 2 - 1
    k = torch.full((3,), fam.num_steps - 1)
    abar = fam.abar_now[k].view(-1, 1, 1, 1)
    eps = torch.randn_like(x0)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    torch.testing.assert_close(fam.predict_x0(eps, x_t, k), x0, atol=1e-5, rtol=0)
    # The last step lands on training time 0: the mean is sqrt(abar_0) x0 plus a small
    # multiple of x_t, and the std is small but positive (finite log-probs).
    mean, std = fam.mean_std(eps, x_t, k)
    torch.testing.assert_close(mean, x0, atol=0.02, rtol=0)
    assert 0 < float(std.max()) < 0.02
    assert fam.train_times[0] == 999 and fam.train_times[-1] == 0
    assert len(fam.train_times) == fam.num_steps + 1
    assert bool((fam.beta_tilde > 0).all())


def test_ddpm_stride_matches_the_single_step_posterior_by_hand():
    # With T = N_train - 1 every step is one training step: beta_tilde_t =
    # (1 - abar_{t-1}) / (1 - abar_t) * beta_t, as in Ho et al. (2020), eq. 7.
    abar = DDPM.linear_schedule(50)
    fam = DDPM(abar, num_steps=49, clip_x0=None)
    betas = 1 - abar[1:] / abar[:-1]
    expected = (1 - abar[:-1]) / (1 - abar[1:]) * betas
    torch.testing.assert_close(fam.beta_tilde.double(), expected.flip(0), rtol=1e-4, atol=0)


def test_trajectory_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[B, T\+1, \*event\]"):
        Trajectory(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="cond has 3 rows"):
        Trajectory(torch.zeros(4, 3, 2), cond=torch.zeros(3, 1))


class _FlipChain(TransitionFamily):
    """A non-Gaussian family: binary states that flip with the probability the network
    outputs (as a logit), one independent coin per coordinate."""

    num_steps = 3

    def time(self, k):
        return k.float()

    def start(self, batch_size, event_shape, *, generator=None, device="cpu"):
        return torch.zeros(batch_size, *event_shape, device=device)

    def sample_step(self, net_out, x, k, *, explore=0.0, generator=None):
        flip = torch.rand(x.shape, generator=generator) < torch.sigmoid(net_out + explore)
        return torch.where(flip, 1 - x, x)

    def log_prob(self, x_next, net_out, x, k):
        flipped = (x_next != x).float()
        per_dim = flipped * F.logsigmoid(net_out) + (1 - flipped) * F.logsigmoid(-net_out)
        return per_dim.flatten(1).sum(1)


def _flip_logits(x, t, cond=None):
    return 0.5 * t[:, None] - 1.0 + x  # the flip probability depends on state and time


def test_the_sampler_and_scorer_only_use_the_family_interface():
    family = _FlipChain()
    traj = sample_trajectories(_flip_logits, family, 4000, (2,), keep_log_pf=True,
                               generator=torch.Generator().manual_seed(0))
    assert set(traj.states.unique().tolist()) <= {0.0, 1.0}
    # First step from x = 0 at t = 0: flip probability sigmoid(-1) per coordinate.
    assert float(traj.states[:, 1].mean()) == pytest.approx(float(torch.sigmoid(
        torch.tensor(-1.0))), abs=0.02)
    # Scored by hand: a product of Bernoulli probabilities over steps and coordinates.
    by_hand = torch.zeros(5)
    for k in range(3):
        x, x_next = traj.states[:5, k], traj.states[:5, k + 1]
        p_flip = torch.sigmoid(0.5 * k - 1.0 + x)
        by_hand += torch.where(x_next != x, p_flip, 1 - p_flip).log().sum(1)
    few = Trajectory(traj.states[:5])
    torch.testing.assert_close(trajectory_log_prob(_flip_logits, family, few), by_hand)
    torch.testing.assert_close(sequential_log_prob(_flip_logits, family, few), by_hand)
    torch.testing.assert_close(traj.log_pf[:5], by_hand)
