"""RTB against DPS and DPOK on the CIFAR-10 stand-in, at an equal evaluation budget: the
shared image harness (`rtb_lab.domains.images.compare`) on the shipped stand-in prior
and classifier, FID against stand-in test images of the target class."""

from __future__ import annotations

from rtb_lab.config import is_fast
from rtb_lab.domain import MethodRunner
from rtb_lab.domains.cifar10.prior import load_prior
from rtb_lab.domains.cifar10.reward import STANDIN, load_classifier
from rtb_lab.domains.cifar10.trainer import CIFAR10_CONFIG, target_images
from rtb_lab.domains.images import compare as image_compare
from rtb_lab.domains.images.bank import ImportanceBank
from rtb_lab.domains.images.compare import ImageTask, method_runners

# One RTB step at batch 16 and T = 20 costs 4 x 320 rows; ~20 and ~100 steps.
FAST_BUDGET = 30_000
FULL_BUDGET = 130_000
TASK = ImageTask("cifar10", STANDIN, load_prior, load_classifier, target_images,
                 CIFAR10_CONFIG)


def runners() -> dict[str, MethodRunner]:
    """``{method: run(target, budget, seed) -> (metrics, samples)}`` on the stand-in."""
    return method_runners(TASK)


def prior_bank(size: int | None = None) -> ImportanceBank:
    """The shipped prior's importance bank that `compare` scores `kl` with (seed 0; built
    once per process). Default size: the one compare uses (256 in fast mode, else 4096)."""
    default = image_compare.FAST_BANK_SIZE if is_fast() else image_compare.BANK_SIZE
    return image_compare.prior_bank(TASK, size or default)
