"""The RTB policy: π(a | s) ∝ μ(a | s) exp(Q(s, a) / α), one network for every state and α.

The target at a state s is RTB's p(x) r(x)^β with the behaviour prior μ(· | s) as p,
r = exp(Q(s, ·)) and β = 1 / α: the KL-regularised optimal policy of offline RL. The
posterior is a trainable copy of the prior plus a zero-initialised residual that also
reads log α, so at step 0 it is the prior, and after training one network serves the
tutorial's α slider. Training draws (state, α) pairs, 64 action trajectories each
(the official code's recipe), and uses VarGrad: each pair's log Z is the batch estimate
of its group, so no log Z(s, α) network is needed.

The truth at a state is exact up to Monte Carlo error: a bank of prior actions
reweighted by exp(Q / α) (`bank_posterior`), whose effective sample size is reported.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from rtb_lab.checkpoint import load_module, save_weights
from rtb_lab.diffusion import sample_trajectories
from rtb_lab.domains.control.critic import QNetwork
from rtb_lab.domains.control.prior import N_TRAIN, ActionDenoiser, decode, make_family
from rtb_lab.nets import DriftMLP
from rtb_lab.rtb import freeze
from rtb_lab.train import RTBTrainer, TrainConfig

ALPHA_RANGE = (0.1, 10.0)
SAMPLES_PER_STATE = 64
POLICY_CONFIG = TrainConfig(steps=1500, batch_size=256, lr=3e-4, lr_end=3e-5, scalar_lr=1e-2,
                            loss="vargrad", residual_per_beta=True,
                            cond_groups=256 // SAMPLES_PER_STATE, explore=0.3,
                            explore_hold=200, explore_end=700, replay_fraction=0.25,
                            grad_clip=10.0, log_z_init=0.0, eval_every=0)


def check_alpha(alpha: float | Tensor) -> None:
    """Raise ValueError unless every α is a positive finite number."""
    values = torch.as_tensor(alpha, dtype=torch.float32)
    if not bool(torch.isfinite(values).all() and (values > 0).all()):
        raise ValueError(f"alpha (the temperature of exp(Q / alpha)) must be > 0 and finite, "
                         f"got {alpha}")


def policy_condition(states: Tensor, alpha: float | Tensor) -> Tensor:
    """The posterior's condition [B, S + 1]: the raw state and log α."""
    check_alpha(alpha)
    log_alpha = torch.as_tensor(alpha, dtype=states.dtype).log().expand(states.shape[0])
    return torch.cat([states, log_alpha.reshape(-1, 1)], 1)


class ControlPosterior(nn.Module):
    """RTB's policy network: a trainable copy of the prior, a zero-initialised residual
    that also reads log α, and Q-gradient guidance with a learned scale per step:

        ε(a_t, t, s, α) = ε_copy(a_t, t, s) + ε_res(a_t, t, s, log α)
                          - (c_k / α) sqrt(1 - ᾱ_t) ∇_a Q(s, â₀(a_t)),

    where â₀ is the frozen prior's clean estimate (the official code's gradient-informed
    policy). The guidance direction depends only on frozen networks, so it is a fixed
    feature of the state: RTB's optimum is still the exact π*, and with c = 0 (the
    start) and a zero residual the policy is the prior.

    ``forward(x [N, A], t [N] training times, cond [N, S + 1]) -> ε [N, A]``.
    """

    def __init__(self, prior: ActionDenoiser, q: QNetwork, hidden: int = 64,
                 num_layers: int = 2) -> None:
        super().__init__()
        self.state_dim = prior.state_dim
        self.base = copy.deepcopy(prior).requires_grad_(True).train()
        self.residual = DriftMLP(prior.action_dim, hidden, num_layers,
                                 cond_dim=prior.state_dim + 1, zero_init=True)
        family = make_family()
        self.guide = nn.Parameter(torch.zeros(family.num_steps))
        step_of_time = torch.full((N_TRAIN,), -1, dtype=torch.long)
        step_of_time[family.train_times[:-1]] = torch.arange(family.num_steps)
        self.register_buffer("step_of_time", step_of_time)
        self.register_buffer("abar", family.abar_now.clone())
        self._frozen = (prior, q)  # a tuple: neither saved nor trained with us
        self.config_ = {"residual_hidden": hidden, "residual_layers": num_layers}

    def guidance(self, x: Tensor, t: Tensor, states: Tensor) -> Tensor:
        """sqrt(1 - ᾱ_t) ∇_a Q(s, â₀(a_t)) [N, A] through the frozen prior (detached)."""
        prior, q = self._frozen
        k = self.step_of_time[t.long()]
        abar = self.abar[k].view(-1, 1)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            x0 = ((x - (1 - abar).sqrt() * prior(x, t, states)) / abar.sqrt()).clamp(-1, 1)
            (grad,) = torch.autograd.grad(q(states, x0).sum(), x)
        return (1 - abar).sqrt() * grad

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is None or cond.shape[-1] != self.state_dim + 1:
            raise ValueError(f"the policy needs cond [N, {self.state_dim + 1}] (state, log "
                             "alpha): build it with policy_condition(states, alpha)")
        states, log_alpha = cond[:, :self.state_dim], cond[:, self.state_dim:]
        standard = (states - self.base.state_mean) / self.base.state_std
        scale = self.guide[self.step_of_time[t.long()]].view(-1, 1) * torch.exp(-log_alpha)
        return (self.base(x, t, states)
                + self.residual(x, t.float() / N_TRAIN, torch.cat([standard, log_alpha], 1))
                - scale * self.guidance(x, t, states))

    def config(self) -> dict[str, int]:
        return dict(self.config_)


def make_reward(prior: ActionDenoiser, q: QNetwork):
    """``log r(x_T, cond) = Q(s, decode(x_T))``: the trainer's reward on final states."""
    def log_reward(x: Tensor, cond: Tensor) -> Tensor:
        states = cond[:, :prior.state_dim]
        return q(states, decode(prior, x, states))
    return log_reward


def make_condition_sampler(states: Tensor, alpha_range: tuple[float, float] = ALPHA_RANGE):
    """(state from the data set, α log-uniform in alpha_range) pairs: ``[n, S + 1]``."""
    check_alpha(torch.tensor(alpha_range))
    low, high = math.log(alpha_range[0]), math.log(alpha_range[1])

    def sample(n: int, generator: torch.Generator) -> Tensor:
        chosen = states[torch.randint(states.shape[0], (n,), generator=generator)]
        log_alpha = low + (high - low) * torch.rand(n, generator=generator)
        return torch.cat([chosen, log_alpha[:, None]], 1)
    return sample


def make_evaluator(prior: ActionDenoiser, q: QNetwork, states: Tensor,
                   alphas: tuple[float, ...], bins: int = 20, n: int = 2000):
    """``evaluate(trainer)``: the mean binned TV (action dimension 0) between the policy
    and the exact π* bank at each of `states` [K, S], for each α (banks built once)."""
    edges = torch.linspace(-1, 1, bins + 1)
    banks: dict = {}

    def evaluate(trainer: RTBTrainer) -> dict[str, float]:
        metrics = {}
        for alpha in alphas:
            gaps = []
            for k, state in enumerate(states):
                if (k, alpha) not in banks:
                    banks[k, alpha] = bank_posterior(prior, q, state, alpha, n=10 * n).bins(edges)
                x = sample_actions(trainer.posterior, prior, state.expand(n, -1), alpha,
                                   generator=torch.Generator().manual_seed(k))
                gaps.append(0.5 * float((binned(x[:, 0], edges) - banks[k, alpha]).abs().sum()))
            metrics[f"tv_alpha_{alpha:g}"] = sum(gaps) / len(gaps)
        return metrics
    return evaluate


def make_policy_trainer(prior: ActionDenoiser, q: QNetwork, states: Tensor,
                        config: TrainConfig | None = None, *,
                        alpha_range: tuple[float, float] = ALPHA_RANGE,
                        eval_states: Tensor | None = None,
                        out_dir: str | Path | None = None) -> RTBTrainer:
    """An RTB trainer for the α-amortised policy over the data set's states [N, S]; with
    `eval_states` [K, S], its evaluations report the TV to π* there at the geometric
    middle and the top of `alpha_range`."""
    config = config or POLICY_CONFIG
    low, high = alpha_range
    alphas = tuple(sorted({round(math.sqrt(low * high), 3), high}))
    evaluator = None if eval_states is None else make_evaluator(prior, q, eval_states, alphas)
    return RTBTrainer(prior, ControlPosterior(prior, q), make_family(), make_reward(prior, q),
                      (prior.action_dim,), config,
                      cond_sampler=make_condition_sampler(states, alpha_range),
                      beta_of_cond=lambda cond: torch.exp(-cond[:, -1]), evaluator=evaluator,
                      out_dir=out_dir)


def sample_actions(policy: nn.Module, prior: ActionDenoiser, states: Tensor,
                   alpha: float | None = None, generator: torch.Generator | None = None
                   ) -> Tensor:
    """Normalised actions [B, A] in [-1, 1], one per state [B, S]: from the RTB policy at
    temperature α, or from the prior itself (``policy is prior``, α unused)."""
    cond = states if policy is prior else policy_condition(states, alpha)
    with torch.no_grad():
        traj = sample_trajectories(policy, make_family(), states.shape[0],
                                   (prior.action_dim,), cond=cond, generator=generator)
        return decode(prior, traj.x, states)


@dataclass(frozen=True)
class BankPosterior:
    """The exact target at one state, up to Monte Carlo error: prior actions [n, A] and
    their self-normalised weights ∝ exp(Q / α) [n]."""

    actions: Tensor
    weights: Tensor

    @property
    def ess_fraction(self) -> float:
        """Effective sample size / n (Kish): how well the bank covers the target."""
        return float(1 / (self.weights.square().sum() * self.weights.numel()))

    def bins(self, edges: Tensor, dim: int = 0) -> Tensor:
        """The target's mass in each bin of action dimension `dim` ([len(edges) - 1])."""
        return binned(self.actions[:, dim], edges, self.weights)


def binned(values: Tensor, edges: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mass of (weighted) values [n] in the bins [e_i, e_i+1) between `edges` (values
    outside the ends count in the first or last bin)."""
    index = torch.bucketize(values.clamp(edges[0], edges[-1]), edges[1:-1], right=True)
    weights = torch.full_like(values, 1 / values.numel()) if weights is None else weights
    return torch.zeros(edges.numel() - 1).index_add_(0, index, weights.float())


def bank_posterior(prior: ActionDenoiser, q: QNetwork, state: Tensor, alpha: float,
                   n: int = 50_000, seed: int = 0) -> BankPosterior:
    """π*(· | state) ∝ μ(· | state) exp(Q(state, ·) / α) as a weighted bank of n prior
    actions at one state [S]."""
    check_alpha(alpha)
    if state.dim() != 1 or state.shape[0] != prior.state_dim:
        raise ValueError(f"state must be one state [{prior.state_dim}], got "
                         f"{tuple(state.shape)}")
    states = state.expand(n, -1)
    actions = sample_actions(prior, prior, states, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        weights = torch.softmax(q(states, actions) / alpha, 0)
    return BankPosterior(actions, weights)


def save_policy(policy: ControlPosterior, path: str | Path, env: str, quality: str,
                command: str, alpha_range: tuple[float, float] = ALPHA_RANGE) -> str:
    """Save the α-amortised RTB policy; return its sha256."""
    return save_weights(policy, path, {"arch": "ControlPosterior", "env": env,
                                       "quality": quality, "command": command,
                                       "alpha_min": alpha_range[0],
                                       "alpha_max": alpha_range[1], **policy.config()})


def load_policy(prior: ActionDenoiser, q: QNetwork, path: str | Path | None = None,
                asset: str = "control_pendulum_medium_policy.safetensors") -> ControlPosterior:
    """A frozen RTB policy on top of `prior` and `q`: the shipped one (`asset`), or yours."""
    def build(meta: dict) -> ControlPosterior:
        return ControlPosterior(prior, q, int(meta["residual_hidden"]),
                                int(meta["residual_layers"]))

    return freeze(load_module(path, asset, "ControlPosterior", "an RTB control policy", build))

