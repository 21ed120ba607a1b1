"""The 2D toy prior: the paper's Euler-Maruyama process and the prior network.

The prior *network* is a time-embedded MLP trained to reproduce the 25-mode mixture
through the paper's process (T=100, sigma^2=5) by regressing its endpoint prediction
onto the closed-form E[X_1 | X_t] of the Brownian bridge (see
`GaussianMixture.bridge_endpoint`); `train_prior` does it, `load_prior` loads the
shipped, sha256-checked weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from rtb_lab.checkpoint import MANIFEST, CheckpointError, assets_dir, load_weights, save_weights
from rtb_lab.diffusion import EulerMaruyama
from rtb_lab.domains.toy2d.gmm import GaussianMixture, grid_mixture
from rtb_lab.nets import DriftMLP
from rtb_lab.rtb import freeze

NUM_STEPS, SIGMA2 = 100, 5.0
PRIOR_ASSET = "toy2d_prior.safetensors"


def make_family() -> EulerMaruyama:
    """The paper's 2D process: 100 Euler-Maruyama steps with sigma^2 = 5."""
    return EulerMaruyama(NUM_STEPS, SIGMA2)


class EndpointDrift(nn.Module):
    """Drift ``(xhat_1(x, t) - x) / (1 - t)`` from a network that predicts the endpoint.

    Predicting the endpoint (bounded, like a denoiser's x0) is far better conditioned
    than predicting the drift, which grows like 1/(1 - t) near the end.
    """

    def __init__(self, net: DriftMLP) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        return (self.net(x, t, cond) - x) / (1 - t)[:, None]

    @property
    def dim(self) -> int:
        return self.net.dim



def make_prior_net(hidden: int = 64, num_layers: int = 2, cond_dim: int = 0) -> EndpointDrift:
    """The toy prior architecture (untrained): an endpoint-predicting DriftMLP."""
    return EndpointDrift(DriftMLP(2, hidden, num_layers, cond_dim))


def train_prior(prior: GaussianMixture | None = None, *, steps: int = 6000,
                batch_size: int = 2048, lr: float = 3e-3, hidden: int = 64,
                num_layers: int = 2, seed: int = 0, progress: bool = True) -> EndpointDrift:
    """Fit a prior network whose Euler-Maruyama chain samples the mixture `prior`.

    Regression of the endpoint prediction xhat_1(x_t, t) onto the exact E[X_1 | X_t = x_t]
    at bridge states x_t = t X_1 + sqrt(sigma^2 t (1-t)) xi, on the T sampling times
    (a Rao-Blackwellised bridge matching: the regression target has no noise).

    Returns:
        The trained, frozen network.
    """
    prior = prior or grid_mixture()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = make_prior_net(hidden, num_layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in tqdm(range(steps), desc="prior", disable=not progress):
        t = torch.randint(NUM_STEPS, (batch_size,), generator=generator).float() / NUM_STEPS
        x_t = prior.bridge_marginal_sample(t, SIGMA2, generator)
        target = prior.bridge_endpoint(x_t, t, SIGMA2)
        loss = (model.net(x_t, t) - target).square().sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return freeze(model)


def save_prior(model: EndpointDrift, path: str | Path, command: str) -> str:
    """Save prior weights as safetensors (with architecture and provenance); return sha256."""
    meta = {"arch": "EndpointDrift(DriftMLP)", **model.net.config(), "num_steps": NUM_STEPS,
            "sigma2": SIGMA2, "command": command}
    return save_weights(model, path, meta)


def load_prior(path: str | Path | None = None, device: torch.device | str = "cpu"
               ) -> EndpointDrift:
    """Load a frozen toy prior: the shipped one (sha256-checked) or a file you trained.

    Raises:
        CheckpointError: if the file is missing, corrupt or not a toy2d prior.
    """
    sha256 = None
    if path is None:
        manifest = json.loads((assets_dir() / MANIFEST).read_text())
        path, sha256 = assets_dir() / PRIOR_ASSET, manifest[PRIOR_ASSET]["sha256"]
    tensors, meta = load_weights(path, sha256)
    if meta.get("arch") != "EndpointDrift(DriftMLP)":
        raise CheckpointError(f"{path} is not a toy2d prior (metadata arch={meta.get('arch')!r})")
    model = make_prior_net(meta["hidden"], meta["num_layers"], meta["cond_dim"])
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not match the toy2d prior architecture: {error}") \
            from error
    return freeze(model.to(device))

