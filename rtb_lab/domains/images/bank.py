"""A bank of prior samples: exact posteriors by importance resampling.

The posterior p(x) r(x)^beta / Z is the prior reweighted by r^beta. A bank of prior
trajectories, scored once by the classifier, therefore gives instant approximate
posterior samples for any class set and beta by resampling (exact as the bank grows,
but the effective sample size collapses for sharp targets).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rtb_lab.baselines.importance import effective_sample_size
from rtb_lab.diffusion import Trajectory, sample_trajectories
from rtb_lab.domains.images.classes import Classes, ClassSpace, set_log_prob
from rtb_lab.domains.images.prior import NUM_STEPS, EpsNet, decode, make_family
from rtb_lab.rtb import check_beta, importance_log_z


@torch.no_grad()
def prior_bank(prior: EpsNet, classifier: nn.Module, size: int = 1024, seed: int = 0,
               chunk: int = 256, num_steps: int = NUM_STEPS
               ) -> tuple[Trajectory, Tensor, Tensor]:
    """`size` prior trajectories, their decoded images [size, C, H, W] and the images'
    classifier log-probs [size, K]."""
    device = next(prior.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    parts = [sample_trajectories(prior, make_family(num_steps), min(chunk, size - i),
                                 prior.image_shape, generator=generator, device=device)
             for i in range(0, size, chunk)]
    bank = Trajectory.cat(parts)
    images = torch.cat([decode(prior, x) for x in bank.x.split(chunk)])
    log_probs = torch.cat([torch.log_softmax(classifier(x), 1) for x in images.split(chunk)])
    return bank, images, log_probs


class ImportanceBank:
    """Posterior samples for any class set and beta by resampling a bank of prior images.

    Self-normalised importance sampling with weights r_S(x)^beta: exact as the bank
    grows, instant for any (S, beta), but the effective sample size (ESS) shrinks as the
    target gets sharper (a single digit, a large beta), so the same few images repeat.
    That waste is what an amortised RTB posterior removes.

    Args:
        prior: the frozen prior.
        classifier: scores the decoded bank images once.
        size: prior samples in the bank.
        seed: seed of the bank's noise.
        space: the classes that class sets refer to.

    Attributes:
        images: [size, C, H, W] decoded prior samples.
        log_probs: [size, K] their classifier log-probabilities.
        last_ess: ESS of the last `sample` call.
    """

    def __init__(self, prior: EpsNet, classifier: nn.Module, size: int, *, space: ClassSpace,
                 seed: int = 0, num_steps: int = NUM_STEPS) -> None:
        self.space = space
        _, self.images, self.log_probs = prior_bank(prior, classifier, size, seed,
                                                    num_steps=num_steps)
        self.last_ess = float("nan")

    def log_reward(self, classes: Classes) -> Tensor:
        """[size] log r_S of the bank images: log max_{c in S} p(c | x)."""
        return set_log_prob(self.log_probs, self.space.mask(classes))

    def log_z(self, classes: Classes, beta: float) -> float:
        """log Z = log E_prior[r_S^beta], the bank's estimate of the target's normaliser."""
        check_beta(beta)
        return float(importance_log_z(self.log_reward(classes).double(), beta))

    def exact_metrics(self, classes: Classes, beta: float) -> dict[str, float]:
        """The posterior's in-set share and E[log r] as importance-weighted bank averages
        (no resampling noise), with the ESS of those weights."""
        check_beta(beta)
        log_r = self.log_reward(classes)
        weights = torch.softmax(beta * log_r.double(), 0)
        in_set = self.space.mask(classes).to(self.log_probs.device)[self.log_probs.argmax(1)]
        return {"in_set": float((weights * in_set).sum()),
                "mean_log_reward": float((weights * log_r).sum()),
                "ess": effective_sample_size(beta * log_r)}

    def sample(self, classes: Classes, beta: float, n: int,
               seed: int = 0) -> Tensor:
        """[n, C, H, W] images drawn with probability proportional to r_S^beta."""
        check_beta(beta)
        log_weights = beta * self.log_reward(classes)
        self.last_ess = effective_sample_size(log_weights)
        picks = torch.multinomial(torch.softmax(log_weights.double(), 0), n, replacement=True,
                                  generator=torch.Generator().manual_seed(seed))
        return self.images[picks.to(self.images.device)]
