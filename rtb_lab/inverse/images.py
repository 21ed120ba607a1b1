"""Inverse problems on an image prior (MNIST, the CIFAR-10 stand-in): DPS, the prior's
importance-resampled posterior, and RTB fine-tuned for one observation.

The image prior is a DDPM whose chain ends at a slightly noisy state x_T that the frozen
prior decodes (`rtb_lab.domains.images.prior.decode`); the reward is the measurement
likelihood of the decoded image, so RTB's target is p(x_T) N(y; A decode(x_T), sigma^2 I).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from rtb_lab.baselines.importance import effective_sample_size
from rtb_lab.diffusion import DDPM, sample_trajectories
from rtb_lab.domains.images.posterior import LoRAPosterior
from rtb_lab.domains.images.prior import EpsNet, decode, make_family
from rtb_lab.inverse.dps import dps_sample
from rtb_lab.inverse.measurement import MeasurementReward
from rtb_lab.inverse.operators import LinearOperator
from rtb_lab.train import RTBTrainer, TrainConfig

# RTB for one observation: MNIST's class-reward recipe (batch 32, T = 20, 5 of the 20
# steps in the gradient), with lr 1e-3 (3e-3 diverged on the sharp likelihood).
OBSERVATION_CONFIG = TrainConfig(steps=200, batch_size=32, lr=1e-3, lr_end=1e-4, log_z_lr=0.1,
                                 explore=0.1, explore_hold=10, explore_end=50, chunk_steps=10,
                                 grad_steps=5, grad_clip=1.0, log_z_init_samples=256,
                                 eval_every=0)

# DPS step sizes on the MNIST prior at sigma = 0.1, tuned by the posterior mean's PSNR on
# 6 held-out test digits (indices 1000-1005, 8 samples each) over zeta in {1 (not for blur),
# 2, 4, 8, 16, 32}: blur (width 1.5) 24.6 dB at 16, box inpainting 19.8 dB at 8, 2x downsampling
# 27.7 dB at 8 (docs/inverse.md has the whole sweep).
DPS_ZETA = {"blur": 16.0, "inpaint": 8.0, "downsample": 8.0}


@dataclass
class ImageProblem:
    """One degraded image: the prior, the degradation, the noise and the observation.

    Attributes:
        prior: the frozen image prior.
        operator: the degradation A (its in_shape is the prior's image shape).
        sigma: the noise standard deviation, in model space ([-1, 1] pixels).
        y: [1, *out_shape] the observation.
        num_steps: sampling steps T of the prior's chain.
    """

    prior: EpsNet
    operator: LinearOperator
    sigma: float
    y: Tensor
    num_steps: int = 20

    def __post_init__(self) -> None:
        if tuple(self.operator.in_shape) != tuple(self.prior.image_shape):
            raise ValueError(f"the operator takes images {list(self.operator.in_shape)}, the "
                             f"prior makes {list(self.prior.image_shape)}")
        self.reward = MeasurementReward(self.operator, self.y, self.sigma)
        self.family: DDPM = make_family(self.num_steps)

    def log_reward(self, x_end: Tensor) -> Tensor:
        """[B] log N(y; A decode(x_T), sigma^2 I) of final chain states x_T."""
        return self.reward(decode(self.prior, x_end))


def dps_images(problem: ImageProblem, zeta: float, num: int,
               generator: torch.Generator | None = None) -> Tensor:
    """[num, C, H, W] DPS reconstructions (decoded), step size zeta."""
    return dps_sample(problem.prior, problem.family, problem.reward, zeta, num,
                      tuple(problem.prior.image_shape),
                      decode=lambda x: decode(problem.prior, x), generator=generator)


@torch.no_grad()
def bank_images(problem: ImageProblem, num: int, bank_size: int = 1024,
                generator: torch.Generator | None = None) -> tuple[Tensor, float]:
    """Importance-resample `num` images from `bank_size` prior samples by the likelihood.

    Exact as the bank grows; with a sharp likelihood the effective sample size collapses
    (then the draws repeat a few images), which is why it is reported.

    Returns:
        [num, C, H, W] images, and the bank's ESS (in samples).
    """
    traj = sample_trajectories(problem.prior, problem.family, bank_size,
                               tuple(problem.prior.image_shape), generator=generator)
    images = decode(problem.prior, traj.x)
    log_w = problem.reward(images)
    index = torch.multinomial(torch.softmax(log_w.double(), 0), num, replacement=True,
                              generator=generator)
    return images[index], effective_sample_size(log_w)


def observation_trainer(problem: ImageProblem, config: TrainConfig | None = None, *,
                        rank: int = 8) -> RTBTrainer:
    """RTB for p(x) N(y; A x, sigma^2 I) of one observation: a rank-`rank` LoRA posterior
    from the prior, beta = 1 (the Bayesian posterior), learned log Z = log p(y)."""
    config = replace(config or OBSERVATION_CONFIG, beta=1.0)
    return RTBTrainer(problem.prior, LoRAPosterior(problem.prior, rank), problem.family,
                      problem.log_reward, tuple(problem.prior.image_shape), config)


@torch.no_grad()
def posterior_images(trainer: RTBTrainer, num: int,
                     generator: torch.Generator | None = None) -> Tensor:
    """[num, C, H, W] decoded samples of a trained observation posterior."""
    return decode(trainer.prior, trainer.sample(num, generator=generator).x)
