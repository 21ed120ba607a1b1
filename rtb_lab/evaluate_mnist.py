"""RTB against DPS and DPOK on MNIST class-set rewards, at an equal evaluation budget.

The same rules as `rtb_lab.evaluate`: a counting hook on the prior's network charges
every row through it and through its copies (the LoRA posterior). RTB and DPOK train
until the budget leaves room for `FINAL_SAMPLES` samples; DPS needs no training and
draws `FINAL_SAMPLES` guided samples (its `evals` column shows what that cost).
Metrics follow the paper's Table 2: E[log r], diversity (cosine distance of
classifier features), feature FID to real images of the target classes, plus the
share of samples classified in the target set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor

from rtb_lab.baselines.guidance import GuidedEps
from rtb_lab.baselines.rl import RLTrainer, rl_config
from rtb_lab.diffusion import sample_trajectories
from rtb_lab.domains import mnist
from rtb_lab.domains.mnist_prior import (
    IMAGE_SHAPE,
    decode,
    load_prior,
    make_family,
    make_scheduler,
)
from rtb_lab.domains.mnist_reward import class_set_reward, load_classifier, parse_classes
from rtb_lab.evaluate import (
    DPOK_KL_WEIGHT,
    RL_LR,
    EvalCounter,
    RunResult,
    Table,
    check_compare_args,
    run_all,
    train_within,
)

METHODS = ("rtb", "dps", "dpok")
METRICS = ("mean_log_r", "in_set", "diversity", "fid", "evals", "seconds")
FINAL_SAMPLES = 256
# One RTB step at batch 32 and T = 20 costs 4 x 640 rows; ~40 and ~200 steps.
FAST_BUDGET = 110_000
FULL_BUDGET = 520_000
DPS_SCALE = 1.0


def _run_rtb(classes, prior, classifier, budget, seed, counter):
    config = replace(mnist.MNIST_CONFIG, seed=seed, eval_every=0, log_z_init_samples=64)
    trainer = mnist.make_trainer(classes, 1.0, config, prior=prior, classifier=classifier)
    return _train(trainer, budget, counter)


def _run_dpok(classes, prior, classifier, budget, seed, counter):
    config = rl_config(replace(mnist.MNIST_CONFIG, seed=seed, lr=RL_LR, eval_every=0,
                               log_z_init_samples=64))
    trainer = mnist.make_trainer(classes, 1.0, config, prior=prior, classifier=classifier)
    trainer = RLTrainer(trainer.prior, trainer.posterior, trainer.family,
                        trainer.log_reward_fn, IMAGE_SHAPE, trainer.config,
                        kl_weight=DPOK_KL_WEIGHT)
    return _train(trainer, budget, counter)


def _train(trainer, budget, counter) -> RunResult:
    return train_within(trainer, budget, counter, FINAL_SAMPLES)


def _run_dps(classes, prior, classifier, budget, seed, counter):
    log_reward = class_set_reward(classifier, classes)
    guided = GuidedEps(prior, log_reward, make_scheduler().alphas_cumprod, DPS_SCALE)
    traj = sample_trajectories(guided, make_family(), FINAL_SAMPLES, IMAGE_SHAPE,
                               generator=torch.Generator().manual_seed(seed))
    return RunResult(traj.with_log_reward(log_reward(decode(prior, traj.x))), guided, None)


RUNNERS = {"rtb": _run_rtb, "dps": _run_dps, "dpok": _run_dpok}


def run_method(method: str, classes: str, budget: int, seed: int
               ) -> tuple[dict[str, float], Tensor]:
    """One method, one seed: (metrics, final samples [N, 1, 28, 28])."""
    torch.manual_seed(seed)
    prior, classifier = load_prior(), load_classifier()
    counter = EvalCounter()
    counter.attach(prior.unet)
    started = time.perf_counter()
    result = RUNNERS[method](classes, prior, classifier, budget, seed, counter)
    with counter.paused():
        x = decode(prior, result.traj.x)
    seconds = time.perf_counter() - started
    found = mnist.evaluate_images(x, classes, classifier, mnist.target_images(classes))
    metrics = {"mean_log_r": found["mean_log_reward"], "in_set": found["in_set"],
               "diversity": found["diversity"], "fid": found["fid"],
               "evals": float(counter.count), "seconds": seconds, **result.extra}
    return metrics, x


def compare(methods: tuple[str, ...] | None = None, seeds: int = 1, budget: int | None = None,
            classes: str | None = None, progress: Callable[[str], None] | None = None
            ) -> Table:
    """RTB, DPS and DPOK on the MNIST reward max_{c in S} p(c | x) at beta = 1.

    Raises:
        KeyError: an unknown method. ValueError: bad seeds, budget or class set.
    """
    methods = METHODS if methods is None else tuple(methods)
    budget = FAST_BUDGET if budget is None else budget
    check_compare_args(methods, RUNNERS, seeds, budget)
    classes = classes or "even"
    parse_classes(classes)
    values, samples = run_all(
        methods, seeds, lambda method, seed: run_method(method, classes, budget, seed),
        lambda metrics: f"E[log r] {metrics['mean_log_r']:.3f}", progress)
    return Table(values, budget, samples, METRICS, "mnist")
