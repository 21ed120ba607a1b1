"""Quality metrics that compare samples with a known truth.

Mode metrics assign each sample to its nearest mode centre (Voronoi cells), the
same rule the grid truth uses, so sample weights and true weights are comparable.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def nearest_mode(x: Tensor, centers: Tensor) -> Tensor:
    """[N] index of the nearest centre ([K, D]) for each sample ([N, D])."""
    return torch.cdist(x.double(), centers.double()).argmin(1)


def mode_weights(x: Tensor, centers: Tensor) -> Tensor:
    """[K] fraction of samples whose nearest centre is each mode."""
    counts = torch.bincount(nearest_mode(x, centers), minlength=centers.shape[0])
    return counts.double() / x.shape[0]


def total_variation(p: Tensor, q: Tensor) -> float:
    """0.5 * sum |p - q| between two discrete distributions over the same cells."""
    return 0.5 * float((p.double() - q.double()).abs().sum())


def mass_in_modes(x: Tensor, centers: Tensor, radius: float) -> float:
    """Fraction of samples within `radius` of one of `centers` ([K, D])."""
    if centers.numel() == 0:
        return 0.0
    return float((torch.cdist(x.double(), centers.double()).min(1).values <= radius)
                 .double().mean())


def modes_covered(x: Tensor, centers: Tensor, radius: float, min_fraction: float) -> int:
    """Number of centres holding at least `min_fraction` of samples within `radius`."""
    close = torch.cdist(x.double(), centers.double()) <= radius  # [N, K]
    return int((close.double().mean(0) >= min_fraction).sum())


def mean_log_reward(log_reward: Tensor) -> float:
    """E[log r] over samples."""
    return float(log_reward.double().mean())


def log_z_error(log_z: float, log_z_true: float) -> float:
    """Absolute error of a log-partition estimate."""
    return abs(log_z - log_z_true) if math.isfinite(log_z) else float("inf")


def diversity(x: Tensor, max_samples: int = 1000) -> float:
    """Mean pairwise Euclidean distance among (the first `max_samples` of) x [N, *event]."""
    points = x[:max_samples].flatten(1).double()
    return float(torch.pdist(points).mean()) if points.shape[0] > 1 else 0.0


def elbo(log_pf_post: Tensor, log_pf_prior: Tensor, log_reward: Tensor,
         beta: float | Tensor) -> float:
    """E_q[log p(tau) + beta log r(x) - log q(tau)] over q's trajectories ([B] each).

    A lower bound on log Z = log E_p[r^beta], tight exactly when q is the posterior.
    """
    return float((log_pf_prior + beta * log_reward - log_pf_post).double().mean())


def cosine_diversity(features: Tensor, max_samples: int = 1000) -> float:
    """Mean pairwise cosine distance 1 - cos(f_i, f_j) among feature vectors [N, D].

    The paper's image diversity measure (on classifier features); 0 when all agree.
    """
    f = torch.nn.functional.normalize(features[:max_samples].double(), dim=1)
    n = f.shape[0]
    if n < 2:
        return 0.0
    similarity = f @ f.T
    return float(1 - (similarity.sum() - similarity.diagonal().sum()) / (n * (n - 1)))


def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N, D], [M, D].

    ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2): FID when the
    features come from an image classifier (here our MNIST classifier, not Inception).
    """
    a, b = features_a.double(), features_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    vals, vecs = torch.linalg.eigh(cov_a)
    root_a = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)
