"""The `rtb-lab` command line: train priors and fine-tune posteriors.

    rtb-lab train-prior toy2d [--steps N] [--out FILE]
    rtb-lab finetune toy2d [--target NAME] [--beta B] [--steps N] [--seed S] [--fast] [--out DIR]
    rtb-lab train-amortised toy2d [--target NAME] [--beta-min A] [--beta-max B] [--out FILE]
    rtb-lab compare toy2d [--methods M ...] [--seeds N] [--budget E] [--fast] [--out DIR]

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
from rtb_lab.config import is_fast
from rtb_lab.domains import toy2d, toy2d_amortised
from rtb_lab.train import TrainConfig

DOMAINS = ("toy2d",)


def _record_asset(name: str, sha256: str, command: str, description: str) -> None:
    """Record a shipped file's sha256 and the command that made it in the manifest."""
    manifest_path = toy2d.assets_dir() / toy2d.MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[name] = {"sha256": sha256, "command": command, "description": description}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


def _train_prior(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    model = toy2d.train_prior(steps=args.steps, hidden=args.hidden, seed=args.seed)
    command = f"rtb-lab train-prior toy2d --steps {args.steps} --hidden {args.hidden} " \
              f"--seed {args.seed}"
    sha256 = toy2d.save_prior(model, args.out, command)
    if args.update_manifest:
        _record_asset(Path(args.out).name, sha256, command, "toy2d prior: 25-mode grid mixture")
    return {"out": str(args.out), "sha256": sha256,
            "seconds": round(time.perf_counter() - started, 2)}


def _finetune(args: argparse.Namespace) -> dict:
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


def _train_amortised(args: argparse.Namespace) -> dict:
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
        budget = evaluate.FAST_BUDGET if args.fast or is_fast() else evaluate.FULL_BUDGET
    started = time.perf_counter()
    table = evaluate.compare(args.domain, tuple(args.methods), args.seeds, budget, args.target,
                             progress=None if args.quiet else print)
    print(table.to_markdown())
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "compare.csv")
        table.plot().savefig(args.out / "compare.png", dpi=120)
    return {**table.to_dict(), "seconds": round(time.perf_counter() - started, 2)}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(prog="rtb-lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    prior = sub.add_parser("train-prior", help="train a prior network and save it")
    prior.add_argument("domain", choices=DOMAINS)
    prior.add_argument("--steps", type=int, default=6000)
    prior.add_argument("--hidden", type=int, default=64)
    prior.add_argument("--seed", type=int, default=0)
    prior.add_argument("--out", type=Path, default=Path("toy2d_prior.safetensors"))
    prior.add_argument("--update-manifest", action="store_true",
                       help="record the file's sha256 in rtb_lab/assets/manifest.json")
    prior.set_defaults(run=_train_prior)

    tune = sub.add_parser("finetune", help="fine-tune a posterior with RTB")
    tune.add_argument("domain", choices=DOMAINS)
    tune.add_argument("--target", default="25to9", help=f"one of {sorted(toy2d.TARGETS)}")
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
    amortised.add_argument("--target", default="25to9")
    amortised.add_argument("--steps", type=int, default=None)
    amortised.add_argument("--beta-min", type=float, default=toy2d_amortised.BETA_RANGE[0])
    amortised.add_argument("--beta-max", type=float, default=toy2d_amortised.BETA_RANGE[1])
    amortised.add_argument("--seed", type=int, default=0)
    amortised.add_argument("--out", type=Path,
                           default=Path(toy2d_amortised.AMORTISED_ASSET))
    amortised.add_argument("--update-manifest", action="store_true")
    amortised.add_argument("--quiet", action="store_true")
    amortised.set_defaults(run=_train_amortised)

    comp = sub.add_parser("compare", help="RTB against the baselines at an equal budget")
    comp.add_argument("domain", help=f"one of {list(evaluate.DOMAINS)}")
    comp.add_argument("--methods", nargs="+", default=list(evaluate.METHODS),
                      help=f"any of {list(evaluate.METHODS)}")
    comp.add_argument("--seeds", type=int, default=3)
    comp.add_argument("--budget", type=int, default=None,
                      help="network evaluations per method and seed")
    comp.add_argument("--target", default="25to9")
    comp.add_argument("--fast", action="store_true",
                      help=f"budget {evaluate.FAST_BUDGET:,} instead of {evaluate.FULL_BUDGET:,}")
    comp.add_argument("--out", type=Path, default=None, help="directory for the CSV and plot")
    comp.add_argument("--quiet", action="store_true", help="no per-run lines")
    comp.set_defaults(run=_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rtb-lab` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        result = args.run(args)
    except (KeyError, ValueError, RuntimeError) as error:
        print(f"rtb-lab: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
