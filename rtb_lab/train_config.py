"""Hyper-parameters of RTB fine-tuning (`TrainConfig`) and their schedules.

Exploration and the learning rate follow schedules in the step number, so a resumed
run reproduces the same values (they are recomputed from `step`, never accumulated).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from rtb_lab.rtb import check_beta


@dataclass
class TrainConfig:
    """Hyper-parameters of RTB fine-tuning (defaults: the 2D toy at paper scale, with a
    shorter exploration schedule than the paper's; docs/toy2d.md has the measurements).

    Attributes:
        steps: total optimisation steps.
        batch_size: trajectories per step (new + replayed).
        lr: learning rate of the posterior network.
        scalar_lr: learning rate of a policy's per-step scalars (parameters named
            ``guide*``, e.g. learned guidance scales), scaled over the run like lr;
            None: lr.
        lr_end: with lr_end < lr, the learning rate follows a cosine from lr to lr_end
            over the `steps` steps (then stays at lr_end); None keeps it constant.
        log_z_lr: learning rate of log Z (larger, as in the paper). A scalar log Z takes
            plain SGD steps: its loss is quadratic, so SGD is a moving average toward the
            batch-optimal value that keeps tracking once exploration ends (Adam's second
            moment remembers the exploration phase's huge gradients and then barely moves).
            A conditional log Z head is a network and uses Adam.
        beta: reward exponent (ignored when the condition carries beta).
        explore: exploration level at the start (variance inflation when sampling).
        explore_hold: steps at full exploration before it starts to decay.
        explore_end: step at which exploration has decayed linearly to 0.
        replay_fraction: share of each batch drawn from the replay buffer.
        replay_capacity: trajectories kept in the replay buffer.
        loss: "rtb" (learned log Z) or "vargrad" (batch estimate per condition group).
        residual_per_beta: divide each residual by its beta. Same optimum (delta = 0),
            but conditions with a large beta no longer dominate the gradient of an
            amortised posterior (their residuals scale with beta * log r).
        chunk_steps: score this many steps per network call with exact chunked
            gradients (bounded memory); None scores all T steps in one pass.
        grad_steps: backpropagate through this many random steps per iteration, scaled
            by T / grad_steps (unbiased given the loss; None: all steps).
        grad_clip: max gradient norm of the posterior network (None: no clipping).
        log_z_init: "importance" (log mean r^beta over prior samples) or a number.
        log_z_init_samples: prior samples for that estimate.
        cond_groups: distinct conditions per batch (conditional posteriors).
        eval_every: run the evaluator every this many steps (0: only at the end).
        checkpoint_every: save a checkpoint every this many steps (0: at the end and
            on interrupt only; needs an output directory).
        seed: seed of the trainer's random generator.
    """

    steps: int = 600
    batch_size: int = 500
    lr: float = 1e-3
    lr_end: float | None = None
    scalar_lr: float | None = None
    log_z_lr: float = 0.1
    beta: float = 1.0
    explore: float = 0.5
    explore_hold: int = 50
    explore_end: int = 300
    replay_fraction: float = 0.0
    replay_capacity: int = 20_000
    loss: Literal["rtb", "vargrad"] = "rtb"
    residual_per_beta: bool = False
    chunk_steps: int | None = None
    grad_steps: int | None = None
    grad_clip: float | None = None
    log_z_init: Literal["importance"] | float = "importance"
    log_z_init_samples: int = 2000
    cond_groups: int = 1
    eval_every: int = 100
    checkpoint_every: int = 0
    seed: int = 0

    def fast(self) -> TrainConfig:
        """A short schedule for CI and quick demos (same recipe, fewer and smaller steps;
        700 steps because log Z keeps closing its gap after the samples have converged)."""
        return replace(self, steps=700, batch_size=256, eval_every=100)

    def with_steps(self, steps: int) -> TrainConfig:
        """The same recipe over `steps` steps, the exploration schedule scaled to match."""
        ratio = steps / self.steps
        return replace(self, steps=steps, explore_hold=round(self.explore_hold * ratio),
                       explore_end=round(self.explore_end * ratio))

    def explore_at(self, step: int) -> float:
        """Exploration level at `step`: held, then linearly decayed to 0 at explore_end."""
        if step < self.explore_hold:
            return self.explore
        span = max(1, self.explore_end - self.explore_hold)
        return self.explore * max(0.0, 1.0 - (step - self.explore_hold) / span)

    def lr_at(self, step: int) -> float:
        """Learning rate of the posterior at `step` (constant, or cosine-decayed to lr_end)."""
        if self.lr_end is None:
            return self.lr
        progress = min(1.0, step / self.steps)
        return self.lr_end + (self.lr - self.lr_end) * 0.5 * (1 + math.cos(math.pi * progress))

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        check_beta(self.beta)
        positive = {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr,
                    "log_z_lr": self.log_z_lr, "cond_groups": self.cond_groups}
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"TrainConfig.{name} must be > 0, got {value}")
        if not 0 <= self.replay_fraction < 1:
            raise ValueError(f"replay_fraction must be in [0, 1), got {self.replay_fraction}")
        if self.loss not in ("rtb", "vargrad"):
            raise ValueError(f"loss must be 'rtb' or 'vargrad', got {self.loss!r}")
        if self.batch_size % self.cond_groups:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of "
                             f"cond_groups {self.cond_groups}")
        if self.lr_end is not None and not 0 < self.lr_end <= self.lr:
            raise ValueError(f"lr_end must be in (0, lr], got {self.lr_end}")
        if self.explore < 0:
            raise ValueError(f"explore must be >= 0, got {self.explore}")
        if self.log_z_init == "importance" and self.log_z_init_samples < 1:
            raise ValueError("log_z_init_samples must be >= 1 for log_z_init='importance' "
                             f"(got {self.log_z_init_samples}); give log_z_init a number to "
                             "skip the estimate")
        if self.grad_steps is not None and self.grad_steps < 1:
            raise ValueError(f"grad_steps must be >= 1 or None, got {self.grad_steps}")
