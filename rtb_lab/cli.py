"""The `rtb-lab` command line: train priors and fine-tune posteriors.

    rtb-lab train-prior toy2d|mnist [--steps N] [--out FILE]
    rtb-lab train-classifier mnist [--epochs N] [--out FILE]
    rtb-lab train-value mnist [--steps N] [--out FILE]
    rtb-lab finetune toy2d|mnist [--target NAME] [--beta B] [--steps N] [--seed S] [--fast]
    rtb-lab train-amortised toy2d|mnist [--target NAME] [--beta-min A] [--beta-max B]
    rtb-lab compare toy2d|mnist [--methods M ...] [--seeds N] [--budget E] [--fast] [--out DIR]

`finetune` prints progress, then one JSON object of final metrics as its last line;
`compare` prints a markdown table, then the table as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from rtb_lab import evaluate
from rtb_lab.checkpoint import MANIFEST, assets_dir
from rtb_lab.config import is_fast
from rtb_lab.domains import toy2d, toy2d_amortised
from rtb_lab.train import TrainConfig, time_budget

DOMAINS = ("toy2d", "mnist")
DEFAULT_TARGET = {"toy2d": "25to9", "mnist": "even"}


def _record_asset(name: str, sha256: str, command: str, description: str) -> None:
    """Record a shipped file's sha256 and the command that made it in the manifest."""
    manifest_path = assets_dir() / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[name] = {"sha256": sha256, "command": command, "description": description}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


def _train_prior(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    if args.domain == "mnist":
        from rtb_lab.domains import mnist_prior

        steps = args.steps or 4000
        model = mnist_prior.train_prior(steps, seed=args.seed)
        command = f"rtb-lab train-prior mnist --steps {steps} --seed {args.seed}"
        sha256 = mnist_prior.save_prior(model, args.out, command)
        description = "MNIST DDPM prior: diffusers UNet2DModel (16, 32, 32), EMA weights"
    else:
        steps = args.steps or 6000
        model = toy2d.train_prior(steps=steps, hidden=args.hidden, seed=args.seed)
        command = f"rtb-lab train-prior toy2d --steps {steps} --hidden {args.hidden} " \
                  f"--seed {args.seed}"
        sha256 = toy2d.save_prior(model, args.out, command)
        description = "toy2d prior: 25-mode grid mixture"
    if args.update_manifest:
        _record_asset(Path(args.out).name, sha256, command, description)
    return {"out": str(args.out), "sha256": sha256,
            "seconds": round(time.perf_counter() - started, 2)}


def _train_classifier(args: argparse.Namespace) -> dict:
    from rtb_lab.domains import mnist_reward
    from rtb_lab.domains.images import load_mnist

    started = time.perf_counter()
    model = mnist_reward.train_classifier(args.epochs, seed=args.seed)
    test_accuracy = mnist_reward.accuracy(model, load_mnist("test"))
    command = f"rtb-lab train-classifier mnist --epochs {args.epochs} --seed {args.seed}"
    sha256 = mnist_reward.save_classifier(model, args.out, command, test_accuracy)
    if args.update_manifest:
        _record_asset(Path(args.out).name, sha256, command,
                      f"MNIST reward classifier, test accuracy {test_accuracy:.4f}")
    return {"out": str(args.out), "sha256": sha256, "test_accuracy": round(test_accuracy, 4),
            "seconds": round(time.perf_counter() - started, 2)}


def _train_value(args: argparse.Namespace) -> dict:
    from rtb_lab.device import get_device
    from rtb_lab.domains import mnist_prior, mnist_reward, mnist_value

    started = time.perf_counter()
    device = get_device(args.device)
    init = None if args.init_from is None else mnist_value.value_network(args.init_from, device)
    model = mnist_value.train_noisy_classifier(
        mnist_reward.load_classifier(device=device), mnist_prior.load_prior(device=device),
        args.steps, chains=args.chains, init=init, seed=args.seed, progress=not args.quiet,
        **({} if args.lr is None else {"lr": args.lr}))
    command = (f"rtb-lab train-value mnist --steps {args.steps} --seed {args.seed}"
               + (f" --lr {args.lr}" if args.lr is not None else "")
               + (f" --chains {args.chains}" if args.chains else "")
               + (f" --init-from {Path(args.init_from).name}" if args.init_from else ""))
    sha256 = mnist_value.save_noisy_classifier(model.cpu(), args.out, command,
                                               device=str(device))
    source = (f"all {mnist_prior.NUM_STEPS} states of {args.chains} fresh prior chains per "
              "step, labelled by where each chain ends" if args.chains else
              "batch 256 on noised shipped images and 4,096 prior samples")
    if args.update_manifest:
        _record_asset(Path(args.out).name, sha256, command,
                      f"MNIST noisy classifier: E[p(c | x0) | x_t] for value guidance "
                      f"({args.steps} steps, {source}"
                      + (f", from {Path(args.init_from).name}" if args.init_from else "")
                      + f"; {time.perf_counter() - started:.0f} s on {device})")
    return {"out": str(args.out), "sha256": sha256, "device": str(device),
            "seconds": round(time.perf_counter() - started, 2)}


def _finetune(args: argparse.Namespace) -> dict:
    if args.domain == "mnist":
        return _finetune_mnist(args)
    config = TrainConfig(seed=args.seed)
    if args.fast or is_fast():
        config = config.fast()
    if args.steps is not None:
        config = config.with_steps(args.steps)
    target = toy2d.resolve_target(args.target, args.beta)
    prior = toy2d.load_prior(args.prior) if args.prior else None
    trainer = toy2d.finetune(target, config, prior=prior, out_dir=args.out,
                             progress=not args.quiet)
    metrics = dict(trainer.evaluations[-1])
    metrics.update(target=target.name, beta=target.beta, steps=trainer.step,
                   seconds=round(trainer.seconds, 2))
    return metrics


def _finetune_mnist(args: argparse.Namespace) -> dict:
    from rtb_lab.domains import mnist, mnist_prior

    config = replace(mnist.train_config(fast=args.fast or is_fast()), seed=args.seed)
    if args.steps is not None:
        config = config.with_steps(args.steps)
    prior = mnist_prior.load_prior(args.prior) if args.prior else None
    trainer = mnist.finetune(args.target, args.beta or 1.0, config, prior=prior,
                             out_dir=args.out, progress=not args.quiet)
    return {**trainer.evaluations[-1], "target": args.target, "beta": args.beta or 1.0,
            "steps": trainer.step, "seconds": round(trainer.seconds, 2)}


def _train_amortised_mnist(args: argparse.Namespace) -> dict:
    from rtb_lab.device import get_device
    from rtb_lab.domains import mnist

    config = mnist.conditional_config(args.steps, args.per_set_batch, args.lr,
                                      warm=args.init_from is not None, seed=args.seed)
    device = get_device(args.device)
    classifier = mnist.load_classifier(device=device)
    trainer = mnist.make_conditional_trainer(
        config, classifier=classifier, beta_range=(args.beta_min, args.beta_max), device=device,
        evaluator=mnist.conditional_evaluator(classifier), out_dir=args.checkpoints,
        learn_std=args.learn_std, init_from=args.init_from,
        value=mnist.value_network(args.value or mnist.CHAIN_VALUE_ASSET, device)
        if args.value_guided else None,
        init_scale=args.init_scale, lookahead=args.lookahead)
    if args.checkpoints is not None and (args.checkpoints / "checkpoint.pt").exists():
        trainer.resume(args.checkpoints / "checkpoint.pt")
    show = lambda trainer, metrics: print(json.dumps(  # noqa: E731
        {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}),
        flush=True)
    trainer.train(progress=not args.quiet, eval_callbacks=[show],
                  callbacks=[] if args.max_seconds is None else [time_budget(args.max_seconds)])
    command = (f"rtb-lab train-amortised mnist --steps {trainer.step} "
               f"--beta-min {args.beta_min} --beta-max {args.beta_max} --seed {args.seed}"
               + (f" --per-set-batch {args.per_set_batch}" if args.per_set_batch else "")
               + (f" --lr {args.lr}" if args.lr else "")
               + (" --learn-std" if args.learn_std else "")
               + (f" --value-guided --value {Path(args.value or mnist.CHAIN_VALUE_ASSET).name}"
                  f" --init-scale {args.init_scale}" if args.value_guided else "")
               + (" --lookahead" if args.value_guided and args.lookahead else "")
               + (f" --init-from {args.init_from.name}" if args.init_from else ""))
    last = trainer.evaluations[-1] if trainer.evaluations else {}
    sha256 = mnist.save_posterior(trainer.posterior, args.out, command,
                                  {"beta_range": [args.beta_min, args.beta_max],
                                   "device": str(device), "seconds": round(trainer.seconds, 1)})
    if args.update_manifest:
        _record_asset(Path(args.out).name, sha256, command, "MNIST posterior conditioned on "
                      f"the class set (one LoRA block each) and beta in ({args.beta_min}, "
                      f"{args.beta_max})" + (", with learned value guidance (per set and "
                                             "step)" if args.value_guided else ""))
    return {"out": str(args.out), "sha256": sha256, "steps": trainer.step, **last,
            "device": str(device), "seconds": round(trainer.seconds, 2)}


def _train_amortised(args: argparse.Namespace) -> dict:
    if args.domain == "mnist":
        return _train_amortised_mnist(args)
    config = replace(toy2d_amortised.AMORTISED_CONFIG, seed=args.seed)
    if args.steps is not None:
        config = replace(config, steps=args.steps)
    beta_range = (args.beta_min, args.beta_max)
    trainer = toy2d_amortised.make_amortised_trainer(args.target, config,
                                                     beta_range=beta_range)
    trainer.train(progress=not args.quiet)
    command = (f"rtb-lab train-amortised toy2d --target {args.target} --steps {config.steps} "
               f"--beta-min {args.beta_min} --beta-max {args.beta_max} --seed {args.seed}")
    sha256 = toy2d_amortised.save_amortised(trainer.posterior, args.out, args.target,
                                            beta_range, command)
    if args.update_manifest:
        _record_asset(Path(args.out).name, sha256, command,
                      f"toy2d {args.target} posterior amortised over beta in {beta_range}")
    return {"out": str(args.out), "sha256": sha256, **trainer.evaluations[-1],
            "seconds": round(trainer.seconds, 2)}


def _compare(args: argparse.Namespace) -> dict:
    budget = args.budget
    if budget is None:
        module = evaluate
        if args.domain == "mnist":
            from rtb_lab import evaluate_mnist as module
        budget = module.FAST_BUDGET if args.fast or is_fast() else module.FULL_BUDGET
    started = time.perf_counter()
    methods = tuple(args.methods) if args.methods else None
    table = evaluate.compare(args.domain, methods, args.seeds, budget, args.target,
                             progress=None if args.quiet else print)
    print(table.to_markdown())
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "compare.csv")
        table.plot().savefig(args.out / "compare.png", dpi=120)
    return {**table.to_dict(), "seconds": round(time.perf_counter() - started, 2)}


def _amortised_defaults(args: argparse.Namespace) -> None:
    from rtb_lab.domains import mnist

    module = mnist if args.domain == "mnist" else toy2d_amortised
    low, high = module.BETA_RANGE
    args.beta_min = low if args.beta_min is None else args.beta_min
    args.beta_max = high if args.beta_max is None else args.beta_max
    if args.out is None:
        args.out = Path(mnist.CONDITIONAL_ASSET if args.domain == "mnist"
                        else toy2d_amortised.AMORTISED_ASSET)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(prog="rtb-lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    prior = sub.add_parser("train-prior", help="train a prior network and save it")
    prior.add_argument("domain", choices=DOMAINS)
    prior.add_argument("--steps", type=int, default=None,
                       help="default 6000 (toy2d) or 4000 (mnist)")
    prior.add_argument("--hidden", type=int, default=64)
    prior.add_argument("--seed", type=int, default=0)
    prior.add_argument("--out", type=Path, default=None,
                       help="default <domain>_prior.safetensors")
    prior.add_argument("--update-manifest", action="store_true",
                       help="record the file's sha256 in rtb_lab/assets/manifest.json")
    prior.set_defaults(run=_train_prior)

    classifier = sub.add_parser("train-classifier", help="train the MNIST reward classifier")
    classifier.add_argument("domain", choices=("mnist",))
    classifier.add_argument("--epochs", type=int, default=10)
    classifier.add_argument("--seed", type=int, default=0)
    classifier.add_argument("--out", type=Path, default=Path("mnist_classifier.safetensors"))
    classifier.add_argument("--update-manifest", action="store_true")
    classifier.set_defaults(run=_train_classifier)

    value = sub.add_parser("train-value", help="train the MNIST noisy classifier (the value "
                                               "h(x_t) that value-guided posteriors follow)")
    value.add_argument("domain", choices=("mnist",))
    value.add_argument("--steps", type=int, default=3000)
    value.add_argument("--lr", type=float, default=None, help="peak learning rate (default 2e-3)")
    value.add_argument("--chains", type=int, default=0,
                       help="train on the states of this many fresh prior chains per step "
                            "(the exact value of the sampling chain; a GPU job) instead of "
                            "on noised images (0, default)")
    value.add_argument("--init-from", default=None,
                       help="continue from a noisy classifier: a file, or a shipped asset "
                            "name such as mnist_value.safetensors")
    value.add_argument("--device", default=None, help="cpu, cuda or mps (default: best)")
    value.add_argument("--seed", type=int, default=0)
    value.add_argument("--out", type=Path, default=Path("mnist_value.safetensors"))
    value.add_argument("--quiet", action="store_true")
    value.add_argument("--update-manifest", action="store_true")
    value.set_defaults(run=_train_value)

    tune = sub.add_parser("finetune", help="fine-tune a posterior with RTB")
    tune.add_argument("domain", choices=DOMAINS)
    tune.add_argument("--target", default=None,
                      help=f"toy2d: one of {sorted(toy2d.TARGETS)}; mnist: even, odd, a digit "
                           "or digits like 17")
    tune.add_argument("--beta", type=float, default=None)
    tune.add_argument("--steps", type=int, default=None)
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--fast", action="store_true", help="the short CI schedule")
    tune.add_argument("--out", type=Path, default=None, help="directory for checkpoints")
    tune.add_argument("--prior", type=Path, default=None, help="a prior .safetensors file")
    tune.add_argument("--quiet", action="store_true", help="no progress bar")
    tune.set_defaults(run=_finetune)

    amortised = sub.add_parser("train-amortised",
                               help="train a posterior conditioned on beta and save it")
    amortised.add_argument("domain", choices=DOMAINS)
    amortised.add_argument("--target", default=None, help="toy2d only")
    amortised.add_argument("--steps", type=int, default=None)
    amortised.add_argument("--beta-min", type=float, default=None,
                           help="default 0.25 (toy2d), 0.5 (mnist)")
    amortised.add_argument("--beta-max", type=float, default=None,
                           help="default 4.0 (toy2d), 2.0 (mnist)")
    amortised.add_argument("--seed", type=int, default=0)
    amortised.add_argument("--out", type=Path, default=None,
                           help="default: the shipped asset's file name")
    amortised.add_argument("--update-manifest", action="store_true")
    amortised.add_argument("--device", default=None,
                           help="mnist: cpu, cuda... (default: $RTB_LAB_DEVICE, else the best)")
    amortised.add_argument("--checkpoints", type=Path, default=None,
                           help="mnist: directory for resumable checkpoints (resumes if one "
                                "is there)")
    amortised.add_argument("--per-set-batch", type=int, default=None,
                           help="mnist: trajectories per class set and step (default 64)")
    amortised.add_argument("--lr", type=float, default=None,
                           help="mnist: start learning rate (cosine to a tenth of it)")
    amortised.add_argument("--learn-std", action="store_true",
                           help="mnist: also learn a std factor per set and step")
    amortised.add_argument("--value-guided", action="store_true",
                           help="mnist: add value guidance (a noisy classifier's gradient) "
                                "with learned scales per set and step")
    amortised.add_argument("--value", default=None,
                           help="mnist: the value network of --value-guided: a file or a "
                                "shipped asset name (default: the shipped chain value)")
    amortised.add_argument("--init-scale", type=float, default=1.0,
                           help="mnist: the value guidance scales' start (default 1)")
    amortised.add_argument("--lookahead", action="store_true",
                           help="mnist: with --value-guided, shift each step's mean by the "
                                "value gradient at the prior's step mean (look-ahead)")
    amortised.add_argument("--init-from", type=Path, default=None,
                           help="mnist: start from this conditional posterior (.safetensors), "
                                "e.g. the shipped one, instead of the prior")
    amortised.add_argument("--max-seconds", type=float, default=None,
                           help="mnist: fit the run into this much training time: the "
                                "step count (and lr schedule) follows the measured speed")
    amortised.add_argument("--quiet", action="store_true")
    amortised.set_defaults(run=_train_amortised)

    comp = sub.add_parser("compare", help="RTB against the baselines at an equal budget")
    comp.add_argument("domain", help=f"one of {list(evaluate.DOMAINS)}")
    comp.add_argument("--methods", nargs="+", default=None,
                      help=f"toy2d: any of {list(evaluate.METHODS)}; mnist: rtb dps dpok")
    comp.add_argument("--seeds", type=int, default=3)
    comp.add_argument("--budget", type=int, default=None,
                      help="network evaluations per method and seed")
    comp.add_argument("--target", default=None, help="default 25to9 (toy2d), even (mnist)")
    comp.add_argument("--fast", action="store_true",
                      help="the small budget (toy2d 6M, mnist 110k network evaluations)")
    comp.add_argument("--out", type=Path, default=None, help="directory for the CSV and plot")
    comp.add_argument("--quiet", action="store_true", help="no per-run lines")
    comp.set_defaults(run=_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rtb-lab` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if getattr(args, "out", "") is None and args.command == "train-prior":
        args.out = Path(f"{args.domain}_prior.safetensors")
    if args.command == "train-amortised":
        _amortised_defaults(args)
    if getattr(args, "target", "") is None:
        args.target = DEFAULT_TARGET.get(args.domain, "25to9")
    try:
        result = args.run(args)
    except (KeyError, ValueError, RuntimeError) as error:
        print(f"rtb-lab: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
