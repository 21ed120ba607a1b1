"""A posterior amortised over beta: one network for every p(x) r(x)^beta, beta in a range.

Beyond the paper: the posterior takes c = log beta as an input (a zero-initialised
conditional residual on a copy of the prior, so at step 0 it is the prior for every
beta). Each batch draws `cond_groups` betas log-uniformly and trains with VarGrad per
beta group (log Z(beta) is the group's batch estimate), so after one training run a
slider can sample any beta in the range instantly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from rtb_lab.checkpoint import MANIFEST, CheckpointError, assets_dir, load_weights, save_weights
from rtb_lab.diffusion import Trajectory, sample_trajectories
from rtb_lab.domains.toy2d.prior import EndpointDrift, load_prior, make_family
from rtb_lab.domains.toy2d.targets import Toy2DTarget, resolve_target
from rtb_lab.nets import ResidualPosterior
from rtb_lab.rtb import freeze
from rtb_lab.train import RTBTrainer, TrainConfig

AMORTISED_ASSET = "toy2d_beta_posterior.safetensors"
BETA_RANGE = (0.25, 4.0)
EVAL_BETAS = (0.5, 1.0, 2.0)
# Recipe of the shipped weights (`rtb-lab train-amortised toy2d`).
AMORTISED_CONFIG = TrainConfig(steps=3000, batch_size=256, cond_groups=8, loss="vargrad",
                               explore_hold=100, explore_end=1500, eval_every=500)


def beta_condition(beta: float | Tensor, n: int) -> Tensor:
    """[n, 1] network condition c = log beta."""
    beta = torch.as_tensor(beta, dtype=torch.float32)
    if (beta <= 0).any():
        raise ValueError(f"beta must be > 0, got {beta}")
    return torch.log(beta).reshape(-1, 1).expand(n, 1).clone()


def make_beta_sampler(beta_range: tuple[float, float]
                      ) -> Callable[[int, torch.Generator], Tensor]:
    """Draw n conditions with beta log-uniform in `beta_range`."""
    lo, hi = (math.log(b) for b in beta_range)
    if not 0 < beta_range[0] < beta_range[1]:
        raise ValueError(f"beta_range must satisfy 0 < low < high, got {beta_range}")

    def sample(n: int, generator: torch.Generator) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, 1, generator=generator)

    return sample


def sample_trajectory(posterior: nn.Module, beta: float, n: int, seed: int = 0) -> Trajectory:
    """n trajectories of the amortised posterior at `beta` (cond attached), on the CPU."""
    device = next(posterior.parameters()).device
    traj = sample_trajectories(posterior, make_family(), n, (2,),
                               cond=beta_condition(beta, n).to(device),
                               generator=torch.Generator().manual_seed(seed), device=device)
    return traj.to("cpu")


def sample_posterior(posterior: nn.Module, beta: float, n: int, seed: int = 0) -> Tensor:
    """[n, 2] samples (CPU) of the amortised posterior at `beta`."""
    return sample_trajectory(posterior, beta, n, seed).x


def evaluate_betas(posterior: nn.Module, target: Toy2DTarget,
                   betas: tuple[float, ...] = EVAL_BETAS, n: int = 4000) -> dict[str, float]:
    """TV (and mass in modes) against the exact posterior at each beta."""
    metrics: dict[str, float] = {}
    for beta in betas:
        found = target.with_beta(beta).evaluate(sample_posterior(posterior, beta, n))
        metrics[f"tv@{beta:g}"] = found["tv"]
        metrics[f"mass@{beta:g}"] = found["mass_in_modes"]
    return metrics


def conditional_posterior(prior: EndpointDrift, hidden: int = 64) -> EndpointDrift:
    """A trainable copy of the prior plus a zero-initialised residual that sees log beta.

    The residual acts on the endpoint prediction (well scaled), not on the drift.
    """
    return EndpointDrift(ResidualPosterior(prior.net, cond_dim=1, hidden=hidden))


def make_amortised_trainer(target: Toy2DTarget | str = "25to9",
                           config: TrainConfig | None = None, *,
                           beta_range: tuple[float, float] = BETA_RANGE,
                           prior: nn.Module | None = None,
                           out_dir: str | Path | None = None) -> RTBTrainer:
    """An RTBTrainer for a beta-conditioned posterior of `target` (its own beta is ignored).

    The condition is c = log beta, drawn log-uniformly in `beta_range`; the loss is
    VarGrad per beta group unless `config.loss` says otherwise.
    """
    target = resolve_target(target)
    prior = prior if prior is not None else load_prior()
    return RTBTrainer(
        prior, conditional_posterior(prior), make_family(),
        lambda x, cond: target.checked_log_reward(x), (2,), config or AMORTISED_CONFIG,
        cond_sampler=make_beta_sampler(beta_range),
        beta_of_cond=lambda cond: torch.exp(cond[:, 0]),
        evaluator=lambda trainer: evaluate_betas(trainer.posterior, target, n=2000),
        out_dir=out_dir)


def save_amortised(posterior: EndpointDrift, path: str | Path, target: str,
                   beta_range: tuple[float, float], command: str) -> str:
    """Save the amortised posterior's weights (safetensors) and return their sha256."""
    meta = {"arch": "ResidualPosterior(toy2d prior, cond=log beta)", "target": target,
            "beta_range": list(beta_range), "hidden": posterior.net.residual.hidden,
            "command": command}
    return save_weights(posterior, path, meta)


def load_amortised(path: str | Path | None = None, prior: nn.Module | None = None,
                   device: torch.device | str = "cpu") -> tuple[EndpointDrift, dict]:
    """Load the shipped (sha256-checked) or a saved beta-amortised posterior, frozen.

    Returns:
        The posterior network and its metadata (target name, beta_range, command).
    """
    sha256 = None
    if path is None:
        manifest = json.loads((assets_dir() / MANIFEST).read_text())
        if AMORTISED_ASSET not in manifest:
            raise CheckpointError("no shipped amortised posterior; train one with "
                                  "`rtb-lab train-amortised toy2d`")
        path, sha256 = assets_dir() / AMORTISED_ASSET, manifest[AMORTISED_ASSET]["sha256"]
    tensors, meta = load_weights(path, sha256)
    if not str(meta.get("arch", "")).startswith("ResidualPosterior"):
        raise CheckpointError(f"{path} is not a toy2d amortised posterior "
                              f"(metadata arch={meta.get('arch')!r})")
    posterior = conditional_posterior(prior if prior is not None else load_prior(),
                                      meta["hidden"])
    try:
        posterior.load_state_dict(tensors)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not match this prior's architecture: {error}") \
            from error
    return freeze(posterior.to(device)), meta
