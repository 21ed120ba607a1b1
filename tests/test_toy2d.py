"""The 2D toy domain: exact truth by quadrature, targets, the shipped prior, errors."""

from __future__ import annotations

import math

import pytest
import torch

from rtb_lab.checkpoint import MANIFEST, CheckpointError, assets_dir
from rtb_lab.diffusion import sample_trajectories
from rtb_lab.domains import toy2d
from rtb_lab.domains.toy2d import prior as toy2d_prior
from rtb_lab.domains.toy2d.gmm import GaussianMixture, grid_mixture
from rtb_lab.metrics import mass_in_modes, mode_weights, total_variation


def test_25to9_truth_matches_closed_form():
    truth = toy2d.get_target("25to9").truth()
    assert truth.log_z == pytest.approx(0.0, abs=1e-4)  # p * p9/p25 = p9, normalised
    inner = (truth.centers.abs() <= 5).all(1)
    expected = torch.tensor(toy2d.NINE_WEIGHTS, dtype=torch.float64) / 61
    torch.testing.assert_close(truth.mode_weights[inner], expected, atol=1e-4, rtol=0)
    assert float(truth.mode_weights[~inner].sum()) < 1e-5  # only tails cross cell borders
    assert truth.active_modes.shape == (9, 2)


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_custom_gaussian_reward_log_z_closed_form(beta):
    """Prior N(0, s^2 I), r = exp(-|x - a|^2 / (2 tau^2)): Z = prod_d sqrt(v/(v+s^2)) e^{...}."""
    s, tau, a = 1.5, 2.0, torch.tensor([1.0, -2.0], dtype=torch.float64)
    prior = GaussianMixture(torch.zeros(1, 2), s, torch.ones(1))
    target = toy2d.custom_target(prior, lambda x: -0.5 * (x - a.float()).square().sum(1)
                                 / tau**2, beta)
    v = tau**2 / beta
    expected = sum(0.5 * math.log(v / (v + s**2)) - float(ai) ** 2 / (2 * (v + s**2))
                   for ai in a)
    assert target.truth().log_z == pytest.approx(expected, abs=1e-4)


def test_constant_reward_gives_log_z_beta_log_c():
    target = toy2d.custom_target(grid_mixture(), lambda x: torch.full((x.shape[0],), 0.7), 3.0)
    assert target.truth().log_z == pytest.approx(2.1, abs=1e-4)
    torch.testing.assert_close(target.truth().mode_weights,
                               torch.full((25,), 1 / 25, dtype=torch.float64), atol=1e-4, rtol=0)


def test_every_named_target_builds_and_integrates():
    for name in toy2d.TARGETS:
        truth = toy2d.get_target(name, beta=0.5).truth(grid_size=200)
        assert truth.density.shape == (200, 200)
        assert float(truth.mode_weights.sum()) == pytest.approx(1.0)


def test_bad_targets_are_refused():
    with pytest.raises(KeyError, match=r"unknown toy2d target 'nope'.*25to9"):
        toy2d.get_target("nope")
    with pytest.raises(ValueError, match="beta must be"):
        toy2d.get_target("25to9", beta=-1.0)
    nan_reward = toy2d.custom_target(grid_mixture(), lambda x: x[:, 0] * float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        nan_reward.truth(grid_size=50)
    wrong_shape = toy2d.custom_target(grid_mixture(), lambda x: x)
    with pytest.raises(ValueError, match=r"shape \[B\]"):
        wrong_shape.truth(grid_size=50)
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        toy2d.get_target("25to9").checked_log_reward(torch.zeros(4, 3))


def test_bridge_endpoint_limits():
    gmm = grid_mixture()
    x = torch.randn(50, 2) * 3
    # Near t = 1 the endpoint is the current state; at t = 0 it is the mixture mean (0).
    torch.testing.assert_close(gmm.bridge_endpoint(x, torch.full((50,), 1 - 1e-7), 5.0), x,
                               atol=1e-3, rtol=0)
    torch.testing.assert_close(gmm.bridge_endpoint(torch.zeros(3, 2), torch.zeros(3), 5.0),
                               torch.zeros(3, 2), atol=1e-5, rtol=0)


def test_shipped_prior_samples_the_25_mode_mixture():
    prior = toy2d.load_prior()
    traj = sample_trajectories(prior, toy2d.make_family(), 8000, (2,),
                               generator=torch.Generator().manual_seed(0))
    gmm = grid_mixture()
    tv = total_variation(mode_weights(traj.x, gmm.means), gmm.weights)
    mass = mass_in_modes(traj.x, gmm.means, 4 * float(gmm.stds[0]))
    print(f"shipped prior: mode TV vs uniform {tv:.4f}, mass within 4 std {mass:.4f}")
    assert tv < 0.05
    assert mass > 0.98


def test_missing_and_corrupt_prior_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        toy2d.load_prior(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        toy2d.load_prior(bad)
    other = tmp_path / "other.safetensors"
    from rtb_lab.checkpoint import save_weights
    from rtb_lab.nets import DriftMLP

    save_weights(DriftMLP(hidden=8), other, {"arch": "something"})
    with pytest.raises(CheckpointError, match="not a toy2d prior"):
        toy2d.load_prior(other)


def test_shipped_prior_checksum_is_verified(tmp_path, monkeypatch):
    corrupt = tmp_path / "assets"
    corrupt.mkdir()
    (corrupt / MANIFEST).write_text((assets_dir() / MANIFEST).read_text())
    data = bytearray((assets_dir() / toy2d.PRIOR_ASSET).read_bytes())
    data[-1] ^= 0xFF
    (corrupt / toy2d.PRIOR_ASSET).write_bytes(bytes(data))
    monkeypatch.setattr(toy2d_prior, "assets_dir", lambda: corrupt)
    with pytest.raises(CheckpointError, match="corrupt: sha256"):
        toy2d.load_prior()


def test_saved_prior_round_trips(tmp_path):
    prior = toy2d.load_prior()
    path = tmp_path / "p.safetensors"
    toy2d.save_prior(prior, path, "test")
    again = toy2d.load_prior(path)
    x, t = torch.randn(5, 2), torch.rand(5) * 0.9
    torch.testing.assert_close(again(x, t), prior(x, t))
