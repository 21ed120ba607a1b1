"""The measurement likelihood as an RTB reward: r(x) = N(y; A x, sigma^2 I).

With this reward and beta = 1, RTB's target p(x) r(x) is the Bayesian posterior
p(x | y), and its normaliser Z = E_p[r] is the evidence p(y): the learned log Z of an
inverse problem is the log marginal likelihood of the observation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rtb_lab.inverse.operators import LinearOperator


def check_noise(sigma: float) -> float:
    """sigma as a float, or ValueError unless it is finite and > 0."""
    sigma = float(sigma)
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"the measurement noise sigma must be a finite number > 0, got {sigma}")
    return sigma


def measure(operator: LinearOperator, x: Tensor, sigma: float,
            generator: torch.Generator | None = None) -> Tensor:
    """Observe x [B, *in_shape]: y = A x + sigma * eps, [B, *out_shape] (seeded noise)."""
    sigma = check_noise(sigma)
    clean = operator.forward(x)
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype).to(clean.device)
    return clean + sigma * noise


class MeasurementReward:
    """``log r(x) = log N(y; A x, sigma^2 I)``, i.e.
    ``-||y - A x||^2 / (2 sigma^2) - (m / 2) log(2 pi sigma^2)`` for m measured values.

    Callable on x [B, *in_shape] -> [B]. The constant makes log Z the log evidence.

    Args:
        operator: the degradation A.
        y: one observation [*out_shape] (shared by the batch), or one per sample
            [B, *out_shape] (amortised training: each x has its own y).
        sigma: the noise standard deviation (> 0).
    """

    def __init__(self, operator: LinearOperator, y: Tensor, sigma: float) -> None:
        self.operator, self.sigma = operator, check_noise(sigma)
        shape = operator.out_shape
        if tuple(y.shape) == shape:
            y = y.unsqueeze(0)
        elif y.dim() != len(shape) + 1 or tuple(y.shape[1:]) != shape:
            raise ValueError(f"the observation y must have shape {list(shape)} or "
                             f"[B, {', '.join(map(str, shape))}] for {operator!r}, got "
                             f"{list(y.shape)}")
        if not torch.isfinite(y).all():
            raise ValueError("the observation y contains NaN or inf")
        self.y = y
        self.log_norm = -0.5 * operator.out_size * math.log(2 * math.pi * self.sigma ** 2)

    def residual(self, x: Tensor) -> Tensor:
        """[B, *out_shape] y - A x."""
        ax = self.operator.forward(x)
        if self.y.shape[0] not in (1, ax.shape[0]):
            raise ValueError(f"{self.y.shape[0]} observations for a batch of {ax.shape[0]} "
                             "samples: give one y, or one per sample")
        return self.y.to(ax) - ax

    def __call__(self, x: Tensor) -> Tensor:
        squared = self.residual(x).flatten(1).square().sum(1)
        return -squared / (2 * self.sigma ** 2) + self.log_norm

    def relative_residual(self, x: Tensor) -> Tensor:
        """[B] ||y - A x|| / (sigma sqrt(m)): about 1 for samples consistent with y."""
        norm = self.residual(x).flatten(1).norm(dim=1)
        return norm / (self.sigma * math.sqrt(self.operator.out_size))
