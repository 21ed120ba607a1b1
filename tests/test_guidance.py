"""Guidance is biased on the toy posterior (what the 2D tutorial shows)."""

from __future__ import annotations

import torch

from rtb_lab.baselines.guidance import GuidedDrift, sample_guided
from rtb_lab.domains import toy2d


def test_guided_drift_adds_the_scaled_reward_gradient():
    prior = toy2d.load_prior()
    log_r = lambda x: -0.5 * (x - 3.0).square().sum(1)  # noqa: E731  grad = 3 - x
    guided = GuidedDrift(prior, log_r, sigma2=5.0, scale=0.5)
    x, t = torch.randn(4, 2), torch.full((4,), 0.3)
    torch.testing.assert_close(guided(x, t), prior(x, t) + 0.5 * 5.0 * (3.0 - x))


def test_naive_guidance_misses_the_exact_posterior():
    target = toy2d.get_target("25to9")
    x = sample_guided(toy2d.load_prior(), toy2d.make_family(), target.checked_log_reward, 2000,
                      generator=torch.Generator().manual_seed(0)).x
    metrics = target.evaluate(x)
    print("naive guidance on 25to9:", {k: round(v, 3) for k, v in metrics.items()})
    assert metrics["tv"] >= 0.2
