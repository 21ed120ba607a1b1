"""CIFAR-10 (the offline stand-in): data, class sets, prior, classifier, LoRA posterior,
bad input, and RTB moving the in-class share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtb_lab.checkpoint import CheckpointError, assets_dir
from rtb_lab.diffusion import sample_trajectories, trajectory_log_prob
from rtb_lab.domains import cifar10
from rtb_lab.domains import get as get_domain
from rtb_lab.domains.cifar10 import standin
from rtb_lab.domains.images.classifier import ConvClassifier, accuracy, save_classifier
from rtb_lab.domains.images.posterior import LoRAPosterior, save_posterior
from rtb_lab.domains.images.prior import make_family


@pytest.fixture(scope="module")
def prior():
    return cifar10.load_prior()


@pytest.fixture(scope="module")
def classifier():
    return cifar10.load_classifier()


def test_standin_is_deterministic_balanced_and_split() -> None:
    first, again = standin.make_standin("test", 40), standin.make_standin("test", 40)
    np.testing.assert_array_equal(first.images, again.images)
    assert first.images.shape == (40, 32, 32, 3) and first.images.dtype == np.uint8
    assert np.bincount(first.labels).tolist() == [4] * 10
    train = standin.make_standin("train", 40)
    assert not np.array_equal(train.images, first.images)  # independent streams
    other_seed = standin.make_standin("test", 40, seed=1)
    assert not np.array_equal(other_seed.images, first.images)
    # Real structure, not flat colour: every image has both bright and dark regions.
    spread = first.images.reshape(40, -1).std(1)
    assert spread.min() > 10
    with pytest.raises(ValueError, match="label"):
        standin.render(10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="split"):
        standin.make_standin("val")


def test_class_sets_parse_names_sets_and_indices() -> None:
    space = cifar10.STANDIN
    assert space.parse("disc") == (0,)
    assert space.parse("Ring+disc") == (0, 1)
    assert space.parse("shapes") == (0, 1, 2, 3, 4)
    assert space.parse("3") == (3,) and space.parse([9, 5]) == (5, 9)
    assert space.name((5, 6, 7, 8, 9)) == "textures" and space.name((0, 2)) == "disc+square"
    assert cifar10.CIFAR10.parse("vehicles") == (0, 1, 8, 9)
    with pytest.raises(ValueError, match="unknown class set 'airplane'"):
        space.parse("airplane")
    with pytest.raises(ValueError, match=r"0\.\.9"):
        space.parse([10])
    with pytest.raises(ValueError, match="beta"):
        cifar10.class_set_target("disc", beta=0.0)


def test_shipped_classifier_accuracy(classifier) -> None:
    test = standin.make_standin("test", 1000)
    assert accuracy(classifier, test) >= 0.95


def test_prior_loads_and_rejects_other_images(prior, tmp_path) -> None:
    assert prior.image_shape == (3, 32, 32)
    with pytest.raises(ValueError, match=r"images \[B, 3, 32, 32\]"):
        prior(torch.zeros(2, 1, 28, 28), torch.zeros(2))
    with pytest.raises(CheckpointError, match=r"prior for images \[1, 28, 28\]"):
        cifar10.load_prior(assets_dir() / "mnist_prior.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        cifar10.load_prior(assets_dir() / "nope.safetensors")
    with pytest.raises(CheckpointError, match="not a CIFAR-10 classifier"):
        cifar10.load_classifier(assets_dir() / "mnist_classifier.safetensors")
    grey = ConvClassifier((1, 28, 28), width=4)
    save_classifier(grey, tmp_path / "grey.safetensors", "test", 0.0)
    with pytest.raises(CheckpointError, match=r"classifier for images \[1, 28, 28\]"):
        cifar10.load_classifier(tmp_path / "grey.safetensors")


def test_zero_init_lora_equals_prior_and_round_trips(prior, tmp_path) -> None:
    family = make_family()
    posterior = LoRAPosterior(prior, rank=4)
    traj = sample_trajectories(prior, family, 4, cifar10.IMAGE_SHAPE,
                               generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        gap = (trajectory_log_prob(posterior, family, traj)
               - trajectory_log_prob(prior, family, traj)).abs().max()
    assert gap < 1e-4
    with torch.no_grad():  # move off the prior, then save and load
        for name, param in posterior.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.01)
    save_posterior(posterior, tmp_path / "post.safetensors", "test")
    loaded = cifar10.load_posterior(prior, tmp_path / "post.safetensors")
    x, t = torch.randn(2, 3, 32, 32), torch.full((2,), 500.0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t), posterior(x, t))
    with pytest.raises(ValueError, match=r"images \[B, 3, 32, 32\]"):
        loaded(torch.zeros(2, 3, 28, 28), torch.zeros(2))


def test_adapter_for_another_prior_is_refused(prior, tmp_path) -> None:
    from rtb_lab.domains import mnist

    mnist_posterior = LoRAPosterior(mnist.load_prior(), rank=2)
    save_posterior(mnist_posterior, tmp_path / "mnist.safetensors", "test")
    with pytest.raises(CheckpointError, match="another prior"):
        cifar10.load_posterior(prior, tmp_path / "mnist.safetensors")


def test_domain_protocol_and_registry() -> None:
    domain = get_domain("cifar10")
    assert domain.event_shape == (3, 32, 32)
    target = domain.make_target("disc+ring", 2.0)
    assert target.classes == (0, 1) and target.beta == 2.0
    assert domain.train_config(fast=True).steps < domain.train_config().steps
    assert set(domain.compare_runners()) == {"rtb", "dps", "dpok"}


def test_amortised_or_exact_dispatches_and_the_conditional_trainer_steps(prior, classifier
                                                                         ) -> None:
    from rtb_lab.domains.images.bank import ImportanceBank
    from rtb_lab.domains.images.posterior import SetExpertPosterior

    posterior = SetExpertPosterior(prior, cifar10.TRAIN_SETS, 2, cifar10.STANDIN)
    bank = ImportanceBank(prior, classifier, 32, space=cifar10.STANDIN)
    sampler = cifar10.AmortisedOrExact(posterior, prior, bank, classifier)
    assert sampler.trained_on("disc", 1.0) and not sampler.trained_on("disc", 4.0)
    assert not sampler.trained_on("shapes", 1.0)
    x = sampler("stripes", 1.0, 4)
    assert x.shape == (4, 3, 32, 32) and sampler.source == "RTB posterior"
    sampler("shapes", 1.0, 4)
    metrics = sampler.evaluate("shapes", sampler("shapes", 1.0, 4))
    assert metrics["drawn by"] == "exact (prior bank)" and "ess" in metrics
    bank_only = cifar10.AmortisedOrExact(None, prior, bank, classifier)
    bank_only("disc", 1.0, 2)
    assert bank_only.source == "exact (prior bank)"
    config = cifar10.conditional.conditional_config(steps=1, per_set_batch=2)
    trainer = cifar10.make_conditional_trainer(config, prior=prior, classifier=classifier,
                                               evaluate=False)
    trainer.train_step()
    assert trainer.step == 1 and all(torch.isfinite(torch.tensor(r["loss"]))
                                     for r in trainer.history)


def test_prior_training_continues_and_keeps_its_weights_on_interrupt(prior, monkeypatch):
    """train_prior(init=...) starts from the given weights, and a KeyboardInterrupt
    returns the EMA so far (with how many steps ran) instead of losing the run."""
    from rtb_lab.domains.images import prior as image_prior

    images = torch.rand(8, 3, 32, 32) * 2 - 1
    with pytest.raises(ValueError, match="training images are"):
        image_prior.train_prior(torch.rand(8, 1, 28, 28), (16, 32, 64), 1, init=prior,
                                progress=False)
    calls = {"n": 0}
    original = image_prior.AveragedModel.update_parameters

    def update_then_stop(self, model):  # Ctrl-C during the third step
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, model)

    monkeypatch.setattr(image_prior.AveragedModel, "update_parameters", update_then_stop)
    with pytest.warns(UserWarning, match="interrupted after 2 of 50 steps"):
        continued = image_prior.train_prior(images, (16, 32, 64), 50, lr=1e-4, init=prior,
                                            progress=False)
    assert continued.trained_steps == 2
    assert not any(p.requires_grad for p in continued.parameters())
    # Two small steps from the shipped weights stay close to them (not a fresh network).
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([500, 900])
    with torch.no_grad():
        gap = (continued(x, t) - prior(x, t)).abs().max().item()
    assert 0 < gap < 0.05
