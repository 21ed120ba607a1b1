"""The 2D toy targets: Gaussian-mixture priors, rewards, and the exact posterior.

Everything is known here, so every run reports its gap to the truth:

* `Toy2DTarget` pairs a mixture prior with a reward ``log_r(x: [B, 2]) -> [B]`` and
  beta; `Toy2DTarget.truth()` integrates p(x) r(x)^beta on a grid for the normalised
  posterior density, log Z = log E_p[r^beta] and the posterior weight of each mode.
* `TARGETS` maps names to factories (the paper's "25to9" and two didactic rewards);
  `get_target(name)` builds one; `custom_target` wraps any prior and reward.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from rtb_lab.domains.toy2d.gmm import GaussianMixture, grid_mixture
from rtb_lab.metrics import mass_in_modes, mode_weights, modes_covered, total_variation
from rtb_lab.rtb import check_beta, check_log_reward

NINE_WEIGHTS = (4, 10, 4, 5, 10, 5, 4, 15, 4)


@dataclass
class GridTruth:
    """The exact posterior on a square grid.

    Attributes:
        axis: [G] grid coordinates (same for x and y).
        density: [G, G] normalised posterior density, indexed [ix, iy].
        log_z: log E_p[r^beta].
        mode_weights: [K] posterior mass in each prior mode's Voronoi cell.
        centers: [K, 2] mode centres (the prior's component means).
    """

    axis: Tensor
    density: Tensor
    log_z: float
    mode_weights: Tensor
    centers: Tensor

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """[n, 2] exact posterior samples: grid cells drawn by mass, jittered within the cell."""
        mass = self.density.flatten()
        cell = torch.multinomial(mass / mass.sum(), n, replacement=True, generator=generator)
        step = float(self.axis[1] - self.axis[0])
        size = self.axis.numel()
        xy = torch.stack([self.axis[cell // size], self.axis[cell % size]], 1)
        jitter = (torch.rand(n, 2, generator=generator, dtype=xy.dtype) - 0.5) * step
        return (xy + jitter).float()

    def marginal_tv(self, x: Tensor, dim: int = 0, cells_per_bin: int = 5) -> float:
        """Total variation between the histogram of x[:, dim] and the exact marginal.

        Bins are groups of `cells_per_bin` grid cells (about 0.27 wide on the default
        grid), so the exact bin masses are sums of whole cells. Finer than the mode
        weights: it also sees where within a mode the mass sits.
        """
        cell_mass = self.density.sum(1 - dim) * float(self.axis[1] - self.axis[0]) ** 2
        size = cell_mass.numel() // cells_per_bin * cells_per_bin
        exact = cell_mass[:size].view(-1, cells_per_bin).sum(1)
        half = float(self.axis[1] - self.axis[0]) / 2
        edges = torch.cat([self.axis[:size:cells_per_bin] - half,
                           self.axis[size - 1:size] + half])
        index = torch.bucketize(x[:, dim].detach().cpu().double(), edges, right=True) - 1
        inside = (index >= 0) & (index < exact.numel())
        counts = torch.bincount(index[inside], minlength=exact.numel()).double() / len(x)
        # Samples outside the grid count fully towards the distance.
        return 0.5 * float((counts - exact / exact.sum()).abs().sum() + (~inside).double().mean())

    @property
    def active_modes(self) -> Tensor:
        """[M, 2] centres holding at least 0.1% of the posterior mass."""
        return self.centers[self.mode_weights >= 1e-3]


@dataclass
class Toy2DTarget:
    """A posterior p(x) r(x)^beta on R^2 with a Gaussian-mixture prior.

    Attributes:
        name: label for plots and reports.
        prior: the prior mixture.
        log_reward: ``log_r(x: [B, 2]) -> [B]``, finite.
        beta: reward exponent (> 0).
    """

    name: str
    prior: GaussianMixture
    log_reward: Callable[[Tensor], Tensor]
    beta: float = 1.0
    _truth: dict[int, GridTruth] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_beta(self.beta)
        if self.prior.dim != 2:
            raise ValueError(f"toy2d priors must be 2D, got dimension {self.prior.dim}")

    def checked_log_reward(self, x: Tensor) -> Tensor:
        """log r(x) validated for shape [B] and finite values (computed on the CPU)."""
        if x.dim() != 2 or x.shape[1] != 2:
            raise ValueError(f"toy2d samples must have shape [B, 2], got {tuple(x.shape)}")
        return check_log_reward(self.log_reward(x.cpu()), x.shape[0]).to(x.device)

    def with_beta(self, beta: float) -> Toy2DTarget:
        """The same prior and reward at another beta."""
        return Toy2DTarget(self.name, self.prior, self.log_reward, beta)

    def truth(self, grid_size: int = 500) -> GridTruth:
        """Integrate p(x) r(x)^beta on a grid_size^2 grid covering the prior (cached)."""
        if grid_size not in self._truth:
            self._truth[grid_size] = self._integrate(grid_size)
        return self._truth[grid_size]

    def _integrate(self, grid_size: int) -> GridTruth:
        lo = float(self.prior.means.min() - 6 * self.prior.stds.max())
        hi = float(self.prior.means.max() + 6 * self.prior.stds.max())
        axis = torch.linspace(lo, hi, grid_size, dtype=torch.float64)
        points = torch.cartesian_prod(axis, axis)  # [G*G, 2], row-major in (ix, iy)
        cell = (axis[1] - axis[0]).item() ** 2
        log_post = torch.cat([
            self.prior.log_prob(chunk) + self.beta * self.checked_log_reward(chunk.float()).double()
            for chunk in points.split(65536)])
        log_z = float(torch.logsumexp(log_post, 0)) + math.log(cell)
        mass = torch.exp(log_post - log_z) * cell  # [G*G], sums to ~1
        owner = torch.cdist(points, self.prior.means).argmin(1)
        weights = torch.zeros(self.prior.means.shape[0], dtype=torch.float64).index_add(
            0, owner, mass)
        return GridTruth(axis, (mass / cell).view(grid_size, grid_size), log_z,
                         weights / weights.sum(), self.prior.means.clone())

    def evaluate(self, x: Tensor, log_z: float | None = None) -> dict[str, float]:
        """Compare samples x ([N, 2]) with the exact posterior.

        Returns:
            tv (mode-weight total variation), mass_in_modes (share of samples within 4
            component stds of a mode holding >= 0.1% of the posterior), modes_covered
            (active modes holding >= 1/4 of their true share), and, when `log_z` is
            given, log_z, log_z_true and log_z_err.
        """
        truth = self.truth()
        x = x.detach().cpu().double()
        radius = 4 * float(self.prior.stds.max())
        active = truth.active_modes
        covered_share = 0.25 * float(truth.mode_weights[truth.mode_weights >= 1e-3].min())
        metrics = {
            "tv": total_variation(mode_weights(x, truth.centers), truth.mode_weights),
            "mass_in_modes": mass_in_modes(x, active, radius),
            "modes_covered": float(modes_covered(x, active, radius, covered_share)),
            "modes_total": float(active.shape[0]),
            "log_z_true": truth.log_z,
        }
        if log_z is not None:
            metrics.update(log_z=float(log_z), log_z_err=abs(float(log_z) - truth.log_z))
        return metrics


def mode_reward(prior: GaussianMixture, weights: Tensor) -> Callable[[Tensor], Tensor]:
    """The reward that reweights the prior's modes: log r = log p_w(x) - log p(x).

    p_w keeps the prior's means and stds with `weights` ([K], any non-negative scale),
    so p(x) r(x) = p_w(x): at beta = 1 the posterior is exactly p_w and log Z = 0.

    Returns:
        ``log_r(x: [B, 2]) -> [B]`` in x's dtype.
    """
    reweighted = GaussianMixture(prior.means, prior.stds, weights)

    def log_r(x: Tensor) -> Tensor:
        # In float64: both log-densities are large and nearly cancel near the modes.
        return (reweighted.log_prob(x.double()) - prior.log_prob(x.double())).to(x.dtype)

    return log_r


def nine_mode_weights(prior: GaussianMixture) -> Tensor:
    """[K] the paper's posterior weights: {4,10,4,5,10,5,4,15,4}/61 on {-5, 0, 5}^2, else 0."""
    inner = (prior.means.abs() <= 5).all(1)
    weights = torch.zeros(prior.means.shape[0], dtype=torch.float64)
    weights[inner] = torch.tensor(NINE_WEIGHTS, dtype=torch.float64) / sum(NINE_WEIGHTS)
    return weights


def target_25to9(beta: float = 1.0) -> Toy2DTarget:
    """The paper's toy: 25-mode prior, r = p_9 / p_25, so at beta = 1 the posterior is p_9."""
    prior = grid_mixture()
    return Toy2DTarget("25to9", prior, mode_reward(prior, nine_mode_weights(prior)), beta)


def target_right_half(beta: float = 1.0) -> Toy2DTarget:
    """A smooth reward r = sigmoid(x_1): prefer the right half-plane, softly."""
    return Toy2DTarget("right_half", grid_mixture(),
                       lambda x: nn.functional.logsigmoid(x[:, 0]), beta)


def target_ring(beta: float = 1.0) -> Toy2DTarget:
    """r = exp(-(|x| - 7)^2 / 2): favours the modes near radius 7 (the inner diagonals)."""
    return Toy2DTarget("ring", grid_mixture(),
                       lambda x: -0.5 * (x.norm(dim=1) - 7.0).square(), beta)


TARGETS: dict[str, Callable[[float], Toy2DTarget]] = {
    "25to9": target_25to9,
    "right_half": target_right_half,
    "ring": target_ring,
}


def get_target(name: str, beta: float = 1.0) -> Toy2DTarget:
    """Build a named target (see `TARGETS`)."""
    if name not in TARGETS:
        raise KeyError(f"unknown toy2d target {name!r}; choose one of {sorted(TARGETS)} "
                       "or build your own with custom_target(prior, log_reward, beta)")
    return TARGETS[name](beta)


def custom_target(prior: GaussianMixture, log_reward: Callable[[Tensor], Tensor],
                  beta: float = 1.0, name: str = "custom") -> Toy2DTarget:
    """Any mixture prior with any reward ``log_r(x: [B, 2]) -> [B]`` and beta > 0."""
    return Toy2DTarget(name, prior, log_reward, beta)




def resolve_target(target: Toy2DTarget | str, beta: float | None = None) -> Toy2DTarget:
    """A target object from a name or an object, at `beta` when given."""
    target = get_target(target) if isinstance(target, str) else target
    return target if beta is None else target.with_beta(beta)

