"""RTB fine-tuning of the CIFAR-10 prior for one class set and beta (a LoRA posterior)."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from torch import Tensor, nn

from rtb_lab.config import is_fast
from rtb_lab.domains.cifar10.prior import load_prior
from rtb_lab.domains.cifar10.reward import STANDIN, load_classifier
from rtb_lab.domains.cifar10.standin import make_standin
from rtb_lab.domains.images import posterior as image_posterior
from rtb_lab.domains.images import trainer as image_trainer
from rtb_lab.domains.images.evaluation import make_evaluator
from rtb_lab.domains.images.posterior import LoRAPosterior
from rtb_lab.domains.images.trainer import ClassSetTarget
from rtb_lab.train import RTBTrainer, TrainConfig

# Batch 16 of T = 20 steps, gradient through 5 random steps of the 20 (unbiased):
# the prior costs ~6.5 ms per image per call on 2 cores, 5x MNIST's, so the batch is
# half of MNIST's and the run as long.
CIFAR10_CONFIG = TrainConfig(steps=300, batch_size=16, lr=3e-3, lr_end=3e-4, log_z_lr=0.1,
                             explore=0.2, explore_hold=20, explore_end=100, chunk_steps=10,
                             grad_steps=5, grad_clip=1.0, log_z_init_samples=128,
                             eval_every=50)
FAST_STEPS = 15
POSTERIOR_ASSET = "cifar10_posterior.safetensors"


def train_config(fast: bool | None = None) -> TrainConfig:
    """CIFAR10_CONFIG, or its short version in fast mode (RTB_LAB_FAST / CI)."""
    fast = is_fast() if fast is None else fast
    return replace(CIFAR10_CONFIG.with_steps(FAST_STEPS), eval_every=0) if fast \
        else CIFAR10_CONFIG


def class_set_target(name: str | int, beta: float = 1.0) -> ClassSetTarget:
    """A `ClassSetTarget` over the stand-in classes (ValueError naming the accepted forms)."""
    return image_trainer.class_set_target(name, beta, STANDIN)


@lru_cache(maxsize=1)
def _test_set():
    return make_standin("test")


def target_images(classes: tuple[int, ...], limit: int = 1000) -> Tensor:
    """Stand-in test images of the target classes (the FID reference), [N, 3, 32, 32]."""
    data = _test_set()
    images, labels = data.tensors()
    keep = STANDIN.mask(classes)[labels] > 0.5
    return images[keep][:limit]


def make_trainer(target: ClassSetTarget, config: TrainConfig | None = None, *,
                 prior: nn.Module | None = None, classifier: nn.Module | None = None,
                 out_dir: str | Path | None = None, evaluate: bool = True,
                 eval_samples: int = 128) -> RTBTrainer:
    """An RTB trainer for p(x) r_S(x)^beta on the stand-in prior (a rank-8 LoRA posterior),
    evaluated (E[log r], in-set share, diversity, FID) every eval_every steps."""
    prior = prior if prior is not None else load_prior()
    classifier = classifier if classifier is not None else load_classifier()
    evaluator = make_evaluator(target.classes, classifier, target_images(target.classes),
                               space=STANDIN, num_samples=eval_samples) if evaluate else None
    return image_trainer.class_set_trainer(prior, classifier, target, config or train_config(),
                                           space=STANDIN, out_dir=out_dir, evaluator=evaluator)


def finetune(classes: str | int = "square", beta: float = 1.0, config: TrainConfig | None = None,
             *, out_dir: str | Path | None = None, progress: bool = True) -> RTBTrainer:
    """Fine-tune the stand-in prior towards p(x) r_S(x)^beta with RTB; return the trainer."""
    trainer = make_trainer(class_set_target(classes, beta), config, out_dir=out_dir)
    trainer.train(progress=progress)
    return trainer


def load_posterior(prior: nn.Module, path: str | Path | None = None) -> LoRAPosterior:
    """A saved CIFAR-10 posterior of `prior`: your file, or the shipped one.

    Raises:
        CheckpointError: missing or corrupt file, or an adapter for another prior.
    """
    return image_posterior.load_posterior(prior, path, POSTERIOR_ASSET, STANDIN)
