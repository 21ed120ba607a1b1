"""CIFAR-10 as a `rtb_lab.domain.Domain`: the generic CLI's view, and its own commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from torch import nn

from rtb_lab.checkpoint import record_asset
from rtb_lab.device import get_device
from rtb_lab.diffusion import DDPM
from rtb_lab.domain import Command, MethodRunner
from rtb_lab.domains.cifar10 import compare, conditional, prior, reward, trainer
from rtb_lab.domains.images.commands import classifier_command, common_arguments, prior_command
from rtb_lab.domains.images.compare import METHODS, METRICS, PLOT_METRICS
from rtb_lab.domains.images.posterior import save_posterior
from rtb_lab.domains.images.prior import make_family
from rtb_lab.domains.images.trainer import ClassSetTarget
from rtb_lab.train import RTBTrainer, TrainConfig, time_budget


def _train_amortised_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=None,
                        help=f"default {conditional.CONDITIONAL_CONFIG.steps}")
    parser.add_argument("--per-set-batch", type=int, default=None,
                        help=f"trajectories per class and step (default "
                             f"{conditional.PER_SET_BATCH})")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda... (default: $RTB_LAB_DEVICE, else the best)")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help="directory for resumable checkpoints (resumes if one is there)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="fit the run into this much training time: the step count (and "
                             "lr schedule) follows the measured speed")
    parser.add_argument("--quiet", action="store_true")
    common_arguments(parser, conditional.CONDITIONAL_ASSET)


def _train_amortised(args: argparse.Namespace) -> dict:
    device = get_device(args.device)
    config = conditional.conditional_config(args.steps, args.per_set_batch, args.seed)
    run = conditional.make_conditional_trainer(
        config, prior=prior.load_prior(device=device),
        classifier=reward.load_classifier(device=device), out_dir=args.checkpoints)
    if args.checkpoints is not None and (args.checkpoints / "checkpoint.pt").exists():
        run.resume(args.checkpoints / "checkpoint.pt")
    run.train(progress=not args.quiet,
              eval_callbacks=[lambda _, metrics: print(json.dumps(metrics), flush=True)],
              callbacks=[] if args.max_seconds is None else [time_budget(args.max_seconds)])
    command = (f"rtb-lab train-amortised cifar10 --steps {run.step} --seed {args.seed}"
               + (f" --per-set-batch {args.per_set_batch}" if args.per_set_batch else ""))
    sha256 = save_posterior(run.posterior, args.out, command,
                            {"beta_range": list(conditional.BETA_RANGE), "device": str(device),
                             "seconds": round(run.seconds, 1)})
    last = run.evaluations[-1] if run.evaluations else {}
    if args.update_manifest:
        record_asset(args.out.name, sha256, command,
                     "CIFAR-10 stand-in posterior conditioned on the class (disc, triangle, "
                     f"stripes; one LoRA block each) and beta in {conditional.BETA_RANGE}: "
                     f"{run.step} RTB steps, {run.seconds:.0f} s on {device}; in class at "
                     f"beta 1: {json.dumps({k: round(v, 3) for k, v in last.items()})}")
    return {"out": str(args.out), "sha256": sha256, "steps": run.step, **last,
            "device": str(device), "seconds": round(run.seconds, 2)}


class CIFAR10Domain:
    """A DDPM prior on 32 x 32 colour images, tilted by a classifier's reward for a class
    set. Offline (here, CI, Binder) the prior, classifier and data are the generated
    stand-in's; `prior.load_hub_prior()` loads the paper's prior when online."""

    name = "cifar10"
    summary = ("CIFAR-10 (offline: a generated 10-class stand-in): a DDPM prior (LoRA "
               "posteriors) and a class-set classifier reward")
    event_shape = prior.IMAGE_SHAPE
    default_target = "square"
    target_help = ("a class set of the stand-in: a class (disc, ring, square, triangle, "
                   "cross, stripes, checker, dots, bullseye, waves), names joined by '+', "
                   "shapes or textures")
    methods = METHODS
    metrics = METRICS
    plot_metrics = PLOT_METRICS
    budgets = (compare.FAST_BUDGET, compare.FULL_BUDGET)

    def make_family(self) -> DDPM:
        return make_family()

    def load_prior(self, path: str | Path | None = None, device: Any = "cpu") -> nn.Module:
        return prior.load_prior(path, device)

    def make_target(self, name: str, beta: float = 1.0) -> ClassSetTarget:
        return trainer.class_set_target(name, beta)

    def train_config(self, fast: bool = False) -> TrainConfig:
        return trainer.train_config(fast)

    def make_trainer(self, target: ClassSetTarget, config: TrainConfig | None = None, *,
                     prior: nn.Module | None = None,
                     out_dir: str | Path | None = None) -> RTBTrainer:
        return trainer.make_trainer(target, config, prior=prior, out_dir=out_dir)

    def compare_runners(self) -> dict[str, MethodRunner]:
        return compare.runners()

    def describe(self, metrics: dict[str, float]) -> str:
        return f"in class {metrics['in_set']:.3f}, KL {metrics['kl']:.2f}"

    def commands(self) -> dict[str, Command]:
        return {
            "train-prior": prior_command(
                "cifar10", prior.train_prior, prior.PRIOR_ASSET,
                "CIFAR-10 stand-in DDPM prior: diffusers UNet2DModel (16, 32, 64), EMA weights",
                prior.load_prior),
            "train-classifier": classifier_command(
                "cifar10", reward.train_classifier,
                lambda source: reward.classifier_data("test", source), reward.CLASSIFIER_ASSET,
                "CIFAR-10 reward classifier", epochs=6, sources=("offline", "full")),
            "train-amortised": Command("train the posterior conditioned on (class, beta) for "
                                       "disc, triangle and stripes", _train_amortised_arguments,
                                       _train_amortised),
        }


DOMAIN = CIFAR10Domain()
