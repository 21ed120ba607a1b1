"""Sampling whole trajectories and scoring them, step by step or batched.

`sample_trajectories` is the unrolled loop a reader can follow. `step_log_probs`
scores a detached trajectory in ONE batched network call over B x T states, which
is the main speed lever of RTB (docs/design.md). Both only call the transition
family (`rtb_lab.diffusion.family.TransitionFamily`), never a Gaussian formula.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from rtb_lab.diffusion.family import TransitionFamily
from rtb_lab.diffusion.trajectory import Trajectory

PolicyNet = Callable[[Tensor, Tensor, Tensor | None], Tensor] | nn.Module


@torch.no_grad()
def sample_trajectories(net: PolicyNet, family: TransitionFamily, batch_size: int,
                        event_shape: tuple[int, ...], *, cond: Tensor | None = None,
                        explore: float = 0.0, generator: torch.Generator | None = None,
                        device: torch.device | str = "cpu", keep_log_pf: bool = False
                        ) -> Trajectory:
    """Sample B trajectories from the policy `net`, optionally with exploration noise.

    Args:
        net: the policy network, ``net(x [B, *event], t [B], cond) -> out`` (see the family).
        family: the transition family (how net outputs become steps).
        batch_size: B.
        event_shape: shape of one state, e.g. (2,) or (1, 28, 28).
        cond: [B, C] condition passed to the network, or None.
        explore: exploration level used for sampling only (0 = on-policy).
        generator: CPU generator for reproducible noise.
        device: where the network lives.
        keep_log_pf: also record log `net`(tau) [B] under the un-explored policy, from
            the network outputs computed anyway (saves the trainer a scoring pass).

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
        net_out = net(x, all_times[k].expand(batch_size), cond)
        x_next = family.sample_step(net_out, x, steps, explore=explore, generator=generator)
        if log_pf is not None:  # the policy's own log-prob: exploration changes x, not q
            log_pf += family.log_prob(x_next, net_out, x, steps)
        x = x_next
        states.append(x)
    return Trajectory(torch.stack(states, 1), cond=cond, log_pf=log_pf)


def step_log_probs(net: PolicyNet, family: TransitionFamily, traj: Trajectory,
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
    net_out = net(x_now, family.time(k), cond)
    return family.log_prob(x_next, net_out, x_now, k).view(batch, n_steps)


def chunked_steps(num_steps: int, chunk_steps: int | None) -> list[range]:
    """Split range(num_steps) into contiguous chunks of at most `chunk_steps` steps."""
    size = num_steps if not chunk_steps else max(1, chunk_steps)
    return [range(s, min(s + size, num_steps)) for s in range(0, num_steps, size)]


def trajectory_log_prob(net: PolicyNet, family: TransitionFamily, traj: Trajectory,
                        chunk_steps: int | None = None) -> Tensor:
    """[B] total log-probability of each trajectory, scoring `chunk_steps` steps per call."""
    return sum(step_log_probs(net, family, traj, r).sum(1)
               for r in chunked_steps(traj.num_steps, chunk_steps))


def sequential_log_prob(net: PolicyNet, family: TransitionFamily, traj: Trajectory) -> Tensor:
    """[B] the same total as `trajectory_log_prob`, one network call per step.

    The textbook loop, kept as the reference the batched path is tested and
    benchmarked against.
    """
    total = traj.states.new_zeros(traj.batch_size)
    for k in range(traj.num_steps):
        x, x_next = traj.states[:, k], traj.states[:, k + 1]
        steps = torch.full((traj.batch_size,), k, device=x.device)
        total = total + family.log_prob(x_next, net(x, family.time(steps), traj.cond), x, steps)
    return total
