"""MNIST as a `rtb_lab.domain.Domain`: the generic CLI's view, and MNIST's own commands."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from torch import nn

from rtb_lab.checkpoint import record_asset
from rtb_lab.device import get_device
from rtb_lab.diffusion import DDPM
from rtb_lab.domain import Command, MethodRunner
from rtb_lab.domains.images.commands import classifier_command, common_arguments, prior_command
from rtb_lab.domains.mnist import compare, conditional, data, evaluation, prior, reward, value
from rtb_lab.domains.mnist.posterior import BETA_RANGE, CONDITIONAL_ASSET, save_posterior
from rtb_lab.domains.mnist.trainer import (
    ClassSetTarget,
    class_set_target,
    make_trainer,
    train_config,
)
from rtb_lab.train import RTBTrainer, TrainConfig, time_budget


def _train_value_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default 2e-3)")
    parser.add_argument("--chains", type=int, default=0,
                        help="train on the states of this many fresh prior chains per step "
                             "(the exact value of the sampling chain; a GPU job) instead of "
                             "on noised images (0, default)")
    parser.add_argument("--init-from", default=None,
                        help="continue from a noisy classifier: a file, or a shipped asset name")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: best)")
    parser.add_argument("--quiet", action="store_true")
    common_arguments(parser, "mnist_value.safetensors")


def _train_value(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    device = get_device(args.device)
    init = None if args.init_from is None else value.value_network(args.init_from, device)
    model = value.train_noisy_classifier(
        reward.load_classifier(device=device), prior.load_prior(device=device), args.steps,
        chains=args.chains, init=init, seed=args.seed, progress=not args.quiet,
        **({} if args.lr is None else {"lr": args.lr}))
    command = (f"rtb-lab train-value mnist --steps {args.steps} --seed {args.seed}"
               + (f" --lr {args.lr}" if args.lr is not None else "")
               + (f" --chains {args.chains}" if args.chains else "")
               + (f" --init-from {Path(args.init_from).name}" if args.init_from else ""))
    sha256 = value.save_noisy_classifier(model.cpu(), args.out, command, device=str(device))
    source = (f"all {prior.NUM_STEPS} states of {args.chains} fresh prior chains per step, "
              "labelled by where each chain ends" if args.chains else
              "batch 256 on noised shipped images and 4,096 prior samples")
    if args.update_manifest:
        record_asset(args.out.name, sha256, command,
                     f"MNIST noisy classifier: E[p(c | x0) | x_t] for value guidance "
                     f"({args.steps} steps, {source}"
                     + (f", from {Path(args.init_from).name}" if args.init_from else "")
                     + f"; {time.perf_counter() - started:.0f} s on {device})")
    return {"out": str(args.out), "sha256": sha256, "device": str(device),
            "seconds": round(time.perf_counter() - started, 2)}


def _train_amortised_arguments(parser: argparse.ArgumentParser) -> None:
    low, high = BETA_RANGE
    parser.add_argument("--steps", type=int, default=None, help="default 1000")
    parser.add_argument("--beta-min", type=float, default=low)
    parser.add_argument("--beta-max", type=float, default=high)
    parser.add_argument("--device", default=None,
                        help="cpu, cuda... (default: $RTB_LAB_DEVICE, else the best)")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help="directory for resumable checkpoints (resumes if one is there)")
    parser.add_argument("--per-set-batch", type=int, default=None,
                        help="trajectories per class set and step (default 64)")
    parser.add_argument("--lr", type=float, default=None,
                        help="start learning rate (cosine to a tenth of it)")
    parser.add_argument("--value-guided", action="store_true",
                        help="add value guidance (a noisy classifier's gradient) with learned "
                             "scales per set and step")
    parser.add_argument("--value", default=value.CHAIN_VALUE_ASSET,
                        help="the value network of --value-guided: a file or a shipped asset "
                             "name (default: the shipped chain value)")
    parser.add_argument("--init-scale", type=float, default=1.0,
                        help="the value guidance scales' start (default 1)")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="start from this conditional posterior (.safetensors), e.g. the "
                             "shipped one, instead of the prior")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="fit the run into this much training time: the step count (and "
                             "lr schedule) follows the measured speed")
    parser.add_argument("--quiet", action="store_true")
    common_arguments(parser, CONDITIONAL_ASSET)


def _print_metrics(trainer: RTBTrainer, metrics: dict[str, Any]) -> None:
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                      for k, v in metrics.items()}), flush=True)


def _train_amortised(args: argparse.Namespace) -> dict:
    config = conditional.conditional_config(args.steps, args.per_set_batch, args.lr,
                                            warm=args.init_from is not None, seed=args.seed)
    device = get_device(args.device)
    classifier = reward.load_classifier(device=device)
    trainer = conditional.make_conditional_trainer(
        config, classifier=classifier, beta_range=(args.beta_min, args.beta_max), device=device,
        evaluator=evaluation.conditional_evaluator(classifier), out_dir=args.checkpoints,
        init_from=args.init_from, init_scale=args.init_scale,
        value=value.value_network(args.value, device) if args.value_guided else None)
    if args.checkpoints is not None and (args.checkpoints / "checkpoint.pt").exists():
        trainer.resume(args.checkpoints / "checkpoint.pt")
    trainer.train(progress=not args.quiet, eval_callbacks=[_print_metrics],
                  callbacks=[] if args.max_seconds is None else [time_budget(args.max_seconds)])
    command = (f"rtb-lab train-amortised mnist --steps {trainer.step} "
               f"--beta-min {args.beta_min} --beta-max {args.beta_max} --seed {args.seed}"
               + (f" --per-set-batch {args.per_set_batch}" if args.per_set_batch else "")
               + (f" --lr {args.lr}" if args.lr else "")
               + (f" --value-guided --value {Path(args.value).name}"
                  f" --init-scale {args.init_scale}" if args.value_guided else "")
               + (f" --init-from {args.init_from.name}" if args.init_from else ""))
    last = trainer.evaluations[-1] if trainer.evaluations else {}
    sha256 = save_posterior(trainer.posterior, args.out, command,
                            {"beta_range": [args.beta_min, args.beta_max],
                             "device": str(device), "seconds": round(trainer.seconds, 1)})
    if args.update_manifest:
        record_asset(args.out.name, sha256, command, "MNIST posterior conditioned on the class "
                     f"set (one LoRA block each) and beta in ({args.beta_min}, {args.beta_max})"
                     + (", with learned value guidance (per set and step)"
                        if args.value_guided else ""))
    return {"out": str(args.out), "sha256": sha256, "steps": trainer.step, **last,
            "device": str(device), "seconds": round(trainer.seconds, 2)}


class MNISTDomain:
    """The DDPM prior on 28 x 28 digits we trained, tilted by a classifier's reward for a
    class set; the exact posterior of that prior comes from an importance bank."""

    name = "mnist"
    summary = "MNIST digits: a DDPM prior (LoRA posteriors) and a class-set classifier reward"
    event_shape = prior.IMAGE_SHAPE
    default_target = "even"
    target_help = "a class set: even, odd, a digit (3) or digits (17)"
    methods = compare.METHODS
    metrics = compare.METRICS
    plot_metrics = compare.PLOT_METRICS
    budgets = (compare.FAST_BUDGET, compare.FULL_BUDGET)

    def make_family(self) -> DDPM:
        return prior.make_family()

    def load_prior(self, path: str | Path | None = None, device: Any = "cpu") -> nn.Module:
        return prior.load_prior(path, device)

    def make_target(self, name: str, beta: float = 1.0) -> ClassSetTarget:
        return class_set_target(name, beta)

    def train_config(self, fast: bool = False) -> TrainConfig:
        return train_config(fast)

    def make_trainer(self, target: ClassSetTarget, config: TrainConfig | None = None, *,
                     prior: nn.Module | None = None,
                     out_dir: str | Path | None = None) -> RTBTrainer:
        classifier = reward.load_classifier()
        return make_trainer(target.classes, target.beta, config, prior=prior,
                            classifier=classifier, out_dir=out_dir,
                            evaluator=evaluation.make_evaluator(target.classes, classifier))

    def compare_runners(self) -> dict[str, MethodRunner]:
        return compare.method_runners()

    def describe(self, metrics: dict[str, float]) -> str:
        return f"E[log r] {metrics['mean_log_r']:.3f}, KL {metrics['kl']:.2f}"

    def commands(self) -> dict[str, Command]:
        return {
            "train-prior": prior_command(
                "mnist", prior.train_prior, prior.PRIOR_ASSET,
                "MNIST DDPM prior: diffusers UNet2DModel (16, 32, 32), EMA weights",
                prior.load_prior),
            "train-classifier": classifier_command(
                "mnist", reward.train_classifier, lambda: data.load_mnist("test"),
                reward.CLASSIFIER_ASSET, "MNIST reward classifier", arch="DigitClassifier"),
            "train-value": Command("train the noisy classifier (the value h(x_t) that "
                                   "value-guided posteriors follow)",
                                   _train_value_arguments, _train_value),
            "train-amortised": Command("train the posterior conditioned on (class set, beta)",
                                       _train_amortised_arguments, _train_amortised),
        }


DOMAIN = MNISTDomain()
