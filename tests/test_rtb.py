"""The RTB objective: hand-computed values, invariants, frozen-prior checks, torchgfn."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from rtb_lab.diffusion import trajectory_log_prob
from rtb_lab.nets import DriftMLP, ResidualPosterior, posterior_from_prior
from rtb_lab.rtb import (
    FrozenPriorError,
    LogZ,
    check_beta,
    check_frozen,
    check_log_reward,
    check_separate,
    importance_log_z,
    rtb_loss,
    rtb_residual,
    vargrad_loss,
    vargrad_residual,
)

VECTORS = Path(__file__).parent / "vectors" / "torchgfn_rtb.json"


def test_rtb_loss_hand_computed():
    post, prior = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    log_r, log_z, beta = torch.tensor([0.5, -1.0]), torch.tensor(0.3), 2.0
    # delta_1 = 0.3 - 1 + 1.5 - 1 = -0.2 ; delta_2 = 0.3 - 2 + 1 + 2 = 1.3
    torch.testing.assert_close(rtb_residual(post, prior, log_r, log_z, beta),
                               torch.tensor([-0.2, 1.3]))
    assert float(rtb_loss(post, prior, log_r, log_z, beta)) == pytest.approx((0.04 + 1.69) / 2)


def test_vargrad_hand_computed_and_grouped():
    post, prior = torch.tensor([1.0, 2.0, 3.0, 5.0]), torch.zeros(4)
    log_r = torch.zeros(4)
    torch.testing.assert_close(vargrad_residual(post, prior, log_r, 1.0),
                               torch.tensor([-1.75, -0.75, 0.25, 2.25]))
    groups = torch.tensor([0, 0, 1, 1])
    torch.testing.assert_close(vargrad_residual(post, prior, log_r, 1.0, groups),
                               torch.tensor([-0.5, 0.5, -1.0, 1.0]))
    assert float(vargrad_loss(post, prior, log_r, 1.0, groups)) == pytest.approx(0.625)


@pytest.mark.parametrize("theta", [0.7, 0.5, -0.2])
def test_on_policy_gradient_is_twice_the_reverse_kl_gradient(theta):
    # q = N(theta, 1) cannot hold the target pi ∝ N(0, 1) exp(-(x - m)^2 / 2) = N(m/2, 1/2)
    # (its variance is fixed). On q's own detached samples, d/dtheta of the VarGrad loss
    # is 2 d/dtheta KL(q || pi) = 2 (theta - m/2) / (1/2): on-policy RTB converges to the
    # reverse-KL projection of the target on the family (here theta = m/2).
    m, n = 1.0, 400_000
    param = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    x = (theta + torch.randn(n, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(0)))  # detached
    log_q = torch.distributions.Normal(param, 1.0).log_prob(x)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(x)
    (grad,) = torch.autograd.grad(vargrad_loss(log_q, log_p, -(x - m) ** 2 / 2, 1.0), param)
    assert float(grad) == pytest.approx(2 * 2 * (theta - m / 2), abs=0.03)


def test_loss_is_zero_at_prior_for_constant_reward(tiny_prior, family, traj):
    """r = c and q = p: delta = log Z - beta log c, so log Z = beta log c zeroes the loss."""
    posterior = posterior_from_prior(tiny_prior)
    beta, log_c = 1.7, torch.log(torch.tensor(3.0))
    log_q = trajectory_log_prob(posterior, family, traj)
    log_p = trajectory_log_prob(tiny_prior, family, traj)
    loss = rtb_loss(log_q, log_p, log_c.expand(6), beta * log_c, beta)
    assert float(loss.detach()) < 1e-6
    assert float(rtb_loss(log_q, log_p, log_c.expand(6), beta * log_c + 0.1, beta).detach()) > 5e-3


def test_residual_posterior_starts_at_prior(tiny_prior, family, traj):
    posterior = ResidualPosterior(tiny_prior, cond_dim=3, hidden=8)
    traj.cond = torch.randn(6, 3)
    torch.testing.assert_close(trajectory_log_prob(posterior, family, traj),
                               trajectory_log_prob(tiny_prior, family, traj))


def test_no_gradient_reaches_the_prior(tiny_prior, family, traj):
    posterior = posterior_from_prior(tiny_prior)
    with torch.no_grad():
        log_p = trajectory_log_prob(tiny_prior, family, traj)
    loss = rtb_loss(trajectory_log_prob(posterior, family, traj), log_p, torch.zeros(6),
                    torch.tensor(0.0), 1.0)
    loss.backward()
    assert all(p.grad is None for p in tiny_prior.parameters())
    assert all(p.grad is not None for p in posterior.parameters())


def test_unfrozen_prior_is_refused():
    prior = DriftMLP(hidden=8)
    with pytest.raises(FrozenPriorError, match="must be frozen.*rtb_lab.freeze"):
        check_frozen(prior)


def test_posterior_sharing_prior_tensors_is_refused(tiny_prior):
    shared = copy.copy(tiny_prior)  # same parameter objects
    for p in shared.parameters():
        p.requires_grad_(True)
    with pytest.raises(FrozenPriorError, match="prior's own tensors"):
        check_separate(tiny_prior, shared)
    for p in shared.parameters():
        p.requires_grad_(False)


def test_prior_and_posterior_on_different_devices_are_refused(tiny_prior):
    posterior = posterior_from_prior(tiny_prior).to("meta")
    with pytest.raises(ValueError, match="same device.*meta"):
        check_separate(tiny_prior, posterior)


@pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_beta_is_refused(beta):
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        check_beta(beta)


def test_bad_rewards_are_refused():
    with pytest.raises(ValueError, match=r"shape \[B\] = \[3\], got \(3, 1\)"):
        check_log_reward(torch.zeros(3, 1), 3)
    with pytest.raises(ValueError, match="non-finite"):
        check_log_reward(torch.tensor([0.0, float("nan"), 1.0]), 3)
    with pytest.raises(ValueError, match="non-finite"):
        check_log_reward(torch.tensor([0.0, float("-inf"), 1.0]), 3)
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_log_reward([0.0, 1.0], 2)


def test_importance_log_z_by_hand():
    log_r = torch.log(torch.tensor([1.0, 2.0, 3.0, 6.0]))
    assert float(importance_log_z(log_r, 1.0)) == pytest.approx(torch.log(torch.tensor(3.0)))
    assert float(importance_log_z(log_r, 2.0)) == pytest.approx(torch.log(torch.tensor(12.5)))


def test_conditional_log_z_starts_at_init():
    log_z = LogZ(init=-2.0, cond_dim=3)
    torch.testing.assert_close(log_z(torch.randn(5, 3)), torch.full((5,), -2.0))
    with pytest.raises(ValueError, match="conditional"):
        log_z()


def _check_against_torchgfn_case(case: dict) -> None:
    post = torch.tensor(case["log_pf_post"], dtype=torch.float64)
    prior = torch.tensor(case["log_pf_prior"], dtype=torch.float64)
    log_r = torch.tensor(case["log_reward"], dtype=torch.float64)
    log_z = torch.tensor(case["log_z"], dtype=torch.float64)
    residual = rtb_residual(post, prior, log_r, log_z, case["beta"])
    torch.testing.assert_close(residual, torch.tensor(case["residuals"], dtype=torch.float64),
                               atol=1e-12, rtol=0)
    # torchgfn's default loss is HalfSquaredLoss: ours (mean delta^2) is twice it.
    loss = float(rtb_loss(post, prior, log_r, log_z, case["beta"]))
    assert loss == pytest.approx(case["loss_squared"], abs=1e-12)
    assert loss == pytest.approx(2 * case["loss_half_squared"], abs=1e-12)


def test_rtb_matches_recorded_torchgfn_vectors():
    data = json.loads(VECTORS.read_text())
    assert len(data["cases"]) >= 3
    for case in data["cases"]:
        _check_against_torchgfn_case(case)


def test_rtb_matches_live_torchgfn_on_random_inputs():
    """Runs wherever torchgfn is importable (e.g. its side venv); recorded vectors otherwise."""
    pytest.importorskip("gfn")
    import sys

    sys.path.insert(0, str(VECTORS.parent))
    from torchgfn_adapter import torchgfn_rtb

    g = torch.Generator().manual_seed(7)
    post_steps = torch.randn(6, 5, generator=g, dtype=torch.float64)
    prior_steps = torch.randn(6, 5, generator=g, dtype=torch.float64)
    log_r = torch.randn(5, generator=g, dtype=torch.float64)
    residuals, loss = torchgfn_rtb(post_steps, prior_steps, log_r, 0.4, 1.5, loss_fn="squared")
    _check_against_torchgfn_case({
        "log_pf_post": post_steps.sum(0).tolist(), "log_pf_prior": prior_steps.sum(0).tolist(),
        "log_reward": log_r.tolist(), "log_z": 0.4, "beta": 1.5,
        "residuals": residuals.tolist(), "loss_squared": float(loss),
        "loss_half_squared": float(loss) / 2})
