"""A posterior policy with learned classifier guidance, trained by RTB.

The policy's noise prediction is its LoRA network's, plus the reward's gradient at the
frozen prior's clean-image estimate, with a learned scale per step (and per class set):

    eps(x_t) = eps_lora(x_t) - beta * c[set, k] * sqrt(1 - abar_t) / sqrt(abar_t)
                                     * grad_x0 log r(x0_prior(x_t))

(the official RTB code calls this the Langevin parameterisation). The guidance
direction depends only on frozen networks, so it is a fixed feature of the state: the
policy stays a Gaussian whose log-probability RTB differentiates with respect to the
LoRA weights and the scales c only, and RTB's optimum is still the exact posterior. The
scales start at 0, so the policy starts at its base posterior (the prior, for a fresh
LoRA). Guidance alone is biased (on our prior, c = 1 at every step puts 99.6% of samples
in "even", where the exact posterior has 95%); RTB learns how much of it to use when.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from rtb_lab.domains.mnist_posterior import LoRAPosterior, SetExpertPosterior
from rtb_lab.domains.mnist_prior import NUM_STEPS, EpsNet, make_family
from rtb_lab.domains.mnist_reward import (
    DigitClassifier,
    class_mask,
    class_set_log_prob,
    split_condition,
)
from rtb_lab.rtb import check_beta


def _rows(values: Tensor) -> Tensor:
    return values.view(-1, 1, 1, 1)


class GuidedPosterior(nn.Module):
    """A LoRA posterior plus classifier guidance with learned per-step scales.

    Args:
        base: the LoRA posterior (`LoRAPosterior` for one class set and beta, or a
            conditional `SetExpertPosterior`: then the scales are per trained set too).
        prior: the frozen prior (its clean-image estimate feeds the guidance).
        classifier: the frozen reward classifier (differentiable in its input).
        classes: the class set of a single-target posterior (None for a conditional one).
        beta: the reward exponent of a single-target posterior.
        num_steps: T, the sampling steps the scales are learned for.
    """

    def __init__(self, base: LoRAPosterior, prior: EpsNet, classifier: DigitClassifier,
                 classes: str | int | Iterable[int] | None = None, beta: float = 1.0,
                 num_steps: int = NUM_STEPS) -> None:
        super().__init__()
        conditional = isinstance(base, SetExpertPosterior)
        if conditional == (classes is not None):
            raise ValueError("give classes (and beta) for a single-target base posterior, "
                             "and none for a conditional SetExpertPosterior")
        check_beta(beta)
        self.base, self.conditional, self.beta, self.num_steps = base, conditional, beta, num_steps
        # Frozen helpers in a list: not submodules, so never saved or trained with us.
        self._frozen = [prior, classifier]
        self.guide = nn.Parameter(torch.zeros(len(base.sets) if conditional else 1, num_steps))
        if not conditional:
            self.register_buffer("mask", class_mask(classes))
        self.family = make_family(num_steps)  # the chain's x0 estimate and noise levels
        times = self.family.train_times[:-1]
        step_of_time = torch.full((int(times.max()) + 1,), -1, dtype=torch.long)
        step_of_time[times] = torch.arange(num_steps)
        self.register_buffer("step_of_time", step_of_time)
        self.to(next(base.parameters()).device)

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

    def log_reward(self, x0: Tensor, cond: Tensor | None) -> Tensor:
        """[B] log r of clean images under this posterior's class set(s)."""
        mask = self.mask if cond is None or not self.conditional else split_condition(cond)[0]
        return class_set_log_prob(self._frozen[1], x0, mask)

    def guidance(self, x: Tensor, t: Tensor, k: Tensor, cond: Tensor | None) -> Tensor:
        """grad_x0 log r at the prior's clean-image estimate, times sqrt(1-abar)/sqrt(abar):
        the noise-space direction (detached: it does not depend on our parameters)."""
        with torch.no_grad():
            x0 = self.family.predict_x0(self._frozen[0](x, t), x, k)
        with torch.enable_grad():
            x0 = x0.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.log_reward(x0, cond).sum(), x0)
        abar = _rows(self.family.abar_now.to(x.device)[k])
        return grad * ((1 - abar) / abar).sqrt()

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Noise prediction: the base posterior's, minus the scaled guidance direction."""
        k = self.steps(t)
        return self.base(x, t, cond) - _rows(self.scale(k, cond)) * self.guidance(x, t, k, cond)

    def std_scale(self, k: Tensor, cond: Tensor | None = None) -> Tensor | None:
        """The base posterior's learned std factors, if it has them."""
        return self.base.std_scale(k, cond)
