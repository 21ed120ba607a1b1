"""The exact posterior of the MNIST prior for any digit set and beta: the shared
importance bank (`rtb_lab.domains.images.bank`) over the digits."""

from __future__ import annotations

from rtb_lab.domains.images import bank as image_bank
from rtb_lab.domains.images.bank import prior_bank  # noqa: F401  (MNIST's bank API)
from rtb_lab.domains.images.prior import NUM_STEPS, EpsNet
from rtb_lab.domains.mnist.reward import DIGITS, DigitClassifier


class ImportanceBank(image_bank.ImportanceBank):
    """Posterior samples for any digit set and beta by resampling `size` prior images
    (see the shared class)."""

    def __init__(self, prior: EpsNet, classifier: DigitClassifier, size: int = 2048,
                 seed: int = 0, num_steps: int = NUM_STEPS) -> None:
        super().__init__(prior, classifier, size, space=DIGITS, seed=seed, num_steps=num_steps)
