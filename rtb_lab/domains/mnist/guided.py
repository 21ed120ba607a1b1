"""A posterior policy with learned value guidance, trained by RTB.

The policy is its LoRA network plus the gradient of a learned value
h(x_t) = E[r(x_0) | x_t] (a `value.NoisyClassifier`), with a learned scale per step
(and per class set). That gradient is the exact posterior's extra drift (Doob's
h-transform) in the limit of small steps, so in noise-prediction terms

    eps(x_t) = eps_lora(x_t) - beta c[set, k] sqrt(1 - abar_t) grad_x log h(x_t).

The direction depends only on a frozen network, so it is a fixed feature of the state:
the policy stays a Gaussian whose log-probability RTB differentiates with respect to the
LoRA weights and the scales c only, and RTB's optimum is still the exact posterior.
With the default ``init_scale=0`` the policy starts at its base posterior (the prior,
for a fresh LoRA). Value guidance at c = 1 is already close to the posterior's path (see
docs/mnist.md), so the trainers start value-guided posteriors from ``init_scale=1``.
(Guidance by the reward's gradient at the prior's clean-image estimate, DPS, is biased
and far from the posterior's path; it is a baseline: `rtb_lab.baselines.guidance.GuidedEps`.)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rtb_lab.checkpoint import CheckpointError
from rtb_lab.domains.mnist.posterior import (
    LoRAPosterior,
    SetExpertPosterior,
    build_posterior,
    load_adapter,
)
from rtb_lab.domains.mnist.prior import NUM_STEPS, EpsNet, make_family
from rtb_lab.domains.mnist.reward import (
    class_mask,
    make_condition,
    parse_classes,
    split_condition,
)
from rtb_lab.domains.mnist.value import CHAIN_VALUE_ASSET, NoisyClassifier, value_network
from rtb_lab.rtb import check_beta


def _rows(values: Tensor) -> Tensor:
    return values.view(-1, 1, 1, 1)


class GuidedPosterior(nn.Module):
    """A LoRA posterior plus value guidance with learned per-step scales.

    Args:
        base: the LoRA posterior (`LoRAPosterior` for one class set and beta, or a
            conditional `SetExpertPosterior`: then the scales are per trained set too).
        classes: the class set of a single-target posterior (None for a conditional one).
        beta: the reward exponent of a single-target posterior.
        num_steps: T, the sampling steps the scales are learned for.
        value: the frozen `NoisyClassifier` whose log-value gradient guides each step.
        init_scale: the scales' start (0: the base posterior itself).
    """

    def __init__(self, base: LoRAPosterior, classes: str | int | Iterable[int] | None = None,
                 beta: float = 1.0, num_steps: int = NUM_STEPS, *,
                 value: NoisyClassifier, init_scale: float = 0.0) -> None:
        super().__init__()
        conditional = isinstance(base, SetExpertPosterior)
        if conditional == (classes is not None):
            raise ValueError("give classes (and beta) for a single-target base posterior, "
                             "and none for a conditional SetExpertPosterior")
        if value is None:
            raise ValueError("GuidedPosterior needs a value network (value=, a "
                             "NoisyClassifier, e.g. mnist.value_network(CHAIN_VALUE_ASSET)); "
                             "for DPS-style reward guidance see baselines.guidance.GuidedEps")
        check_beta(beta)
        self.base, self.conditional, self.beta, self.num_steps = base, conditional, beta, num_steps
        self.classes = None if conditional else classes
        # The frozen value in a tuple: not a submodule, so never saved or trained with us.
        self._value = (value,)
        self.guide = nn.Parameter(torch.full((len(base.sets) if conditional else 1, num_steps),
                                             float(init_scale)))
        if not conditional:
            self.register_buffer("mask", class_mask(classes))
        self.family = make_family(num_steps)  # the chain's noise levels
        times = self.family.train_times[:-1]
        step_of_time = torch.full((int(times.max()) + 1,), -1, dtype=torch.long)
        step_of_time[times] = torch.arange(num_steps)
        self.register_buffer("step_of_time", step_of_time)
        self.to(next(base.parameters()).device)

    @property
    def value(self) -> NoisyClassifier:
        """The frozen value network whose gradient guides the steps."""
        return self._value[0]

    def steps(self, t: Tensor) -> Tensor:
        """[B] step indices k of training times t [B] on this posterior's T-step chain."""
        index = t.long().clamp(0, self.step_of_time.numel() - 1)
        k = self.step_of_time[index]
        if bool((k < 0).any()) or bool((index != t.long()).any()):
            raise ValueError(f"time {float(t[(k < 0) | (index != t.long())][0])} is not a step "
                             f"of this posterior's T = {self.num_steps} chain")
        return k

    def scale(self, k: Tensor, cond: Tensor | None) -> Tensor:
        """[B] beta * c[set, k]: the guidance weight of each row."""
        if not self.conditional:
            return self.beta * self.guide[0, k]
        _, beta = split_condition(cond)
        return beta * self.guide[self.base.set_index(cond), k]

    def _mask(self, cond: Tensor | None) -> Tensor:
        return self.mask if cond is None or not self.conditional else split_condition(cond)[0]

    def guidance(self, x: Tensor, t: Tensor, k: Tensor, cond: Tensor | None) -> Tensor:
        """The noise-space guidance direction sqrt(1-abar) grad_x log h(x_t) (detached: it
        does not depend on our parameters)."""
        abar = _rows(self.family.abar_now.to(x.device)[k])
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.value.log_value(x, t, self._mask(cond)).sum(), x)
        return grad * (1 - abar).sqrt()

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Noise prediction: the base posterior's, minus the scaled guidance direction."""
        k = self.steps(t)
        return self.base(x, t, cond) - _rows(self.scale(k, cond)) * self.guidance(x, t, k, cond)

    # ------------------------------------------------------------ saving, conditioning
    @property
    def prior_sha256(self) -> str | None:
        return self.base.prior_sha256

    @property
    def cond_dim(self) -> int:
        return self.base.cond_dim

    @property
    def sets(self) -> tuple[tuple[int, ...], ...]:
        """The trained class sets of a conditional posterior."""
        return self.base.sets

    def set_names(self) -> list[str]:
        """Readable names of a conditional posterior's trained sets."""
        return self.base.set_names()

    def metadata(self) -> dict[str, Any]:
        """What `load_posterior` needs to rebuild this module (base layout included)."""
        return {"arch": "GuidedPosterior", "base": self.base.metadata(), "guidance": "value",
                "value_source": getattr(self.value, "source", None),
                "classes": None if self.classes is None else list(parse_classes(self.classes)),
                "beta": self.beta, "num_steps": self.num_steps}

    def adapter_state_dict(self) -> dict[str, Tensor]:
        """The base posterior's adapter (under "base.") and the guidance scales."""
        return {"guide": self.guide.detach(),
                **{f"base.{name}": t for name, t in self.base.adapter_state_dict().items()}}

    @torch.no_grad()
    def specialise(self, prior: EpsNet, classes: str | int | Iterable[int],
                   beta: float) -> GuidedPosterior:
        """A conditional posterior fixed to one trained set and beta (same outputs, a
        cheaper network: see `SetExpertPosterior.specialise`)."""
        if not self.conditional:
            raise TypeError("specialise is for a conditional posterior; this one is "
                            f"already for {self.classes} at beta {self.beta}")
        index = int(self.base.set_index(make_condition(classes, beta).to(self.guide.device)))
        single = GuidedPosterior(self.base.specialise(prior, classes, beta), classes, beta,
                                 self.num_steps, value=self.value)
        single.guide.copy_(self.guide[index][None])
        return single.requires_grad_(False)


def guided_from_state(prior: EpsNet, meta: dict[str, Any], state: dict[str, Tensor],
                      path: str | Path = "") -> GuidedPosterior:
    """Rebuild a saved `GuidedPosterior` (called by `mnist.load_posterior`) with the
    value network it recorded: a shipped asset or your file (`CHAIN_VALUE_ASSET` where
    it recorded none). Files saved before look-ahead guidance was removed record
    ``"lookahead": false`` and load as before.

    Raises:
        CheckpointError: reward or look-ahead guidance (both removed), or tensors that do
            not fit the recorded layout.
    """
    if meta.get("guidance") != "value":
        raise CheckpointError(f"{path} holds a reward-guided posterior (guidance="
                              f"{meta.get('guidance')!r}); reward guidance was removed from "
                              "GuidedPosterior (DPS is baselines.guidance.GuidedEps)")
    if meta.get("lookahead"):
        raise CheckpointError(f"{path} holds a look-ahead value-guided posterior; look-ahead "
                              "guidance was removed from rtb-lab (it is in the git history, "
                              "commit 4f4a499)")
    device = next(prior.parameters()).device
    base = build_posterior(prior, meta.get("base", {}), path)
    value = value_network(meta.get("value_source") or CHAIN_VALUE_ASSET, device)
    posterior = GuidedPosterior(base, meta.get("classes"), float(meta.get("beta", 1.0)),
                                int(meta["num_steps"]), value=value)
    if "guide" not in state or state["guide"].shape != posterior.guide.shape:
        raise CheckpointError(f"{path} does not hold this posterior's guidance scales")
    with torch.no_grad():
        posterior.guide.copy_(state["guide"])
    load_adapter(base, {name.removeprefix("base."): t for name, t in state.items()
                        if name != "guide"}, path)
    return posterior
