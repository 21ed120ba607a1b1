"""RTB against DPS and DPOK on MNIST digit sets, at an equal evaluation budget: the
shared image harness (`rtb_lab.domains.images.compare`) on the shipped prior and
classifier, with FID against real test digits of the target set."""

from __future__ import annotations

from rtb_lab.domains.images.compare import METHODS, METRICS, PLOT_METRICS, ImageTask  # noqa: F401
from rtb_lab.domains.images.compare import method_runners as _method_runners
from rtb_lab.domains.mnist.evaluation import target_images
from rtb_lab.domains.mnist.prior import load_prior
from rtb_lab.domains.mnist.reward import DIGITS, load_classifier
from rtb_lab.domains.mnist.trainer import MNIST_CONFIG

# One RTB step at batch 32 and T = 20 costs 4 x 640 rows; ~40 and ~200 steps.
FAST_BUDGET = 110_000
FULL_BUDGET = 520_000
TASK = ImageTask("mnist", DIGITS, load_prior, load_classifier, target_images, MNIST_CONFIG)


def method_runners():
    """``{method: run(target, budget, seed) -> (metrics, samples)}`` on MNIST."""
    return _method_runners(TASK)
