"""The 2D toy domain: Gaussian-mixture priors, rewards, and the exact posterior.

    from rtb_lab.domains import toy2d
    trainer = toy2d.finetune("25to9")         # RTB from the shipped prior
    trainer.evaluations[-1]["tv"]              # mode TV to the exact posterior

Modules: `gmm` (mixtures), `targets` (rewards and their grid truth), `prior` (the
process and the prior network), `trainer` (RTB trainers), `amortised` (one posterior
for every beta), `compare` (the baselines at an equal budget), `domain` (`DOMAIN`,
the registry entry).
"""

from rtb_lab.domains.toy2d.domain import DOMAIN
from rtb_lab.domains.toy2d.gmm import GaussianMixture, grid_mixture
from rtb_lab.domains.toy2d.prior import (
    NUM_STEPS,
    PRIOR_ASSET,
    SIGMA2,
    EndpointDrift,
    load_prior,
    make_family,
    make_prior_net,
    save_prior,
    train_prior,
)
from rtb_lab.domains.toy2d.targets import (
    NINE_WEIGHTS,
    TARGETS,
    GridTruth,
    Toy2DTarget,
    custom_target,
    get_target,
    mode_reward,
    nine_mode_weights,
    resolve_target,
)
from rtb_lab.domains.toy2d.trainer import BENCH_CONFIG, finetune, make_evaluator, make_trainer

__all__ = [
    "BENCH_CONFIG",
    "DOMAIN",
    "NINE_WEIGHTS",
    "NUM_STEPS",
    "PRIOR_ASSET",
    "SIGMA2",
    "TARGETS",
    "EndpointDrift",
    "GaussianMixture",
    "GridTruth",
    "Toy2DTarget",
    "custom_target",
    "finetune",
    "get_target",
    "grid_mixture",
    "load_prior",
    "make_evaluator",
    "make_family",
    "make_prior_net",
    "make_trainer",
    "mode_reward",
    "nine_mode_weights",
    "resolve_target",
    "save_prior",
    "train_prior",
]
