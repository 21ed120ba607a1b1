"""Trajectories: a batch of whole generation paths, stored as detached data.

Index convention (used everywhere in rtb_lab): ``states[:, 0]`` is the shared
start state (noise or a point mass) and ``states[:, T]`` is the generated sample
x. Step ``k`` (0 <= k < T) is the transition ``states[:, k] -> states[:, k + 1]``.
The paper writes the same chain as x_T -> ... -> x_0; only the labels differ.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass
class Trajectory:
    """A batch of B detached trajectories with T steps.

    Attributes:
        states: [B, T+1, *event] states in generation order.
        cond: [B, C] condition of each trajectory (class set, beta, ...) or None.
        log_reward: [B] log r(x) of the final states, filled in by the trainer.
        log_pf: [B] log q(tau) under the policy that sampled these states, recorded while
            sampling (`sample_trajectories(..., keep_log_pf=True)`) so the trainer can skip
            one scoring pass. Valid only until that policy's parameters change: the
            replay buffer drops it, and concatenating with rows without it drops it.
    """

    states: Tensor
    cond: Tensor | None = None
    log_reward: Tensor | None = None
    log_pf: Tensor | None = None

    def __post_init__(self) -> None:
        if self.states.dim() < 3:
            raise ValueError(
                f"states must have shape [B, T+1, *event], got {tuple(self.states.shape)}"
            )
        if self.cond is not None and self.cond.shape[0] != self.states.shape[0]:
            raise ValueError(
                f"cond has {self.cond.shape[0]} rows but there are {self.states.shape[0]} "
                "trajectories"
            )

    @property
    def batch_size(self) -> int:
        return self.states.shape[0]

    @property
    def num_steps(self) -> int:
        return self.states.shape[1] - 1

    @property
    def x(self) -> Tensor:
        """[B, *event] the generated samples (final states)."""
        return self.states[:, -1]

    def to(self, device: torch.device | str) -> Trajectory:
        """Copy of the trajectory on `device`."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Trajectory(move(self.states), move(self.cond), move(self.log_reward),
                          move(self.log_pf))

    def __getitem__(self, index: Tensor | slice) -> Trajectory:
        """Select trajectories (rows) by index, mask or slice."""
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return Trajectory(self.states[index], pick(self.cond), pick(self.log_reward),
                          pick(self.log_pf))

    @staticmethod
    def cat(parts: list[Trajectory]) -> Trajectory:
        """Concatenate trajectories with the same number of steps along the batch."""
        def join(name: str) -> Tensor | None:
            values = [getattr(p, name) for p in parts]
            if all(v is None for v in values):
                return None
            if any(v is None for v in values):
                raise ValueError(f"cannot concatenate trajectories where only some have {name}")
            return torch.cat(values)

        # A cached log q is an optimisation: rows without one make it unknown, not an error.
        log_pf = None if any(p.log_pf is None for p in parts) else torch.cat(
            [p.log_pf for p in parts])
        return Trajectory(join("states"), join("cond"), join("log_reward"), log_pf)

    def with_log_reward(self, log_reward: Tensor) -> Trajectory:
        """Copy with `log_reward` ([B]) attached."""
        return replace(self, log_reward=log_reward)
