"""Sampling whole trajectories and scoring them, step by step or batched.

`sample_trajectories` is the unrolled loop a reader can follow. `step_log_probs`
scores a detached trajectory in ONE batched network call over B x T states,
which is the main speed lever of RTB (DESIGN.md §1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from rtb_lab.diffusion.gaussian import GaussianFamily, gaussian_log_prob
from rtb_lab.diffusion.trajectory import Trajectory

DriftNet = Callable[[Tensor, Tensor, Tensor | None], Tensor] | nn.Module


def policy_std_scale(net: DriftNet, k: Tensor, cond: Tensor | None) -> Tensor | None:
    """[N] factor a policy applies to the family's std at steps k, or None (fixed std).

    A policy with a learned variance defines ``net.std_scale(k [N], cond) -> [N]``;
    priors and plain networks do not, and keep the family's fixed variance.
    """
    scale = getattr(net, "std_scale", None)
    return None if scale is None else scale(k, cond)


def policy_mean_shift(net: DriftNet, x: Tensor, k: Tensor, cond: Tensor | None
                      ) -> Tensor | None:
    """[N, *event] shift a policy adds to the family's mean at states x and steps k, or
    None (no shift).

    A policy that moves the step's mean directly (value guidance with look-ahead,
    `mnist_guided.GuidedPosterior`) defines ``net.mean_shift(x, k, cond)``; it must not
    depend on the trajectory's next state, only on (x, k, cond).
    """
    shift = getattr(net, "mean_shift", None)
    return None if shift is None else shift(x, k, cond)


def policy_mean_std(net: DriftNet, family: GaussianFamily, x: Tensor, k: Tensor,
                    cond: Tensor | None, t: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Mean [N, *event] and un-inflated std of the policy `net`'s step k from states x:
    the network's output through the family, with the policy's own std factor and mean
    shift where it defines them. `t` is ``family.time(k)`` when the caller has it."""
    net_out = net(x, family.time(k) if t is None else t, cond)
    return family.policy_mean_std(net_out, x, k, policy_std_scale(net, k, cond),
                                  policy_mean_shift(net, x, k, cond))


@torch.no_grad()
def sample_trajectories(net: DriftNet, family: GaussianFamily, batch_size: int,
                        event_shape: tuple[int, ...], *, cond: Tensor | None = None,
                        explore: float = 0.0, generator: torch.Generator | None = None,
                        device: torch.device | str = "cpu", keep_log_pf: bool = False
                        ) -> Trajectory:
    """Sample B trajectories from the policy `net`, optionally with exploration noise.

    Args:
        net: the policy network, ``net(x [B, *event], t [B], cond) -> [B, *event]``.
        family: the transition family (how net outputs become Gaussian steps).
        batch_size: B.
        event_shape: shape of one state, e.g. (2,) or (1, 28, 28).
        cond: [B, C] condition passed to the network, or None.
        explore: variance inflation used for sampling only (0 = on-policy).
        generator: CPU generator for reproducible noise.
        device: where the network lives.
        keep_log_pf: also record log `net`(tau) [B] at the un-inflated std, from the means
            computed anyway (saves the trainer a scoring pass).

    Returns:
        A detached Trajectory with states [B, T+1, *event] (and log_pf if asked).
    """
    x = family.start(batch_size, event_shape, generator=generator, device=device)
    all_steps = torch.arange(family.num_steps, device=device)
    all_times = family.time(all_steps)  # once, not per step: the loop is overhead-bound
    states = [x]
    log_pf = torch.zeros(batch_size, device=device) if keep_log_pf else None
    for k in range(family.num_steps):
        steps = all_steps[k].expand(batch_size)
        mean, policy_std = policy_mean_std(net, family, x, steps, cond,
                                           all_times[k].expand(batch_size))
        std = family.explore_std(policy_std, steps, explore) if explore > 0 else policy_std
        noise = torch.randn(x.shape, generator=generator).to(device)
        x_next = mean + std * noise
        if log_pf is not None:  # the policy's own log-prob: exploration changes x, not q
            log_pf += gaussian_log_prob(x_next, mean, policy_std)
        x = x_next
        states.append(x)
    return Trajectory(torch.stack(states, 1), cond=cond, log_pf=log_pf)


def step_log_probs(net: DriftNet, family: GaussianFamily, traj: Trajectory,
                   steps: range | Tensor | None = None) -> Tensor:
    """Per-step log-probs of a detached trajectory under `net`, in one batched call.

    Args:
        net: the policy to score under (gradients flow into it if enabled).
        family: the transition family.
        traj: trajectories with states [B, T+1, *event].
        steps: which steps to score: a range, a [S] tensor of step indices, or None (all T).

    Returns:
        [B, S] log p(states[:, k+1] | states[:, k]) for k in steps.
    """
    steps = steps if steps is not None else range(traj.num_steps)
    device = traj.states.device
    index = torch.as_tensor(list(steps) if isinstance(steps, range) else steps, device=device)
    batch, n_steps = traj.batch_size, len(index)
    x_now = traj.states[:, index].flatten(0, 1)  # [B*S, *event]
    x_next = traj.states[:, index + 1].flatten(0, 1)
    k = index.repeat(batch)
    cond = None if traj.cond is None else traj.cond.repeat_interleave(n_steps, 0)
    log_probs = gaussian_log_prob(x_next, *policy_mean_std(net, family, x_now, k, cond))
    return log_probs.view(batch, n_steps)


def chunked_steps(num_steps: int, chunk_steps: int | None) -> list[range]:
    """Split range(num_steps) into contiguous chunks of at most `chunk_steps` steps."""
    size = num_steps if not chunk_steps else max(1, chunk_steps)
    return [range(s, min(s + size, num_steps)) for s in range(0, num_steps, size)]


def trajectory_log_prob(net: DriftNet, family: GaussianFamily, traj: Trajectory,
                        chunk_steps: int | None = None) -> Tensor:
    """[B] total log-probability of each trajectory, scoring `chunk_steps` steps per call."""
    return sum(step_log_probs(net, family, traj, r).sum(1)
               for r in chunked_steps(traj.num_steps, chunk_steps))


def sequential_log_prob(net: DriftNet, family: GaussianFamily, traj: Trajectory) -> Tensor:
    """[B] the same total as `trajectory_log_prob`, one network call per step.

    The textbook loop, kept as the reference the batched path is tested and
    benchmarked against.
    """
    total = traj.states.new_zeros(traj.batch_size)
    for k in range(traj.num_steps):
        x, x_next = traj.states[:, k], traj.states[:, k + 1]
        steps = torch.full((traj.batch_size,), k, device=x.device)
        total = total + gaussian_log_prob(x_next, *policy_mean_std(net, family, x, steps,
                                                                   traj.cond))
    return total
