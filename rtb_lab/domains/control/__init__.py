"""Offline RL on control tasks: a diffusion behaviour prior mu(a | s) fitted to an offline
data set, an IQL Q-function, and RTB sampling pi(a | s) ∝ mu(a | s) exp(Q(s, a) / alpha)
(docs/control.md).

Environments in `envs`, offline data sets (shipped, D4RL and Minari files) in `data`,
generating D4RL-style data sets with an online SAC in `datagen`; the prior in `prior`,
the Q-function and baseline actors (d3rlpy, exported to torch) in `critic`, the RTB
policy and the exact pi* bank in `policy`, rollouts in `rollout`.

gymnasium and d3rlpy (the `control` extra) are imported only when a function needs them.
"""

from rtb_lab.domains.control.critic import QNetwork, TanhActor, load_actor, load_q
from rtb_lab.domains.control.data import (
    QUALITIES,
    OfflineDataset,
    load_d4rl_hdf5,
    load_dataset,
    load_minari,
    load_npz,
)
from rtb_lab.domains.control.domain import DOMAIN, ControlDomain, make_task
from rtb_lab.domains.control.envs import EnvSpec, get_spec, make_env
from rtb_lab.domains.control.policy import (
    ALPHA_RANGE,
    POLICY_CONFIG,
    BankPosterior,
    ControlPosterior,
    bank_posterior,
    make_policy_trainer,
    policy_condition,
    sample_actions,
)
from rtb_lab.domains.control.prior import ActionDenoiser, load_prior, train_behaviour_prior
from rtb_lab.domains.control.rollout import Rollouts, rollout

__all__ = ["ALPHA_RANGE", "DOMAIN", "POLICY_CONFIG", "QUALITIES", "ActionDenoiser",
           "BankPosterior", "ControlDomain", "ControlPosterior", "EnvSpec", "OfflineDataset",
           "QNetwork", "Rollouts", "TanhActor", "bank_posterior", "get_spec", "load_actor",
           "load_d4rl_hdf5", "load_dataset", "load_minari", "load_npz", "load_prior",
           "load_q", "make_env", "make_policy_trainer", "make_task", "policy_condition",
           "rollout", "sample_actions", "train_behaviour_prior"]
