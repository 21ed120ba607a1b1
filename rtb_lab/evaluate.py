"""Compare RTB with its baselines at an equal budget of network evaluations.

    table = compare("toy2d", seeds=3, budget=FAST_BUDGET)
    print(table.to_markdown()); table.to_csv("compare.csv"); table.plot().savefig("compare.png")

One *network evaluation* is one row passed through the prior's network or a copy of it
(B per sampling step, B*T per batched scoring pass). A counting hook on the prior's
network is inherited by every copy made from it (the posterior), so everything a method
computes is charged: RTB and RL spend the budget on training and then draw
`FINAL_SAMPLES` samples; guidance, DPS and importance sampling spend it all on
particles. Metrics are computed afterwards, uncharged.
"""

from __future__ import annotations

import csv
import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from rtb_lab.baselines.guidance import GuidedDrift
from rtb_lab.baselines.importance import importance_from_trajectories
from rtb_lab.baselines.rl import RLTrainer, rl_config
from rtb_lab.diffusion import Trajectory, sample_trajectories, trajectory_log_prob
from rtb_lab.diffusion.sampling import DriftNet
from rtb_lab.domains import toy2d
from rtb_lab.metrics import diversity, elbo, log_z_error, mean_log_reward
from rtb_lab.train import RTBTrainer, TrainConfig

METHODS = ("rtb", "guidance", "dps", "dpok", "ddpo", "importance")
DOMAINS = ("toy2d", "mnist")
METRICS = ("tv", "mass_in_modes", "modes_covered", "mean_log_r", "diversity", "log_z",
           "log_z_err", "elbo", "evals", "seconds")
PLOT_METRICS = {"toy2d": ("tv", "modes_covered", "mean_log_r", "diversity"),
                "mnist": ("mean_log_r", "in_set", "diversity", "fid")}
# Budget of RTB at batch 128 for about 150 steps (3 passes of B*T rows per step), and 5x.
FAST_BUDGET = 6_000_000
FULL_BUDGET = 30_000_000
FINAL_SAMPLES = 2000
SAMPLING_CHUNK = 4096
PROBE_SAMPLES = 64
TRAIN_BATCH = 128
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
    policy: DriftNet  # the process that generated them (for the ELBO)
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


def _run_rtb(target, prior, budget, seed, counter):
    config = TrainConfig(seed=seed, batch_size=TRAIN_BATCH, eval_every=0)
    return train_within(toy2d.make_trainer(target, config, prior=prior), budget, counter)


def _run_rl(kl_weight: float):
    def run(target, prior, budget, seed, counter):
        config = rl_config(TrainConfig(seed=seed, batch_size=TRAIN_BATCH, lr=RL_LR,
                                       eval_every=0))
        trainer = toy2d.make_trainer(target, config, prior=prior, trainer_cls=RLTrainer,
                                     kl_weight=kl_weight)
        return train_within(trainer, budget, counter)
    return run


def _run_guidance(denoise: bool):
    def run(target, prior, budget, seed, counter):
        family = toy2d.make_family()
        guided = GuidedDrift(prior, target.checked_log_reward, family.sigma2, target.beta,
                             denoise)

        def draw(n, generator):
            traj = sample_trajectories(guided, family, n, (2,), generator=generator)
            return traj.with_log_reward(target.checked_log_reward(traj.x))

        traj = spend_on_samples(draw, budget, counter, torch.Generator().manual_seed(seed))
        return RunResult(traj, guided, None)
    return run


def _run_importance(target, prior, budget, seed, counter):
    family, generator = toy2d.make_family(), torch.Generator().manual_seed(seed)

    def draw(n, gen):
        traj = sample_trajectories(prior, family, n, (2,), generator=gen)
        return traj.with_log_reward(target.checked_log_reward(traj.x))

    result = importance_from_trajectories(spend_on_samples(draw, budget, counter, generator),
                                          target.beta)
    # Resampled final states stand in for the weighted particles in the sample metrics.
    resampled = result.resample_trajectories(FINAL_SAMPLES, generator)
    # The ELBO of the proposal (the prior itself) is E_p[beta log r].
    return RunResult(resampled, prior, result.log_z,
                     float(result.log_weights.double().mean()),
                     {"ess": result.ess, "ess_fraction": result.ess_fraction})


RUNNERS = {"rtb": _run_rtb, "guidance": _run_guidance(False), "dps": _run_guidance(True),
           "dpok": _run_rl(DPOK_KL_WEIGHT), "ddpo": _run_rl(0.0), "importance": _run_importance}


def run_method(method: str, target: toy2d.Toy2DTarget, budget: int, seed: int
               ) -> dict[str, float]:
    """Run one method on a toy target within `budget` network evaluations; return metrics."""
    return run_method_with_samples(method, target, budget, seed)[0]


def run_method_with_samples(method: str, target: toy2d.Toy2DTarget, budget: int, seed: int
                            ) -> tuple[dict[str, float], Tensor]:
    """As `run_method`, also returning the method's final samples x [N, 2]."""
    torch.manual_seed(seed)
    prior = toy2d.load_prior()
    counter = EvalCounter()
    counter.attach(prior.net)
    started = time.perf_counter()
    result = RUNNERS[method](target, prior, budget, seed, counter)
    seconds = time.perf_counter() - started
    traj, lower_bound = result.traj, result.elbo
    if lower_bound is None:
        with counter.paused(), torch.no_grad():
            family = toy2d.make_family()
            scored = traj[:FINAL_SAMPLES]  # guidance keeps many more particles than this
            lower_bound = elbo(trajectory_log_prob(result.policy, family, scored),
                               trajectory_log_prob(prior, family, scored), scored.log_reward,
                               target.beta)
    log_z = lower_bound if result.log_z is None else result.log_z
    found = target.evaluate(traj.x, log_z)
    metrics = {"tv": found["tv"], "mass_in_modes": found["mass_in_modes"],
               "modes_covered": found["modes_covered"],
               "mean_log_r": mean_log_reward(traj.log_reward), "diversity": diversity(traj.x),
               "log_z": log_z, "log_z_err": log_z_error(log_z, found["log_z_true"]),
               "elbo": lower_bound, "evals": float(counter.count), "seconds": seconds,
               **result.extra}
    return metrics, traj.x


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
    samples: dict[str, Tensor] = field(default_factory=dict)  # method -> seed 0's x [N, ...]
    metrics: tuple[str, ...] = METRICS  # the columns, in order
    domain: str = "toy2d"

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
            metrics = PLOT_METRICS.get(self.domain, self.metrics[:4])
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
    """Run every method over `seeds` seeds with the same network-evaluation budget.

    Args:
        domain: "toy2d" or "mnist" (see `rtb_lab.evaluate_mnist`).
        methods: names in `METHODS` (default: all of the domain's).
        seeds: number of seeds (0, 1, ..., seeds - 1).
        budget: network evaluations per method and seed (default: the fast budget).
        target: a toy2d target name, or an MNIST class set ("even", "3", ...).
        progress: called with a line after each run (e.g. print).

    Raises:
        KeyError: unknown domain, method or target (naming the valid choices).
        ValueError: seeds <= 0, budget <= 0, or a budget too small for a method.
    """
    if domain not in DOMAINS:
        raise KeyError(f"unknown domain {domain!r}; choose one of {list(DOMAINS)}")
    if domain == "mnist":
        from rtb_lab import evaluate_mnist

        return evaluate_mnist.compare(methods, seeds, budget, target, progress)
    methods = METHODS if methods is None else methods
    budget = FAST_BUDGET if budget is None else budget
    target = target or "25to9"
    check_compare_args(methods, RUNNERS, seeds, budget)
    toy_target = toy2d.get_target(target)
    values, samples = run_all(
        methods, seeds, lambda method, seed: run_method_with_samples(method, toy_target, budget,
                                                                     seed),
        lambda metrics: f"tv {metrics['tv']:.3f}", progress)
    return Table(values, budget, samples)
