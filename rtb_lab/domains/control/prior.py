"""The diffusion behaviour prior μ(a | s): a state-conditioned DDPM over normalised actions.

Actions are divided by the environment's bound, so they live in [-1, 1] (the clean
estimate is clipped there, as images are clipped to their range). The network is the
RTB 2D policies' time-embedded MLP (`rtb_lab.nets.DriftMLP`) with the state as its
condition, predicting the noise ε of the training-time state. Sampling takes 20 strided
DDPM steps (the official code takes 75; on 2 CPU cores 20 keeps rollouts and RTB fast:
docs/control.md has the trade-off) from training time 999 to `END_TIME`, and the action
is the prior's deterministic clean estimate from there (as for the image priors, this
keeps the last step's variance, and so the RTB ratio, well conditioned).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from rtb_lab.checkpoint import load_module, save_weights
from rtb_lab.diffusion import DDPM
from rtb_lab.fitting import fit_minibatches
from rtb_lab.nets import DriftMLP
from rtb_lab.rtb import freeze

N_TRAIN = 1000
NUM_STEPS = 20
END_TIME = 20


class ActionDenoiser(nn.Module):
    """ε(a_t, t, s): the noise in a noised normalised action a_t [N, A] at training time
    t [N] (0..N_TRAIN-1), given raw states s [N, S] (standardised inside with the data
    set's statistics, stored as buffers so a saved prior is self-contained)."""

    def __init__(self, state_dim: int, action_dim: int, hidden: int = 128, num_layers: int = 3,
                 state_mean: Tensor | None = None, state_std: Tensor | None = None) -> None:
        super().__init__()
        self.state_dim, self.action_dim = state_dim, action_dim
        self.net = DriftMLP(action_dim, hidden, num_layers, cond_dim=state_dim)
        self.register_buffer("state_mean", torch.zeros(state_dim) if state_mean is None
                             else state_mean.float().clone())
        self.register_buffer("state_std", torch.ones(state_dim) if state_std is None
                             else state_std.float().clamp_min(1e-3).clone())

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is None or cond.shape[-1] < self.state_dim:
            raise ValueError(f"the behaviour prior needs the state: cond [N, {self.state_dim}]")
        state = (cond[:, :self.state_dim] - self.state_mean) / self.state_std
        return self.net(x, t.float() / N_TRAIN, state)

    def config(self) -> dict[str, int]:
        """Constructor arguments, saved beside the weights."""
        return {"state_dim": self.state_dim, "action_dim": self.action_dim,
                "hidden": self.net.hidden, "num_layers": self.net.num_layers}


def make_family(num_steps: int = NUM_STEPS, end_time: int = END_TIME) -> DDPM:
    """The strided DDPM transitions of the prior and its posteriors (999 -> end_time)."""
    return DDPM(DDPM.linear_schedule(N_TRAIN), num_steps=num_steps, end_time=end_time)


def decode(prior: nn.Module, x: Tensor, states: Tensor, end_time: int = END_TIME) -> Tensor:
    """Normalised actions [B, A] in [-1, 1] from final states x_T [B, A]: the frozen
    prior's clean estimate at `end_time` (no gradient flows into the prior)."""
    t = torch.full((x.shape[0],), float(end_time), device=x.device)
    return make_family(1, end_time).predict_x0_at_end(prior(x, t, states), x)


def denoising_loss(net: ActionDenoiser, actions: Tensor, states: Tensor,
                   generator: torch.Generator) -> Tensor:
    """ε-prediction loss of normalised actions [B, A] at uniform training times."""
    alphas_cumprod = DDPM.linear_schedule(N_TRAIN).float()
    t = torch.randint(N_TRAIN, (actions.shape[0],), generator=generator)
    noise = torch.randn(actions.shape, generator=generator)
    abar = alphas_cumprod[t].view(-1, 1)
    noised = abar.sqrt() * actions + (1 - abar).sqrt() * noise
    return nn.functional.mse_loss(net(noised, t.float(), states), noise)


def train_behaviour_prior(states: Tensor, actions: Tensor, *, steps: int = 20_000,
                          batch_size: int = 256, lr: float = 1e-3, hidden: int = 128,
                          num_layers: int = 3, seed: int = 0,
                          progress: bool = True) -> ActionDenoiser:
    """Fit μ(a | s) to a data set's states [N, S] and normalised actions [N, A] in [-1, 1];
    returned frozen. Ctrl-C stops early and keeps what was trained."""
    if states.shape[0] != actions.shape[0] or states.dim() != 2 or actions.dim() != 2:
        raise ValueError(f"states [N, S] and actions [N, A] must have the same N, got "
                         f"{tuple(states.shape)} and {tuple(actions.shape)}")
    if actions.abs().max() > 1 + 1e-6:
        raise ValueError("actions must be normalised to [-1, 1] (divide by the env's bound)")
    torch.manual_seed(seed)
    net = ActionDenoiser(states.shape[1], actions.shape[1], hidden, num_layers,
                         states.mean(0), states.std(0))

    def loss_fn(index: Tensor, generator: torch.Generator) -> Tensor:
        return denoising_loss(net, actions[index], states[index], generator)

    return fit_minibatches(net, loss_fn, states.shape[0], steps, batch_size, lr, seed,
                           "behaviour prior", progress)


def save_prior(net: ActionDenoiser, path: str | Path, env: str, quality: str,
               command: str) -> str:
    """Save a behaviour prior with what it was trained on; return its sha256."""
    return save_weights(net, path, {"arch": "ActionDenoiser", "env": env, "quality": quality,
                                    "command": command, **net.config()})


def load_prior(path: str | Path | None = None,
               asset: str = "control_pendulum_medium_prior.safetensors",
               device: torch.device | str = "cpu") -> ActionDenoiser:
    """A frozen behaviour prior: the shipped one (`asset`), or your file."""
    def build(meta: dict) -> ActionDenoiser:
        keys = ("state_dim", "action_dim", "hidden", "num_layers")
        return ActionDenoiser(**{k: int(meta[k]) for k in keys})

    return freeze(load_module(path, asset, "ActionDenoiser", "a behaviour prior",
                              build).to(device))
