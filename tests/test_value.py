"""The noisy classifier (value h(x_t) = E[r | x_t]) and value-guided posteriors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from rtb_lab.checkpoint import CheckpointError
from rtb_lab.diffusion import sample_trajectories, trajectory_log_prob
from rtb_lab.domains import mnist
from rtb_lab.domains.mnist import data as images
from rtb_lab.domains.mnist import prior as mnist_prior
from rtb_lab.domains.mnist import reward as mnist_reward
from rtb_lab.domains.mnist import value as mnist_value
from rtb_lab.domains.mnist.guided import GuidedPosterior
from rtb_lab.rtb import freeze


@pytest.fixture(scope="module")
def tiny_value():
    torch.manual_seed(1)
    return freeze(mnist_value.NoisyClassifier(width=4).eval())


def test_noisy_classifier_rejects_bad_shapes(tiny_value):
    with pytest.raises(ValueError, match=r"expected images \[B, 1, 28, 28\]"):
        tiny_value(torch.zeros(2, 28, 28), torch.zeros(2))
    with pytest.raises(ValueError, match=r"one time per image \[2\]"):
        tiny_value(torch.zeros(2, 1, 28, 28), torch.zeros(3))


def test_log_value_sums_the_class_probabilities_over_the_set(tiny_value):
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([60.0, 500.0, 999.0])
    probs = torch.softmax(tiny_value(x, t), 1)
    by_hand = probs[:, [0, 2, 4, 6, 8]].sum(1).log()
    found = tiny_value.log_value(x, t, mnist_reward.class_mask("even"))
    torch.testing.assert_close(found, by_hand, atol=1e-6, rtol=1e-6)
    per_row = torch.stack([mnist_reward.class_mask(c) for c in (3, "odd", "even")])
    torch.testing.assert_close(tiny_value.log_value(x, t, per_row),
                               torch.stack([probs[0, 3].log(), probs[1, 1::2].sum().log(),
                                            probs[2, 0::2].sum().log()]), atol=1e-6, rtol=1e-6)


class _HalfClassifier(nn.Module):
    """Class 0 if the left half is brighter, else class 1 (confidently)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        margin = 20 * (x[..., :14].mean((1, 2, 3)) - x[..., 14:].mean((1, 2, 3)))
        logits = torch.full((x.shape[0], 10), -30.0)
        logits[:, 0], logits[:, 1] = margin, -margin
        return logits


def test_noisy_classifier_learns_the_value_at_every_noise_level():
    # Digits that are a bright left half (class 0, 30%) or right half (class 1, 70%).
    generator = np.random.default_rng(0)
    left = generator.random(400) < 0.3
    pixels = np.zeros((400, 28, 28), np.uint8)
    pixels[left, :, :14] = 255
    pixels[~left, :, 14:] = 255
    data = images.ImageSet(pixels, left.astype(np.int64), "two halves")
    model = mnist_value.train_noisy_classifier(_HalfClassifier(), None, 300, batch_size=64,
                                               width=8, data=data, progress=False)
    x0 = torch.from_numpy(pixels).float()[:, None] / 127.5 - 1
    abar = mnist_prior.make_scheduler().alphas_cumprod.float()

    def predicted(t: int) -> torch.Tensor:
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(t))
        x_t = abar[t].sqrt() * x0 + (1 - abar[t]).sqrt() * noise
        return torch.softmax(model(x_t, torch.full((400,), float(t))), 1)

    low = predicted(100)  # little noise: the value is the clean image's class
    accuracy = float((low[:, :2].argmax(1) == torch.from_numpy((~left).astype(np.int64))).float()
                     .mean())
    assert accuracy >= 0.95
    high = predicted(999)  # pure noise: the value is the class share, E[r] = 0.3 / 0.7
    assert float(high[:, 0].mean()) == pytest.approx(0.3, abs=0.1)
    assert float(high[:, :2].sum(1).min()) > 0.95  # the other classes stay empty


class _ZeroNoise(nn.Module):
    """A 'prior' that predicts zero noise: its chain is a linear Gaussian process."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # a device to live on

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        return torch.zeros_like(x)


@pytest.mark.slow
def test_chain_value_is_the_value_of_the_sampling_chain():
    prior, classifier = freeze(_ZeroNoise()), _HalfClassifier()
    x_t, t, labels = next(mnist_value._chain_batches(classifier, prior, 3,
                                                     torch.Generator().manual_seed(0)))
    family = mnist_prior.make_family()
    assert x_t.shape == (3 * family.num_steps, 1, 28, 28)
    torch.testing.assert_close(t[:family.num_steps], family.train_times[:-1].float())
    assert torch.equal(labels[0], labels[family.num_steps - 1])  # one label per chain
    init = freeze(mnist_value.NoisyClassifier(width=8).eval())
    before = [p.clone() for p in init.parameters()]
    model = mnist_value.train_noisy_classifier(classifier, prior, 1000, lr=5e-3, chains=16,
                                               init=init, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, init.parameters(), strict=True))
    # The last state's value by Monte Carlo over its one remaining prior step.
    last = torch.full((32,), family.num_steps - 1)
    x = sample_trajectories(prior, family, 32, mnist_prior.IMAGE_SHAPE,
                            generator=torch.Generator().manual_seed(5)).states[:, -2]
    mean, std = family.mean_std(torch.zeros_like(x), x, last)
    ends = mean[None] + std[None] * torch.randn((400, *x.shape),
                                                generator=torch.Generator().manual_seed(6))
    exact = torch.softmax(classifier(mnist_prior.decode(prior, ends.flatten(0, 1))), 1)
    exact = exact[:, 1].view(400, 32).mean(0)
    with torch.no_grad():
        found = torch.softmax(model(x, family.time(last)), 1)[:, 1]
        start = torch.softmax(model(x, torch.full((32,), 999.0)), 1)[:, 1]
    assert float(exact.std()) > 0.2  # the last state mostly decides the class
    # Measured 0.09 mean error; the best constant (the class share) has about 0.24.
    error, constant = (found - exact).abs().mean(), (exact.mean() - exact).abs().mean()
    print(f"chain value error {float(error):.3f}, best constant {float(constant):.3f}")
    assert float(error) < 0.6 * float(constant)
    assert float(start.mean()) == pytest.approx(0.5, abs=0.1)  # pure noise: the class share


def test_value_guidance_is_the_value_gradient_by_hand(unet_prior, tiny_value):
    guided = GuidedPosterior(mnist.LoRAPosterior(unet_prior, 2), "even", 1.5, num_steps=5,
                             value=tiny_value, init_scale=1.0)
    family = mnist_prior.make_family(5)
    x, k = torch.randn(4, 1, 28, 28), torch.full((4,), 3)
    t = family.time(k)
    abar = float(mnist_prior.make_scheduler().alphas_cumprod[int(t[0])])
    xg = x.clone().requires_grad_(True)
    log_h = tiny_value.log_value(xg, t, mnist_reward.class_mask("even"))
    (grad,) = torch.autograd.grad(log_h.sum(), xg)
    by_hand = unet_prior(x, t) - 1.5 * 1.0 * math.sqrt(1 - abar) * grad
    torch.testing.assert_close(guided(x, t), by_hand, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # scale 0: the base posterior (the prior, for a fresh LoRA)
        guided.guide.zero_()
        traj = sample_trajectories(unet_prior, family, 3, mnist_prior.IMAGE_SHAPE,
                                   generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(trajectory_log_prob(guided, family, traj),
                                   trajectory_log_prob(unet_prior, family, traj))
    with pytest.raises(ValueError, match="needs a value network"):
        GuidedPosterior(mnist.LoRAPosterior(unet_prior, 2), "even", value=None)


@pytest.mark.parametrize("source", [mnist.CHAIN_VALUE_ASSET, "file"])
def test_value_guided_conditional_posterior_saves_loads_and_specialises(unet_prior, tmp_path,
                                                                        source):
    # A saved guided posterior records its value network: a shipped asset, or your file.
    if source == "file":
        source = str(tmp_path / "my_value.safetensors")
        mnist_value.save_noisy_classifier(mnist_value.NoisyClassifier(width=4), source, "test")
    value = mnist.value_network(source)
    base = mnist.SetExpertPosterior(unet_prior, ((1,), (3,), (0, 2, 4, 6, 8)), rank=2)
    guided = GuidedPosterior(base, num_steps=5, value=value, init_scale=1.0)
    with torch.no_grad():
        guided.guide.copy_(torch.linspace(0.2, 1.6, 15).view(3, 5))
        for name, param in base.named_parameters():
            if "lora_B" in name or name == "beta_power":
                param.normal_(0, 0.05)
    path = tmp_path / "guided.safetensors"
    mnist.save_posterior(guided, path, "test")
    loaded = mnist.load_conditional_posterior(unet_prior, path)
    assert isinstance(loaded, GuidedPosterior) and loaded.value.source == source
    assert loaded.set_names() == ["1", "3", "even"]
    x, t = torch.randn(2, 1, 28, 28), mnist_prior.make_family(5).time(torch.tensor([1, 4]))
    cond = mnist_reward.make_condition(3, 1.7, 2)
    torch.testing.assert_close(loaded(x, t, cond), guided(x, t, cond), atol=1e-5, rtol=1e-5)
    single = loaded.specialise(unet_prior, 3, 1.7)  # the same policy, one condition
    torch.testing.assert_close(single(x, t), guided(x, t, cond), atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="already for"):
        single.specialise(unet_prior, 3, 1.0)
    other = freeze(mnist_prior.EpsNet(mnist_prior.make_unet((8, 16, 16))))
    other.sha256 = "another-prior"
    with pytest.raises(CheckpointError, match="another prior"):
        mnist.load_conditional_posterior(other, path)


def test_single_target_guided_posterior_round_trip_and_files_of_removed_forms(unet_prior,
                                                                           tmp_path):
    source = str(tmp_path / "my_value.safetensors")
    mnist_value.save_noisy_classifier(mnist_value.NoisyClassifier(width=4), source, "test")
    single = GuidedPosterior(mnist.LoRAPosterior(unet_prior, 2), "17", 0.7, num_steps=5,
                             value=mnist.value_network(source), init_scale=1.3)
    with torch.no_grad():
        for name, param in single.base.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    x, t = torch.randn(2, 1, 28, 28), mnist_prior.make_family(5).time(torch.tensor([1, 4]))
    path = tmp_path / "single.safetensors"
    mnist.save_posterior(single, path, "test")
    loaded = mnist.load_posterior(unet_prior, path)
    assert isinstance(loaded, GuidedPosterior) and loaded.beta == 0.7
    assert loaded.value.source == source and loaded.cond_dim == 0
    torch.testing.assert_close(loaded(x, t), single(x, t), atol=1e-5, rtol=1e-5)
    # Files saved before learned std and look-ahead were removed record them as false.
    base_meta = single.base.metadata()
    single.base.metadata = lambda: {**base_meta, "learn_std": False, "num_steps": 5}
    mnist.save_posterior(single, path, "test", {"lookahead": False})
    torch.testing.assert_close(mnist.load_posterior(unet_prior, path)(x, t), single(x, t),
                               atol=1e-5, rtol=1e-5)
    mnist.save_posterior(single, path, "test", {"value_source": None})  # the default value
    assert mnist.load_posterior(unet_prior, path).value.source == mnist.CHAIN_VALUE_ASSET
    mnist.save_posterior(single, path, "test", {"lookahead": True})
    with pytest.raises(CheckpointError, match="look-ahead guidance was removed"):
        mnist.load_posterior(unet_prior, path)
    mnist.save_posterior(single, path, "test", {"guidance": "reward", "value_source": None})
    with pytest.raises(CheckpointError, match="reward guidance was removed"):
        mnist.load_posterior(unet_prior, path)


def test_shipped_guided_posteriors_follow_their_own_value_networks():
    prior = mnist_prior.load_prior()
    assert mnist.load_conditional_posterior(prior).value.source == mnist.CHAIN_VALUE_ASSET
    with pytest.raises(CheckpointError, match="neither a shipped value network"):
        mnist.value_network("no_such_value.safetensors")


def test_train_value_cli_continues_a_network_on_prior_chains(tmp_path):
    from rtb_lab import cli
    from rtb_lab.checkpoint import load_weights

    out = tmp_path / "chain.safetensors"
    cli.main(["train-value", "mnist", "--steps", "2", "--chains", "2", "--lr", "1e-3",
              "--init-from", mnist.CHAIN_VALUE_ASSET, "--device", "cpu", "--quiet",
              "--out", str(out)])
    tensors, meta = load_weights(out)
    assert meta["command"] == ("rtb-lab train-value mnist --steps 2 --seed 0 --lr 0.001 "
                               "--chains 2 --init-from mnist_chain_value.safetensors")
    shipped = mnist.load_noisy_classifier()
    changed = [name for name, t in shipped.state_dict().items()
               if not torch.equal(t, tensors[name])]
    assert changed  # trained from the shipped weights, not from scratch: same shapes
    assert mnist.value_network(out).width == shipped.width
