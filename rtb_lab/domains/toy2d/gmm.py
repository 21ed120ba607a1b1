"""Gaussian mixtures in 2D: densities, samples, and the exact bridge drift.

The Foellmer (bridge) drift of a mixture is what the toy prior network learns:
the process dx = f dt + sigma dW from x = 0 whose time-1 marginal is the mixture
has ``f(x, t) = (E[X_1 | X_t = x] - x) / (1 - t)``, and given component i the
pair (X_t, X_1) is jointly Gaussian, so E[X_1 | X_t] is available in closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class GaussianMixture:
    """An isotropic Gaussian mixture in D dimensions.

    Attributes:
        means: [K, D] component means.
        stds: [K] component standard deviations.
        weights: [K] mixture weights (normalised on construction).
    """

    means: Tensor
    stds: Tensor
    weights: Tensor

    def __post_init__(self) -> None:
        self.means = torch.as_tensor(self.means, dtype=torch.float64)
        k = self.means.shape[0]
        self.stds = torch.as_tensor(self.stds, dtype=torch.float64).expand(k).clone()
        weights = torch.as_tensor(self.weights, dtype=torch.float64).expand(k).clone()
        if self.means.dim() != 2:
            raise ValueError(f"means must be [K, D], got {tuple(self.means.shape)}")
        if (weights < 0).any() or weights.sum() <= 0 or (self.stds <= 0).any():
            raise ValueError("mixture weights must be >= 0 (not all 0) and stds > 0")
        self.weights = weights / weights.sum()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def component_log_probs(self, x: Tensor) -> Tensor:
        """[N, K] log w_k + log N(x; mu_k, s_k^2 I)."""
        x = x.double()
        sq = torch.cdist(x, self.means).square()
        var = self.stds.square()
        log_norm = -0.5 * self.dim * torch.log(2 * math.pi * var)
        return self.weights.log() + log_norm - 0.5 * sq / var

    def log_prob(self, x: Tensor) -> Tensor:
        """[N] log density at x ([N, D]), in x's dtype."""
        return torch.logsumexp(self.component_log_probs(x), 1).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """[n, D] float32 samples."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[comp] + self.stds[comp, None] * noise).float()

    def bridge_endpoint(self, x: Tensor, t: Tensor, sigma2: float) -> Tensor:
        """[N, D] E[X_1 | X_t = x] for the Brownian bridge from 0 (diffusion sigma2).

        Given component i: X_t ~ N(t mu_i, v_i), v_i = t^2 s_i^2 + sigma2 t (1 - t), and
        E[X_1 | X_t = x, i] = mu_i + (t s_i^2 / v_i)(x - t mu_i).
        """
        x, t = x.double(), t.double().clamp_min(1e-6)[:, None]  # [N, D], [N, 1]
        var = self.stds.square()  # [K]
        v = t.square() * var + sigma2 * t * (1 - t)  # [N, K]
        centred = x[:, None, :] - t[:, :, None] * self.means  # [N, K, D]
        log_resp = self.weights.log() - 0.5 * self.dim * torch.log(v) \
            - 0.5 * centred.square().sum(-1) / v
        resp = torch.softmax(log_resp, 1)  # [N, K]
        endpoint = self.means + (t * var / v)[..., None] * centred  # [N, K, D]
        return (resp[..., None] * endpoint).sum(1).float()

    def bridge_marginal_sample(self, t: Tensor, sigma2: float,
                               generator: torch.Generator | None = None) -> Tensor:
        """[N, D] samples of X_t = t X_1 + sqrt(sigma2 t (1-t)) xi with X_1 from the mixture."""
        x1 = self.sample(t.shape[0], generator)
        noise = torch.randn(x1.shape, generator=generator)
        return t[:, None] * x1 + torch.sqrt(sigma2 * t * (1 - t))[:, None] * noise


def grid_mixture(values: tuple[float, ...] = (-10, -5, 0, 5, 10), variance: float = 0.3,
                 weights: Tensor | None = None) -> GaussianMixture:
    """Mixture with one component at every point of values x values (row-major)."""
    v = torch.tensor(values, dtype=torch.float64)
    means = torch.cartesian_prod(v, v)
    k = means.shape[0]
    return GaussianMixture(means, math.sqrt(variance), weights if weights is not None
                           else torch.ones(k))
