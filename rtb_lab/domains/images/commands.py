"""The CLI commands every vision domain has: train its prior, train its classifier.

Each domain passes its own training and saving functions; the command records the
exact command line in the file (and, with --update-manifest, in the asset manifest).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from torch import nn

from rtb_lab.checkpoint import record_asset
from rtb_lab.domain import Command
from rtb_lab.domains.images.classifier import accuracy, save_classifier
from rtb_lab.domains.images.data import ImageSet
from rtb_lab.domains.images.prior import save_prior


def common_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """--seed, --out (default: the shipped asset's name) and --update-manifest."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--update-manifest", action="store_true",
                        help="record the file's sha256 in rtb_lab/assets/manifest.json")


def prior_command(domain: str, train: Callable[..., nn.Module], asset: str,
                  description: str, load: Callable[[Path], nn.Module],
                  steps: int = 4000, lr: float = 2e-3) -> Command:
    """``rtb-lab train-prior DOMAIN --steps N [--lr LR] [--init-from FILE]``:
    `train(steps, seed=..., lr=..., init=load(FILE) or None)`, saved to --out."""

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--steps", type=int, default=steps)
        parser.add_argument("--lr", type=float, default=lr, help="peak learning rate")
        parser.add_argument("--init-from", type=Path, default=None,
                            help="continue training this prior file instead of a new network")
        common_arguments(parser, asset)

    def run(args: argparse.Namespace) -> dict:
        started = time.perf_counter()
        init = load(args.init_from) if args.init_from is not None else None
        model = train(args.steps, seed=args.seed, lr=args.lr, init=init)
        done = getattr(model, "trained_steps", args.steps)
        command = (f"rtb-lab train-prior {domain} --steps {args.steps} --seed {args.seed}"
                   + (f" --lr {args.lr:g}" if args.lr != lr else "")
                   + (f" --init-from {args.init_from.name}" if init is not None else "")
                   + (f" (interrupted after {done} steps)" if done < args.steps else ""))
        sha256 = save_prior(model, args.out, command)
        if args.update_manifest:
            record_asset(args.out.name, sha256, command, description)
        return {"out": str(args.out), "sha256": sha256,
                "seconds": round(time.perf_counter() - started, 2)}

    return Command(f"train the DDPM prior of {domain}", add_arguments, run)


def classifier_command(domain: str, train: Callable[..., nn.Module],
                       test_data: Callable[..., ImageSet], asset: str, description: str,
                       arch: str = "ConvClassifier", epochs: int = 10,
                       sources: tuple[str, ...] = ()) -> Command:
    """``rtb-lab train-classifier DOMAIN --epochs N``: `train(epochs, seed=...)`, its test
    accuracy on `test_data()`, saved to --out. With `sources`, a ``--source`` option
    (default: the first) is passed on: ``train(..., source=S)``, ``test_data(S)``."""

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--epochs", type=int, default=epochs)
        if sources:
            parser.add_argument("--source", choices=sources, default=sources[0],
                                help="which training and test images")
        common_arguments(parser, asset)

    def run(args: argparse.Namespace) -> dict:
        started = time.perf_counter()
        chosen = {"source": args.source} if sources else {}
        model = train(args.epochs, seed=args.seed, **chosen)
        test_accuracy = accuracy(model, test_data(*chosen.values()))
        command = (f"rtb-lab train-classifier {domain} --epochs {args.epochs} --seed {args.seed}"
                   + (f" --source {args.source}" if sources else ""))
        sha256 = save_classifier(model, args.out, command, test_accuracy, arch)
        if args.update_manifest:
            record_asset(args.out.name, sha256, command,
                         f"{description}, test accuracy {test_accuracy:.4f}")
        return {"out": str(args.out), "sha256": sha256,
                "test_accuracy": round(test_accuracy, 4),
                "seconds": round(time.perf_counter() - started, 2)}

    return Command(f"train the reward classifier of {domain}", add_arguments, run)
