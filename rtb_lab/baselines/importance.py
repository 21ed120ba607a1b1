"""Self-normalised importance sampling from the prior: unbiased, but wasteful.

Trajectories from the prior weighted by w = r(x)^beta target the posterior exactly
(the trajectory-level ratio of posterior to prior is r^beta / Z), and mean(w) is an
unbiased estimate of Z. The catch is the effective sample size
ESS = (sum w)^2 / sum w^2: most particles land where r is small and carry almost no
weight, and the waste grows with the reward's sharpness and the dimension.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rtb_lab.diffusion import Trajectory, TransitionFamily, sample_trajectories
from rtb_lab.rtb import importance_log_z


def effective_sample_size(log_weights: Tensor) -> float:
    """(sum w)^2 / sum w^2 for unnormalised log-weights [N], computed in log space."""
    log_weights = log_weights.double()
    return math.exp(float(2 * torch.logsumexp(log_weights, 0)
                          - torch.logsumexp(2 * log_weights, 0)))


@dataclass
class ImportanceResult:
    """Importance-sampling output.

    Attributes:
        traj: [N] proposal (prior) trajectories with log r attached.
        log_weights: [N] beta log r(x), the unnormalised log-weights.
        log_z: log mean w, an estimate of log Z = log E_p[r^beta].
        ess: effective sample size.
    """

    traj: Trajectory
    log_weights: Tensor
    log_z: float
    ess: float

    @property
    def ess_fraction(self) -> float:
        """ESS / N: the share of the particles that effectively counts."""
        return self.ess / self.traj.batch_size

    def resample_trajectories(self, n: int, generator: torch.Generator | None = None
                              ) -> Trajectory:
        """n trajectories drawn with replacement in proportion to the weights."""
        probs = torch.softmax(self.log_weights.double(), 0)
        return self.traj[torch.multinomial(probs, n, replacement=True, generator=generator)]

    def resample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """[n, *event] samples drawn with replacement in proportion to the weights."""
        return self.resample_trajectories(n, generator).x


def importance_from_trajectories(traj: Trajectory, beta: float) -> ImportanceResult:
    """Weight prior trajectories (log r attached) by r^beta."""
    if traj.log_reward is None:
        raise ValueError("attach log r to the trajectories first (traj.with_log_reward)")
    log_weights = beta * traj.log_reward
    return ImportanceResult(traj, log_weights, float(importance_log_z(traj.log_reward, beta)),
                            effective_sample_size(log_weights))


def importance_sample(prior: nn.Module, family: TransitionFamily,
                      log_reward: Callable[[Tensor], Tensor], num_samples: int,
                      event_shape: tuple[int, ...], *, beta: float = 1.0,
                      generator: torch.Generator | None = None) -> ImportanceResult:
    """Sample `num_samples` prior trajectories and weight them by r(x)^beta."""
    traj = sample_trajectories(prior, family, num_samples, event_shape, generator=generator)
    return importance_from_trajectories(traj.with_log_reward(log_reward(traj.x)), beta)
