"""Inverse problems: linear degradations, the measurement reward, DPS and metrics.

Observe y = A x + sigma eps; with r(x) = N(y; A x, sigma^2 I) and beta = 1, RTB samples
the Bayesian posterior p(x | y). See docs/inverse.md.
"""

from rtb_lab.inverse.dps import denoiser, dps_sample, tune_zeta
from rtb_lab.inverse.measurement import MeasurementReward, check_noise, measure
from rtb_lab.inverse.operators import (
    Downsample,
    GaussianBlur,
    Inpaint,
    LinearOperator,
    MatrixOperator,
    box_mask,
    gaussian_kernel,
    random_pixel_mask,
)

__all__ = ["Downsample", "GaussianBlur", "Inpaint", "LinearOperator", "MatrixOperator",
           "MeasurementReward", "box_mask", "check_noise", "denoiser", "dps_sample",
           "gaussian_kernel", "measure", "random_pixel_mask", "tune_zeta"]
