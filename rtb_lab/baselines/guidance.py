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


class GuidedEps(nn.Module):
    """DPS for DDPM priors: the prior's noise prediction, shifted by the reward gradient.

    With x0_hat(x_t) = (x_t - sqrt(1 - abar_t) eps(x_t)) / sqrt(abar_t), the guided noise
    is ``eps - scale * sqrt(1 - abar_t) * grad_x log r(x0_hat(x_t))``, the gradient taken
    through the prior's network (Chung et al., 2023). Same bias as `GuidedDrift`: the
    reward of a point estimate replaces the expectation over the futures of x_t.

    Args:
        prior: the prior noise network ``eps(x, t)`` at training times t.
        log_reward: ``log_r(x [B, C, H, W]) -> [B]``, differentiable; with
            ``conditional=True``, ``log_r(x, cond)`` (e.g. a Q-function of the state).
        alphas_cumprod: [N_train] of the prior's training schedule.
        scale: guidance strength zeta.
    """

    def __init__(self, prior: nn.Module, log_reward: Callable[..., Tensor],
                 alphas_cumprod: Tensor, scale: float = 1.0, *, conditional: bool = False) -> None:
        super().__init__()
        self.prior, self.log_reward, self.scale = prior, log_reward, scale
        self.conditional = conditional
        self.register_buffer("alphas_cumprod", alphas_cumprod.float())

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        abar = self.alphas_cumprod[t.long()].view(-1, *([1] * (x.dim() - 1)))
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            eps = self.prior(x, t, cond)
            x0 = ((x - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1, 1)
            log_r = self.log_reward(x0, cond) if self.conditional else self.log_reward(x0)
            (grad,) = torch.autograd.grad(log_r.sum(), x)
        return eps.detach() - self.scale * (1 - abar).sqrt() * grad
