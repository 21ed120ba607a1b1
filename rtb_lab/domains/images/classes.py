"""Class sets of an image classifier's reward, and the conditions that name them.

The reward of a set of target classes S is r(x) = max_{c in S} p(c | x), as in the
paper (one class, or the even / odd digits); the posterior is p(x) r(x)^beta. A
conditional posterior reads the pair (S, beta) as a vector: a K-entry mask of S
followed by log beta. A `ClassSpace` names a domain's classes and its named sets, so
that users can write "even", "3", "17", "disc" or "disc,ring".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from rtb_lab.rtb import check_beta

Classes = str | int | Iterable[int]


@dataclass(frozen=True)
class ClassSpace:
    """A domain's classes and named class sets.

    Attributes:
        names: one name per class index (MNIST: "0".."9").
        named_sets: extra names for sets, e.g. {"even": (0, 2, 4, 6, 8)}.
    """

    names: tuple[str, ...]
    named_sets: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def cond_dim(self) -> int:
        """Width of a condition row: the class mask and log beta."""
        return self.num_classes + 1

    def forms(self) -> str:
        """The accepted spellings, for error messages and help text."""
        sets = ", ".join(repr(name) for name in self.named_sets)
        return (f"a class name ({', '.join(self.names)}), names joined by ',' or '+', "
                f"{sets + ', ' if sets else ''}a class index, a string of indices "
                f"such as '17', or a list of indices")

    def parse(self, classes: Classes) -> tuple[int, ...]:
        """A sorted tuple of class indices from any accepted spelling.

        Raises:
            ValueError: an unknown name, an empty set, or an index out of range.
        """
        if isinstance(classes, str):
            classes = self._parse_name(classes)
        values = (classes,) if isinstance(classes, int) else tuple(int(c) for c in classes)
        if not values:
            raise ValueError("the class set is empty: pick at least one class")
        bad = [c for c in values if not 0 <= c < self.num_classes]
        if bad:
            raise ValueError(f"classes must be in 0..{self.num_classes - 1}, got {bad}")
        return tuple(sorted(set(values)))

    def _parse_name(self, text: str) -> tuple[int, ...]:
        key = text.strip().lower()
        lookup = {name.lower(): (index,) for index, name in enumerate(self.names)}
        lookup.update({name.lower(): tuple(s) for name, s in self.named_sets.items()})
        if key in lookup:
            return lookup[key]
        if key.isdigit():  # "3" or "17": one index per character (10 classes at most)
            return tuple(int(c) for c in key)
        parts = [part.strip() for part in key.replace("+", ",").split(",") if part.strip()]
        if len(parts) > 1 and all(part in lookup for part in parts):
            return tuple(c for part in parts for c in lookup[part])
        raise ValueError(f"unknown class set {text!r}: expected {self.forms()}")

    def name(self, classes: Classes) -> str:
        """A readable name of a set: its own name, a class name, or names joined by '+'."""
        parsed = self.parse(classes)
        for name, members in self.named_sets.items():
            if tuple(sorted(members)) == parsed:
                return name
        return "+".join(self.names[c] for c in parsed)

    def mask(self, classes: Classes) -> Tensor:
        """[K] float mask of the target classes."""
        mask = torch.zeros(self.num_classes)
        mask[list(self.parse(classes))] = 1.0
        return mask

    def condition(self, classes: Classes, beta: float, n: int = 1) -> Tensor:
        """[n, K + 1] condition rows (class mask, log beta) for a conditional posterior."""
        check_beta(beta)
        row = torch.cat([self.mask(classes), torch.tensor([float(beta)]).log()])
        return row.expand(n, -1).clone()

    def split_condition(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        """([B, K] class mask, [B] beta) from [B, K + 1] conditions."""
        if cond.dim() != 2 or cond.shape[1] != self.cond_dim:
            raise ValueError(f"expected conditions [B, {self.cond_dim}] (mask, log beta), "
                             f"got {list(cond.shape)}")
        return cond[:, :self.num_classes], cond[:, self.num_classes].exp()


def set_log_prob(log_p: Tensor, mask: Tensor) -> Tensor:
    """[B] log max_{c in S} p(c | x) from log-probabilities [B, K] and masks [B, K] or [K]."""
    mask = mask.to(log_p.device).expand_as(log_p)
    return log_p.masked_fill(mask < 0.5, float("-inf")).max(1).values
