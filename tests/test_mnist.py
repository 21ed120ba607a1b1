"""MNIST: data, classifier reward, LoRA and guided posteriors, DPS, metrics and bad input."""

from __future__ import annotations

import gzip
import math
import struct

import numpy as np
import pytest
import torch

from rtb_lab.baselines.guidance import GuidedEps
from rtb_lab.checkpoint import CheckpointError, assets_dir
from rtb_lab.diffusion import sample_trajectories, trajectory_log_prob
from rtb_lab.domains import mnist
from rtb_lab.domains.images import data as image_data
from rtb_lab.domains.mnist import bank as mnist_bank
from rtb_lab.domains.mnist import data as images
from rtb_lab.domains.mnist import prior as mnist_prior
from rtb_lab.domains.mnist import reward as mnist_reward
from rtb_lab.metrics import cosine_diversity, frechet_distance
from rtb_lab.rtb import freeze
from rtb_lab.train import TrainConfig


# ---------------------------------------------------------------------------- data
def test_offline_subset_has_the_documented_size_and_type(capsys):
    train = images.load_mnist("train", source="offline")
    test = images.load_mnist("test", source="offline")
    assert "offline MNIST subset" in capsys.readouterr().out  # says which source
    assert train.images.shape == (12_000, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (2_000, 28, 28)
    assert set(np.unique(train.labels)) == set(range(10))
    x, y = test.tensors(5)
    assert x.shape == (5, 1, 28, 28) and x.min() >= -1 and x.max() <= 1 and y.dtype == torch.long
    np.testing.assert_array_equal(image_data.to_pixels(x), test.images[:5])  # exact round trip


def test_read_idx_parses_a_hand_written_file(tmp_path):
    path = tmp_path / "tiny-idx3-ubyte.gz"
    payload = bytes(range(12))
    with gzip.open(path, "wb") as handle:
        handle.write(b"\x00\x00\x08\x03" + struct.pack(">III", 2, 2, 3) + payload)
    array = images.read_idx(path)
    np.testing.assert_array_equal(array, np.arange(12, dtype=np.uint8).reshape(2, 2, 3))


def test_failed_download_says_so_quickly(tmp_path, monkeypatch):
    monkeypatch.setenv("RTB_LAB_CACHE", str(tmp_path))
    monkeypatch.setattr(images, "MNIST_MIRRORS", ("http://127.0.0.1:9/",))
    with pytest.raises(images.DatasetError, match="source='offline'"):
        images.load_mnist("test", source="full", timeout=2.0)


def test_download_rejects_a_checksum_mismatch(tmp_path):
    source = tmp_path / "file.bin"
    source.write_bytes(b"not mnist")
    with pytest.raises(images.DatasetError, match="sha256"):
        image_data.download(source.as_uri(), tmp_path / "out.bin", "0" * 64)
    assert not (tmp_path / "out.bin").exists()


def test_bad_split_or_source_is_named():
    with pytest.raises(ValueError, match="split"):
        images.load_mnist("validation")
    with pytest.raises(ValueError, match="source"):
        images.load_mnist("train", source="internet")


# ---------------------------------------------------------------------- reward
def test_shipped_classifier_is_accurate_on_the_shipped_test_split():
    classifier = mnist_reward.load_classifier()
    accuracy = mnist_reward.accuracy(classifier, images.load_mnist("test", verbose=False))
    assert accuracy >= 0.97


def test_class_sets_parse_and_reject_bad_names():
    assert mnist_reward.parse_classes("even") == (0, 2, 4, 6, 8)
    assert mnist_reward.parse_classes("Odd") == (1, 3, 5, 7, 9)
    assert mnist_reward.parse_classes("71") == (1, 7)
    assert mnist_reward.parse_classes(3) == (3,)
    assert mnist_reward.parse_classes([4, 4, 2]) == (2, 4)
    with pytest.raises(ValueError, match="unknown class set 'prime'"):
        mnist_reward.parse_classes("prime")
    with pytest.raises(ValueError, match=r"0\.\.9"):
        mnist_reward.parse_classes([3, 10])
    with pytest.raises(ValueError, match="empty"):
        mnist_reward.parse_classes([])


def test_class_set_log_prob_is_the_log_of_the_best_class_in_the_set():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([[0.0, math.log(2.0), math.log(5.0)] + [-1e9] * 7])

    x = torch.zeros(1, 1, 28, 28)
    got = mnist_reward.class_set_log_prob(Fixed(), x, mnist_reward.class_mask([0, 1]))
    assert float(got) == pytest.approx(math.log(2 / 8))  # softmax over 1, 2, 5
    got = mnist_reward.class_set_log_prob(Fixed(), x, mnist_reward.class_mask("even"))
    assert float(got) == pytest.approx(math.log(5 / 8))


def test_conditions_round_trip_and_reject_bad_beta():
    cond = mnist_reward.make_condition("odd", 2.0, n=3)
    mask, beta = mnist_reward.split_condition(cond)
    assert cond.shape == (3, 11) and mask[0].tolist() == [0, 1] * 5
    torch.testing.assert_close(beta, torch.full((3,), 2.0))
    with pytest.raises(ValueError, match="beta"):
        mnist_reward.make_condition("odd", 0.0)
    with pytest.raises(ValueError, match=r"\[B, 11\]"):
        mnist_reward.split_condition(torch.zeros(3, 10))


def test_classifier_rejects_wrong_image_shapes():
    classifier = mnist_reward.DigitClassifier(width=4)
    with pytest.raises(ValueError, match=r"\[B, 1, 28, 28\]"):
        classifier(torch.zeros(2, 28, 28))


# ------------------------------------------------------------------- posterior
@pytest.mark.parametrize("conditional", [False, True])
def test_zero_init_lora_posterior_equals_the_prior(unet_prior, conditional):
    posterior = mnist.make_posterior(unet_prior, rank=4, conditional=conditional)
    family = mnist_prior.make_family(5)
    cond = torch.cat([mnist_reward.make_condition("even", 1.5, n=3),
                      mnist_reward.make_condition(3, 0.5, n=3)]) if conditional else None
    traj = sample_trajectories(unet_prior, family, 6, mnist_prior.IMAGE_SHAPE, cond=cond,
                               explore=0.3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(trajectory_log_prob(posterior, family, traj),
                                   trajectory_log_prob(unet_prior, family, traj))
    trainable = {n for n, p in posterior.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n == "beta_power" for n in trainable)
    assert all(not p.requires_grad for p in unet_prior.parameters())


def test_a_training_step_moves_the_adapter_and_leaves_the_prior(unet_prior):
    before = {k: v.clone() for k, v in unet_prior.state_dict().items()}
    config = TrainConfig(steps=2, batch_size=4, explore=0.2, chunk_steps=2, eval_every=0,
                         log_z_init_samples=8, grad_steps=3)
    classifier = mnist_reward.DigitClassifier(width=4)
    trainer = mnist.make_trainer("even", 1.0, config, prior=unet_prior,
                                 classifier=freeze(classifier), num_steps=5)
    trainer.train(progress=False)
    assert trainer.step == 2 and math.isfinite(trainer.history[-1]["loss"])
    moved = [float(t.abs().max()) for n, t in trainer.posterior.adapter_state_dict().items()
             if "lora_B" in n]
    assert max(moved) > 0
    for key, value in unet_prior.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_posterior_inputs_are_checked(unet_prior):
    posterior = mnist.make_posterior(unet_prior, rank=2, conditional=True)
    t = torch.zeros(2)
    with pytest.raises(ValueError, match=r"images \[B, 1, 28, 28\]"):
        posterior(torch.zeros(2, 1, 32, 32), t, torch.zeros(2, 11))
    with pytest.raises(ValueError, match=r"conditions \[B, 11\]"):
        posterior(torch.zeros(2, 1, 28, 28), t, None)
    with pytest.raises(ValueError, match=r"class set \(1, 7\) is not one this posterior"):
        posterior(torch.zeros(2, 1, 28, 28), t, mnist_reward.make_condition([1, 7], 1.0, 2))
    with pytest.raises(ValueError, match="beta"):
        mnist.make_trainer("even", -1.0, prior=unet_prior,
                           classifier=mnist_reward.DigitClassifier(4))
    with pytest.raises(ValueError, match="unknown class set"):
        mnist.make_trainer("primes", 1.0, prior=unet_prior,
                           classifier=mnist_reward.DigitClassifier(4))


def test_adapter_round_trip_and_refusal_for_another_prior(unet_prior, tmp_path):
    posterior = mnist.make_posterior(unet_prior, rank=2, conditional=True)
    with torch.no_grad():
        for param in posterior.parameters():
            if param.requires_grad:
                param.normal_()
    path = tmp_path / "adapter.safetensors"
    mnist.save_posterior(posterior, path, "test")
    loaded = mnist.load_posterior(unet_prior, path)
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([10.0, 500.0, 900.0])
    cond = mnist_reward.make_condition(7, 2.0, n=3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, cond), posterior(x, t, cond))
        assert isinstance(loaded, mnist.SetExpertPosterior) and loaded.sets == posterior.sets
    other = freeze(mnist_prior.EpsNet(mnist_prior.make_unet((8, 16, 16))))
    other.sha256 = "another-prior"
    with pytest.raises(CheckpointError, match="another prior"):
        mnist.load_posterior(other, path)
    with pytest.raises(CheckpointError, match="not found"):
        mnist.load_posterior(unet_prior, tmp_path / "missing.safetensors")


def test_files_saved_before_learned_std_was_removed_load_or_say_why(unet_prior, tmp_path):
    posterior = mnist.make_posterior(unet_prior, rank=2, conditional=True)
    with torch.no_grad():
        for param in posterior.parameters():
            if param.requires_grad:
                param.normal_(0.0, 0.3)
    path = tmp_path / "old.safetensors"
    mnist.save_posterior(posterior, path, "test", {"learn_std": False, "num_steps": 20})
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([10.0, 700.0])
    cond = mnist_reward.make_condition("odd", 1.3, n=2)
    with torch.no_grad():
        torch.testing.assert_close(mnist.load_posterior(unet_prior, path)(x, t, cond),
                                   posterior(x, t, cond))
    mnist.save_posterior(posterior, path, "test", {"learn_std": True, "num_steps": 20})
    with pytest.raises(CheckpointError, match="learned std was removed"):
        mnist.load_posterior(unet_prior, path)


def _randomised_experts(prior, sets=((1,), (3,), (0, 2, 4, 6, 8))):
    posterior = mnist.SetExpertPosterior(prior, sets, rank=2)
    with torch.no_grad():
        for param in posterior.parameters():
            if param.requires_grad:
                param.normal_(0.0, 0.3)
    return posterior


def test_set_experts_route_each_set_to_its_own_block(unet_prior):
    posterior = _randomised_experts(unet_prior)
    x, t = torch.randn(4, 1, 28, 28), torch.tensor([10.0, 300.0, 600.0, 900.0])
    cond = torch.cat([mnist_reward.make_condition(3, 2.0, 2),
                      mnist_reward.make_condition("even", 1.0, 2)])
    out = posterior(x, t, cond)
    assert not torch.allclose(out, posterior(x, t, mnist_reward.make_condition(1, 1.0, 4)))
    out[:2].square().sum().backward()  # a loss on the rows of set (3,) only
    blocks = {"lora_A": lambda g: g.flatten(1).abs().sum(1),  # rows of A are channels
              "lora_B": lambda g: g.transpose(0, 1).flatten(1).abs().sum(1)}
    for name, param in posterior.named_parameters():
        kind = next((k for k in blocks if k in name), None)
        if kind is None or param.grad is None:
            continue
        per_channel = blocks[kind](param.grad).view(3, 2)  # [set, rank]
        assert per_channel[0].sum() == 0 and per_channel[2].sum() == 0, name
    # d gate / d a = gate * log beta: the exponent of set (3,) learns (beta = 2), no other.
    power = posterior.beta_power.grad.abs().sum(0)
    assert power[2:4].sum() > 0 and power[:2].sum() == 0 and power[4:].sum() == 0


def test_specialised_expert_equals_the_conditional_posterior(unet_prior):
    # The beta gate is beta ** a: folding it into B must give the same network.
    posterior = _randomised_experts(unet_prior)
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([10.0, 500.0, 900.0])
    with torch.no_grad():
        for classes, beta in (("even", 0.6), (3, 1.7)):
            single = posterior.specialise(unet_prior, classes, beta)
            assert isinstance(single, mnist.LoRAPosterior) and single.rank == 2
            expected = posterior(x, t, mnist_reward.make_condition(classes, beta, 3))
            torch.testing.assert_close(single(x, t), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="not one this posterior"):
        posterior.specialise(unet_prior, "odd", 1.0)


def test_warm_start_copies_a_trained_adapter_and_refuses_another_layout(unet_prior):
    trained = _randomised_experts(unet_prior)
    fresh = mnist.SetExpertPosterior(unet_prior, trained.sets, rank=2)
    mnist.warm_start(fresh, trained)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([10.0, 700.0])
    cond = mnist_reward.make_condition("even", 0.8, 2)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, t, cond), trained(x, t, cond))
    with pytest.raises(ValueError, match="cannot warm-start"):
        mnist.warm_start(mnist.SetExpertPosterior(unet_prior, ((1,), (3,)), rank=2), trained)


def test_scale_adapter_runs_from_the_prior_to_beyond_the_posterior(unet_prior):
    posterior = mnist.make_posterior(unet_prior, rank=2)
    with torch.no_grad():
        for name, param in posterior.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3, generator=torch.Generator().manual_seed(5))
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([10.0, 400.0, 900.0])
    with torch.no_grad():
        at = {a: mnist.scale_adapter(posterior, a)(x, t) for a in (0.0, 1.0, 2.0)}
        torch.testing.assert_close(at[0.0], unet_prior(x, t))
        torch.testing.assert_close(at[1.0], posterior(x, t))
        assert float((at[2.0] - at[1.0]).abs().max()) > 1e-3
    doubled = dict(mnist.scale_adapter(posterior, 2.0).named_parameters())
    for name, param in posterior.named_parameters():  # the original is left as it was
        factor = 2.0 if "lora_B" in name else 1.0
        torch.testing.assert_close(doubled[name], factor * param)
    with pytest.raises(TypeError, match="specialise"):
        mnist.scale_adapter(mnist.make_posterior(unet_prior, 2, conditional=True), 1.5)
    with pytest.raises(ValueError, match="finite"):
        mnist.scale_adapter(posterior, float("nan"))


def test_prior_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        mnist_prior.load_prior(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        mnist_prior.load_prior(bad)
    with pytest.raises(CheckpointError, match="not an image prior"):
        mnist_prior.load_prior(assets_dir() / "toy2d_prior.safetensors")


# ---------------------------------------------------------------- DPS, metrics
def test_dps_with_a_flat_reward_is_the_prior_and_follows_the_gradient(unet_prior):
    abar = mnist_prior.make_scheduler().alphas_cumprod
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([100.0, 700.0])
    flat = GuidedEps(unet_prior, lambda x0: x0.sum((1, 2, 3)) * 0.0, abar, scale=3.0)
    with torch.no_grad():
        eps = unet_prior(x, t)
    torch.testing.assert_close(flat(x, t), eps)
    # log r(x0) = sum(x0) (unclipped region): grad_x = 1 / sqrt(abar) * (I - J terms);
    # with a zero prior network the Jacobian term vanishes, so grad = 1 / sqrt(abar).
    zero = freeze(mnist_prior.EpsNet(mnist_prior.make_unet((8, 16, 16))))
    for p in zero.parameters():
        p.data.zero_()
    linear = GuidedEps(zero, lambda x0: x0.sum((1, 2, 3)), abar, scale=2.0)
    x_small = 0.01 * torch.randn(2, 1, 28, 28)  # stays inside the x0 clip
    a = abar[t.long()].float().view(-1, 1, 1, 1)
    expected = -2.0 * (1 - a).sqrt() / a.sqrt() * torch.ones_like(x_small)
    torch.testing.assert_close(linear(x_small, t), expected)


def test_cosine_diversity_and_frechet_distance_by_hand():
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    # Pairs: (0,1) cos 0, (0,2) cos 1, (1,2) cos 0 -> mean distance 2/3.
    assert cosine_diversity(features) == pytest.approx(2 / 3)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20_000, 3, generator=g)
    b = torch.randn(20_000, 3, generator=g) + torch.tensor([2.0, 0.0, 0.0])
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) == pytest.approx(4.0, abs=0.1)  # |mu|^2, same covariance


def test_importance_bank_resamples_in_proportion_to_r_to_the_beta(unet_prior):
    bank = mnist_bank.ImportanceBank(unet_prior, freeze(mnist_reward.DigitClassifier(4)),
                                     size=4, num_steps=3)
    assert bank.images.shape == (4, 1, 28, 28)
    # Hand-set classifier outputs: image i is digit i with probability 0.9 (i = 0..3).
    probs = torch.full((4, 10), 0.1 / 9)
    probs[range(4), range(4)] = 0.9
    bank.log_probs = probs.log()
    bank.images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 28, 28)
    assert torch.allclose(bank.log_reward("even"), probs[range(4), [0, 2, 2, 2]].log())
    x = bank.sample("even", 1.0, 20_000)
    share = torch.bincount(x[:, 0, 0, 0].long(), minlength=4) / 20_000
    weights = probs[range(4), [0, 2, 2, 2]]  # r(x) = max over {0, 2, 4, 6, 8}
    assert torch.allclose(share, weights / weights.sum(), atol=0.01)
    # ESS = (sum w)^2 / sum w^2, by hand: w = (0.9, 0.1/9, 0.9, 0.1/9).
    assert bank.last_ess == pytest.approx((1.8 + 0.2 / 9) ** 2 / (1.62 + 2 * (0.1 / 9) ** 2))
    # A larger beta sharpens the weights: the ESS falls towards the 2 in-set images.
    bank.sample("even", 4.0, 10)
    assert 1.99 < bank.last_ess < (1.8 + 0.2 / 9) ** 2 / 1.62
    with pytest.raises(ValueError, match="beta"):
        bank.sample("even", 0.0, 10)
    with pytest.raises(ValueError, match="class"):
        bank.sample([12], 1.0, 10)


def test_amortised_or_exact_uses_rtb_only_where_it_was_trained(unet_prior):
    posterior = mnist.SetExpertPosterior(unet_prior, ((1,), (0, 2, 4, 6, 8)), rank=2)
    bank = mnist_bank.ImportanceBank(unet_prior, freeze(mnist_reward.DigitClassifier(4)),
                                     size=4, num_steps=3)
    bank.images = torch.full((4, 1, 28, 28), 7.0)  # a marker: the bank holds only 7.0s
    sample = mnist.AmortisedOrExact(posterior, unet_prior, bank, beta_range=(0.5, 2.0))
    x = sample("even", 1.5, 3)
    assert sample.source == "RTB posterior" and x.shape == (3, 1, 28, 28)
    assert not (x == 7.0).all() and sample.last_beta == 1.5
    for classes, beta in (("even", 4.0), ([1, 7], 1.0), ("odd", 1.0)):
        assert (sample(classes, beta, 3) == 7.0).all() and sample.source.startswith("exact")


def test_resampled_conditional_sampler_needs_the_classifier_and_names_itself(unet_prior):
    posterior = mnist.SetExpertPosterior(unet_prior, ((1,), (0, 2, 4, 6, 8)), rank=2)
    with pytest.raises(ValueError, match="classifier"):
        mnist.conditional_sampler(posterior, unet_prior, num_steps=3, candidates=4)
    classifier = freeze(mnist_reward.DigitClassifier(4))
    bank = mnist_bank.ImportanceBank(unet_prior, classifier, size=4, num_steps=3)
    sample = mnist.AmortisedOrExact(posterior, unet_prior, bank, classifier, candidates=3)
    sample.rtb = mnist.conditional_sampler(posterior, unet_prior, num_steps=3, candidates=3,
                                           classifier=classifier)
    assert sample("even", 1.0, 2).shape == (2, 1, 28, 28)
    assert sample.source == "RTB posterior, 1 of 3 resampled"


def test_exact_metrics_are_the_importance_weighted_averages(unet_prior):
    bank = mnist_bank.ImportanceBank(unet_prior, freeze(mnist_reward.DigitClassifier(4)),
                                     size=4, num_steps=3)
    probs = torch.full((4, 10), 0.1 / 9)
    probs[range(4), [0, 1, 2, 3]] = 0.9
    bank.log_probs = probs.log()
    # "even" at beta 2: r = (0.9, 0.1/9, 0.9, 0.1/9), weights r^2 normalised; in set: 0, 2.
    w = torch.tensor([0.81, (0.1 / 9) ** 2, 0.81, (0.1 / 9) ** 2])
    w = w / w.sum()
    found = bank.exact_metrics("even", 2.0)
    assert found["in_set"] == pytest.approx(float(w[0] + w[2]))
    r = torch.tensor([0.9, 0.1 / 9, 0.9, 0.1 / 9])
    assert found["mean_log_reward"] == pytest.approx(float((w * r.log()).sum()), rel=1e-5)
    assert found["ess"] == pytest.approx(float(1 / (w**2).sum()), rel=1e-5)
    # log Z = log of the mean of r^2 over the bank: log((0.81 + 0.81 + 2 (0.1/9)^2) / 4).
    assert bank.log_z("even", 2.0) == pytest.approx(math.log((1.62 + 2 * (0.1 / 9) ** 2) / 4))


# ----------------------------------------------------------------- guided posterior
def _guided(prior, conditional=False, num_steps=5):
    from rtb_lab.domains.mnist.guided import GuidedPosterior
    from rtb_lab.domains.mnist.value import NoisyClassifier

    torch.manual_seed(3)
    value = freeze(NoisyClassifier(width=4).eval())
    if conditional:
        base = mnist.SetExpertPosterior(prior, ((1,), (3,), (0, 2, 4, 6, 8)), rank=2)
        return GuidedPosterior(base, num_steps=num_steps, value=value)
    return GuidedPosterior(mnist.LoRAPosterior(prior, 2), "even", 1.5, num_steps=num_steps,
                           value=value)


def test_guided_posterior_starts_at_its_base_and_guides_by_hand(unet_prior):
    guided = _guided(unet_prior)
    family = mnist_prior.make_family(5)
    traj = sample_trajectories(unet_prior, family, 4, mnist_prior.IMAGE_SHAPE,
                               generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # c = 0: exactly the (fresh LoRA =) prior
        torch.testing.assert_close(trajectory_log_prob(guided, family, traj),
                                   trajectory_log_prob(unet_prior, family, traj))
        guided.guide[0, 2] = 0.7
    x, k = traj.states[:, 2], torch.full((4,), 2)
    t = family.time(k)
    abar = float(mnist_prior.make_scheduler().alphas_cumprod[int(t[0])])
    eps = unet_prior(x, t).detach()
    xg = x.clone().requires_grad_(True)
    log_h = guided.value.log_value(xg, t, mnist_reward.class_mask("even"))
    (grad,) = torch.autograd.grad(log_h.sum(), xg)
    by_hand = eps - 1.5 * 0.7 * math.sqrt(1 - abar) * grad
    out = guided(x, t)
    torch.testing.assert_close(out, by_hand, atol=1e-5, rtol=1e-5)
    # The guidance is a fixed feature: d out / d c = -beta sqrt(1-abar) grad log h.
    out.sum().backward()
    expected = -1.5 * math.sqrt(1 - abar) * grad.sum()
    torch.testing.assert_close(guided.guide.grad[0, 2], expected, atol=1e-4, rtol=1e-4)
    assert float(guided.guide.grad[0, [0, 1, 3, 4]].abs().sum()) == 0
    assert all(p.grad is None for p in unet_prior.parameters())
    assert all(p.grad is None for p in guided.value.parameters())
    with pytest.raises(ValueError, match="not a step of this posterior's T = 5 chain"):
        guided(x, torch.full((4,), 123.0))


def test_conditional_guidance_uses_each_rows_set_and_beta(unet_prior):
    guided = _guided(unet_prior, conditional=True)
    with torch.no_grad():
        guided.guide.copy_(torch.arange(15.0).view(3, 5))
    k = torch.tensor([0, 4, 1])
    cond = torch.cat([mnist_reward.make_condition(3, 2.0, 1),
                      mnist_reward.make_condition(1, 0.5, 1),
                      mnist_reward.make_condition("even", 1.0, 1)])
    torch.testing.assert_close(guided.scale(k, cond), torch.tensor([2.0 * 5, 0.5 * 4, 1.0 * 11]))
    from rtb_lab.domains.mnist.guided import GuidedPosterior

    with pytest.raises(ValueError, match="give classes"):  # single target without its set
        GuidedPosterior(mnist.LoRAPosterior(unet_prior, 2), value=guided.value)
    with pytest.raises(ValueError, match="give classes"):  # conditional with a set
        GuidedPosterior(guided.base, "even", value=guided.value)


def test_rtb_trains_the_guidance_scales_at_their_own_learning_rate(unet_prior):
    guided = _guided(unet_prior)
    classifier = freeze(mnist_reward.DigitClassifier(width=4))
    reward = mnist_reward.class_set_reward(classifier, "even")
    config = TrainConfig(steps=2, batch_size=4, lr=1e-3, scalar_lr=1e-2, eval_every=0,
                         log_z_init_samples=8, grad_steps=2, explore=0.0)
    from rtb_lab.train import RTBTrainer

    trainer = RTBTrainer(unet_prior, guided, mnist_prior.make_family(5),
                         lambda x: reward(mnist_prior.decode(unet_prior, x)),
                         mnist_prior.IMAGE_SHAPE, config)
    trainer.train(progress=False)
    assert trainer.optimizer.param_groups[1]["params"] == [guided.guide]
    assert float(guided.guide.detach().abs().max()) > 0
