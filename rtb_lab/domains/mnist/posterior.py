"""MNIST posteriors: LoRA adapters (peft) on a copy of the frozen prior's UNet.

Two kinds, both starting exactly at the prior (LoRA's B matrices are zero):

* `LoRAPosterior`: one adapter, for one class set and one beta.
* `SetExpertPosterior`: one network conditioned on (class set, beta). Each trained
  class set owns its own rank-r block of a shared LoRA, scaled by a learned power
  of beta per channel. Sets share nothing trainable, so learning "even" cannot undo
  "3" (a shared adapter conditioned through the time embedding, and per-digit
  experts summed over a set, both interfered that way; see docs/mnist.md).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import Tensor, nn

from rtb_lab.checkpoint import CheckpointError, save_weights
from rtb_lab.domains.mnist.prior import IMAGE_SHAPE, EpsNet
from rtb_lab.domains.mnist.reward import (
    COND_DIM,
    NUM_CLASSES,
    class_mask,
    make_condition,
    parse_classes,
    split_condition,
)
from rtb_lab.rtb import check_frozen

LORA_TARGETS = ["conv1", "conv2", "time_emb_proj"]
EVEN_ASSET = "mnist_even_posterior.safetensors"
CONDITIONAL_ASSET = "mnist_conditional_posterior.safetensors"  # value-guided set experts
BETA_RANGE = (0.5, 2.0)
# Class sets the conditional posterior is trained on (and the notebook offers).
TRAIN_SETS: tuple[tuple[int, ...], ...] = (
    *((c,) for c in range(10)), parse_classes("even"), parse_classes("odd"))


def _is_adapter(name: str) -> bool:
    """Whether a parameter is one training changes (LoRA matrices, beta exponents)."""
    return name == "beta_power" or "lora_" in name


def _adapted_copy(prior: EpsNet, rank: int) -> nn.Module:
    """A deep copy of the prior's UNet with a zero-initialised LoRA (alpha = rank: scale 1)."""
    check_frozen(prior)
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS,
                        init_lora_weights=True)  # B = 0: the adapter starts as a no-op
    unet = inject_adapter_in_model(config, copy.deepcopy(prior.unet))
    for name, param in unet.named_parameters():
        param.requires_grad_("lora_" in name)
    return unet


def _check_images(x: Tensor) -> None:
    if x.dim() != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
        raise ValueError(f"expected images [B, 1, 28, 28], got {list(x.shape)}")


class LoRAPosterior(nn.Module):
    """A LoRA-adapted copy of a prior EpsNet, for one class set and beta.

    It predicts the noise; the sampling step's std is the family's fixed one, as for
    the prior. The network does not depend on the chain length T.

    Args:
        prior: the frozen prior (its weights are copied, never modified).
        rank: LoRA rank r (alpha = r, so the adapter's scale is 1).
    """

    cond_dim = 0

    def __init__(self, prior: EpsNet, rank: int = 8) -> None:
        super().__init__()
        self.unet = _adapted_copy(prior, rank)
        self.rank = rank
        self.prior_sha256 = getattr(prior, "sha256", None)
        self.to(next(prior.parameters()).device)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """[B, 1, 28, 28] noisy images at times t [B] -> predicted noise."""
        _check_images(x)
        return self.unet(x, t).sample

    def metadata(self) -> dict[str, Any]:
        """What `load_posterior` needs to rebuild this module."""
        return {"arch": "LoRAPosterior", "rank": self.rank, "cond_dim": 0}

    def adapter_state_dict(self) -> dict[str, Tensor]:
        """Only what training changes (the LoRA matrices, and a set-expert posterior's
        beta exponents)."""
        return {name: tensor for name, tensor in self.state_dict().items() if _is_adapter(name)}


class SetExpertPosterior(LoRAPosterior):
    """A posterior conditioned on (class set, beta): one LoRA block per trained set.

    One peft adapter of rank `rank * len(sets)`; a forward hook on each LoRA "A"
    projection keeps only the `rank` channels of the row's class set and scales them
    by beta ** a, with a learned exponent a per layer and channel (0 at the start).

    Args:
        prior: the frozen prior.
        sets: the class sets it can be conditioned on.
        rank: LoRA rank per set.
    """

    cond_dim = COND_DIM

    def __init__(self, prior: EpsNet, sets: Iterable[Iterable[int]] = TRAIN_SETS,
                 rank: int = 4) -> None:
        sets = tuple(tuple(parse_classes(list(s))) for s in sets)
        if len(set(sets)) != len(sets) or not sets:
            raise ValueError(f"sets must be distinct and non-empty, got {sets}")
        super().__init__(prior, rank * len(sets))  # every block
        self.sets, self.rank = sets, rank
        self.register_buffer("set_masks", torch.stack([class_mask(s) for s in sets]))
        self.lora_layers = [name.removesuffix(".lora_A.default") for name, _ in
                            self.unet.named_modules() if name.endswith("lora_A.default")]
        self.beta_power = nn.Parameter(torch.zeros(len(self.lora_layers), rank * len(sets)))
        for index, name in enumerate(self.lora_layers):
            self.unet.get_submodule(f"{name}.lora_A.default").register_forward_hook(
                partial(self._gate, index))
        self._gates: Tensor | None = None  # [B, rank * K] block mask, set during forward
        self._log_beta: Tensor | None = None
        self.to(next(prior.parameters()).device)

    def _gate(self, index: int, module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        gate = self._gates * torch.exp(self.beta_power[index] * self._log_beta[:, None])
        return output * gate.view(*gate.shape, *(1,) * (output.dim() - 2))

    def set_index(self, cond: Tensor) -> Tensor:
        """[B] index into `sets` of each condition row's class set.

        Raises:
            ValueError: a row names a class set this posterior was not trained on.
        """
        mask, _ = split_condition(cond)
        match = ((mask[:, None, :] - self.set_masks[None]).abs().sum(-1) < 0.5)  # [B, K]
        if not bool(match.any(1).all()):
            row = mask[~match.any(1)][0]
            classes = tuple(int(c) for c in torch.nonzero(row > 0.5).flatten())
            raise ValueError(f"class set {classes} is not one this posterior was trained on "
                             f"({self.set_names()}); sample it with mnist_bank.ImportanceBank")
        return match.float().argmax(1)

    @torch.no_grad()
    def specialise(self, prior: EpsNet, classes: str | int | Iterable[int],
                   beta: float) -> LoRAPosterior:
        """The same posterior for one trained set and beta, as a plain rank-r
        `LoRAPosterior`: that set's block, with its beta gate folded into B. Its outputs
        equal this module's for that condition, at a fraction of the cost (sampling on
        a CPU: the gate no longer computes every set's block)."""
        index = int(self.set_index(make_condition(classes, beta).to(self.set_masks.device)))
        block = slice(index * self.rank, (index + 1) * self.rank)
        single = LoRAPosterior(prior, self.rank)
        for layer, name in enumerate(self.lora_layers):
            gate = torch.exp(self.beta_power[layer, block] * math.log(beta))
            a = self.unet.get_submodule(f"{name}.lora_A.default").weight[block]
            b = self.unet.get_submodule(f"{name}.lora_B.default").weight[:, block]
            single.unet.get_submodule(f"{name}.lora_A.default").weight.copy_(a)
            single.unet.get_submodule(f"{name}.lora_B.default").weight.copy_(
                b * gate.view(1, -1, *(1,) * (b.dim() - 2)))
        return single.requires_grad_(False)

    def set_names(self) -> list[str]:
        """Readable names of the trained sets ("even", "odd", "3", ...)."""
        named = {parse_classes("even"): "even", parse_classes("odd"): "odd"}
        return [named.get(s, "".join(map(str, s))) for s in self.sets]

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """[B, 1, 28, 28] noisy images at times t [B], conditions [B, 11] -> noise."""
        _check_images(x)
        if cond is None or cond.shape != (x.shape[0], COND_DIM):
            got = None if cond is None else list(cond.shape)
            raise ValueError(f"this posterior needs conditions [B, {COND_DIM}] (class mask, "
                             f"log beta; see mnist_reward.make_condition), got {got}")
        index = self.set_index(cond)
        self._gates = (index[:, None] == torch.arange(len(self.sets), device=x.device)) \
            .to(x.dtype).repeat_interleave(self.rank, 1)
        self._log_beta = cond[:, NUM_CLASSES].to(x.dtype)
        try:
            return self.unet(x, t).sample
        finally:
            self._gates = self._log_beta = None

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "arch": "SetExpertPosterior", "cond_dim": COND_DIM,
                "sets": [list(s) for s in self.sets]}


def make_posterior(prior: EpsNet, rank: int | None = None,
                   conditional: bool = False) -> LoRAPosterior:
    """A posterior starting exactly at the prior: one adapter (rank 8), or the
    conditional set-expert posterior (rank 4 per trained set)."""
    if conditional:
        return SetExpertPosterior(prior, rank=rank or 4)
    return LoRAPosterior(prior, rank or 8)


def save_posterior(posterior: LoRAPosterior, path: str | Path, command: str,
                   extra: dict[str, Any] | None = None) -> str:
    """Save the adapter (not the prior's weights) with the prior's sha256; return sha256."""
    meta = {**posterior.metadata(), "prior_sha256": posterior.prior_sha256,
            "command": command, **(extra or {})}
    holder = nn.Module()
    for index, (name, tensor) in enumerate(posterior.adapter_state_dict().items()):
        holder.register_buffer(f"t{index}", tensor.detach().cpu())
        meta[f"t{index}"] = name
    return save_weights(holder, path, meta)


def build_posterior(prior: EpsNet, meta: dict[str, Any], path: str | Path = "") -> LoRAPosterior:
    """A fresh (prior-equal) posterior with the layout `metadata()` recorded.

    Files saved before learned std factors were removed record ``"learn_std": false``
    (and the ``num_steps`` those factors were for); they load as before.

    Raises:
        CheckpointError: not a LoRA posterior, or one with learned std factors.
    """
    if meta.get("arch") not in ("LoRAPosterior", "SetExpertPosterior"):
        raise CheckpointError(f"{path} is not an MNIST LoRA posterior (arch={meta.get('arch')!r})")
    if meta.get("learn_std"):
        raise CheckpointError(f"{path} holds a posterior with learned std factors "
                              "(learn_std); learned std was removed from rtb-lab (it is in "
                              "the git history, commit 4f4a499)")
    if meta["arch"] == "SetExpertPosterior":
        return SetExpertPosterior(prior, meta["sets"], meta["rank"])
    return LoRAPosterior(prior, meta["rank"])


def load_adapter(posterior: nn.Module, state: dict[str, Tensor], path: str | Path = "") -> None:
    """Copy saved adapter tensors into `posterior`; its layout must match exactly."""
    _, unexpected = posterior.load_state_dict(state, strict=False)
    if unexpected or set(state) != set(posterior.adapter_state_dict()):
        raise CheckpointError(f"{path} does not match the adapter layout: {unexpected[:3]}")


@torch.no_grad()
def scale_adapter(posterior: LoRAPosterior, alpha: float) -> LoRAPosterior:
    """A copy of a single-target posterior with every LoRA update scaled by `alpha`.

    alpha = 0 is the prior, 1 the posterior itself, > 1 pushes further along the
    direction training took. It is a probe, not a sampler of the target: RTB on-policy
    minimises KL(q || target), so along this line its own alpha = 1 should sit near the
    smallest KL (see `resample.ResampleResult.kl_to_target`), even where a larger alpha
    puts more samples in the target set.
    """
    if isinstance(posterior, SetExpertPosterior):
        raise TypeError("scale_adapter takes a single-target LoRAPosterior; for the "
                        "conditional one, call posterior.specialise(prior, classes, beta) first")
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number, got {alpha}")
    scaled = copy.deepcopy(posterior)
    for name, param in scaled.named_parameters():
        if "lora_B" in name:
            param.mul_(alpha)
    return scaled


@torch.no_grad()
def warm_start(posterior: LoRAPosterior, trained: LoRAPosterior) -> LoRAPosterior:
    """Copy `trained`'s adapter into `posterior` (same arch, sets and rank). Returns
    `posterior`."""
    target = posterior.adapter_state_dict()
    source = trained.adapter_state_dict()
    same_layout = (type(posterior) is type(trained)
                   and getattr(posterior, "sets", None) == getattr(trained, "sets", None)
                   and set(target) == set(source)
                   and all(target[name].shape == tensor.shape
                           for name, tensor in source.items()))
    if not same_layout:
        raise ValueError(f"cannot warm-start a {posterior.metadata()} posterior from a "
                         f"{trained.metadata()} one: the adapters differ")
    for name, tensor in source.items():
        target[name].copy_(tensor)
    return posterior


