"""The transition-family interface: everything the sampler and the scorer ask of a process.

A family turns a policy network's output at a state into one step's distribution.
Networks are called as ``net(x: [N, *event], t: [N], cond: [N, C] | None) -> out``
where ``t = family.time(k)``; what `out` means (a drift, a noise prediction, logits
over a vocabulary) is the family's business. The sampler (`sample_trajectories`) and
the batched scorer (`step_log_probs`) call only `time`, `start`, `sample_step` and
`log_prob`, so a Gaussian or a categorical (masked) process plugs in unchanged and the
RTB loss and trainer never see the difference.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor


class TransitionFamily(ABC):
    """A Markov process of `num_steps` steps whose transitions a network parameterises."""

    num_steps: int

    @abstractmethod
    def time(self, k: Tensor) -> Tensor:
        """[N] network time input for integer step indices k ([N])."""

    @abstractmethod
    def start(self, batch_size: int, event_shape: tuple[int, ...], *,
              generator: torch.Generator | None = None,
              device: torch.device | str = "cpu") -> Tensor:
        """[B, *event] initial states, shared by prior and posterior (so they cancel in RTB)."""

    @abstractmethod
    def sample_step(self, net_out: Tensor, x: Tensor, k: Tensor, *, explore: float = 0.0,
                    generator: torch.Generator | None = None) -> Tensor:
        """[N, *event] next states drawn from step k at states x given the policy's output.

        `explore` > 0 draws from a wider (off-policy) version of the step; the trajectory
        is then still scored under the un-inflated step by `log_prob`.
        """

    @abstractmethod
    def log_prob(self, x_next: Tensor, net_out: Tensor, x: Tensor, k: Tensor) -> Tensor:
        """[N] log p(x_next | x, step k) under the policy whose output is `net_out`."""
