"""rtb-lab: learn and explore Relative Trajectory Balance (RTB).

Fine-tune a frozen diffusion prior p(x) into the posterior p(x) r(x)^beta
(Venkatraman et al., NeurIPS 2024). The public API is re-exported here; domains
live in `rtb_lab.domains` (``rtb_lab.domains.get(name)``; see docs/design.md).
"""

from rtb_lab.checkpoint import CheckpointError, load_weights, save_weights
from rtb_lab.config import cache_dir, is_fast
from rtb_lab.device import get_device, seed_everything
from rtb_lab.diffusion import (
    DDPM,
    EulerMaruyama,
    GaussianFamily,
    Trajectory,
    TransitionFamily,
    sample_trajectories,
    step_log_probs,
    trajectory_log_prob,
)
from rtb_lab.nets import DriftMLP, ResidualPosterior, posterior_from_prior
from rtb_lab.replay import ReplayBuffer
from rtb_lab.resample import ResampleResult, kl_to_target, resample_posterior
from rtb_lab.rtb import (
    FrozenPriorError,
    LogZ,
    backward_through_trajectories,
    check_frozen,
    freeze,
    importance_log_z,
    rtb_loss,
    rtb_residual,
    vargrad_loss,
    vargrad_residual,
)
from rtb_lab.train import RTBTrainer, TrainConfig

__version__ = "0.1.0"

__all__ = [
    "DDPM",
    "CheckpointError",
    "DriftMLP",
    "EulerMaruyama",
    "FrozenPriorError",
    "GaussianFamily",
    "LogZ",
    "RTBTrainer",
    "ReplayBuffer",
    "ResampleResult",
    "ResidualPosterior",
    "TrainConfig",
    "TransitionFamily",
    "Trajectory",
    "backward_through_trajectories",
    "cache_dir",
    "check_frozen",
    "freeze",
    "get_device",
    "importance_log_z",
    "is_fast",
    "kl_to_target",
    "load_weights",
    "posterior_from_prior",
    "resample_posterior",
    "rtb_loss",
    "rtb_residual",
    "sample_trajectories",
    "save_weights",
    "seed_everything",
    "step_log_probs",
    "trajectory_log_prob",
    "vargrad_loss",
    "vargrad_residual",
]
