"""A replay buffer of detached trajectories for off-policy RTB.

Replayed trajectories are re-scored under the *current* posterior at every use: a
trajectory is just data, and RTB holds for trajectories from any policy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rtb_lab.diffusion import Trajectory


class ReplayBuffer:
    """A first-in first-out store of at most `capacity` trajectories (with their log r).

    Sampling is uniform or, with ``prioritised=True``, proportional to rank by reward,
    which keeps rare high-reward trajectories in the batch.
    """

    def __init__(self, capacity: int, prioritised: bool = False) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.prioritised = prioritised
        self.data: Trajectory | None = None

    def __len__(self) -> int:
        return 0 if self.data is None else self.data.batch_size

    def add(self, traj: Trajectory) -> None:
        """Append trajectories (they must carry log_reward); drop the oldest beyond capacity."""
        if traj.log_reward is None:
            raise ValueError("replayed trajectories need their log_reward")
        traj = Trajectory(traj.states.detach().cpu(),
                          None if traj.cond is None else traj.cond.detach().cpu(),
                          traj.log_reward.detach().cpu())
        merged = traj if self.data is None else Trajectory.cat([self.data, traj])
        self.data = merged[-self.capacity:]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Trajectory:
        """Draw n stored trajectories (with replacement)."""
        if self.data is None or n > 0 and len(self) == 0:
            raise ValueError("the replay buffer is empty")
        if self.prioritised:
            ranks = torch.argsort(torch.argsort(self.data.log_reward)).double() + 1
            index = torch.multinomial(ranks / ranks.sum(), n, replacement=True, generator=generator)
        else:
            index = torch.randint(len(self), (n,), generator=generator)
        return self.data[index]

    def state_dict(self) -> dict[str, Tensor | None]:
        """Tensors to checkpoint."""
        if self.data is None:
            return {}
        return {"states": self.data.states, "cond": self.data.cond,
                "log_reward": self.data.log_reward}

    def load_state_dict(self, state: dict[str, Tensor | None]) -> None:
        """Restore from `state_dict()` output."""
        self.data = Trajectory(state["states"], state.get("cond"), state["log_reward"]) \
            if state else None
