"""MNIST posteriors: the shared LoRA and set-expert posteriors
(`rtb_lab.domains.images.posterior`) bound to the digits, with MNIST's shipped assets.

`SetExpertPosterior` here is conditioned on digit sets; by default on the ten digits
and the even and odd sets (`TRAIN_SETS`).
"""

from __future__ import annotations

from collections.abc import Iterable

from rtb_lab.domains.images import posterior as image_posterior
from rtb_lab.domains.images.posterior import (  # noqa: F401  (MNIST's posterior API)
    LoRAPosterior,
    load_adapter,
    save_posterior,
    scale_adapter,
    warm_start,
)
from rtb_lab.domains.images.prior import EpsNet
from rtb_lab.domains.mnist.reward import DIGITS, parse_classes

EVEN_ASSET = "mnist_even_posterior.safetensors"
CONDITIONAL_ASSET = "mnist_conditional_posterior.safetensors"  # value-guided set experts
BETA_RANGE = (0.5, 2.0)
# Class sets the conditional posterior is trained on (and the notebook offers).
TRAIN_SETS: tuple[tuple[int, ...], ...] = (
    *((c,) for c in range(10)), parse_classes("even"), parse_classes("odd"))


class SetExpertPosterior(image_posterior.SetExpertPosterior):
    """The set-expert posterior over digit sets (see the shared class for how it works).

    Args:
        prior: the frozen prior.
        sets: the digit sets it can be conditioned on.
        rank: LoRA rank per set.
    """

    def __init__(self, prior: EpsNet, sets: Iterable[Iterable[int]] = TRAIN_SETS,
                 rank: int = 4) -> None:
        super().__init__(prior, sets, rank, DIGITS)


def make_posterior(prior: EpsNet, rank: int | None = None,
                   conditional: bool = False) -> LoRAPosterior:
    """A posterior starting exactly at the prior: one adapter (rank 8), or the
    conditional set-expert posterior (rank 4 per trained set)."""
    if conditional:
        return SetExpertPosterior(prior, rank=rank or 4)
    return LoRAPosterior(prior, rank or 8)


def build_posterior(prior: EpsNet, meta: dict, path: str = "") -> LoRAPosterior:
    """A fresh (prior-equal) MNIST posterior with the layout `metadata()` recorded.

    Raises:
        CheckpointError: see `rtb_lab.domains.images.posterior.check_posterior_meta`.
    """
    image_posterior.check_posterior_meta(meta, path)
    if meta["arch"] == "SetExpertPosterior":
        return SetExpertPosterior(prior, meta["sets"], meta["rank"])
    return LoRAPosterior(prior, meta["rank"])
