"""Small policy networks: a time-embedded MLP (PIS-style) and a zero-initialised residual.

All networks follow the call convention of `rtb_lab.diffusion`:
``net(x: [N, D], t: [N], cond: [N, C] | None) -> [N, D]``.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn


class FourierTime(nn.Module):
    """Embed t in [0, 1] with sin/cos harmonics, then a two-layer MLP."""

    def __init__(self, hidden: int, num_freqs: int = 16) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.arange(1, num_freqs + 1, dtype=torch.float32) * math.pi)
        self.mlp = nn.Sequential(nn.Linear(2 * num_freqs, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden))

    def forward(self, t: Tensor) -> Tensor:
        """[N] -> [N, hidden]."""
        angles = t[:, None] * self.freqs
        return self.mlp(torch.cat([angles.sin(), angles.cos()], -1))


class DriftMLP(nn.Module):
    """Time- (and optionally condition-) embedded MLP, as the PIS/RTB 2D policies.

    Args:
        dim: state dimension D.
        hidden: width.
        num_layers: hidden layers of the joint trunk.
        cond_dim: size C of the condition vector (0 = unconditional).
        zero_init: zero the output layer, so the net starts as the zero function.
    """

    def __init__(self, dim: int = 2, hidden: int = 64, num_layers: int = 2, cond_dim: int = 0,
                 zero_init: bool = False) -> None:
        super().__init__()
        self.dim, self.hidden, self.num_layers, self.cond_dim = dim, hidden, num_layers, cond_dim
        self.embed_x = nn.Linear(dim, hidden)
        self.embed_t = FourierTime(hidden)
        self.embed_c = nn.Linear(cond_dim, hidden) if cond_dim else None
        layers: list[nn.Module] = []
        for _ in range(num_layers):
            layers += [nn.GELU(), nn.Linear(hidden, hidden)]
        self.trunk = nn.Sequential(*layers, nn.GELU(), nn.Linear(hidden, dim))
        if zero_init:
            nn.init.zeros_(self.trunk[-1].weight)
            nn.init.zeros_(self.trunk[-1].bias)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.embed_x(x) + self.embed_t(t)
        if self.embed_c is not None:
            if cond is None:
                raise ValueError(f"this network is conditional: pass cond [N, {self.cond_dim}]")
            h = h + self.embed_c(cond)
        return self.trunk(h)

    def config(self) -> dict[str, int]:
        """Constructor arguments, saved beside the weights."""
        return {"dim": self.dim, "hidden": self.hidden, "num_layers": self.num_layers,
                "cond_dim": self.cond_dim}


class ResidualPosterior(nn.Module):
    """A posterior that starts exactly at the prior: ``base(x, t) + residual(x, t, cond)``.

    `base` is a trainable copy of the prior (or the frozen prior itself when
    ``train_base=False``, so only the residual learns); the residual's output layer is
    zero-initialised, so at step 0 the posterior equals the prior. The residual can
    take a condition (beta, a class set, ...) the prior never saw.

    Args:
        prior: the prior network (not modified).
        cond_dim: size of the condition vector fed to the residual.
        hidden: width of the residual MLP.
        train_base: fine-tune a copy of the prior too (else share the frozen prior).
    """

    def __init__(self, prior: DriftMLP, cond_dim: int = 0, hidden: int = 64,
                 train_base: bool = True) -> None:
        super().__init__()
        self.base = copy.deepcopy(prior).requires_grad_(True) if train_base else prior
        self.residual = DriftMLP(prior.dim, hidden, prior.num_layers, cond_dim, zero_init=True)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.base(x, t) + self.residual(x, t, cond)


def posterior_from_prior(prior: nn.Module) -> nn.Module:
    """A trainable copy of a frozen prior: the simplest posterior that starts at the prior."""
    return copy.deepcopy(prior).requires_grad_(True).train()
