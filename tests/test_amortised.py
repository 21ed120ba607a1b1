"""The beta-amortised posterior: starts at the prior, and the shipped one is accurate."""

from __future__ import annotations

import pytest
import torch

from rtb_lab.checkpoint import CheckpointError, assets_dir
from rtb_lab.diffusion import trajectory_log_prob
from rtb_lab.domains import toy2d
from rtb_lab.domains.toy2d import amortised as toy2d_amortised
from rtb_lab.train import TrainConfig


def test_conditional_posterior_starts_at_the_prior_for_every_beta():
    prior = toy2d.load_prior()
    posterior = toy2d_amortised.conditional_posterior(prior)
    for beta in (0.3, 1.0, 3.0):
        traj = toy2d_amortised.sample_trajectory(prior, beta, 16, seed=1)
        torch.testing.assert_close(trajectory_log_prob(posterior, toy2d.make_family(), traj),
                                   trajectory_log_prob(prior, toy2d.make_family(), traj))


def test_beta_conditions_and_sampler():
    torch.testing.assert_close(toy2d_amortised.beta_condition(2.0, 3),
                               torch.full((3, 1), float(torch.log(torch.tensor(2.0)))))
    with pytest.raises(ValueError, match="beta must be > 0"):
        toy2d_amortised.beta_condition(0.0, 3)
    with pytest.raises(ValueError, match="0 < low < high"):
        toy2d_amortised.make_beta_sampler((2.0, 1.0))
    draws = toy2d_amortised.make_beta_sampler((0.5, 2.0))(1000, torch.Generator().manual_seed(0))
    assert float(draws.exp().min()) >= 0.5 and float(draws.exp().max()) <= 2.0


def test_amortised_training_runs_with_vargrad_groups():
    config = TrainConfig(steps=3, batch_size=32, cond_groups=4, loss="vargrad", eval_every=0,
                         log_z_init_samples=64)
    trainer = toy2d_amortised.make_amortised_trainer("25to9", config)
    trainer.train(progress=False)
    assert trainer.step == 3
    assert trainer.history[-1]["loss"] > 0


@pytest.mark.slow
def test_shipped_amortised_posterior_matches_the_exact_posterior():
    posterior, meta = toy2d_amortised.load_amortised()
    assert meta["target"] == "25to9"
    metrics = toy2d_amortised.evaluate_betas(posterior, toy2d.get_target("25to9"), n=4000)
    print("shipped amortised posterior:", {k: round(v, 4) for k, v in metrics.items()})
    for beta in (0.5, 1.0, 2.0):
        assert metrics[f"tv@{beta:g}"] <= 0.10
        assert metrics[f"mass@{beta:g}"] >= 0.97


def test_a_prior_file_is_not_an_amortised_posterior():
    with pytest.raises(CheckpointError, match="not a toy2d amortised posterior"):
        toy2d_amortised.load_amortised(assets_dir() / toy2d.PRIOR_ASSET)
