"""Importance resampling from a posterior: hand-computed weights and a Gaussian whose
posterior and normaliser are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Normal

from rtb_lab import resample_posterior
from rtb_lab.diffusion import EulerMaruyama, sample_trajectories
from rtb_lab.resample import importance_log_weights

# dx = c dt + dW on [0, 1] from 0: x_1 ~ N(c, 1). With r(x) = exp(-(x - M)^2 / (2 S2)),
# the target p(x) r(x)^beta is Gaussian too (prior N(0, 1)).
M, S2 = 1.5, 0.5


class ConstantDrift(nn.Module):
    """Drift c everywhere (plus the condition's first entry, when given)."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c), requires_grad=False)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        shift = 0.0 if cond is None else cond[:, :1]
        return (self.c + shift) * torch.ones_like(x)


def log_reward(x: Tensor) -> Tensor:
    return -(x[:, 0] - M) ** 2 / (2 * S2)


def exact_target(beta: float) -> tuple[float, float, float]:
    """Mean, std and log Z of N(0, 1) r^beta, by completing the square."""
    precision = 1 + beta / S2
    log_z = 0.5 * math.log(S2 / (S2 + beta)) - beta * M**2 / (2 * (S2 + beta))
    return beta * M / S2 / precision, precision**-0.5, log_z


def test_weights_are_log_p_plus_beta_log_r_minus_log_q_by_hand():
    family = EulerMaruyama(num_steps=4, sigma2=1.0)
    prior, posterior = ConstantDrift(0.0), ConstantDrift(0.8)
    traj = sample_trajectories(posterior, family, 5, (1,),
                               generator=torch.Generator().manual_seed(0))
    traj = traj.with_log_reward(log_reward(traj.x))
    step_std = math.sqrt(family.dt)
    jumps = traj.states[:, 1:, 0] - traj.states[:, :-1, 0]  # [B, T]
    log_p = Normal(0.0, step_std).log_prob(jumps).sum(1)
    log_q = Normal(0.8 * family.dt, step_std).log_prob(jumps).sum(1)
    expected = log_p + 2.0 * traj.log_reward - log_q
    torch.testing.assert_close(importance_log_weights(posterior, prior, family, traj, 2.0),
                               expected)
    # q = p: the weights are beta log r alone.
    torch.testing.assert_close(importance_log_weights(prior, prior, family, traj, 2.0),
                               2.0 * traj.log_reward)


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_resampling_a_shifted_proposal_recovers_the_gaussian_posterior(beta):
    family = EulerMaruyama(num_steps=4, sigma2=1.0)
    prior, proposal = ConstantDrift(0.0), ConstantDrift(0.3)  # q: N(0.3, 1), not the target
    mean, std, log_z = exact_target(beta)
    found = {k: resample_posterior(proposal, prior, family, log_reward, 4000, (1,),
                                   candidates=k, beta=beta,
                                   generator=torch.Generator().manual_seed(1))
             for k in (1, 64)}
    x1, x64 = found[1].x[:, 0], found[64].x[:, 0]
    # K = 1 is the proposal itself; K = 64 is the target to within Monte Carlo error.
    assert abs(float(x1.mean()) - 0.3) < 0.06 and abs(float(x1.std()) - 1.0) < 0.05
    assert abs(float(x64.mean()) - mean) < 0.04
    assert abs(float(x64.std()) - std) < 0.04
    assert abs(found[64].log_z - log_z) < 0.03  # 256k candidates
    assert found[64].log_weights.shape == (4000, 64)
    assert 0.0 < found[64].ess_fraction < 0.9
    assert found[1].ess_fraction == pytest.approx(1.0)
    # KL(q || target) over paths: c^2 / 2 (drift 0.3 against 0) - beta E_q[log r] + log Z.
    expected_kl = 0.3**2 / 2 + beta * ((0.3 - M) ** 2 + 1) / (2 * S2) + log_z
    assert abs(found[64].kl_to_target - expected_kl) < 0.03


def test_a_proposal_equal_to_the_target_keeps_every_candidate():
    # q = N(c, 1), p = N(0, 1) and log r(x) = c x - c^2 / 2 give p r = q: every weight is
    # Z = 1, so ESS / K = 1 and log Z = 0 exactly.
    family = EulerMaruyama(num_steps=3, sigma2=1.0)
    c = 0.7
    result = resample_posterior(ConstantDrift(c), ConstantDrift(0.0), family,
                                lambda x: c * x[:, 0] - c * c / 2, 64, (1,), candidates=8,
                                generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(result.log_weights, torch.zeros(64, 8), atol=1e-4, rtol=0)
    assert result.ess_fraction == pytest.approx(1.0)
    assert result.log_z == pytest.approx(0.0, abs=1e-4)
    assert result.kl_to_target == pytest.approx(0.0, abs=1e-4)


def test_condition_reaches_the_policy_and_the_reward():
    family = EulerMaruyama(num_steps=2, sigma2=1.0)
    seen = []

    def conditional_reward(x: Tensor, cond: Tensor) -> Tensor:
        seen.append(cond)
        return -(x[:, 0] - cond[:, 0]) ** 2

    cond = torch.tensor([5.0])
    result = resample_posterior(ConstantDrift(0.0), ConstantDrift(0.0), family,
                                conditional_reward, 300, (1,), candidates=2, cond=cond,
                                generator=torch.Generator().manual_seed(3))
    assert seen[0].shape == (600, 1) and bool((seen[0] == 5.0).all())
    assert result.traj.cond.shape == (300, 1)
    assert float(result.x.mean()) > 4.0  # the policy drifted by the condition's 5


def test_bad_input_is_refused_with_a_clear_message():
    family = EulerMaruyama(num_steps=2, sigma2=1.0)
    net = ConstantDrift(0.0)
    with pytest.raises(ValueError, match="candidates"):
        resample_posterior(net, net, family, log_reward, 4, (1,), candidates=0)
    with pytest.raises(ValueError, match="beta"):
        resample_posterior(net, net, family, log_reward, 4, (1,), beta=0.0)
    with pytest.raises(ValueError, match="one condition"):
        resample_posterior(net, net, family, lambda x, c: x[:, 0], 4, (1,),
                           cond=torch.zeros(4, 1))
    with pytest.raises(ValueError, match="finite"):
        resample_posterior(net, net, family, lambda x: torch.full((len(x),), math.nan), 4,
                           (1,))
