"""Gaussian transition families with fixed variance.

A Gaussian family turns a network's output at (x_k, k) into the mean and standard
deviation of the step ``p(x_{k+1} | x_k)`` (see `rtb_lab.diffusion.family` for the
interface the sampler and scorer use).

Exploration inflates the variance used for *sampling* only; trajectories are then
scored under the un-inflated policy (off-policy RTB, docs/design.md).
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
from torch import Tensor

from rtb_lab.diffusion.family import TransitionFamily

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Log density of N(mean, std^2 I) at x, summed over all but the first dim.

    Args:
        x, mean: [N, *event].
        std: broadcastable to [N, *event].

    Returns:
        [N] log-probabilities.
    """
    z = (x - mean) / std
    per_dim = -0.5 * z.square() - torch.log(std) - 0.5 * LOG_2PI
    return per_dim.flatten(1).sum(1)


def _per_row(values: Tensor, like: Tensor) -> Tensor:
    """Reshape [N] values to [N, 1, ..., 1] so they broadcast against `like`."""
    return values.view(-1, *([1] * (like.dim() - 1)))


class GaussianFamily(TransitionFamily):
    """A fixed-variance Gaussian transition family with `num_steps` steps.

    Subclasses say how a network output becomes the step's mean and std (`mean_std`)
    and how exploration widens it (`explore_std`); sampling and scoring follow.
    """

    @abstractmethod
    def mean_std(self, net_out: Tensor, x: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """Mean [N, *event] and std (broadcastable) of p(x_{k+1} | x_k = x) given net_out."""

    @abstractmethod
    def explore_std(self, std: Tensor, k: Tensor, explore: float) -> Tensor:
        """The inflated std used to sample step k with exploration level `explore`."""

    def sample_step(self, net_out, x, k, *, explore=0.0, generator=None):
        mean, std = self.mean_std(net_out, x, k)
        if explore > 0:
            std = self.explore_std(std, k, explore)
        # CPU noise moved to the device: the same seed gives the same samples everywhere.
        noise = torch.randn(mean.shape, generator=generator).to(mean.device)
        return mean + std * noise

    def log_prob(self, x_next, net_out, x, k):
        return gaussian_log_prob(x_next, *self.mean_std(net_out, x, k))


class EulerMaruyama(GaussianFamily):
    """Euler-Maruyama steps of dx = f(x, t) dt + sigma dW on t in [0, 1], from x = 0.

    The paper's 2D process (PIS-style): ``x_{k+1} = x_k + f(x_k, t_k) dt + sigma sqrt(dt) eps``
    with ``dt = 1/T`` and ``t_k = k dt``; the network outputs the drift f.
    Exploration adds ``explore^2`` to the per-step variance (``explore`` is a per-step
    std, as in the official code, so 0.5 is a large perturbation next to
    ``sigma sqrt(dt)`` = 0.22).

    Args:
        num_steps: T, the number of steps.
        sigma2: diffusion coefficient sigma^2 (variance per unit time); 5.0 in the paper.
    """

    def __init__(self, num_steps: int = 100, sigma2: float = 5.0) -> None:
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if sigma2 <= 0:
            raise ValueError(f"sigma2 must be > 0, got {sigma2}")
        self.num_steps = num_steps
        self.sigma2 = sigma2
        self.dt = 1.0 / num_steps

    def time(self, k: Tensor) -> Tensor:
        return k.to(torch.get_default_dtype()) * self.dt

    def start(self, batch_size, event_shape, *, generator=None, device="cpu"):
        return torch.zeros(batch_size, *event_shape, device=device)

    def mean_std(self, net_out, x, k):
        std = x.new_tensor(math.sqrt(self.sigma2 * self.dt)).expand((1,) * x.dim())
        return x + net_out * self.dt, std

    def explore_std(self, std, k, explore):
        return torch.sqrt(std.square() + explore**2)


class DDPM(GaussianFamily):
    """Strided DDPM ancestral steps with fixed variance, for image priors.

    The network predicts the noise eps of the training-time state. Step k goes from
    training time ``tau[k]`` to ``tau[k+1]`` over T+1 descending times ``tau[0] =
    N_train - 1, ..., tau[T] = end_time``: the mean is the DDPM posterior mean
    q(x_next | x, x0_hat) and the std the fixed posterior std sqrt(beta_tilde), as in
    DDIM with eta = 1. Every step keeps a positive variance, so prior and posterior
    log-probs, and their RTB ratio, stay finite.

    Why `end_time`: the last steps of a DDPM have tiny variances (std 0.01 into
    training time 0), and a log-ratio of Gaussians with std sigma scales as
    (mean shift / sigma)^2 summed over every pixel: an invisible change of the last
    mean then dominates the RTB residual and its gradient. Ending the stochastic part
    at, say, time 50 (std ~0.13 for the last step) and mapping x_T to an image with the
    frozen prior's deterministic x0 estimate (see `predict_x0_at_end`) keeps RTB exact
    for the target p(x_T) r(decode(x_T))^beta while avoiding that ill-conditioning.
    Exploration multiplies the std by ``1 + explore``.

    Args:
        alphas_cumprod: [N_train] cumulative products of the training schedule
            (e.g. ``diffusers.DDPMScheduler(...).alphas_cumprod``).
        num_steps: number of sampling steps T (strided through the training steps).
        clip_x0: clamp the x0 estimate to [-clip_x0, clip_x0] (None: no clamp).
        end_time: training time of the final state x_T (0: the least noisy state).
    """

    def __init__(self, alphas_cumprod: Tensor, num_steps: int = 100,
                 clip_x0: float | None = 1.0, end_time: int = 0) -> None:
        n_train = alphas_cumprod.numel()
        if not 0 <= end_time < n_train - 1:
            raise ValueError(f"end_time must be in [0, {n_train - 2}], got {end_time}")
        if not 1 <= num_steps < n_train - end_time:
            raise ValueError(f"num_steps must be in [1, {n_train - end_time - 1}], "
                             f"got {num_steps}")
        self.num_steps = num_steps
        self.clip_x0 = clip_x0
        self.end_time = end_time
        self.alphas_cumprod = alphas_cumprod.double()
        # T+1 descending training times; step k starts at train_times[k].
        self.train_times = torch.linspace(n_train - 1, end_time, num_steps + 1).round().long()
        a_now = self.alphas_cumprod[self.train_times[:-1]]
        a_next = self.alphas_cumprod[self.train_times[1:]]
        self.abar_now = a_now.float()
        self.abar_next = a_next.float()
        self.beta_tilde = ((1 - a_next) / (1 - a_now) * (1 - a_now / a_next)).float()

    @staticmethod
    def linear_schedule(n_train: int = 1000, beta_start: float = 1e-4,
                        beta_end: float = 0.02) -> Tensor:
        """[n_train] alphas_cumprod of the linear beta schedule of Ho et al. (2020)."""
        betas = torch.linspace(beta_start, beta_end, n_train, dtype=torch.float64)
        return torch.cumprod(1 - betas, 0)

    def time(self, k):
        return self.train_times.to(k.device)[k].to(torch.get_default_dtype())

    def start(self, batch_size, event_shape, *, generator=None, device="cpu"):
        noise = torch.randn(batch_size, *event_shape, generator=generator)
        return noise.to(device)

    def predict_x0(self, net_out: Tensor, x: Tensor, k: Tensor) -> Tensor:
        """The clean-image estimate (x - sqrt(1 - abar) eps) / sqrt(abar), clipped."""
        a_now = _per_row(self.abar_now.to(x.device)[k], x)
        x0 = (x - torch.sqrt(1 - a_now) * net_out) / torch.sqrt(a_now)
        return x0 if self.clip_x0 is None else x0.clamp(-self.clip_x0, self.clip_x0)

    def predict_x0_at_end(self, net_out: Tensor, x: Tensor) -> Tensor:
        """The clean-image estimate from a final state x_T (at `end_time`), clipped."""
        a_end = float(self.alphas_cumprod[self.end_time])
        x0 = (x - math.sqrt(1 - a_end) * net_out) / math.sqrt(a_end)
        return x0 if self.clip_x0 is None else x0.clamp(-self.clip_x0, self.clip_x0)

    def mean_std(self, net_out, x, k):
        a_now = _per_row(self.abar_now.to(x.device)[k], x)
        a_next = _per_row(self.abar_next.to(x.device)[k], x)
        x0 = self.predict_x0(net_out, x, k)
        alpha_step = a_now / a_next
        coef_x0 = torch.sqrt(a_next) * (1 - alpha_step) / (1 - a_now)
        coef_x = torch.sqrt(alpha_step) * (1 - a_next) / (1 - a_now)
        std = torch.sqrt(_per_row(self.beta_tilde.to(x.device)[k], x))
        return coef_x0 * x0 + coef_x * x, std

    def explore_std(self, std, k, explore):
        return std * (1 + explore)
