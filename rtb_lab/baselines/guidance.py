"""Classifier guidance: add the reward's gradient to the prior's drift (biased).

Guidance samples from the prior's process with drift ``f(x, t) + zeta sigma^2 grad log r``.
It is cheap and needs no training, but the reward is evaluated at the *noisy*
state (or at a denoised guess, DPS-style) rather than integrated over the futures of
x_t, so its samples do not follow p(x) r(x)^beta: the 2D tutorial measures the gap.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from rtb_lab.diffusion import GaussianFamily, Trajectory, sample_trajectories


class GuidedDrift(nn.Module):
    """Prior drift plus ``scale * sigma2 * grad_x log r(point)``.

    Args:
        prior: the prior drift network.
        log_reward: ``log_r(x: [B, D]) -> [B]``, differentiable.
        sigma2: the family's diffusion coefficient (turns a score into a drift).
        scale: guidance strength zeta (the reward exponent beta in the naive recipe).
        denoise: evaluate the reward at the prior's endpoint guess ``prior.net(x, t)``
            (DPS-style) instead of at the noisy state x itself.
    """

    def __init__(self, prior: nn.Module, log_reward: Callable[[Tensor], Tensor], sigma2: float,
                 scale: float = 1.0, denoise: bool = False) -> None:
        super().__init__()
        self.prior, self.log_reward = prior, log_reward
        self.sigma2, self.scale, self.denoise = sigma2, scale, denoise

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            point = self.prior.net(x, t) if self.denoise else x
            (grad,) = torch.autograd.grad(self.log_reward(point).sum(), x)
        return self.prior(x.detach(), t, cond) + self.scale * self.sigma2 * grad


def sample_guided(prior: nn.Module, family: GaussianFamily, log_reward: Callable[[Tensor], Tensor],
                  batch_size: int, *, scale: float = 1.0, denoise: bool = False,
                  generator: torch.Generator | None = None) -> Trajectory:
    """Trajectories of the guided process (family must expose `sigma2`, e.g. EulerMaruyama)."""
    guided = GuidedDrift(prior, log_reward, family.sigma2, scale, denoise)
    return sample_trajectories(guided, family, batch_size, (2,), generator=generator)
