"""Transition families and trajectory sampling (no training here)."""

from rtb_lab.diffusion.gaussian import DDPM, EulerMaruyama, GaussianFamily, gaussian_log_prob
from rtb_lab.diffusion.sampling import (
    chunked_steps,
    policy_mean_shift,
    policy_mean_std,
    policy_std_scale,
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
    "Trajectory",
    "chunked_steps",
    "gaussian_log_prob",
    "policy_mean_shift",
    "policy_mean_std",
    "policy_std_scale",
    "sample_trajectories",
    "sequential_log_prob",
    "step_log_probs",
    "trajectory_log_prob",
]
