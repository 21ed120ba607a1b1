"""The 2D toy as a `rtb_lab.domain.Domain`: what the generic CLI and comparison use."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from rtb_lab.checkpoint import record_asset
from rtb_lab.diffusion import EulerMaruyama
from rtb_lab.domain import Command, MethodRunner
from rtb_lab.domains.toy2d import amortised, compare, prior, targets, trainer
from rtb_lab.train import RTBTrainer, TrainConfig


def _train_prior_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(prior.PRIOR_ASSET))
    parser.add_argument("--update-manifest", action="store_true",
                        help="record the file's sha256 in rtb_lab/assets/manifest.json")


def _train_prior(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    model = prior.train_prior(steps=args.steps, hidden=args.hidden, seed=args.seed)
    command = f"rtb-lab train-prior toy2d --steps {args.steps} --hidden {args.hidden} " \
              f"--seed {args.seed}"
    sha256 = prior.save_prior(model, args.out, command)
    if args.update_manifest:
        record_asset(args.out.name, sha256, command, "toy2d prior: 25-mode grid mixture")
    return {"out": str(args.out), "sha256": sha256,
            "seconds": round(time.perf_counter() - started, 2)}


def _train_amortised_arguments(parser: argparse.ArgumentParser) -> None:
    low, high = amortised.BETA_RANGE
    parser.add_argument("--target", default="25to9", help=f"one of {sorted(targets.TARGETS)}")
    parser.add_argument("--steps", type=int, default=amortised.AMORTISED_CONFIG.steps)
    parser.add_argument("--beta-min", type=float, default=low)
    parser.add_argument("--beta-max", type=float, default=high)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(amortised.AMORTISED_ASSET))
    parser.add_argument("--update-manifest", action="store_true")
    parser.add_argument("--quiet", action="store_true")


def _train_amortised(args: argparse.Namespace) -> dict:
    config = replace(amortised.AMORTISED_CONFIG, seed=args.seed, steps=args.steps)
    beta_range = (args.beta_min, args.beta_max)
    fitted = amortised.make_amortised_trainer(args.target, config, beta_range=beta_range)
    fitted.train(progress=not args.quiet)
    command = (f"rtb-lab train-amortised toy2d --target {args.target} --steps {config.steps} "
               f"--beta-min {args.beta_min} --beta-max {args.beta_max} --seed {args.seed}")
    sha256 = amortised.save_amortised(fitted.posterior, args.out, args.target, beta_range,
                                      command)
    if args.update_manifest:
        record_asset(args.out.name, sha256, command,
                     f"toy2d {args.target} posterior amortised over beta in {beta_range}")
    return {"out": str(args.out), "sha256": sha256, **fitted.evaluations[-1],
            "seconds": round(fitted.seconds, 2)}


class Toy2DDomain:
    """Gaussian mixtures in 2D through the paper's Euler-Maruyama process: the exact
    posterior is known on a grid, so every figure is a gap to the truth."""

    name = "toy2d"
    summary = "2D Gaussian mixtures (the paper's 25 -> 9 modes), exact posterior on a grid"
    event_shape = (2,)
    default_target = "25to9"
    target_help = f"one of {sorted(targets.TARGETS)}"
    methods = compare.METHODS
    metrics = compare.METRICS
    plot_metrics = compare.PLOT_METRICS
    budgets = (compare.FAST_BUDGET, compare.FULL_BUDGET)

    def make_family(self) -> EulerMaruyama:
        return prior.make_family()

    def load_prior(self, path: str | Path | None = None, device: Any = "cpu") -> nn.Module:
        return prior.load_prior(path, device)

    def make_target(self, name: str, beta: float = 1.0) -> targets.Toy2DTarget:
        return targets.get_target(name, beta)

    def train_config(self, fast: bool = False) -> TrainConfig:
        return TrainConfig().fast() if fast else TrainConfig()

    def make_trainer(self, target: targets.Toy2DTarget, config: TrainConfig | None = None, *,
                     prior: nn.Module | None = None,
                     out_dir: str | Path | None = None) -> RTBTrainer:
        return trainer.make_trainer(target, config, prior=prior, out_dir=out_dir)

    def compare_runners(self) -> dict[str, MethodRunner]:
        return {method: compare.method_runner(method) for method in compare.METHODS}

    def describe(self, metrics: dict[str, float]) -> str:
        return f"tv {metrics['tv']:.3f}"

    def commands(self) -> dict[str, Command]:
        return {"train-prior": Command("train the prior network and save it",
                                       _train_prior_arguments, _train_prior),
                "train-amortised": Command("train a posterior conditioned on beta and save it",
                                           _train_amortised_arguments, _train_amortised)}


DOMAIN = Toy2DDomain()
