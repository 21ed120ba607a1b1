"""Loading saved MNIST posteriors, whatever their kind (LoRA, set experts, guided).

Apart from `posterior` and `guided` so that neither imports the other to dispatch.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from rtb_lab.checkpoint import CheckpointError
from rtb_lab.domains.images.posterior import read_adapter
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
    state, meta, path = read_adapter(prior, path, asset)
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
