"""How good a set of posterior samples is for one degraded image.

`summarise` takes S samples per image and the true images and reports the posterior
mean's PSNR and SSIM (torchmetrics), the samples' own PSNR, calibration (the share of
true pixels inside each pixel's central 90% posterior interval: 0.9 when the spread is
right, lower when overconfident), and the measurement residual relative to sigma.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from rtb_lab.inverse.measurement import MeasurementReward

DATA_RANGE = 2.0  # images live in [-1, 1] (model space)


def psnr(estimate: Tensor, truth: Tensor) -> Tensor:
    """[B] PSNR in dB of images [B, C, H, W] in [-1, 1]."""
    return peak_signal_noise_ratio(estimate.clamp(-1, 1), truth, data_range=DATA_RANGE,
                                   reduction="none", dim=(1, 2, 3))


def ssim(estimate: Tensor, truth: Tensor) -> Tensor:
    """[B] SSIM of images [B, C, H, W] in [-1, 1] (Gaussian window 11, sigma 1.5)."""
    return structural_similarity_index_measure(estimate.clamp(-1, 1), truth,
                                               data_range=DATA_RANGE, reduction="none")


def calibration(samples: Tensor, truth: Tensor, level: float = 0.9) -> float:
    """Share of true values inside the per-value central `level` interval of the samples.

    Args:
        samples: [S, B, ...] posterior samples, S per signal.
        truth: [B, ...] the true signals.
    """
    if samples.dim() != truth.dim() + 1 or samples.shape[1:] != truth.shape:
        raise ValueError(f"expected samples [S, {', '.join(map(str, truth.shape))}] for "
                         f"truth {list(truth.shape)}, got {list(samples.shape)}")
    if samples.shape[0] < 2:
        raise ValueError("calibration needs at least 2 samples per signal")
    tail = (1 - level) / 2
    low, high = torch.quantile(samples.float(), torch.tensor([tail, 1 - tail]), dim=0)
    return float(((truth >= low) & (truth <= high)).float().mean())


def summarise(samples: Tensor, truth: Tensor, reward: MeasurementReward) -> dict[str, float]:
    """Metrics of S posterior samples per image against the true images.

    Args:
        samples: [S, B, C, H, W] in [-1, 1]; sample s of image b is samples[s, b].
        truth: [B, C, H, W].
        reward: the measurement (one y per image, [B, *out]).

    Returns:
        psnr_mean and ssim_mean (of the posterior mean), psnr_sample (mean over samples),
        calibration_90, residual (||y - A x|| / (sigma sqrt m), 1 when consistent), and
        pixel_std (the mean per-pixel posterior standard deviation).
    """
    num, batch = samples.shape[:2]
    mean = samples.mean(0)
    flat = samples.flatten(0, 1)
    repeated = truth.repeat(num, *([1] * (truth.dim() - 1)))
    tiled = MeasurementReward(reward.operator, reward.y.repeat(num, *([1] * (reward.y.dim() - 1))),
                              reward.sigma) if reward.y.shape[0] == batch else reward
    return {
        "psnr_mean": float(psnr(mean, truth).mean()),
        "ssim_mean": float(ssim(mean, truth).mean()),
        "psnr_sample": float(psnr(flat, repeated).mean()),
        "calibration_90": calibration(samples, truth),
        "residual": float(tiled.relative_residual(flat).mean()),
        "pixel_std": float(samples.std(0).mean()),
    }
