"""The reward side of offline control: IQL's Q-function (and the offline-RL baselines'
actors), trained by d3rlpy and exported to plain torch modules shipped as safetensors.

d3rlpy (the `control` extra) trains IQL (Kostrikov et al., 2022: expectile τ = 0.7,
γ = 0.99) and TD3+BC; rtb-lab never re-implements them. Once trained, their networks
are copied into `QNetwork` and `TanhActor`, which mirror d3rlpy's layer layout (a
two-layer 256-unit ReLU MLP), so using the shipped weights needs neither d3rlpy nor
its pickles. `export_check` compares the copies with d3rlpy's own forward passes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rtb_lab.checkpoint import load_module, save_weights
from rtb_lab.domains.control.envs import import_d3rlpy
from rtb_lab.rtb import freeze

IQL = {"expectile": 0.7, "weight_temp": 3.0, "gamma": 0.99, "batch_size": 256}


def _mlp(inputs: int, outputs: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, outputs))


class QNetwork(nn.Module):
    """Q(s, a): the minimum over twin critics (IQL's pessimistic estimate).

    ``forward(states [B, S], actions [B, A] normalised to [-1, 1]) -> [B]``.
    """

    def __init__(self, state_dim: int, action_dim: int, hidden: int = 256,
                 n_critics: int = 2) -> None:
        super().__init__()
        self.state_dim, self.action_dim, self.hidden = state_dim, action_dim, hidden
        self.critics = nn.ModuleList(_mlp(state_dim + action_dim, 1, hidden)
                                     for _ in range(n_critics))

    def forward(self, states: Tensor, actions: Tensor) -> Tensor:
        if states.shape[-1] != self.state_dim or actions.shape[-1] != self.action_dim:
            raise ValueError(f"Q takes states [B, {self.state_dim}] and actions "
                             f"[B, {self.action_dim}], got {tuple(states.shape)} and "
                             f"{tuple(actions.shape)}")
        joint = torch.cat([states, actions], -1)
        return torch.stack([critic(joint)[:, 0] for critic in self.critics]).min(0).values

    def config(self) -> dict[str, int]:
        return {"state_dim": self.state_dim, "action_dim": self.action_dim,
                "hidden": self.hidden, "n_critics": len(self.critics)}


class TanhActor(nn.Module):
    """A deterministic policy a = tanh(f(s)) in [-1, 1] (IQL's mean action, TD3+BC's actor)."""

    def __init__(self, state_dim: int, action_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.state_dim, self.action_dim, self.hidden = state_dim, action_dim, hidden
        self.net = _mlp(state_dim, action_dim, hidden)

    def forward(self, states: Tensor) -> Tensor:
        return torch.tanh(self.net(states))

    def config(self) -> dict[str, int]:
        return {"state_dim": self.state_dim, "action_dim": self.action_dim,
                "hidden": self.hidden}


def _copy_mlp(target: nn.Sequential, state: dict[str, Tensor], prefix: str, head: str) -> None:
    """d3rlpy's ``{prefix}_encoder._layers.{0,2}`` and ``{prefix}{head}`` -> our layers 0, 2, 4."""
    mapping = {"0": f"{prefix}_encoder._layers.0", "2": f"{prefix}_encoder._layers.2",
               "4": f"{prefix}{head}"}
    target.load_state_dict({f"{ours}.{kind}": state[f"{theirs}.{kind}"]
                            for ours, theirs in mapping.items() for kind in ("weight", "bias")})


def _mdp_dataset(d3rlpy: Any, dataset) -> Any:
    return d3rlpy.dataset.MDPDataset(
        dataset.observations.numpy(), dataset.normalised_actions.numpy(),
        dataset.rewards.numpy(), dataset.terminals.numpy().astype(float),
        timeouts=dataset.timeouts.numpy().astype(float))


def _fit(algo: Any, d3rlpy: Any, data: Any, steps: int, progress: bool) -> None:
    with tempfile.TemporaryDirectory() as logs:  # d3rlpy writes logs; keep none
        algo.fit(data, n_steps=steps, n_steps_per_epoch=min(steps, 5000),
                 show_progress=progress, save_interval=10**9, experiment_name=logs,
                 with_timestamp=False, logger_adapter=d3rlpy.logging.NoopAdapterFactory())


def train_iql(dataset, steps: int = 20_000, seed: int = 0, progress: bool = True
              ) -> tuple[QNetwork, TanhActor]:
    """IQL on an `OfflineDataset` (normalised actions): (Q-function, IQL's mean policy)."""
    d3rlpy = import_d3rlpy()
    d3rlpy.seed(seed)
    torch.manual_seed(seed)
    algo = d3rlpy.algos.IQLConfig(**IQL).create(device="cpu")
    data = _mdp_dataset(d3rlpy, dataset)
    _fit(algo, d3rlpy, data, steps, progress)
    s, a = dataset.observations.shape[1], dataset.actions.shape[1]
    q, actor = QNetwork(s, a), TanhActor(s, a)
    q_state = algo.impl.q_function.state_dict()
    for i, critic in enumerate(q.critics):
        _copy_mlp(critic, q_state, f"{i}.", "_fc")
    _copy_mlp(actor.net, algo.impl.policy.state_dict(), "", "_mu")
    export_check(algo, q, actor, dataset)
    return freeze(q), freeze(actor)


def train_td3bc(dataset, steps: int = 20_000, seed: int = 0, progress: bool = True
                ) -> TanhActor:
    """TD3+BC (Fujimoto & Gu, 2021; d3rlpy's defaults, α = 2.5) on an `OfflineDataset`."""
    d3rlpy = import_d3rlpy()
    d3rlpy.seed(seed)
    torch.manual_seed(seed)
    algo = d3rlpy.algos.TD3PlusBCConfig(batch_size=256).create(device="cpu")
    _fit(algo, d3rlpy, _mdp_dataset(d3rlpy, dataset), steps, progress)
    actor = TanhActor(dataset.observations.shape[1], dataset.actions.shape[1])
    _copy_mlp(actor.net, algo.impl.policy.state_dict(), "", "_fc")
    export_check(algo, None, actor, dataset)
    return freeze(actor)


def export_check(algo: Any, q: QNetwork | None, actor: TanhActor, dataset,
                 tolerance: float = 1e-4) -> None:
    """Raise RuntimeError unless the exported copies reproduce d3rlpy's outputs."""
    states = dataset.observations[:64]
    actions = dataset.normalised_actions[:64]
    theirs = torch.as_tensor(algo.predict(states.numpy()))
    if (theirs - actor(states)).abs().max() > tolerance:
        raise RuntimeError("the exported actor does not match d3rlpy's predict()")
    if q is not None:
        values = torch.as_tensor(algo.predict_value(states.numpy(), actions.numpy()))
        # predict_value is the mean over critics; compare each critic through the mean
        mean = torch.stack([c(torch.cat([states, actions], -1))[:, 0] for c in q.critics])
        if (values.float() - mean.mean(0)).abs().max() > tolerance * max(1.0, float(
                values.abs().max())):
            raise RuntimeError("the exported Q-function does not match d3rlpy's predict_value()")


def save_critic(module: QNetwork | TanhActor, path: str | Path, env: str, quality: str,
                command: str) -> str:
    """Save a Q-function or an actor with what it was trained on; return its sha256."""
    return save_weights(module, path, {"arch": type(module).__name__, "env": env,
                                       "quality": quality, "command": command,
                                       **module.config()})


def load_q(path: str | Path | None = None, asset: str = "control_pendulum_medium_q.safetensors",
           device: torch.device | str = "cpu") -> QNetwork:
    """A frozen Q-function: the shipped one (`asset`), or your file."""
    def build(meta: dict) -> QNetwork:
        return QNetwork(**{k: int(meta[k]) for k in ("state_dim", "action_dim", "hidden",
                                                     "n_critics")})

    return freeze(load_module(path, asset, "QNetwork", "a Q-function", build).to(device))


def load_actor(path: str | Path | None = None,
               asset: str = "control_pendulum_medium_iql_actor.safetensors",
               device: torch.device | str = "cpu") -> TanhActor:
    """A frozen deterministic actor: a shipped one (`asset`), or your file."""
    def build(meta: dict) -> TanhActor:
        return TanhActor(**{k: int(meta[k]) for k in ("state_dim", "action_dim", "hidden")})

    return freeze(load_module(path, asset, "TanhActor", "an actor", build).to(device))
