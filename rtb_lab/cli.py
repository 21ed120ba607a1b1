"""The `rtb-lab` command line, generic over the domain registry.

    rtb-lab finetune DOMAIN [--target NAME] [--beta B] [--steps N] [--seed S] [--fast] ...
    rtb-lab compare DOMAIN [--methods M ...] [--seeds N] [--budget E] [--fast] [--out DIR]
    rtb-lab train-prior DOMAIN ...       (and every other command a domain offers:
    rtb-lab train-amortised DOMAIN ...    ``rtb-lab COMMAND DOMAIN --help`` shows its options)

`finetune` prints progress, then one JSON object of final metrics as its last line;
`compare` prints a markdown table, then the table as one JSON object. Nothing here
knows a domain by name: each comes from `rtb_lab.domains.get`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from rtb_lab import distributed, domains
from rtb_lab.compare import compare
from rtb_lab.config import is_fast
from rtb_lab.domain import Command, Domain


def _finetune(domain: Domain, args: argparse.Namespace) -> dict:
    config = replace(domain.train_config(fast=args.fast or is_fast()), seed=args.seed)
    if args.steps is not None:
        config = config.with_steps(args.steps)
    target = domain.make_target(args.target or domain.default_target, args.beta)
    prior = domain.load_prior(args.prior) if args.prior else None
    trainer = domain.make_trainer(target, config, prior=prior, out_dir=args.out)
    trainer.train(progress=not args.quiet)
    return {**trainer.evaluations[-1], "target": args.target or domain.default_target,
            "beta": args.beta, "steps": trainer.step, "seconds": round(trainer.seconds, 2)}


def _finetune_arguments(domain: Domain, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=None,
                        help=f"{domain.target_help} (default {domain.default_target})")
    parser.add_argument("--beta", type=float, default=1.0, help="reward exponent (default 1)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="the short CI schedule")
    parser.add_argument("--out", type=Path, default=None, help="directory for checkpoints")
    parser.add_argument("--prior", type=Path, default=None, help="a prior .safetensors file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _compare(domain: Domain, args: argparse.Namespace) -> dict:
    fast_budget, full_budget = domain.budgets
    budget = args.budget if args.budget is not None else \
        fast_budget if args.fast or is_fast() else full_budget
    started = time.perf_counter()
    table = compare(domain.name, tuple(args.methods) if args.methods else None, args.seeds,
                    budget, args.target, progress=None if args.quiet else print)
    print(table.to_markdown())
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "compare.csv")
        table.plot().savefig(args.out / "compare.png", dpi=120)
    return {**table.to_dict(), "seconds": round(time.perf_counter() - started, 2)}


def _compare_arguments(domain: Domain, parser: argparse.ArgumentParser) -> None:
    fast_budget, full_budget = domain.budgets
    parser.add_argument("--methods", nargs="+", default=None,
                        help=f"any of {list(domain.methods)} (default: all)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=None,
                        help=f"network evaluations per method and seed (default {full_budget:,}"
                             f"; {fast_budget:,} with --fast)")
    parser.add_argument("--target", default=None,
                        help=f"{domain.target_help} (default {domain.default_target})")
    parser.add_argument("--fast", action="store_true", help="the small budget")
    parser.add_argument("--out", type=Path, default=None, help="directory for the CSV and plot")
    parser.add_argument("--quiet", action="store_true", help="no per-run lines")


def _generic_commands(domain: Domain) -> dict[str, Command]:
    """The commands every domain has, built from the protocol alone."""
    return {
        "finetune": Command("fine-tune a posterior with RTB",
                            lambda parser: _finetune_arguments(domain, parser),
                            lambda args: _finetune(domain, args)),
        "compare": Command("RTB against the baselines at an equal budget",
                           lambda parser: _compare_arguments(domain, parser),
                           lambda args: _compare(domain, args)),
    }


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: ``rtb-lab COMMAND DOMAIN [options]`` for every registered
    domain and every command it offers (exposed for documentation and tests)."""
    found = [domains.get(name) for name in domains.names()]
    parser = argparse.ArgumentParser(
        prog="rtb-lab", description=__doc__.splitlines()[0],
        epilog="domains: " + "; ".join(f"{d.name} ({d.summary})" for d in found))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    by_command: dict[str, dict[str, tuple[Domain, Command]]] = {}
    for domain in found:
        for name, command in {**_generic_commands(domain), **domain.commands()}.items():
            by_command.setdefault(name, {})[domain.name] = (domain, command)
    for name, offers in by_command.items():
        first = next(iter(offers.values()))[1]
        command_parser = sub.add_parser(name, help=f"{first.help} ({', '.join(offers)})")
        per_domain = command_parser.add_subparsers(dest="domain", required=True,
                                                   metavar="DOMAIN")
        for domain_name, (domain, command) in offers.items():
            domain_parser = per_domain.add_parser(domain_name, help=domain.summary,
                                                  description=command.help)
            command.add_arguments(domain_parser)
            domain_parser.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rtb-lab` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if distributed.launched():  # under torchrun every rank runs the command, data-parallel
            distributed.init_from_env()
        result = args.run(args)
    except (KeyError, ValueError, RuntimeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"rtb-lab: error: {message}", file=sys.stderr)
        return 2
    if distributed.is_main():
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
