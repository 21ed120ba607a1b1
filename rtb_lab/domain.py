"""The Domain protocol: what a domain gives the generic CLI, trainer and comparison.

A domain (toy 2D mixtures, MNIST, ...) is a subpackage of `rtb_lab.domains` that
exposes one object satisfying `Domain` and registers it by name
(`rtb_lab.domains.register`). The `rtb-lab` CLI (`finetune`, `compare` and the
domain's own commands) and `rtb_lab.compare.compare` only ever talk to that object,
so adding a domain changes nothing outside its folder. See docs/design.md,
"How to add a domain".
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from rtb_lab.diffusion import TransitionFamily
from rtb_lab.train import RTBTrainer, TrainConfig

__all__ = ["Command", "Domain", "MethodRunner", "check_domain"]

MethodRunner = Callable[[Any, int, int], tuple[dict[str, float], Tensor]]
"""``run(target, budget, seed) -> (metrics, final samples)`` for one comparison method:
it spends at most `budget` network evaluations (see `rtb_lab.compare`)."""


@dataclass(frozen=True)
class Command:
    """A domain-specific CLI command, e.g. ``rtb-lab train-prior <domain>``.

    Attributes:
        help: one line shown by ``rtb-lab <command> --help``.
        add_arguments: adds the command's options to its argparse parser.
        run: runs it on the parsed arguments; returns a JSON-ready dict (printed last).
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict]


@runtime_checkable
class Domain(Protocol):
    """What every domain provides.

    Attributes:
        name: the registry name, e.g. "toy2d" (also the CLI's domain argument).
        summary: one line for ``rtb-lab --help`` and the README's domain table.
        event_shape: shape of one sample x, e.g. (2,) or (1, 28, 28).
        default_target: the target `make_target` builds when none is named.
        target_help: what target names mean (shown by ``--help``).
        methods: the comparison methods of `compare_runners`, RTB first.
        metrics: the comparison table's columns, in order.
        plot_metrics: the columns `Table.plot` draws.
        budgets: network evaluations per method and seed: (fast, full).
    """

    name: str
    summary: str
    event_shape: tuple[int, ...]
    default_target: str
    target_help: str
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    plot_metrics: tuple[str, ...]
    budgets: tuple[int, int]

    def make_family(self) -> TransitionFamily:
        """The transition family the prior and its posteriors share."""

    def load_prior(self, path: str | Path | None = None, device: Any = "cpu") -> nn.Module:
        """The frozen prior (the shipped one when `path` is None)."""

    def make_target(self, name: str, beta: float = 1.0) -> Any:
        """The reward/target from the user's arguments; KeyError/ValueError naming the
        valid choices for an unknown name or a bad beta."""

    def train_config(self, fast: bool = False) -> TrainConfig:
        """The RTB recipe for this domain (`fast`: the short CI schedule)."""

    def make_trainer(self, target: Any, config: TrainConfig | None = None, *,
                     prior: nn.Module | None = None,
                     out_dir: str | Path | None = None) -> RTBTrainer:
        """An RTB trainer for `target`, posterior starting at the prior, with an
        evaluator whose named metrics end up in ``trainer.evaluations``."""

    def compare_runners(self) -> dict[str, MethodRunner]:
        """The comparison methods by name (keys: `methods`)."""

    def describe(self, metrics: dict[str, float]) -> str:
        """A short progress line for one comparison run, e.g. "tv 0.031"."""

    def commands(self) -> dict[str, Command]:
        """Domain-specific CLI commands by name (train-prior, train-classifier, ...)."""


_REQUIRED = ("name", "summary", "event_shape", "default_target", "target_help", "methods",
             "metrics", "plot_metrics", "budgets", "make_family", "load_prior", "make_target",
             "train_config", "make_trainer", "compare_runners", "describe", "commands")


def check_domain(domain: object) -> Domain:
    """Return `domain` if it provides the whole protocol; TypeError naming what is missing."""
    missing = [attr for attr in _REQUIRED if not hasattr(domain, attr)]
    if missing:
        raise TypeError(f"{type(domain).__name__} is not a Domain: it lacks {missing} "
                        "(see rtb_lab.domain.Domain)")
    return domain  # type: ignore[return-value]
