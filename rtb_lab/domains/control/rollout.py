"""Seeded policy rollouts in gymnasium: raw and D4RL-normalised returns.

Episodes run side by side so that a diffusion policy samples the actions of every
running episode in one batch (20 denoising calls per environment step, not per
episode). Episode i of seed s resets its environment with seed ``1000 s + i``, and the
policy draws its noise from a generator seeded with s: a rollout is reproducible.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rtb_lab.domains.control.envs import get_spec, make_env

Act = Callable[[Tensor, torch.Generator], Tensor]
"""``act(states [B, S], generator) -> normalised actions [B, A] in [-1, 1]``."""


@dataclass(frozen=True)
class Rollouts:
    """Returns of `episodes` episodes of one policy (one seed), and what they visited.

    Attributes:
        observations: per episode, the observations [T + 1, S] from reset to the end.
    """

    env: str
    returns: tuple[float, ...]
    steps: int
    seconds: float
    observations: tuple[np.ndarray, ...] = ()

    @property
    def normalised(self) -> tuple[float, ...]:
        """D4RL-normalised returns: 100 (R - random) / (expert - random)."""
        spec = get_spec(self.env)
        return tuple(float(spec.normalised_score(r)) for r in self.returns)

    def summary(self) -> dict[str, float]:
        """Mean raw and normalised return, their standard error, episodes and seconds."""
        raw, norm = np.array(self.returns), np.array(self.normalised)
        stderr = norm.std(ddof=1) / math.sqrt(len(norm)) if len(norm) > 1 else 0.0
        return {"return": float(raw.mean()), "normalised": float(norm.mean()),
                "normalised_se": float(stderr), "episodes": float(len(raw)),
                "env_steps": float(self.steps), "seconds": self.seconds}


def rollout(act: Act, env: str, episodes: int = 5, seed: int = 0,
            max_steps: int | None = None) -> Rollouts:
    """Run `episodes` episodes of `act` in `env` (a name of `envs.ENVS`)."""
    if episodes <= 0:
        raise ValueError(f"episodes must be > 0, got {episodes}")
    spec = get_spec(env)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    envs = [make_env(env) for _ in range(episodes)]
    states = [e.reset(seed=1000 * seed + i)[0] for i, e in enumerate(envs)]
    visited = [[state] for state in states]
    returns, running, steps = [0.0] * episodes, list(range(episodes)), 0
    limit = max_steps or spec.max_episode_steps
    for _ in range(limit):
        batch = torch.as_tensor(np.stack([states[i] for i in running]), dtype=torch.float32)
        with torch.no_grad():
            actions = act(batch, generator).clamp(-1, 1) * spec.action_bound
        still = []
        for i, action in zip(running, actions.numpy(), strict=True):
            states[i], reward, terminated, truncated, _ = envs[i].step(action)
            returns[i] += float(reward)
            visited[i].append(states[i])
            steps += 1
            if not (terminated or truncated):
                still.append(i)
        running = still
        if not running:
            break
    for e in envs:
        e.close()
    return Rollouts(env, tuple(returns), steps, time.perf_counter() - started,
                    tuple(np.stack(v) for v in visited))
