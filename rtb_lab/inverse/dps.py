"""Diffusion posterior sampling (DPS, Chung et al. 2023): the standard, biased baseline.

At each step DPS takes the prior's step and then pushes the state down the gradient of
the measurement error of the prior's denoised guess:
``x_{k+1} = prior_step(x_k) - zeta * grad_{x_k} ||y - A xhat(x_k)||``. The guess
xhat replaces the expectation over x_k's futures, so DPS does not sample p(x | y) for any
zeta; zeta is tuned per task (`tune_zeta`) and RTB's exactness is measured against it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from rtb_lab.diffusion import DDPM, EulerMaruyama, TransitionFamily
from rtb_lab.inverse.measurement import MeasurementReward

Denoiser = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``denoise(net_out, x, k) -> xhat``: the prior's guess of the final state from step k."""


def denoiser(family: TransitionFamily) -> Denoiser:
    """The denoised guess of a family: DDPM's x0 estimate, or Euler-Maruyama's endpoint
    x + f (1 - t) (exact for the bridge drift the toy prior predicts)."""
    if isinstance(family, DDPM):
        return family.predict_x0
    if isinstance(family, EulerMaruyama):
        def endpoint(net_out: Tensor, x: Tensor, k: Tensor) -> Tensor:
            remaining = (1 - family.time(k)).view(-1, *([1] * (x.dim() - 1)))
            return x + net_out * remaining
        return endpoint
    raise TypeError(f"DPS needs a denoised guess for {type(family).__name__}; pass denoise=")


def dps_sample(prior: nn.Module, family: TransitionFamily, reward: MeasurementReward,
               zeta: float, batch_size: int, event_shape: tuple[int, ...], *,
               denoise: Denoiser | None = None,
               decode: Callable[[Tensor], Tensor] | None = None,
               generator: torch.Generator | None = None) -> Tensor:
    """[B, *signal] DPS samples for the observation in `reward`.

    Args:
        prior: the frozen prior network ``net(x, t, cond)``.
        family: its transition family.
        reward: the measurement (operator, y, sigma); y is shared or one per sample.
        zeta: the step size on ``||y - A xhat||`` (0: plain prior samples).
        batch_size: B.
        event_shape: shape of one diffusion state.
        denoise: the prior's guess of the signal (default: `denoiser(family)`).
        decode: maps a final state to the signal (images: the prior's x0 at end_time).
        generator: seeds the sampling noise.
    """
    if zeta < 0:
        raise ValueError(f"the DPS step size zeta must be >= 0, got {zeta}")
    denoise = denoise or denoiser(family)
    x = family.start(batch_size, event_shape, generator=generator)
    for k in range(family.num_steps):
        steps = torch.full((batch_size,), k)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            net_out = prior(x, family.time(steps), None)
            error = reward.residual(denoise(net_out, x, steps)).flatten(1).norm(dim=1)
            (grad,) = torch.autograd.grad(error.sum(), x)
        with torch.no_grad():
            x = family.sample_step(net_out.detach(), x.detach(), steps, generator=generator)
            x = x - zeta * grad
    x = x.detach()
    return decode(x) if decode is not None else x


def tune_zeta(score: Callable[[float], float], zetas: Iterable[float]
              ) -> tuple[float, dict[float, float]]:
    """The zeta with the highest `score(zeta)` (e.g. held-out PSNR, or -TV), and all scores."""
    scores = {float(z): float(score(z)) for z in zetas}
    if not scores:
        raise ValueError("tune_zeta needs at least one candidate zeta")
    return max(scores, key=scores.get), scores
