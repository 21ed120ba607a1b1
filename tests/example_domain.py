"""A tiny domain that proves the Domain protocol is enough: a 1-D Gaussian mixture
prior (its exact bridge drift, no training) tilted by r(x) = exp(a x).

Each component N(m, s^2) tilted by exp(beta a x) is N(m + beta a s^2, s^2) with weight
w exp(beta a m + (beta a s)^2 / 2), so the posterior's mode weights and log Z are
closed-form. Registered by the tests only (see test_domain.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from rtb_lab.compare import EvalCounter, train_within
from rtb_lab.diffusion import EulerMaruyama
from rtb_lab.domains.toy2d.gmm import GaussianMixture
from rtb_lab.metrics import log_z_error, mode_weights, total_variation
from rtb_lab.nets import ResidualPosterior
from rtb_lab.train import RTBTrainer, TrainConfig

MIXTURE = GaussianMixture(torch.tensor([[-4.0], [0.0], [4.0]]), 0.5, torch.ones(3))
SIGMA2, NUM_STEPS = 5.0, 40


class BridgeDrift(nn.Module):
    """The exact drift whose time-1 marginal is MIXTURE (parameter-free, hence frozen)."""

    dim, num_layers = 1, 2

    def forward(self, x, t, cond=None):
        return (MIXTURE.bridge_endpoint(x, t, SIGMA2) - x) / (1 - t[:, None]).clamp_min(1e-3)


@dataclass(frozen=True)
class Tilt:
    slope: float
    beta: float = 1.0

    def log_reward(self, x):
        return self.slope * x[:, 0]

    def truth(self):
        b = self.beta * self.slope
        log_w = MIXTURE.weights.log() + b * MIXTURE.means[:, 0] + 0.5 * (b * MIXTURE.stds) ** 2
        return torch.softmax(log_w, 0).float(), float(torch.logsumexp(log_w, 0))

    def evaluate(self, x, log_z):
        weights, log_z_true = self.truth()
        tv = total_variation(mode_weights(x, MIXTURE.means.float()), weights)
        return {"tv": tv, "log_z_err": log_z_error(log_z, log_z_true)}


class Gauss1D:
    name, summary, event_shape = "gauss1d", "1-D mixture tilted by exp(a x)", (1,)
    default_target, target_help = "0.25", "the tilt's slope a"
    methods, metrics, plot_metrics = ("rtb",), ("tv", "log_z_err", "evals", "seconds"), ()
    budgets = (3_000_000, 6_000_000)

    def make_family(self):
        return EulerMaruyama(NUM_STEPS, SIGMA2)

    def load_prior(self, path=None, device="cpu"):
        return BridgeDrift().to(device)

    def make_target(self, name, beta=1.0):
        if not math.isfinite(slope := float(name)):
            raise ValueError(f"the slope must be a finite number, got {name!r}")
        return Tilt(slope, beta)

    def train_config(self, fast=False):
        return TrainConfig(steps=150 if fast else 300, batch_size=128, lr=3e-3, explore=0.3,
                           explore_hold=20, explore_end=100, eval_every=0)

    def make_trainer(self, target, config=None, *, prior=None, out_dir=None):
        prior = prior or self.load_prior()
        evaluate = lambda trainer: target.evaluate(  # noqa: E731
            trainer.sample(4000).x, trainer.current_log_z())
        return RTBTrainer(prior, ResidualPosterior(prior, train_base=False), self.make_family(),
                          target.log_reward, self.event_shape,
                          config or self.train_config(), evaluator=evaluate, out_dir=out_dir)

    def compare_runners(self):
        return {"rtb": self.run_rtb}

    def run_rtb(self, target, budget, seed):
        counter, prior = EvalCounter(), self.load_prior()
        counter.attach(prior)
        trainer = self.make_trainer(target, self.train_config(fast=True), prior=prior)
        result = train_within(trainer, budget, counter)
        metrics = target.evaluate(result.traj.x, result.log_z)
        return {**metrics, "evals": float(counter.count), "seconds": trainer.seconds}, \
            result.traj.x

    def describe(self, metrics):
        return f"tv {metrics['tv']:.3f}"

    def commands(self):
        return {}
