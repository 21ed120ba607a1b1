"""RTB against DPS and DPOK on MNIST class-set rewards, at an equal evaluation budget.

The harness's rules (`rtb_lab.compare`): a counting hook on the prior's network charges
every row through it and through its copies (the LoRA posterior). RTB and DPOK train
until the budget leaves room for `final_samples()` samples (256; 64 in fast mode); DPS
needs no training and draws that many guided samples (its `evals` column shows the cost).
Metrics follow the paper's Table 2: E[log r], diversity (cosine distance of
classifier features), feature FID to real images of the target classes, plus the
share of samples classified in the target set and `kl`, KL(q || target) in nats:
the distance to the exact posterior of our own prior, log Z (from a bank of prior
samples) minus E_q[log p + beta log r - log q] over the method's own trajectories.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import lru_cache

import torch
from torch import Tensor

from rtb_lab.baselines.guidance import GuidedEps
from rtb_lab.baselines.rl import RLTrainer, rl_config
from rtb_lab.compare import DPOK_KL_WEIGHT, RL_LR, EvalCounter, RunResult, train_within
from rtb_lab.config import is_fast
from rtb_lab.diffusion import sample_trajectories
from rtb_lab.domain import MethodRunner
from rtb_lab.domains.mnist.bank import ImportanceBank
from rtb_lab.domains.mnist.evaluation import evaluate_images, target_images
from rtb_lab.domains.mnist.prior import (
    IMAGE_SHAPE,
    decode,
    load_prior,
    make_family,
    make_scheduler,
)
from rtb_lab.domains.mnist.reward import DigitClassifier, class_set_reward, load_classifier
from rtb_lab.domains.mnist.trainer import MNIST_CONFIG, ClassSetTarget, make_trainer
from rtb_lab.resample import importance_log_weights, kl_to_target

METHODS = ("rtb", "dps", "dpok")
METRICS = ("mean_log_r", "in_set", "kl", "diversity", "fid", "evals", "seconds")
PLOT_METRICS = ("mean_log_r", "in_set", "kl", "fid")
FINAL_SAMPLES, FAST_FINAL_SAMPLES = 256, 64
# One RTB step at batch 32 and T = 20 costs 4 x 640 rows; ~40 and ~200 steps.
FAST_BUDGET = 110_000
FULL_BUDGET = 520_000
DPS_SCALE = 1.0
# Prior samples behind the log Z of `kl`. At beta = 1 the weights are r <= 1, so 256
# already pin log Z of the even set to about 0.07 nats (enough for fast mode's check).
BANK_SIZE, FAST_BANK_SIZE = 4096, 256


def final_samples() -> int:
    """Samples each method is scored on: FINAL_SAMPLES, or FAST_FINAL_SAMPLES in fast mode."""
    return FAST_FINAL_SAMPLES if is_fast() else FINAL_SAMPLES


def _run_rtb(target, prior, classifier, budget, seed, counter):
    config = replace(MNIST_CONFIG, seed=seed, eval_every=0, log_z_init_samples=64)
    trainer = make_trainer(target.classes, target.beta, config, prior=prior,
                           classifier=classifier)
    return train_within(trainer, budget, counter, final_samples())


def _run_dpok(target, prior, classifier, budget, seed, counter):
    config = rl_config(replace(MNIST_CONFIG, seed=seed, lr=RL_LR, eval_every=0,
                               log_z_init_samples=64))
    trainer = make_trainer(target.classes, target.beta, config, prior=prior,
                           classifier=classifier)
    trainer = RLTrainer(trainer.prior, trainer.posterior, trainer.family,
                        trainer.log_reward_fn, IMAGE_SHAPE, trainer.config,
                        kl_weight=DPOK_KL_WEIGHT)
    return train_within(trainer, budget, counter, final_samples())


def _run_dps(target, prior, classifier, budget, seed, counter):
    log_reward = class_set_reward(classifier, target.classes)
    guided = GuidedEps(prior, log_reward, make_scheduler().alphas_cumprod, DPS_SCALE)
    traj = sample_trajectories(guided, make_family(), final_samples(), IMAGE_SHAPE,
                               generator=torch.Generator().manual_seed(seed))
    return RunResult(traj.with_log_reward(log_reward(decode(prior, traj.x))), guided, None)


RUNNERS = {"rtb": _run_rtb, "dps": _run_dps, "dpok": _run_dpok}


@lru_cache(maxsize=2)
def _bank(size: int) -> tuple[ImportanceBank, DigitClassifier]:
    """The shipped prior's bank of `size` samples (seed 0), shared by every run."""
    classifier = load_classifier()
    return ImportanceBank(load_prior(), classifier, size), classifier


def kl_to_exact(result: RunResult, prior, target: ClassSetTarget) -> float:
    """KL(q || p r^beta / Z) of a method's final trajectories, log Z from the prior bank."""
    bank, _ = _bank(FAST_BANK_SIZE if is_fast() else BANK_SIZE)
    log_w = importance_log_weights(result.policy, prior, make_family(), result.traj,
                                   target.beta, chunk_steps=5)
    return kl_to_target(log_w, bank.log_z(target.classes, target.beta))


def run_method(method: str, target: ClassSetTarget, budget: int, seed: int
               ) -> tuple[dict[str, float], Tensor]:
    """One method, one seed: (metrics, final samples [N, 1, 28, 28])."""
    torch.manual_seed(seed)
    prior, classifier = load_prior(), load_classifier()
    counter = EvalCounter()
    counter.attach(prior.unet)
    started = time.perf_counter()
    result = RUNNERS[method](target, prior, classifier, budget, seed, counter)
    with counter.paused():
        x = decode(prior, result.traj.x)
    seconds = time.perf_counter() - started
    with counter.paused():
        found = evaluate_images(x, target.classes, classifier, target_images(target.classes))
        kl = kl_to_exact(result, prior, target)
    metrics = {"mean_log_r": found["mean_log_reward"], "in_set": found["in_set"], "kl": kl,
               "diversity": found["diversity"], "fid": found["fid"],
               "evals": float(counter.count), "seconds": seconds, **result.extra}
    return metrics, x


def method_runner(method: str) -> MethodRunner:
    """``run(target, budget, seed) -> (metrics, samples)`` for `method` (the harness's form)."""
    return lambda target, budget, seed: run_method(method, target, budget, seed)
