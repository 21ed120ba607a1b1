"""The Relative Trajectory Balance objective and its invariants.

For a trajectory tau ending in x, with posterior policy q and frozen prior p,

    delta(tau) = log Z + log q(tau) - log p(tau) - beta * log r(x),   L = mean(delta^2).

VarGrad replaces log Z by the batch mean (per condition group) of the other terms.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from rtb_lab.diffusion import (
    Trajectory,
    TransitionFamily,
    chunked_steps,
    step_log_probs,
    trajectory_log_prob,
)


class FrozenPriorError(ValueError):
    """The prior has trainable parameters; RTB needs it frozen."""


def freeze(module: nn.Module) -> nn.Module:
    """Freeze `module` in place (no grads, eval mode) and return it."""
    module.requires_grad_(False)
    return module.eval()


def check_frozen(prior: nn.Module) -> None:
    """Raise FrozenPriorError if any parameter of `prior` requires grad."""
    trainable = [name for name, p in prior.named_parameters() if p.requires_grad]
    if trainable:
        shown = ", ".join(trainable[:3]) + (" ..." if len(trainable) > 3 else "")
        raise FrozenPriorError(
            f"the prior must be frozen, but {len(trainable)} parameter(s) require grad "
            f"({shown}); call rtb_lab.freeze(prior) first"
        )


def check_separate(prior: nn.Module, posterior: nn.Module) -> None:
    """Raise if the posterior shares parameters with the prior or lives on another device."""
    prior_ids = {id(p) for p in prior.parameters()}
    shared = [n for n, p in posterior.named_parameters() if id(p) in prior_ids and p.requires_grad]
    if shared:
        raise FrozenPriorError(
            f"the posterior's trainable parameters {shared[:3]} are the prior's own tensors; "
            "start the posterior from a copy (copy.deepcopy(prior)) or an adapter"
        )
    devices = {p.device for p in prior.parameters()} | {p.device for p in posterior.parameters()}
    if len(devices) > 1:
        raise ValueError(
            f"prior and posterior must be on the same device, found {sorted(map(str, devices))}; "
            "move both with .to(device)"
        )


def check_beta(beta: float | Tensor) -> None:
    """Raise ValueError unless beta > 0 (everywhere, if a tensor) and finite."""
    value = torch.as_tensor(beta, dtype=torch.float64)
    if not torch.isfinite(value).all() or (value <= 0).any():
        raise ValueError(f"beta must be a finite number > 0, got {beta}")


def check_log_reward(log_reward: Tensor, batch_size: int) -> Tensor:
    """Validate a reward function's output: shape [B] and finite values.

    Returns:
        `log_reward` unchanged when valid.
    """
    if not isinstance(log_reward, Tensor):
        raise TypeError(f"log_reward must return a torch.Tensor, got {type(log_reward).__name__}")
    if log_reward.shape != (batch_size,):
        raise ValueError(
            f"log_reward must return shape [B] = [{batch_size}], got {tuple(log_reward.shape)}"
        )
    bad = ~torch.isfinite(log_reward)
    if bad.any():
        raise ValueError(
            f"log_reward returned {int(bad.sum())} non-finite value(s) (NaN or +-inf) out of "
            f"{batch_size}, e.g. {log_reward[bad][0].item()}; clamp log r to a finite floor"
        )
    return log_reward


def rtb_residual(log_pf_post: Tensor, log_pf_prior: Tensor, log_reward: Tensor,
                 log_z: Tensor, beta: float | Tensor) -> Tensor:
    """delta = log Z + log q(tau) - log p(tau) - beta log r(x).

    Args:
        log_pf_post, log_pf_prior, log_reward: [B].
        log_z: [] or [B] (conditional log Z).
        beta: scalar or [B].

    Returns:
        [B] residuals.
    """
    return log_z + log_pf_post - log_pf_prior - beta * log_reward


def vargrad_residual(log_pf_post: Tensor, log_pf_prior: Tensor, log_reward: Tensor,
                     beta: float | Tensor, groups: Tensor | None = None) -> Tensor:
    """delta with log Z replaced by minus the mean of the other terms (per condition group).

    Args:
        groups: [B] integer group ids (trajectories sharing a condition); None = one group.

    Returns:
        [B] centred residuals; their batch mean (per group) is zero.
    """
    terms = log_pf_post - log_pf_prior - beta * log_reward
    if groups is None:
        return terms - terms.mean()
    ids, inverse = torch.unique(groups, return_inverse=True)
    sums = terms.new_zeros(len(ids)).index_add(0, inverse, terms)
    counts = torch.bincount(inverse, minlength=len(ids)).to(terms.dtype)
    return terms - (sums / counts)[inverse]


def rtb_loss(log_pf_post: Tensor, log_pf_prior: Tensor, log_reward: Tensor,
             log_z: Tensor, beta: float | Tensor) -> Tensor:
    """The RTB loss mean(delta^2) over the batch; see `rtb_residual`."""
    return rtb_residual(log_pf_post, log_pf_prior, log_reward, log_z, beta).square().mean()


def vargrad_loss(log_pf_post: Tensor, log_pf_prior: Tensor, log_reward: Tensor,
                 beta: float | Tensor, groups: Tensor | None = None) -> Tensor:
    """The VarGrad loss: batch variance of log q - log p - beta log r (per group)."""
    return vargrad_residual(log_pf_post, log_pf_prior, log_reward, beta, groups).square().mean()


def importance_log_z(log_reward: Tensor, beta: float | Tensor) -> Tensor:
    """log mean exp(beta log r) over prior samples: an estimate of log Z = log E_p[r^beta]."""
    weighted = beta * log_reward
    return torch.logsumexp(weighted, 0) - math.log(weighted.numel())


class LogZ(nn.Module):
    """A learned log-partition function, scalar or a function of the condition.

    Args:
        init: initial value (scalar case, and the bias of the conditional head).
        cond_dim: 0 for a scalar log Z; otherwise log Z(c) is a small MLP of c.
        hidden: width of the conditional head.
    """

    def __init__(self, init: float = 0.0, cond_dim: int = 0, hidden: int = 64) -> None:
        super().__init__()
        self.cond_dim = cond_dim
        if cond_dim == 0:
            self.value = nn.Parameter(torch.tensor(float(init)))
        else:
            self.head = nn.Sequential(nn.Linear(cond_dim, hidden), nn.GELU(),
                                      nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1))
            nn.init.zeros_(self.head[-1].weight)
            nn.init.constant_(self.head[-1].bias, float(init))

    def forward(self, cond: Tensor | None = None) -> Tensor:
        """[] for a scalar log Z, [B] for a conditional one given cond [B, C]."""
        if self.cond_dim == 0:
            return self.value
        if cond is None:
            raise ValueError("this LogZ is conditional: pass cond [B, C]")
        return self.head(cond).squeeze(-1)

    @torch.no_grad()
    def reset(self, value: float) -> None:
        """Set log Z (or the conditional head's bias) to `value`."""
        target = self.value if self.cond_dim == 0 else self.head[-1].bias
        target.fill_(float(value))


def backward_through_trajectories(loss_of_log_pf: Callable[[Tensor], Tensor],
                                  posterior: nn.Module, family: TransitionFamily,
                                  traj: Trajectory, chunk_steps: int | None = None,
                                  grad_steps: int | None = None,
                                  generator: torch.Generator | None = None,
                                  log_pf: Tensor | None = None) -> Tensor:
    """Backpropagate a loss of the posterior's trajectory log-probs, chunk by chunk.

    With ``chunk_steps=None`` the T steps are scored in one batched pass with grad.
    Otherwise the exact same gradient is accumulated without holding the whole graph:
    (1) score all steps without grad to get log q(tau) [B]; (2) evaluate the loss on
    a detached copy to get g = dL/d log q(tau) (and the grads of anything else the
    loss uses, e.g. log Z); (3) for each chunk of steps, backprop sum_b g_b * log q_chunk_b.
    Peak memory is then set by the chunk, not by T.

    With `grad_steps` = S < T, step (3) backpropagates through S steps drawn uniformly
    without replacement and scales them by T / S: an unbiased estimate of the gradient
    (given the loss value, which still uses all T steps) at about S / T of the cost.

    Args:
        loss_of_log_pf: maps log q(tau) [B] to a scalar loss.
        posterior: the trainable policy.
        family: the transition family.
        traj: detached trajectories.
        chunk_steps: steps per chunk, or None for a single pass.
        grad_steps: number of steps to backpropagate through (None: all).
        generator: draws the subsampled steps.
        log_pf: [B] log q(tau) already known under the current parameters (recorded while
            sampling); skips the no-grad scoring pass (1). Ignored in the one-pass mode.

    Returns:
        The (detached) loss value.
    """
    num_steps = traj.num_steps
    subsample = grad_steps is not None and grad_steps < num_steps
    if chunk_steps is None and not subsample:
        loss = loss_of_log_pf(trajectory_log_prob(posterior, family, traj))
        loss.backward()
        return loss.detach()
    if log_pf is None:
        with torch.no_grad():
            log_pf = trajectory_log_prob(posterior, family, traj, chunk_steps)
    log_pf = log_pf.detach().clone().requires_grad_(True)
    loss = loss_of_log_pf(log_pf)
    loss.backward()
    weight = log_pf.grad
    if subsample:
        if grad_steps < 1:
            raise ValueError(f"grad_steps must be >= 1, got {grad_steps}")
        chosen = torch.randperm(num_steps, generator=generator)[:grad_steps].sort().values
        weight = weight * (num_steps / grad_steps)
        chunks = chosen.split(chunk_steps or grad_steps)
    else:
        chunks = chunked_steps(num_steps, chunk_steps)
    for steps in chunks:
        (step_log_probs(posterior, family, traj, steps).sum(1) * weight).sum().backward()
    return loss.detach()
