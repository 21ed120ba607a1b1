"""Image posteriors: LoRA adapters (peft) on a copy of a frozen UNet prior.

Two kinds, both starting exactly at the prior (LoRA's B matrices are zero):

* `LoRAPosterior`: one adapter, for one class set and one beta.
* `SetExpertPosterior`: one network conditioned on (class set, beta). Each trained
  class set owns its own rank-r block of a shared LoRA, scaled by a learned power
  of beta per channel. Sets share nothing trainable, so learning "even" cannot undo
  "3" (a shared adapter conditioned through the time embedding, and per-digit
  experts summed over a set, both interfered that way; see docs/mnist.md).

Both work for any image shape (the prior's) and class space (`ClassSpace`).
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

from rtb_lab.checkpoint import CheckpointError, load_weights, save_weights, shipped_asset
from rtb_lab.domains.images.classes import ClassSpace
from rtb_lab.domains.images.prior import EpsNet
from rtb_lab.rtb import check_frozen

LORA_TARGETS = ["conv1", "conv2", "time_emb_proj"]


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


def _check_images(x: Tensor, image_shape: tuple[int, ...]) -> None:
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(f"expected images [B, {', '.join(map(str, image_shape))}], "
                         f"got {list(x.shape)}")


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
        self.image_shape = prior.image_shape
        self.prior_sha256 = getattr(prior, "sha256", None)
        self.to(next(prior.parameters()).device)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """[B, C, H, W] noisy images at times t [B] -> predicted noise."""
        _check_images(x, self.image_shape)
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
        space: the classes the sets and the conditions refer to.
    """

    def __init__(self, prior: EpsNet, sets: Iterable[Iterable[int]], rank: int,
                 space: ClassSpace) -> None:
        self.space = space
        sets = tuple(tuple(space.parse(list(s))) for s in sets)
        if len(set(sets)) != len(sets) or not sets:
            raise ValueError(f"sets must be distinct and non-empty, got {sets}")
        super().__init__(prior, rank * len(sets))  # every block
        self.sets, self.rank = sets, rank
        self.cond_dim = space.cond_dim
        self.register_buffer("set_masks", torch.stack([space.mask(s) for s in sets]))
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
        mask, _ = self.space.split_condition(cond)
        match = ((mask[:, None, :] - self.set_masks[None]).abs().sum(-1) < 0.5)  # [B, K]
        if not bool(match.any(1).all()):
            row = mask[~match.any(1)][0]
            classes = tuple(int(c) for c in torch.nonzero(row > 0.5).flatten())
            raise ValueError(f"class set {classes} is not one this posterior was trained on "
                             f"({self.set_names()}); sample it with an ImportanceBank")
        return match.float().argmax(1)

    @torch.no_grad()
    def specialise(self, prior: EpsNet, classes: str | int | Iterable[int],
                   beta: float) -> LoRAPosterior:
        """The same posterior for one trained set and beta, as a plain rank-r
        `LoRAPosterior`: that set's block, with its beta gate folded into B. Its outputs
        equal this module's for that condition, at a fraction of the cost (sampling on
        a CPU: the gate no longer computes every set's block)."""
        index = int(self.set_index(self.space.condition(classes, beta)
                                   .to(self.set_masks.device)))
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
        return [self.space.name(s) for s in self.sets]

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """[B, C, H, W] noisy images at times t [B], conditions [B, K + 1] -> noise."""
        _check_images(x, self.image_shape)
        if cond is None or cond.shape != (x.shape[0], self.cond_dim):
            got = None if cond is None else list(cond.shape)
            raise ValueError(f"this posterior needs conditions [B, {self.cond_dim}] (class "
                             f"mask, log beta; see ClassSpace.condition), got {got}")
        index = self.set_index(cond)
        self._gates = (index[:, None] == torch.arange(len(self.sets), device=x.device)) \
            .to(x.dtype).repeat_interleave(self.rank, 1)
        self._log_beta = cond[:, self.space.num_classes].to(x.dtype)
        try:
            return self.unet(x, t).sample
        finally:
            self._gates = self._log_beta = None

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "arch": "SetExpertPosterior", "cond_dim": self.cond_dim,
                "sets": [list(s) for s in self.sets]}


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


def check_posterior_meta(meta: dict[str, Any], path: str | Path = "") -> None:
    """Raise CheckpointError unless `meta` describes a loadable LoRA posterior.

    Files saved before learned std factors were removed record ``"learn_std": false``
    (and the ``num_steps`` those factors were for); they load as before.
    """
    if meta.get("arch") not in ("LoRAPosterior", "SetExpertPosterior"):
        raise CheckpointError(f"{path} is not a LoRA posterior (arch={meta.get('arch')!r})")
    if meta.get("learn_std"):
        raise CheckpointError(f"{path} holds a posterior with learned std factors "
                              "(learn_std); learned std was removed from rtb-lab (it is in "
                              "the git history, commit 4f4a499)")


def build_posterior(prior: EpsNet, meta: dict[str, Any], space: ClassSpace,
                    path: str | Path = "") -> LoRAPosterior:
    """A fresh (prior-equal) posterior with the layout `metadata()` recorded.

    Raises:
        CheckpointError: see `check_posterior_meta`.
    """
    check_posterior_meta(meta, path)
    if meta["arch"] == "SetExpertPosterior":
        return SetExpertPosterior(prior, meta["sets"], meta["rank"], space)
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




def read_adapter(prior: EpsNet, path: str | Path | None, asset: str
                 ) -> tuple[dict[str, Tensor], dict[str, Any], str | Path]:
    """(adapter tensors by parameter name, metadata, path) of a saved posterior of `prior`:
    the shipped `asset` (sha256-checked) when `path` is None.

    Raises:
        CheckpointError: missing or corrupt file, or an adapter trained on another prior.
    """
    sha256 = None
    if path is None:
        path, sha256 = shipped_asset(asset)
    tensors, meta = load_weights(path, sha256)
    if meta.get("prior_sha256") != getattr(prior, "sha256", None):
        raise CheckpointError(
            f"{path} is an adapter for another prior (sha256 {str(meta.get('prior_sha256'))[:12]}"
            f"...), not for this one ({str(getattr(prior, 'sha256', None))[:12]}...)")
    return {meta[key]: tensor for key, tensor in tensors.items()}, meta, path


def load_posterior(prior: EpsNet, path: str | Path | None, asset: str,
                   space: ClassSpace) -> LoRAPosterior:
    """A saved LoRA or set-expert posterior of `prior` (the shipped `asset` by default).

    Raises:
        CheckpointError: missing or corrupt file, another prior's adapter, or not a
            LoRA posterior.
    """
    state, meta, path = read_adapter(prior, path, asset)
    posterior = build_posterior(prior, meta, space, path)
    load_adapter(posterior, state, path)
    return posterior
