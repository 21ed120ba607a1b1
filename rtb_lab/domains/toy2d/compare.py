"""The 2D toy's comparison methods: RTB, guidance, DPS, DPOK, DDPO and importance sampling.

Each runs within the harness's budget of network evaluations (`rtb_lab.compare`) and
is scored against the exact posterior on the grid (TV, modes, log Z error).
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from rtb_lab.baselines.guidance import GuidedDrift
from rtb_lab.baselines.importance import importance_from_trajectories
from rtb_lab.baselines.rl import RLTrainer, rl_config
from rtb_lab.compare import (
    DPOK_KL_WEIGHT,
    FINAL_SAMPLES,
    RL_LR,
    EvalCounter,
    RunResult,
    spend_on_samples,
    train_within,
)
from rtb_lab.diffusion import sample_trajectories, trajectory_log_prob
from rtb_lab.domain import MethodRunner
from rtb_lab.domains.toy2d.prior import load_prior, make_family
from rtb_lab.domains.toy2d.targets import Toy2DTarget
from rtb_lab.domains.toy2d.trainer import make_trainer
from rtb_lab.metrics import diversity, elbo, log_z_error, mean_log_reward
from rtb_lab.train import TrainConfig

METHODS = ("rtb", "guidance", "dps", "dpok", "ddpo", "importance")
METRICS = ("tv", "mass_in_modes", "modes_covered", "mean_log_r", "diversity", "log_z",
           "log_z_err", "elbo", "evals", "seconds")
PLOT_METRICS = ("tv", "modes_covered", "mean_log_r", "diversity")
# Budget of RTB at batch 128 for about 150 steps (3 passes of B*T rows per step), and 5x.
FAST_BUDGET = 6_000_000
FULL_BUDGET = 30_000_000
TRAIN_BATCH = 128


def _run_rtb(target, prior, budget, seed, counter):
    config = TrainConfig(seed=seed, batch_size=TRAIN_BATCH, eval_every=0)
    return train_within(make_trainer(target, config, prior=prior), budget, counter)


def _run_rl(kl_weight: float):
    def run(target, prior, budget, seed, counter):
        config = rl_config(TrainConfig(seed=seed, batch_size=TRAIN_BATCH, lr=RL_LR,
                                       eval_every=0))
        trainer = make_trainer(target, config, prior=prior, trainer_cls=RLTrainer,
                                     kl_weight=kl_weight)
        return train_within(trainer, budget, counter)
    return run


def _run_guidance(denoise: bool):
    def run(target, prior, budget, seed, counter):
        family = make_family()
        guided = GuidedDrift(prior, target.checked_log_reward, family.sigma2, target.beta,
                             denoise)

        def draw(n, generator):
            traj = sample_trajectories(guided, family, n, (2,), generator=generator)
            return traj.with_log_reward(target.checked_log_reward(traj.x))

        traj = spend_on_samples(draw, budget, counter, torch.Generator().manual_seed(seed))
        return RunResult(traj, guided, None)
    return run


def _run_importance(target, prior, budget, seed, counter):
    family, generator = make_family(), torch.Generator().manual_seed(seed)

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


def run_method_with_samples(method: str, target: Toy2DTarget, budget: int, seed: int
                            ) -> tuple[dict[str, float], Tensor]:
    """As `run_method`, also returning the method's final samples x [N, 2]."""
    torch.manual_seed(seed)
    prior = load_prior()
    counter = EvalCounter()
    counter.attach(prior.net)
    started = time.perf_counter()
    result = RUNNERS[method](target, prior, budget, seed, counter)
    seconds = time.perf_counter() - started
    traj, lower_bound = result.traj, result.elbo
    if lower_bound is None:
        with counter.paused(), torch.no_grad():
            family = make_family()
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


def method_runner(method: str) -> MethodRunner:
    """``run(target, budget, seed) -> (metrics, samples)`` for `method` (the harness's form)."""
    return lambda target, budget, seed: run_method_with_samples(method, target, budget, seed)
