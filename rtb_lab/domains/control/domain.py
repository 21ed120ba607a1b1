"""Offline control as a `rtb_lab.domain.Domain`: what the generic CLI and comparison use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from rtb_lab.domain import Command, MethodRunner
from rtb_lab.domains.control import commands, compare, io, policy, prior
from rtb_lab.domains.control.compare import ControlTarget
from rtb_lab.rtb import check_beta
from rtb_lab.train import RTBTrainer, TrainConfig

TARGET_HELP = ("ENV-QUALITY, e.g. pendulum-medium (shipped networks); ENV pendulum or "
               "halfcheetah, QUALITY random, medium, medium-replay or expert. --beta B fixes "
               "alpha = 1/B; without it the policy is amortised over alpha in "
               f"{policy.ALPHA_RANGE}")


def make_task(name: str, beta: float | None = None) -> ControlTarget:
    """The task called `name` with its shipped networks (KeyError naming valid names)."""
    env, quality = io.parse_task(name)
    if beta is not None:
        check_beta(beta)
    base, q = io.task_prior(env, quality), io.task_q(env, quality)
    actors = {m: io.task_actor(env, quality, m) for m in ("iql", "td3bc")
              if io.has_shipped(env, quality, f"{m}_actor")}
    rtb = io.task_policy(env, quality, base, q) if io.has_shipped(env, quality, "policy") else None
    alpha_range = policy.ALPHA_RANGE if beta is None or beta == 1.0 else (1 / beta, 1 / beta)
    return ControlTarget(env, quality, base, q, rtb, actors, alpha_range)


class ControlDomain:
    """Offline RL: a diffusion behaviour prior μ(a | s), IQL's Q as the reward, and the
    RTB policy π ∝ μ exp(Q / α); the exact π* at a state from a reweighted prior bank."""

    name = "control"
    summary = ("offline RL: a diffusion behaviour prior, an IQL Q-function reward, "
               "pi ~ mu exp(Q / alpha) on gymnasium tasks")
    event_shape = (1,)  # Pendulum's action; HalfCheetah's is (6,)
    default_target = "pendulum-medium"
    target_help = TARGET_HELP
    methods = compare.METHODS
    metrics = compare.METRICS
    plot_metrics = compare.PLOT_METRICS
    budgets = (compare.FAST_EPISODES, compare.FULL_EPISODES)  # evaluation episodes

    def make_family(self):
        return prior.make_family()

    def load_prior(self, path: str | Path | None = None, device: Any = "cpu") -> nn.Module:
        return prior.load_prior(path, device=device)

    def make_target(self, name: str, beta: float = 1.0) -> ControlTarget:
        return make_task(name, beta)

    def train_config(self, fast: bool = False) -> TrainConfig:
        return policy.POLICY_CONFIG.with_steps(200) if fast else policy.POLICY_CONFIG

    def make_trainer(self, target: ControlTarget, config: TrainConfig | None = None, *,
                     prior: nn.Module | None = None,
                     out_dir: str | Path | None = None) -> RTBTrainer:
        states = io.task_states(target.env, target.quality)
        # three data states spread through the set: where evaluations measure TV to π*
        eval_states = states[torch.linspace(0, len(states) - 1, 3).long()]
        return policy.make_policy_trainer(prior if prior is not None else target.prior,
                                          target.q, states, config or policy.POLICY_CONFIG,
                                          alpha_range=target.alpha_range,
                                          eval_states=eval_states, out_dir=out_dir)

    def compare_runners(self) -> dict[str, MethodRunner]:
        return dict(compare.RUNNERS)

    def describe(self, metrics: dict[str, float]) -> str:
        return f"return {metrics['return']:.1f} (normalised {metrics['normalised']:.1f})"

    def commands(self) -> dict[str, Command]:
        return commands.commands()


DOMAIN = ControlDomain()
