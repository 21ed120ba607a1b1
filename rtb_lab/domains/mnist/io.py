"""Loading saved MNIST posteriors, whatever their kind (LoRA, set experts, guided).

Apart from `posterior` and `guided` so that neither imports the other to dispatch.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from rtb_lab.checkpoint import CheckpointError, load_weights, shipped_asset
from rtb_lab.domains.mnist.guided import guided_from_state
from rtb_lab.domains.mnist.posterior import (
    CONDITIONAL_ASSET,
    EVEN_ASSET,
    build_posterior,
    load_adapter,
)
from rtb_lab.domains.mnist.prior import EpsNet


def load_posterior(prior: EpsNet, path: str | Path | None = None,
                   asset: str = EVEN_ASSET) -> nn.Module:
    """Load an adapter onto `prior` (default: the shipped posterior for even digits, beta 1).

    A file saved from a `guided.GuidedPosterior` loads as one, with the value network
    it recorded (see `guided.guided_from_state`).

    Raises:
        CheckpointError: missing or corrupt file, or an adapter trained on another prior.
    """
    sha256 = None
    if path is None:
        path, sha256 = shipped_asset(asset)
    tensors, meta = load_weights(path, sha256)
    if meta.get("prior_sha256") != getattr(prior, "sha256", None):
        raise CheckpointError(
            f"{path} is an adapter for another prior (sha256 {str(meta.get('prior_sha256'))[:12]}"
            f"...), not for this one ({str(getattr(prior, 'sha256', None))[:12]}...)")
    state = {meta[key]: tensor for key, tensor in tensors.items()}
    if meta.get("arch") == "GuidedPosterior":
        return guided_from_state(prior, meta, state, path)
    posterior = build_posterior(prior, meta, path)
    load_adapter(posterior, state, path)
    return posterior


def load_conditional_posterior(prior: EpsNet, path: str | Path | None = None,
                               asset: str = CONDITIONAL_ASSET) -> nn.Module:
    """Load a conditional posterior: a `SetExpertPosterior`, or a value-guided
    `guided.GuidedPosterior` around one. Default: the shipped value-guided one."""
    posterior = load_posterior(prior, path, asset)
    if posterior.cond_dim == 0:
        raise CheckpointError(f"{path} holds a single-target posterior, not a conditional one")
    return posterior
