"""MNIST: RTB fine-tuning of a DDPM prior with LoRA, for one class set or amortised.

    from rtb_lab.domains import mnist
    trainer = mnist.finetune("even", beta=1.0)     # LoRA posterior of the shipped prior
    trainer.evaluations[-1]["in_set"]

Modules, one idea each: `data` (the shipped subset and the real downloader), `prior`
(the DDPM prior and its family), `reward` (the classifier and class-set rewards),
`value` (the noisy classifier for value guidance), `posterior` (LoRA and set-expert
posteriors), `guided` (value-guided policies), `io` (loading any saved posterior),
`bank` (the exact posterior of our prior by importance weighting), `evaluation` (the
paper's metrics), `trainer` (single-target RTB), `conditional` (one posterior for every
class set and beta), `compare` (DPS and DPOK at an equal budget), `domain` (`DOMAIN`).
"""

from rtb_lab.domains.mnist.bank import ImportanceBank
from rtb_lab.domains.mnist.conditional import (
    CONDITIONAL_CONFIG,
    AmortisedOrExact,
    conditional_config,
    conditional_sampler,
    make_conditional_trainer,
    sample_conditions,
)
from rtb_lab.domains.mnist.domain import DOMAIN
from rtb_lab.domains.mnist.evaluation import (
    conditional_evaluator,
    evaluate_images,
    make_evaluator,
    set_evaluator,
    target_images,
)
from rtb_lab.domains.mnist.guided import GuidedPosterior
from rtb_lab.domains.mnist.io import load_conditional_posterior, load_posterior
from rtb_lab.domains.mnist.posterior import (
    BETA_RANGE,
    CONDITIONAL_ASSET,
    EVEN_ASSET,
    TRAIN_SETS,
    LoRAPosterior,
    SetExpertPosterior,
    make_posterior,
    save_posterior,
    scale_adapter,
    warm_start,
)
from rtb_lab.domains.mnist.prior import IMAGE_SHAPE, NUM_STEPS, decode, load_prior, make_family
from rtb_lab.domains.mnist.reward import class_set_reward, load_classifier, parse_classes
from rtb_lab.domains.mnist.trainer import (
    MNIST_CONFIG,
    ClassSetTarget,
    class_set_target,
    finetune,
    make_trainer,
    train_config,
)
from rtb_lab.domains.mnist.value import CHAIN_VALUE_ASSET, load_noisy_classifier, value_network

__all__ = [
    "BETA_RANGE",
    "CHAIN_VALUE_ASSET",
    "CONDITIONAL_ASSET",
    "CONDITIONAL_CONFIG",
    "DOMAIN",
    "EVEN_ASSET",
    "IMAGE_SHAPE",
    "MNIST_CONFIG",
    "NUM_STEPS",
    "TRAIN_SETS",
    "AmortisedOrExact",
    "ClassSetTarget",
    "GuidedPosterior",
    "ImportanceBank",
    "LoRAPosterior",
    "SetExpertPosterior",
    "class_set_reward",
    "class_set_target",
    "conditional_config",
    "conditional_evaluator",
    "conditional_sampler",
    "decode",
    "evaluate_images",
    "finetune",
    "load_classifier",
    "load_conditional_posterior",
    "load_noisy_classifier",
    "load_posterior",
    "load_prior",
    "make_conditional_trainer",
    "make_evaluator",
    "make_family",
    "make_posterior",
    "make_trainer",
    "parse_classes",
    "sample_conditions",
    "save_posterior",
    "scale_adapter",
    "set_evaluator",
    "target_images",
    "train_config",
    "value_network",
    "warm_start",
]
