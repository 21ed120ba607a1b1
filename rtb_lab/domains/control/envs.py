"""The control environments: their sizes, action bounds and D4RL-style score references.

A score is normalised as in D4RL: ``100 (R - random) / (expert - random)``, so the
uniform random policy scores 0 and the expert 100. gymnasium is an optional
dependency, imported only when an environment is made.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

INSTALL_HINT = 'pip install "rtb-lab[control]"'


@dataclass(frozen=True)
class EnvSpec:
    """One environment of the control domain.

    Attributes:
        key: the short name used across rtb-lab, e.g. "pendulum".
        gym_id: the gymnasium id, e.g. "Pendulum-v1".
        observation_dim: S, the size of an observation.
        action_dim: A, the size of an action.
        action_bound: every action lies in [-action_bound, action_bound]^A.
        max_episode_steps: gymnasium's time limit (an episode is cut there: a timeout).
        random_score: mean return of the uniform random policy.
        expert_score: mean return of the expert policy.
    """

    key: str
    gym_id: str
    observation_dim: int
    action_dim: int
    action_bound: float
    max_episode_steps: int
    random_score: float
    expert_score: float

    def normalised_score(self, episode_return: float | np.ndarray) -> float | np.ndarray:
        """D4RL's normalised score: 0 for the random policy, 100 for the expert."""
        return 100.0 * (episode_return - self.random_score) / (self.expert_score
                                                              - self.random_score)


# Pendulum's references were measured here (gymnasium 1.0.0, d3rlpy 2.8.1, 1 CPU thread):
# random: the uniform random policy over 100 episodes (env seeds 0..99, actions from
#   numpy's default_rng(0)), mean return -1207.56 (`datagen.mean_return("pendulum",
#   datagen.uniform_policy(PENDULUM, 0), 100, 0)`);
# expert: the expert SAC of `rtb-lab make-data control --env pendulum` (20,000 steps,
#   seed 0), actions sampled from its policy, over 20 episodes (eval seeds 10_000..10_019),
#   mean return -120.99 (its mean action: -120.09). Its own 40,000-transition expert
#   set, 200 other episodes, averages -148.6 (normalised 97.5).
PENDULUM = EnvSpec(key="pendulum", gym_id="Pendulum-v1", observation_dim=3, action_dim=1,
                   action_bound=2.0, max_episode_steps=200, random_score=-1207.56,
                   expert_score=-120.99)
# D4RL's reference returns for HalfCheetah (d4rl/infos.py, REF_MIN/MAX_SCORE).
HALFCHEETAH = EnvSpec(key="halfcheetah", gym_id="HalfCheetah-v5", observation_dim=17,
                      action_dim=6, action_bound=1.0, max_episode_steps=1000,
                      random_score=-280.178953, expert_score=12135.0)
SPECS = {spec.key: spec for spec in (PENDULUM, HALFCHEETAH)}


def get_spec(name: str) -> EnvSpec:
    """The spec called `name`; KeyError naming the valid ones otherwise."""
    if name not in SPECS:
        raise KeyError(f"unknown control environment {name!r}; choose one of {sorted(SPECS)}")
    return SPECS[name]


def import_gymnasium() -> Any:
    """gymnasium, or an ImportError saying how to install the control extra."""
    try:
        import gymnasium
    except ImportError as error:
        raise ImportError(f"the control domain needs gymnasium: {INSTALL_HINT}") from error
    return gymnasium


def import_d3rlpy() -> Any:
    """d3rlpy with its per-epoch info logs silenced (our own progress bars and results
    say what happened), or an ImportError saying how to install the control extra."""
    try:
        import d3rlpy
        import structlog
    except ImportError as error:
        raise ImportError(f"training offline-RL networks needs d3rlpy: {INSTALL_HINT}"
                          ) from error
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return d3rlpy


def make_env(name: str, seed: int | None = None) -> Any:
    """A gymnasium environment for `name`, reset once with `seed` (and its action space
    seeded) so later ``reset()`` calls without a seed are reproducible.

    Raises:
        KeyError: unknown name.
        ImportError: gymnasium (or MuJoCo, for HalfCheetah) is not installed.
        RuntimeError: the installed environment's spaces differ from the spec.
    """
    spec = get_spec(name)
    gymnasium = import_gymnasium()
    try:
        env = gymnasium.make(spec.gym_id, max_episode_steps=spec.max_episode_steps)
    except gymnasium.error.DependencyNotInstalled as error:
        raise ImportError(f"{spec.gym_id} needs a missing dependency ({error}): "
                          f"{INSTALL_HINT}") from error
    found = (env.observation_space.shape, env.action_space.shape,
             float(np.max(env.action_space.high)))
    expected = ((spec.observation_dim,), (spec.action_dim,), spec.action_bound)
    if found != expected:
        env.close()
        raise RuntimeError(f"{spec.gym_id} has (observation shape, action shape, action "
                           f"bound) {found}, but the spec expects {expected}")
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env
