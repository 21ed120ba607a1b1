"""Transition families and trajectory sampling (no training here)."""

from rtb_lab.diffusion.family import TransitionFamily
from rtb_lab.diffusion.gaussian import DDPM, EulerMaruyama, GaussianFamily, gaussian_log_prob
from rtb_lab.diffusion.masked import MaskedDiffusion, exact_log_marginal
from rtb_lab.diffusion.sampling import (
    PolicyNet,
    chunked_steps,
    sample_trajectories,
    sequential_log_prob,
    step_log_probs,
    trajectory_log_prob,
)
from rtb_lab.diffusion.trajectory import Trajectory

__all__ = [
    "DDPM",
    "EulerMaruyama",
    "GaussianFamily",
    "MaskedDiffusion",
    "PolicyNet",
    "TransitionFamily",
    "Trajectory",
    "chunked_steps",
    "exact_log_marginal",
    "gaussian_log_prob",
    "sample_trajectories",
    "sequential_log_prob",
    "step_log_probs",
    "trajectory_log_prob",
]
