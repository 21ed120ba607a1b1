"""Compare RTB with its baselines at an equal budget of network evaluations.

    table = compare("toy2d", seeds=3)  # any name in rtb_lab.domains.names()
    print(table.to_markdown()); table.to_csv("compare.csv"); table.plot().savefig("compare.png")

One *network evaluation* is one row passed through the prior's network or a copy of it
(B per sampling step, B*T per batched scoring pass). A counting hook on the prior's
network is inherited by every copy made from it (the posterior), so everything a method
computes is charged: RTB and RL spend the budget on training and then draw
`FINAL_SAMPLES` samples; guidance, DPS and importance sampling spend it all on
particles. Metrics are computed afterwards, uncharged.

This module is the harness only: each domain's methods live in its own
``compare.py`` and reach the harness through `rtb_lab.domain.Domain.compare_runners`.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from rtb_lab import domains
from rtb_lab.baselines.rl import RLTrainer
from rtb_lab.diffusion import PolicyNet, Trajectory
from rtb_lab.train import RTBTrainer

FINAL_SAMPLES = 2000  # samples a trained method draws at the end (domains may pass fewer)
SAMPLING_CHUNK = 4096
PROBE_SAMPLES = 64
RL_LR = 3e-4  # REINFORCE collapses even with alpha = 1 at RTB's 1e-3..3e-3 (measured)
DPOK_KL_WEIGHT = 1.0  # alpha = beta: the optimum of KL-regularised RL is the posterior


class EvalCounter:
    """Counts rows through a network (and every deep copy of it) via a forward hook."""

    def __init__(self) -> None:
        self.count = 0
        self.active = True

    def attach(self, net: nn.Module) -> None:
        """Charge every forward pass of `net` and of its later deep copies."""
        # A plain function, not a bound method: deepcopy shares functions but would copy
        # the bound method's counter, and the posterior's charges would be lost.
        net.register_forward_hook(lambda module, inputs, output: self.charge(inputs[0]))

    def charge(self, x: Tensor) -> None:
        """Add x's rows to the count unless paused."""
        if self.active:
            self.count += x.shape[0]

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Do not charge what runs inside (metrics)."""
        self.active = False
        try:
            yield
        finally:
            self.active = True


@dataclass
class RunResult:
    """What one method produced under the budget."""

    traj: Trajectory  # final samples with log r attached
    policy: PolicyNet  # the process that generated them (for the ELBO)
    log_z: float | None  # the method's own log Z estimate (None: use the ELBO)
    elbo: float | None = None  # None: computed from traj under policy and prior
    extra: dict[str, float] = field(default_factory=dict)


def spend_on_samples(draw: Callable[[int, torch.Generator], Trajectory], budget: int,
                     counter: EvalCounter, generator: torch.Generator) -> Trajectory:
    """Draw trajectories in chunks until the next one would exceed `budget`."""
    parts: list[Trajectory] = []
    per_traj = None
    while True:
        left = budget - counter.count
        # A small first chunk measures the cost of one trajectory.
        size = PROBE_SAMPLES if per_traj is None else min(SAMPLING_CHUNK, left // per_traj)
        if size <= 0:
            break
        before = counter.count
        parts.append(draw(size, generator))
        per_traj = math.ceil((counter.count - before) / size)
    if not parts:
        raise ValueError(f"budget {budget} is too small to draw a single sample")
    return Trajectory.cat(parts)


def train_within(trainer: RTBTrainer, budget: int, counter: EvalCounter,
                 final_samples: int = FINAL_SAMPLES) -> RunResult:
    """Train until the next step would leave too little for `final_samples` samples; sample."""
    final_cost = final_samples * trainer.family.num_steps
    before = counter.count
    trainer.train_step()
    step_cost = counter.count - before
    if counter.count + final_cost > budget:
        raise ValueError(f"budget {budget} is too small to train: one step costs {step_cost} "
                         f"and the final samples {final_cost} network evaluations")
    # Scale the exploration schedule to the number of steps the budget allows.
    steps = trainer.step + (budget - final_cost - counter.count) // step_cost
    trainer.config = trainer.config.with_steps(max(steps, 1))
    while counter.count + step_cost + final_cost <= budget:
        trainer.train_step()
    traj = trainer.sample(final_samples, generator=trainer.generator)
    log_z = None if isinstance(trainer, RLTrainer) else trainer.current_log_z()
    return RunResult(traj, trainer.posterior, log_z, extra={"steps": float(trainer.step)})


@dataclass
class Table:
    """Per-method, per-metric values over seeds; prints as mean ± std.

    Attributes:
        values: values[method][metric] = [one value per seed].
        budget: network evaluations each method was given.
        samples: each method's final samples for seed 0 (for side-by-side plots).
    """

    values: dict[str, dict[str, list[float]]]
    budget: int
    samples: dict[str, Tensor]  # method -> seed 0's x [N, ...]
    metrics: tuple[str, ...]  # the columns, in order
    domain: str
    plot_metrics: tuple[str, ...] = ()  # what `plot` draws (default: the first four)

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """{method: {metric: {"mean": m, "std": s}}} (std 0 for a single seed)."""
        return {method: {metric: {"mean": statistics.fmean(v),
                                  "std": statistics.stdev(v) if len(v) > 1 else 0.0}
                         for metric, v in metrics.items() if metric in self.metrics}
                for method, metrics in self.values.items()}

    def to_dict(self) -> dict:
        """A JSON-ready dict: budget, seeds and the summary."""
        seeds = len(next(iter(next(iter(self.values.values())).values())))
        return {"budget": self.budget, "seeds": seeds, "table": self.summary()}

    def to_markdown(self, digits: int = 3) -> str:
        """A markdown table, one row per method, cells "mean ± std"."""
        lines = ["| method | " + " | ".join(self.metrics) + " |",
                 "|---" * (len(self.metrics) + 1) + "|"]
        for method, metrics in self.summary().items():
            cells = [f"{metrics[m]['mean']:.{digits}g} ± {metrics[m]['std']:.2g}"
                     for m in self.metrics]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_csv(self, path: str | Path) -> Path:
        """Write method, metric_mean, metric_std columns to `path`."""
        path = Path(path)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["method"] + [f"{m}_{s}" for m in self.metrics
                                          for s in ("mean", "std")])
            for method, metrics in self.summary().items():
                writer.writerow([method] + [metrics[m][s] for m in self.metrics
                                            for s in ("mean", "std")])
        return path

    def plot(self, metrics: tuple[str, ...] | None = None):
        """A matplotlib Figure: one bar chart (mean ± std over seeds) per metric."""
        from matplotlib.figure import Figure

        if metrics is None:
            metrics = self.plot_metrics or self.metrics[:4]
        summary = self.summary()
        methods = list(summary)
        figure = Figure(figsize=(3.2 * len(metrics), 3.0), layout="constrained")
        for ax, metric in zip(figure.subplots(1, len(metrics)), metrics, strict=True):
            ax.bar(methods, [summary[m][metric]["mean"] for m in methods],
                   yerr=[summary[m][metric]["std"] for m in methods], capsize=3)
            ax.set_title(metric)
            ax.tick_params(axis="x", rotation=45)
        figure.suptitle(f"{self.domain}, {self.budget:,} network evaluations per method")
        return figure


def check_compare_args(methods: tuple[str, ...], known: dict, seeds: int, budget: int) -> None:
    """Raise KeyError for unknown methods, ValueError for seeds or budget <= 0."""
    unknown = [m for m in methods if m not in known]
    if unknown or not methods:
        raise KeyError(f"unknown method(s) {unknown}; choose from {list(known)}")
    if seeds <= 0:
        raise ValueError(f"seeds must be > 0, got {seeds}")
    if budget <= 0:
        raise ValueError(f"budget must be > 0 network evaluations, got {budget}")


def run_all(methods: tuple[str, ...], seeds: int,
            run: Callable[[str, int], tuple[dict[str, float], Tensor]],
            describe: Callable[[dict[str, float]], str],
            progress: Callable[[str], None] | None = None
            ) -> tuple[dict[str, dict[str, list[float]]], dict[str, Tensor]]:
    """Every method over seeds 0..seeds-1: (values[method][metric], seed 0's samples)."""
    values: dict[str, dict[str, list[float]]] = {}
    samples: dict[str, Tensor] = {}
    for method in methods:
        for seed in range(seeds):
            metrics, x = run(method, seed)
            samples.setdefault(method, x)
            for name, value in metrics.items():
                values.setdefault(method, {}).setdefault(name, []).append(value)
            if progress is not None:
                progress(f"{method} seed {seed}: {describe(metrics)}, "
                         f"{metrics['seconds']:.1f} s")
    return values, samples


def compare(domain: str = "toy2d", methods: tuple[str, ...] | None = None, seeds: int = 3,
            budget: int | None = None, target: str | None = None,
            progress: Callable[[str], None] | None = None) -> Table:
    """Run every method of a domain over `seeds` seeds with the same evaluation budget.

    Args:
        domain: a registered domain name (`rtb_lab.domains.names()`).
        methods: names in the domain's `methods` (default: all of them).
        seeds: number of seeds (0, 1, ..., seeds - 1).
        budget: network evaluations per method and seed (default: the domain's fast budget).
        target: a target name of the domain (default: its `default_target`).
        progress: called with a line after each run (e.g. print).

    Raises:
        KeyError: unknown domain, method or target (naming the valid choices).
        ValueError: seeds <= 0, budget <= 0, or a budget too small for a method.
    """
    found = domains.get(domain)
    runners = found.compare_runners()
    methods = found.methods if methods is None else tuple(methods)
    budget = found.budgets[0] if budget is None else budget
    check_compare_args(methods, runners, seeds, budget)
    chosen = found.make_target(target or found.default_target)
    values, samples = run_all(
        methods, seeds, lambda method, seed: runners[method](chosen, budget, seed),
        found.describe, progress)
    return Table(values, budget, samples, found.metrics, found.name, found.plot_metrics)
