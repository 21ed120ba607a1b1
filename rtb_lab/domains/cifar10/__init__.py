"""CIFAR-10: RTB fine-tuning of a 32 x 32 colour DDPM prior with LoRA, for a class set.

    from rtb_lab.domains import cifar10
    trainer = cifar10.finetune("disc", beta=1.0)   # LoRA posterior of the stand-in prior

Offline everything runs on a generated stand-in (`standin`: ten classes of shapes and
textures); online, `data.load_cifar10(source="full")` reads the real data set and
`prior.load_hub_prior()` the paper's prior. Modules: `standin`, `data`, `prior`,
`reward` (classifier, class sets), `trainer` (single-target RTB), `conditional`
(one posterior for three classes and any beta), `compare` (DPS and
DPOK at an equal budget), `domain` (`DOMAIN`). The machinery is shared with MNIST
(`rtb_lab.domains.images`).
"""

from rtb_lab.domains.cifar10.compare import prior_bank
from rtb_lab.domains.cifar10.conditional import (
    TRAIN_SETS,
    AmortisedOrExact,
    load_conditional_posterior,
    make_conditional_trainer,
)
from rtb_lab.domains.cifar10.data import load_cifar10
from rtb_lab.domains.cifar10.domain import DOMAIN
from rtb_lab.domains.cifar10.prior import IMAGE_SHAPE, load_hub_prior, load_prior, sample_images
from rtb_lab.domains.cifar10.reward import CIFAR10, STANDIN, load_classifier
from rtb_lab.domains.cifar10.standin import CLASS_NAMES, make_standin
from rtb_lab.domains.cifar10.trainer import (
    CIFAR10_CONFIG,
    class_set_target,
    finetune,
    load_posterior,
    make_trainer,
    target_images,
    train_config,
)

__all__ = [
    "CIFAR10",
    "CIFAR10_CONFIG",
    "CLASS_NAMES",
    "DOMAIN",
    "IMAGE_SHAPE",
    "STANDIN",
    "TRAIN_SETS",
    "AmortisedOrExact",
    "class_set_target",
    "finetune",
    "load_classifier",
    "load_conditional_posterior",
    "load_cifar10",
    "load_hub_prior",
    "load_posterior",
    "load_prior",
    "make_conditional_trainer",
    "make_standin",
    "make_trainer",
    "prior_bank",
    "sample_images",
    "target_images",
    "train_config",
]
