"""The control domain's comparison: returns of RTB and the offline-RL baselines.

Every method acts with networks trained once, offline, on the same data set (the
shipped ones, or yours): the comparison's seeds are evaluation seeds (environment
resets and policy noise), not training seeds. Methods:

- ``rtb``: the α-amortised RTB policy π ∝ μ exp(Q / α) at the tuned α (`RTB_ALPHA`);
  ``rtb-a<α>``: the same network at the other α of `ALPHAS`;
- ``bc``: behaviour cloning: the diffusion prior μ itself;
- ``iql``: IQL's own policy (its mean action), trained with the Q-function;
- ``td3bc``: TD3+BC (d3rlpy);
- ``guided``: Q-guided diffusion, the classifier-guidance analogue: the prior's noise
  shifted by ζ ∇ Q(s, â₀) (DPS-style, biased: `rtb_lab.baselines.guidance.GuidedEps`).

The budget is evaluation episodes per seed. Metrics: mean raw and D4RL-normalised
return, the episodes' standard error, environment steps, network evaluations (rows
through the prior, the posterior or an actor) and seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from rtb_lab.baselines.guidance import GuidedEps
from rtb_lab.compare import EvalCounter
from rtb_lab.diffusion import DDPM, sample_trajectories
from rtb_lab.domain import MethodRunner
from rtb_lab.domains.control.critic import QNetwork, TanhActor
from rtb_lab.domains.control.policy import ALPHA_RANGE, ControlPosterior, sample_actions
from rtb_lab.domains.control.prior import N_TRAIN, ActionDenoiser, decode, make_family
from rtb_lab.domains.control.rollout import Act, rollout

ALPHAS = (0.3, 1.0, 3.0, 10.0)
RTB_ALPHA = 10.0  # the best alpha of ALPHAS on the tuning seeds 100, 101 (docs/control.md)
GUIDANCE_SCALE = 0.3  # the best of 0.1, 0.3, 1, 3 on the tuning seeds (docs/control.md)
METHODS = ("rtb", *(f"rtb-a{a:g}" for a in ALPHAS if a != RTB_ALPHA), "bc", "iql", "td3bc",
           "guided")
METRICS = ("return", "normalised", "normalised_se", "episodes", "env_steps", "net_evals",
           "seconds")
PLOT_METRICS = ("normalised", "net_evals")
FAST_EPISODES = 5
FULL_EPISODES = 10


@dataclass
class ControlTarget:
    """One offline task: the environment, the data set's name, and its trained networks."""

    env: str
    quality: str
    prior: ActionDenoiser
    q: QNetwork
    policy: ControlPosterior | None = None  # the shipped RTB policy, if any
    actors: dict[str, TanhActor] = field(default_factory=dict)
    alpha_range: tuple[float, float] = ALPHA_RANGE


def guided_act(prior: ActionDenoiser, q: QNetwork, scale: float) -> Act:
    """Q-guided diffusion: DPS on the prior with log r = Q(s, â₀)."""
    guided = GuidedEps(prior, lambda x0, states: q(states, x0),
                       DDPM.linear_schedule(N_TRAIN), scale, conditional=True)

    def act(states: Tensor, generator: torch.Generator) -> Tensor:
        traj = sample_trajectories(guided, make_family(), states.shape[0],
                                   (prior.action_dim,), cond=states, generator=generator)
        return decode(prior, traj.x, states)
    return act


def method_act(method: str, target: ControlTarget) -> Act:
    """The acting function of a comparison method (KeyError naming the methods)."""
    if method == "bc":
        return lambda states, gen: sample_actions(target.prior, target.prior, states,
                                                  generator=gen)
    if method == "rtb" or method.startswith("rtb-a"):
        if target.policy is None:
            raise KeyError(f"no RTB policy for {target.env}-{target.quality}: train one with "
                           "`rtb-lab train-amortised control`")
        alpha = RTB_ALPHA if method == "rtb" else float(method.removeprefix("rtb-a"))
        return lambda states, gen: sample_actions(target.policy, target.prior, states, alpha,
                                                  generator=gen)
    if method in ("iql", "td3bc"):
        if method not in target.actors:
            raise KeyError(f"no {method} actor for {target.env}-{target.quality}: train it "
                           "with `rtb-lab train-reward control`")
        actor = target.actors[method]
        return lambda states, gen: actor(states)
    if method == "guided":
        return guided_act(target.prior, target.q, GUIDANCE_SCALE)
    raise KeyError(f"unknown control method {method!r}; choose one of {METHODS}")


def _counted(target: ControlTarget, counter: EvalCounter) -> list:
    nets = [net for net in (target.prior, target.policy, *target.actors.values())
            if net is not None]
    handles = [net.register_forward_hook(lambda m, i, o: counter.charge(i[0])) for net in nets]
    return handles


def run_method(method: str, target: ControlTarget, episodes: int, seed: int
               ) -> tuple[dict[str, float], Tensor]:
    """One method, `episodes` episodes with seed `seed`: (metrics, episode returns [E])."""
    act = method_act(method, target)
    counter = EvalCounter()
    handles = _counted(target, counter)
    try:
        result = rollout(act, target.env, episodes, seed)
    finally:
        for handle in handles:
            handle.remove()
    return ({**result.summary(), "net_evals": float(counter.count)},
            torch.tensor(result.returns))


def method_runner(method: str) -> MethodRunner:
    """``run(target, episodes, seed) -> (metrics, returns)`` for the harness."""
    return lambda target, budget, seed: run_method(method, target, budget, seed)


RUNNERS: dict[str, Callable] = {method: method_runner(method) for method in METHODS}
