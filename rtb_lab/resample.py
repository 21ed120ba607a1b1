"""Importance resampling from a trained posterior: exact weights correct what RTB left.

A posterior q fine-tuned by RTB is close to, but rarely exactly, the target
p(tau) r(x)^beta / Z. Every trajectory's log-density is known under both q and the
prior, so w(tau) = p(tau) r(x)^beta / q(tau) is an exact importance weight toward the
target. Drawing K candidates from q and keeping one in proportion to w
(sampling-importance-resampling, SIR) gives samples whose law tends to the target as
K grows, and the mean of w over all candidates is an unbiased estimate of Z. The
share of candidates the weights keep (ESS / K) says how close q already is: at q =
target every weight is Z and K = 1 is enough. With q = prior this is plain importance
sampling (`baselines.importance`); the better q, the fewer candidates it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rtb_lab.baselines.importance import effective_sample_size
from rtb_lab.diffusion import (
    Trajectory,
    TransitionFamily,
    sample_trajectories,
    trajectory_log_prob,
)
from rtb_lab.rtb import check_beta, check_log_reward, importance_log_z


@dataclass
class ResampleResult:
    """Output of `resample_posterior`.

    Attributes:
        traj: [N] the kept trajectories, with log r attached.
        log_weights: [N, K] log p(tau) + beta log r(x) - log q(tau) of every candidate.
        log_z: log of the mean weight over all N * K candidates, an estimate of log Z.
        ess_fraction: mean over the N groups of ESS / K (1: q is the target).
    """

    traj: Trajectory
    log_weights: Tensor
    log_z: float
    ess_fraction: float

    @property
    def kl_to_target(self) -> float:
        """KL(q || target) estimated with this result's own log Z (see `kl_to_target`)."""
        return kl_to_target(self.log_weights, self.log_z)

    @property
    def x(self) -> Tensor:
        """[N, *event] the kept samples."""
        return self.traj.x


def importance_log_weights(posterior: nn.Module, prior: nn.Module, family: TransitionFamily,
                           traj: Trajectory, beta: float | Tensor,
                           chunk_steps: int | None = None) -> Tensor:
    """[B] log p(tau) + beta log r(x) - log q(tau) of trajectories drawn from `posterior`.

    Uses the log q recorded while sampling when present (``traj.log_pf``), else rescores.
    """
    if traj.log_reward is None:
        raise ValueError("attach log r to the trajectories first (traj.with_log_reward)")
    with torch.no_grad():
        log_q = traj.log_pf if traj.log_pf is not None else \
            trajectory_log_prob(posterior, family, traj, chunk_steps)
        log_p = trajectory_log_prob(prior, family, traj, chunk_steps)
    return log_p + beta * traj.log_reward - log_q


def kl_to_target(log_weights: Tensor, log_z: float | None = None) -> float:
    """KL(q || target) in nats over whole trajectories, from log-weights [...] of q's own
    samples: log Z - E_q[log w], the gap between log Z and the ELBO.

    On-policy RTB minimises exactly this divergence (its gradient is twice the KL's),
    so it says how far a trained posterior stopped from the target. With `log_z`
    None, log Z is the log of the mean weight of these same samples, which reads low
    (and so does the KL) when a few samples carry the weight (small ESS); pass a
    better estimate (e.g. from a bank of prior samples) where one exists.
    """
    log_w = log_weights.detach().double().flatten()
    if log_z is None:
        log_z = float(importance_log_z(log_w, 1.0))
    return log_z - float(log_w.mean())


def pick(log_weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """[N] the kept candidate of each row of log-weights [N, K], drawn in proportion to
    its weight (on the CPU, with `generator`)."""
    probs = torch.softmax(log_weights.detach().double(), 1).cpu()
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def mean_ess_fraction(log_weights: Tensor) -> float:
    """ESS / K of each row of log-weights [N, K], averaged over the N rows."""
    return sum(effective_sample_size(row) for row in log_weights) / log_weights.numel()


@torch.no_grad()
def resample_posterior(posterior: nn.Module, prior: nn.Module, family: TransitionFamily,
                       log_reward: Callable[..., Tensor], num_samples: int,
                       event_shape: tuple[int, ...], *, candidates: int = 4,
                       beta: float = 1.0, cond: Tensor | None = None,
                       generator: torch.Generator | None = None,
                       device: torch.device | str = "cpu", chunk_steps: int | None = 10,
                       max_batch: int = 1024) -> ResampleResult:
    """`num_samples` samples of p(x) r(x)^beta / Z: each the pick, in proportion to its
    importance weight, of `candidates` trajectories drawn from `posterior`.

    Args:
        posterior: the proposal q (a trained posterior; the prior itself also works).
        prior: the frozen prior p.
        family: the transition family shared by both.
        log_reward: ``log_reward(x [B, *event]) -> [B]``, or ``log_reward(x, cond)``
            when `cond` is given.
        num_samples: N, the number of samples returned.
        event_shape: shape of one sample, e.g. (1, 28, 28).
        candidates: K >= 1 proposals per sample (K = 1: q's own samples).
        beta: the reward exponent of the target.
        cond: [C] one condition for the posterior (and reward), or None.
        generator: CPU generator for the proposals' noise and the picks.
        device: where the networks live.
        chunk_steps: steps per network call when scoring under the prior.
        max_batch: at most this many candidates are sampled at once (memory).

    Returns:
        A `ResampleResult`; its ``x`` are the samples.
    """
    check_beta(beta)
    if candidates < 1 or num_samples < 1:
        raise ValueError(f"candidates and num_samples must be >= 1, got {candidates} and "
                         f"{num_samples}")
    if cond is not None and cond.dim() != 1:
        raise ValueError(f"cond must be one condition [C], got shape {tuple(cond.shape)}")
    per_call = max(1, max_batch // candidates)  # samples whose candidates fit in one call
    kept, weights = [], []
    for start in range(0, num_samples, per_call):
        n = min(per_call, num_samples - start) * candidates
        rows = None if cond is None else cond.to(device).expand(n, -1)
        traj = sample_trajectories(posterior, family, n, event_shape, cond=rows,
                                   generator=generator, device=device, keep_log_pf=True)
        log_r = log_reward(traj.x) if rows is None else log_reward(traj.x, rows)
        traj = traj.with_log_reward(check_log_reward(log_r, n))
        log_w = importance_log_weights(posterior, prior, family, traj, beta, chunk_steps)
        log_w = log_w.view(-1, candidates)
        picks = pick(log_w, generator)
        rows_kept = torch.arange(len(picks)) * candidates + picks
        kept.append(traj[rows_kept.to(traj.states.device)])
        weights.append(log_w.cpu())
    log_w = torch.cat(weights)
    log_z = float(importance_log_z(log_w.flatten().double(), 1.0))  # log of the mean weight
    return ResampleResult(Trajectory.cat(kept), log_w, log_z, mean_ess_fraction(log_w))
