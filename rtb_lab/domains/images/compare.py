"""RTB against DPS and DPOK on a class-set reward of an image prior, at an equal budget.

The harness's rules (`rtb_lab.compare`): a counting hook on the prior's network charges
every row through it and through its copies (the LoRA posterior). RTB and DPOK train
until the budget leaves room for `final_samples()` samples (256; 64 in fast mode); DPS
needs no training and draws that many guided samples (its `evals` column shows the cost).
Metrics follow the paper's Table 2: E[log r], diversity (cosine distance of
classifier features), feature FID to real images of the target classes, plus the
share of samples classified in the target set and `kl`, KL(q || target) in nats:
the distance to the exact posterior of our own prior, log Z (from a bank of prior
samples) minus E_q[log p + beta log r - log q] over the method's own trajectories.
A domain describes itself to the harness with an `ImageTask`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from rtb_lab.baselines.guidance import GuidedEps
from rtb_lab.baselines.rl import RLTrainer, rl_config
from rtb_lab.compare import DPOK_KL_WEIGHT, RL_LR, EvalCounter, RunResult, train_within
from rtb_lab.config import is_fast
from rtb_lab.diffusion import sample_trajectories
from rtb_lab.domain import MethodRunner
from rtb_lab.domains.images.bank import ImportanceBank
from rtb_lab.domains.images.classes import ClassSpace
from rtb_lab.domains.images.classifier import class_set_log_prob
from rtb_lab.domains.images.evaluation import evaluate_images
from rtb_lab.domains.images.prior import EpsNet, decode, make_family, make_scheduler
from rtb_lab.domains.images.trainer import ClassSetTarget, class_set_trainer
from rtb_lab.resample import importance_log_weights, kl_to_target
from rtb_lab.train import TrainConfig

METHODS = ("rtb", "dps", "dpok")
METRICS = ("mean_log_r", "in_set", "kl", "diversity", "fid", "evals", "seconds")
PLOT_METRICS = ("mean_log_r", "in_set", "kl", "fid")
FINAL_SAMPLES, FAST_FINAL_SAMPLES = 256, 64
DPS_SCALE = 1.0
# Prior samples behind the log Z of `kl`. At beta = 1 the weights are r <= 1, so 256
# already pin log Z of a set holding half the prior to about 0.07 nats (enough for
# fast mode's check).
BANK_SIZE, FAST_BANK_SIZE = 4096, 256


@dataclass(frozen=True)
class ImageTask:
    """What the image harness needs from a domain.

    Attributes:
        name: the domain's name (keys the shared bank cache).
        space: its classes.
        load_prior: the shipped prior.
        load_classifier: the shipped reward classifier.
        target_images: real images of a class set (the FID reference), [N, C, H, W].
        config: the domain's RTB configuration (DPOK derives its own from it).
    """

    name: str
    space: ClassSpace
    load_prior: Callable[[], EpsNet]
    load_classifier: Callable[[], nn.Module]
    target_images: Callable[[tuple[int, ...]], Tensor]
    config: TrainConfig


def final_samples() -> int:
    """Samples each method is scored on: FINAL_SAMPLES, or FAST_FINAL_SAMPLES in fast mode."""
    return FAST_FINAL_SAMPLES if is_fast() else FINAL_SAMPLES


def _run_rtb(task, target, prior, classifier, budget, seed, counter):
    config = replace(task.config, seed=seed, eval_every=0, log_z_init_samples=64)
    trainer = class_set_trainer(prior, classifier, target, config, space=task.space)
    return train_within(trainer, budget, counter, final_samples())


def _run_dpok(task, target, prior, classifier, budget, seed, counter):
    config = rl_config(replace(task.config, seed=seed, lr=RL_LR, eval_every=0,
                               log_z_init_samples=64))
    trainer = class_set_trainer(prior, classifier, target, config, space=task.space)
    trainer = RLTrainer(trainer.prior, trainer.posterior, trainer.family,
                        trainer.log_reward_fn, prior.image_shape, trainer.config,
                        kl_weight=DPOK_KL_WEIGHT)
    return train_within(trainer, budget, counter, final_samples())


def _run_dps(task, target, prior, classifier, budget, seed, counter):
    mask = task.space.mask(target.classes)

    def log_reward(x: Tensor) -> Tensor:
        return class_set_log_prob(classifier, x, mask)

    guided = GuidedEps(prior, log_reward, make_scheduler().alphas_cumprod, DPS_SCALE)
    traj = sample_trajectories(guided, make_family(), final_samples(), prior.image_shape,
                               generator=torch.Generator().manual_seed(seed))
    return RunResult(traj.with_log_reward(log_reward(decode(prior, traj.x))), guided, None)


RUNNERS = {"rtb": _run_rtb, "dps": _run_dps, "dpok": _run_dpok}
_BANKS: dict[tuple[str, int], ImportanceBank] = {}


def prior_bank(task: ImageTask, size: int) -> ImportanceBank:
    """The shipped prior's bank of `size` samples (seed 0), built once per process."""
    key = (task.name, size)
    if key not in _BANKS:
        _BANKS[key] = ImportanceBank(task.load_prior(), task.load_classifier(), size,
                                     space=task.space)
    return _BANKS[key]


def kl_to_exact(task: ImageTask, result: RunResult, prior: EpsNet,
                target: ClassSetTarget) -> float:
    """KL(q || p r^beta / Z) of a method's final trajectories, log Z from the prior bank."""
    bank = prior_bank(task, FAST_BANK_SIZE if is_fast() else BANK_SIZE)
    log_w = importance_log_weights(result.policy, prior, make_family(), result.traj,
                                   target.beta, chunk_steps=5)
    return kl_to_target(log_w, bank.log_z(target.classes, target.beta))


def run_method(task: ImageTask, method: str, target: ClassSetTarget, budget: int, seed: int
               ) -> tuple[dict[str, float], Tensor]:
    """One method, one seed: (metrics, final samples [N, C, H, W])."""
    torch.manual_seed(seed)
    prior, classifier = task.load_prior(), task.load_classifier()
    counter = EvalCounter()
    counter.attach(prior.unet)
    started = time.perf_counter()
    result = RUNNERS[method](task, target, prior, classifier, budget, seed, counter)
    with counter.paused():
        x = decode(prior, result.traj.x)
    seconds = time.perf_counter() - started
    with counter.paused():
        found = evaluate_images(x, target.classes, classifier,
                                task.target_images(target.classes), space=task.space)
        kl = kl_to_exact(task, result, prior, target)
    metrics = {"mean_log_r": found["mean_log_reward"], "in_set": found["in_set"], "kl": kl,
               "diversity": found["diversity"], "fid": found["fid"],
               "evals": float(counter.count), "seconds": seconds, **result.extra}
    return metrics, x


def method_runners(task: ImageTask) -> dict[str, MethodRunner]:
    """``{method: run(target, budget, seed) -> (metrics, samples)}`` (the harness's form)."""
    return {method: (lambda target, budget, seed, method=method:
                     run_method(task, method, target, budget, seed)) for method in METHODS}
