"""The shipped MNIST weights meet their bar (seeded, judged by the shipped classifier)."""

from __future__ import annotations

import pytest
import torch

from rtb_lab.domains import mnist
from rtb_lab.domains.mnist import bank as mnist_bank
from rtb_lab.domains.mnist import prior as mnist_prior
from rtb_lab.domains.mnist import reward as mnist_reward

N = 128


@pytest.fixture(scope="module")
def shipped():
    prior = mnist_prior.load_prior()
    return prior, mnist_reward.load_classifier(), mnist.load_posterior(prior)


@pytest.mark.slow
def test_shipped_even_posterior_moves_mass_to_even_digits(shipped):
    # The bar is 90% even from a *conditional* posterior (the exact posterior has
    # 95.7%). This single-target posterior (1000 CPU steps) measured 84.6% on 512 samples
    # and 82% on these 128; the test guards most of that gain and the diversity.
    prior, classifier, posterior = shipped
    post_x = mnist_prior.sample_images(posterior, N, prior=prior,
                                       generator=torch.Generator().manual_seed(11))
    prior_x = mnist_prior.sample_images(prior, N, generator=torch.Generator().manual_seed(11))
    found = mnist.evaluate_images(post_x, "even", classifier)
    before = mnist.evaluate_images(prior_x, "even", classifier)
    print(f"in set {found['in_set']:.3f} (prior {before['in_set']:.3f}), E[log r] "
          f"{found['mean_log_reward']:.3f} (prior {before['mean_log_reward']:.3f}), "
          f"diversity {found['diversity']:.3f} (prior {before['diversity']:.3f})")
    assert before["in_set"] < 0.65  # the prior: about half even
    assert found["in_set"] >= 0.75
    assert found["mean_log_reward"] > before["mean_log_reward"] + 2.0
    assert found["diversity"] >= 0.85 * before["diversity"]  # no collapse onto one digit


@pytest.mark.slow
def test_shipped_conditional_posterior_follows_class_set_and_beta(shipped):
    # One value-guided network for 12 class sets and beta in [0.5, 2] (447 GPU steps,
    # guided by the chain value). Measured at beta 1 on 3,200 samples over five seeds:
    # 91.0% even (seed 11: 91.1% of 1,024); 1,024 samples of seed 1: 93.4% ones. The exact
    # posterior has 95.7% and 94.7%; the LoRA-only one (no longer shipped) had 81.5% and
    # 89.3%.
    prior, classifier, _ = shipped
    sample = mnist.conditional_sampler(mnist.load_conditional_posterior(prior), prior, seed=11)
    prior_x = mnist_prior.sample_images(prior, N, generator=torch.Generator().manual_seed(11))
    found = {(c, b): mnist.evaluate_images(sample(c, b, N), c, classifier)
             for c, b in (("even", 1.0), (1, 1.0), (3, 1.0), (0, 0.5), (0, 2.0))}
    even = mnist.evaluate_images(sample("even", 1.0, 8 * N), "even", classifier)
    before = {c: mnist.evaluate_images(prior_x, c, classifier) for c in ("even", 1, 3)}
    for key, metrics in [*found.items(), ("even x 8", even)]:
        print(key, {k: round(v, 3) for k, v in metrics.items()})
    assert even["in_set"] >= 0.9  # the bar, on 1,024 samples
    assert even["mean_log_reward"] > before["even"]["mean_log_reward"] + 3.0
    assert even["diversity"] >= 0.85 * before["even"]["diversity"]
    assert found[1, 1.0]["in_set"] >= 0.9  # the prior: about 13% ones
    assert found[3, 1.0]["in_set"] >= 0.8 and before[3]["in_set"] < 0.25
    # Same noise, larger beta: a sharper posterior.
    assert found[0, 2.0]["mean_log_reward"] > found[0, 0.5]["mean_log_reward"] + 0.25


@pytest.mark.slow
def test_shipped_prior_draws_recognisable_digits_of_every_class(shipped):
    prior, classifier, _ = shipped
    x = mnist_prior.sample_images(prior, 256, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        probs = torch.softmax(classifier(x), 1)
    counts = torch.bincount(probs.argmax(1), minlength=10)
    confident = float((probs.max(1).values > 0.9).float().mean())
    print(f"class counts {counts.tolist()}, confident share {confident:.3f}")
    assert int(counts.min()) >= 10  # every digit appears (uniform would be 25.6)
    assert confident >= 0.6  # measured 0.71 at T = 20


@pytest.mark.slow
def test_importance_bank_matches_the_exact_posterior_figures(shipped):
    # 2,048-sample importance weights give the exact posterior at beta = 1: 95.7% even
    # (E[log r] -0.17) and 94.7% ones. A bank of 512, resampled, must land near them.
    prior, classifier, _ = shipped
    bank = mnist_bank.ImportanceBank(prior, classifier, size=512, seed=3)
    measure = mnist.set_evaluator(classifier)
    even = measure("even", bank.sample("even", 1.0, 2000, seed=1))
    ones = measure((1,), bank.sample((1,), 1.0, 2000, seed=1))
    prior_even = float(mnist_reward.class_mask("even")[bank.log_probs.argmax(1)].mean())
    print(f"even {even}, ones {ones}, prior share even {prior_even:.3f}")
    assert prior_even < 0.6
    assert even["in_set"] >= 0.9 and even["mean_log_reward"] > -0.35
    assert ones["in_set"] >= 0.88
    bank.sample((1,), 4.0, 10)
    assert bank.last_ess < 0.2 * 512  # sharp targets waste most of the bank


@pytest.mark.slow
def test_resampling_the_conditional_posterior_reaches_the_exact_in_set_share(shipped):
    # Each image kept from K = 4 posterior samples by its exact importance weight
    # p r / q (rtb_lab.resample). Measured on these seeds (96 samples) with the shipped
    # value-guided posterior: 96.9% even, E[log r] -0.12, and 94.8% ones; the exact
    # posterior has 95.7% / -0.17 and 94.7%. Without resampling the same posterior gives
    # 91.7% even (-0.30) on these seeds (the LoRA-only one, no longer shipped: 96.9% at
    # K = 4, 83.3% at 1).
    prior, classifier, _ = shipped
    posterior = mnist.load_conditional_posterior(prior)
    plain = mnist.conditional_sampler(posterior, prior, seed=11)
    resampled = mnist.conditional_sampler(posterior, prior, seed=11, candidates=4,
                                          classifier=classifier)
    n = 96
    found = {c: mnist.evaluate_images(resampled(c, 1.0, n), c, classifier) for c in ("even", 1)}
    before = mnist.evaluate_images(plain("even", 1.0, n), "even", classifier)
    print({c: {k: round(v, 3) for k, v in m.items()} for c, m in found.items()},
          "K = 1:", {k: round(v, 3) for k, v in before.items()})
    assert found["even"]["in_set"] >= 0.9 and found[1]["in_set"] >= 0.9
    assert found["even"]["in_set"] >= before["in_set"] + 0.03
    assert found["even"]["mean_log_reward"] >= max(-0.3, before["mean_log_reward"] + 0.1)
    assert found["even"]["diversity"] >= 0.85 * before["diversity"]  # no collapse
