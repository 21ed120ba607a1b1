"""Shared fixtures: tiny frozen priors and trajectories for fast unit tests."""

from __future__ import annotations

import pytest
import torch

from rtb_lab.diffusion import EulerMaruyama, sample_trajectories
from rtb_lab.nets import DriftMLP
from rtb_lab.rtb import freeze


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)


@pytest.fixture
def family() -> EulerMaruyama:
    return EulerMaruyama(num_steps=8, sigma2=5.0)


@pytest.fixture
def tiny_prior() -> DriftMLP:
    torch.manual_seed(1)
    return freeze(DriftMLP(dim=2, hidden=16))


@pytest.fixture
def traj(tiny_prior, family):
    return sample_trajectories(tiny_prior, family, 6, (2,), explore=0.3,
                               generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def unet_prior():
    """A random (untrained) small UNet prior for MNIST: enough to test the machinery fast."""
    from rtb_lab.domains.mnist import prior as mnist_prior

    torch.manual_seed(0)
    prior = freeze(mnist_prior.EpsNet(mnist_prior.make_unet((8, 16, 16))))
    prior.sha256 = "tiny-prior"
    return prior
