"""The control domain's shipped networks, per task (environment + data set quality).

A task's files are ``control_<env>_<quality>_<kind>.safetensors`` with kind one of
`KINDS`: the behaviour prior, IQL's Q-function and mean policy, TD3+BC's actor and the
α-amortised RTB policy; each is listed (sha256, command) in the assets manifest.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from rtb_lab.checkpoint import CheckpointError, shipped_asset
from rtb_lab.domains.control.critic import QNetwork, TanhActor, load_actor, load_q
from rtb_lab.domains.control.data import QUALITIES, load_dataset
from rtb_lab.domains.control.envs import get_spec
from rtb_lab.domains.control.policy import ControlPosterior, load_policy
from rtb_lab.domains.control.prior import ActionDenoiser, load_prior

KINDS = ("prior", "q", "iql_actor", "td3bc_actor", "policy")


def model_asset(env: str, quality: str, kind: str) -> str:
    """The shipped file name of one network of a task."""
    if kind not in KINDS:
        raise KeyError(f"unknown network kind {kind!r}; choose one of {KINDS}")
    return f"control_{env}_{quality}_{kind}.safetensors"


def parse_task(name: str) -> tuple[str, str]:
    """"pendulum-medium" -> ("pendulum", "medium"); KeyError naming the valid forms."""
    env, _, quality = name.partition("-")
    get_spec(env)
    if quality not in QUALITIES:
        raise KeyError(f"unknown task {name!r}: use ENV-QUALITY with QUALITY one of "
                       f"{list(QUALITIES)}, e.g. pendulum-medium")
    return env, quality


def has_shipped(env: str, quality: str, kind: str = "prior") -> bool:
    """Whether rtb-lab ships that network."""
    try:
        shipped_asset(model_asset(env, quality, kind))
    except CheckpointError:
        return False
    return True


def _need(env: str, quality: str, kind: str) -> str:
    if not has_shipped(env, quality, kind):
        raise KeyError(f"rtb-lab ships no {kind} for {env}-{quality}; train one with "
                       f"`rtb-lab {'train-prior' if kind == 'prior' else 'train-reward'} "
                       f"control --task {env}-{quality}` and pass its path")
    return model_asset(env, quality, kind)


def task_prior(env: str, quality: str, path: str | Path | None = None) -> ActionDenoiser:
    """The behaviour prior of a task (the shipped one unless `path`)."""
    return load_prior(path, _need(env, quality, "prior") if path is None else "")


def task_q(env: str, quality: str, path: str | Path | None = None) -> QNetwork:
    """IQL's Q-function of a task (the shipped one unless `path`)."""
    return load_q(path, _need(env, quality, "q") if path is None else "")


def task_actor(env: str, quality: str, method: str) -> TanhActor:
    """The shipped actor of an offline-RL baseline: method "iql" or "td3bc"."""
    return load_actor(None, _need(env, quality, f"{method}_actor"))


def task_policy(env: str, quality: str, prior: ActionDenoiser, q: QNetwork,
                path: str | Path | None = None) -> ControlPosterior:
    """The α-amortised RTB policy of a task on top of its prior and Q-function."""
    return load_policy(prior, q, path, _need(env, quality, "policy") if path is None else "")


def task_states(env: str, quality: str) -> Tensor:
    """The shipped data set's states [N, S] (what the RTB policy trains on)."""
    return load_dataset(env, quality).states

