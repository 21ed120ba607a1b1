"""Reward-maximising RL fine-tuning: REINFORCE on log r, with (DPOK) or without (DDPO) KL.

The policy q starts at the prior and maximises

    J(q) = E_q[beta log r(x)] - alpha KL(q(tau) || p(tau)).

Its optimum is q(x) proportional to p(x) r(x)^(beta / alpha): alpha = 1 recovers the RTB
posterior, a small alpha sharpens it onto the highest-reward modes and alpha = 0 (DDPO)
collapses onto the reward's maximisers. The gradient is the score-function estimate on
on-policy trajectories, which are detached data exactly as in RTB, so the trainer, the
batched scoring and the chunked backward pass are shared with `RTBTrainer`:

    grad J = E_q[(R(tau) - b) grad log q(tau)],  R = beta log r - alpha (log q(tau) - log p(tau)),

with b the batch mean of R. The KL is estimated on the sampled trajectory: since
E_q[grad log q] = 0, the term alpha (log q - log p) grad log q is an unbiased estimate of
the gradient of DPOK's per-step KL sum, without a second pass through the network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from rtb_lab.diffusion import Trajectory, trajectory_log_prob
from rtb_lab.train import RTBTrainer, TrainConfig


def reinforce_loss(log_pf_post: Tensor, log_reward: Tensor, beta: float | Tensor,
                   kl_weight: float = 0.0, log_pf_prior: Tensor | None = None) -> Tensor:
    """The surrogate whose gradient is minus the REINFORCE gradient of J (see module doc).

    Args:
        log_pf_post: [B] log q(tau) under the current policy (with grad).
        log_reward: [B] log r(x).
        beta: reward exponent, scalar or [B].
        kl_weight: alpha >= 0; 0 gives DDPO (no KL to the prior).
        log_pf_prior: [B] log p(tau); required when kl_weight > 0.

    Returns:
        The scalar surrogate loss -mean((R - mean R) * log q(tau)).
    """
    score = beta * log_reward
    if kl_weight > 0:
        if log_pf_prior is None:
            raise ValueError("a KL penalty needs the prior's log-probabilities log_pf_prior")
        score = score - kl_weight * (log_pf_post.detach() - log_pf_prior)
    advantage = (score - score.mean()).detach()
    return -(advantage * log_pf_post).mean()


def rl_config(config: TrainConfig | None = None) -> TrainConfig:
    """`config` made on-policy: no exploration, no replay, no log Z initialisation."""
    return replace(config or TrainConfig(), explore=0.0, replay_fraction=0.0, log_z_init=0.0)


class RLTrainer(RTBTrainer):
    """`RTBTrainer` with the RTB loss replaced by KL-regularised REINFORCE.

    Everything else (sampling, batched scoring, optimiser, callbacks, checkpoints) is
    inherited. The learned log Z is unused; `current_log_z` reports the last batch's
    ELBO E_q[log p(tau) + beta log r - log q(tau)] (a lower bound on log Z) when the KL
    is on, NaN otherwise.

    Args:
        *args, **kwargs: as for `RTBTrainer`; the config must be on-policy (`rl_config`).
        kl_weight: alpha >= 0 (DPOK: > 0, DDPO: 0).
    """

    def __init__(self, *args: Any, kl_weight: float = 0.0, **kwargs: Any) -> None:
        if kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
        self.kl_weight = kl_weight
        super().__init__(*args, **kwargs)
        if self.config.explore > 0 or self.config.replay_fraction > 0:
            raise ValueError("REINFORCE needs on-policy trajectories: use rl_config(config) "
                             "(explore=0, replay_fraction=0)")

    def loss_fn(self, traj: Trajectory) -> tuple[Callable[[Tensor], Tensor], dict[str, Any]]:
        log_pf_prior = None
        if self.kl_weight > 0:
            with torch.no_grad():
                log_pf_prior = trajectory_log_prob(self.prior, self.family, traj,
                                                   self.config.chunk_steps)
        beta = self.beta(traj.cond)
        info: dict[str, Any] = {"log_z": float("nan")}

        def loss_of_log_pf(log_pf_post: Tensor) -> Tensor:
            if log_pf_prior is not None:
                elbo = log_pf_prior + beta * traj.log_reward - log_pf_post.detach()
                info["log_z"] = float(elbo.mean())
            info["residual_abs"] = float((beta * traj.log_reward).std())
            return reinforce_loss(log_pf_post, traj.log_reward, beta, self.kl_weight,
                                  log_pf_prior)

        return loss_of_log_pf, info

    def current_log_z(self) -> float:
        return self.history[-1]["log_z"] if self.history else float("nan")

