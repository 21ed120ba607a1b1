"""MNIST: RTB fine-tuning of the DDPM prior with LoRA, for one class set or amortised.

The posterior is a copy of the prior's UNet with LoRA adapters (peft) on every
ResNet convolution and time projection, plus, for a conditional posterior, an
embedding of the condition (class mask, log beta) added to the UNet's time
embedding. Both start at zero (LoRA's B matrices and the embedding's last layer),
so a fresh posterior is exactly the prior. The prior itself stays frozen.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import Tensor, nn

from rtb_lab.checkpoint import CheckpointError, load_weights, save_weights, shipped_asset
from rtb_lab.config import is_fast
from rtb_lab.diffusion import sample_trajectories
from rtb_lab.domains import mnist_bank
from rtb_lab.domains.images import load_mnist
from rtb_lab.domains.mnist_prior import (
    IMAGE_SHAPE,
    NUM_STEPS,
    EpsNet,
    decode,
    load_prior,
    make_family,
)
from rtb_lab.domains.mnist_reward import (
    COND_DIM,
    DigitClassifier,
    class_mask,
    class_set_reward,
    conditional_reward,
    load_classifier,
    make_condition,
    parse_classes,
    set_log_prob,
    split_condition,
)
from rtb_lab.metrics import cosine_diversity, frechet_distance
from rtb_lab.rtb import check_beta, check_frozen
from rtb_lab.train import RTBTrainer, TrainConfig

LORA_TARGETS = ["conv1", "conv2", "time_emb_proj"]
COND_SCALE = 1.0
CONDITIONAL_ASSET = "mnist_conditional_posterior.safetensors"  # not shipped yet (see README)
EVEN_ASSET = "mnist_even_posterior.safetensors"
BETA_RANGE = (0.5, 2.0)
# Class sets the conditional posterior is trained on (and the notebook offers).
TRAIN_SETS: tuple[tuple[int, ...], ...] = (
    *((c,) for c in range(10)), parse_classes("even"), parse_classes("odd"))

# RTB on MNIST: batch 32 of T = 20 steps, gradient through 5 random steps of the 20
# (unbiased): ~3.5 s per iteration on 1 CPU core. lr 3e-3 reached 76% even digits
# after 60 steps where 1e-3 reached 64% (measured from the shipped prior), but then
# oscillates (68-83%), hence the cosine decay to 3e-4 over the run.
MNIST_CONFIG = TrainConfig(steps=300, batch_size=32, lr=3e-3, lr_end=3e-4, log_z_lr=0.1,
                           explore=0.2, explore_hold=20, explore_end=100, chunk_steps=10,
                           grad_steps=5, grad_clip=1.0, log_z_init_samples=256, eval_every=50)
# The conditional posterior: VarGrad over 4 conditions of 8 trajectories per batch.
CONDITIONAL_CONFIG = replace(MNIST_CONFIG, loss="vargrad", cond_groups=4, steps=1500, lr=2e-3,
                             residual_per_beta=True, eval_every=0, checkpoint_every=50)


def train_config(fast: bool | None = None) -> TrainConfig:
    """MNIST_CONFIG, or its short version in fast mode (RTB_LAB_FAST / CI)."""
    fast = is_fast() if fast is None else fast
    return replace(MNIST_CONFIG.with_steps(15), eval_every=0) if fast else MNIST_CONFIG


class LoRAPosterior(nn.Module):
    """A LoRA-adapted copy of a prior EpsNet, optionally conditioned.

    Args:
        prior: the frozen prior (its weights are copied, never modified).
        rank: LoRA rank r (alpha = r, so the adapter's scale is 1).
        cond_dim: size of the condition vector (0: unconditional).
    """

    def __init__(self, prior: EpsNet, rank: int = 8, cond_dim: int = 0) -> None:
        super().__init__()
        check_frozen(prior)
        unet = copy.deepcopy(prior.unet)
        config = LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS,
                            init_lora_weights=True)  # B = 0: the adapter starts as a no-op
        self.unet = inject_adapter_in_model(config, unet)
        for name, param in self.unet.named_parameters():
            param.requires_grad_("lora_" in name)
        self.rank, self.cond_dim = rank, cond_dim
        self.prior_sha256 = getattr(prior, "sha256", None)
        self.cond_embed: nn.Module | None = None
        self._cond: Tensor | None = None
        if cond_dim:
            width = self.unet.time_embedding.linear_2.out_features
            self.cond_embed = nn.Sequential(nn.Linear(cond_dim, width), nn.SiLU(),
                                            nn.Linear(width, width))
            nn.init.zeros_(self.cond_embed[2].weight)
            nn.init.zeros_(self.cond_embed[2].bias)
            self.unet.time_embedding.register_forward_hook(self._add_condition)

    def _add_condition(self, module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        # The condition shifts the time embedding, which every ResNet block reads. The
        # 0.1 slows this path down under Adam (whose steps ignore gradient scale): at full
        # scale a few hundred steps shifted the embedding enough to break the frozen UNet.
        return output + COND_SCALE * self.cond_embed(self._cond)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """[B, 1, 28, 28] noisy images at times t [B] (condition [B, C]) -> noise."""
        if x.dim() != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
            raise ValueError(f"expected images [B, 1, 28, 28], got {list(x.shape)}")
        if self.cond_dim:
            if cond is None or cond.shape != (x.shape[0], self.cond_dim):
                got = None if cond is None else list(cond.shape)
                raise ValueError(f"this posterior needs conditions [B, {self.cond_dim}], "
                                 f"got {got}")
            self._cond = cond
        try:
            return self.unet(x, t).sample
        finally:
            self._cond = None

    def adapter_state_dict(self) -> dict[str, Tensor]:
        """Only what training changes: LoRA matrices and the condition embedding."""
        return {name: tensor for name, tensor in self.state_dict().items()
                if "lora_" in name or name.startswith("cond_embed.")}


def make_posterior(prior: EpsNet, rank: int = 8, conditional: bool = False) -> LoRAPosterior:
    """A posterior starting exactly at the prior (zero-initialised LoRA)."""
    return LoRAPosterior(prior, rank, COND_DIM if conditional else 0)


def save_posterior(posterior: LoRAPosterior, path: str | Path, command: str,
                   extra: dict[str, Any] | None = None) -> str:
    """Save the adapter (not the prior's weights) with the prior's sha256; return sha256."""
    meta = {"arch": "LoRAPosterior", "rank": posterior.rank, "cond_dim": posterior.cond_dim,
            "prior_sha256": posterior.prior_sha256, "command": command, **(extra or {})}
    holder = nn.Module()
    for index, (name, tensor) in enumerate(posterior.adapter_state_dict().items()):
        holder.register_buffer(f"t{index}", tensor)
        meta[f"t{index}"] = name
    return save_weights(holder, path, meta)


def load_posterior(prior: EpsNet, path: str | Path | None = None) -> LoRAPosterior:
    """Load an adapter onto `prior` (default: the shipped posterior for even digits, beta 1).

    Raises:
        CheckpointError: missing or corrupt file, or an adapter trained on another prior.
    """
    sha256 = None
    if path is None:
        path, sha256 = shipped_asset(EVEN_ASSET)
    tensors, meta = load_weights(path, sha256)
    if meta.get("arch") != "LoRAPosterior":
        raise CheckpointError(f"{path} is not an MNIST LoRA posterior (arch={meta.get('arch')!r})")
    if meta.get("prior_sha256") != getattr(prior, "sha256", None):
        raise CheckpointError(
            f"{path} is an adapter for another prior (sha256 {str(meta.get('prior_sha256'))[:12]}"
            f"...), not for this one ({str(getattr(prior, 'sha256', None))[:12]}...)")
    posterior = LoRAPosterior(prior, meta["rank"], meta["cond_dim"])
    state = {meta[key]: tensor for key, tensor in tensors.items()}
    missing, unexpected = posterior.load_state_dict(state, strict=False)
    if unexpected or set(state) != set(posterior.adapter_state_dict()):
        raise CheckpointError(f"{path} does not match the adapter layout: {unexpected[:3]}")
    posterior.requires_grad_(False)
    for name, param in posterior.named_parameters():
        param.requires_grad_("lora_" in name or name.startswith("cond_embed."))
    return posterior


# ------------------------------------------------------------------ trainers
def sample_conditions(sets: Iterable[tuple[int, ...]] = TRAIN_SETS,
                      beta_range: tuple[float, float] = BETA_RANGE
                      ) -> Callable[[int, torch.Generator], Tensor]:
    """A sampler of conditions: a class set uniformly, beta log-uniformly in the range."""
    sets = list(sets)
    low, high = (torch.tensor(b).log() for b in beta_range)

    def draw(n: int, generator: torch.Generator) -> Tensor:
        picks = torch.randint(len(sets), (n,), generator=generator).tolist()
        betas = (low + (high - low) * torch.rand(n, generator=generator)).exp()
        return torch.cat([make_condition(sets[i], float(b)) for i, b in zip(picks, betas,
                                                                            strict=True)])

    return draw


def make_trainer(classes: str | int | Iterable[int] = "even", beta: float = 1.0,
                 config: TrainConfig | None = None, *, prior: EpsNet | None = None,
                 classifier: DigitClassifier | None = None, rank: int = 8,
                 num_steps: int = NUM_STEPS, out_dir: str | Path | None = None,
                 evaluator: Callable[[RTBTrainer], dict[str, float]] | None = None
                 ) -> RTBTrainer:
    """An RTB trainer for p(x) r_S(x)^beta, r_S(x) = max_{c in S} p(c | x)."""
    check_beta(beta)
    prior = prior or load_prior()
    classifier = classifier or load_classifier()
    config = replace(config or MNIST_CONFIG, beta=beta)
    reward = class_set_reward(classifier, parse_classes(classes))
    return RTBTrainer(prior, make_posterior(prior, rank), make_family(num_steps),
                      lambda x: reward(decode(prior, x)), IMAGE_SHAPE, config,
                      evaluator=evaluator, out_dir=out_dir)


def make_conditional_trainer(config: TrainConfig | None = None, *,
                             prior: EpsNet | None = None,
                             classifier: DigitClassifier | None = None, rank: int = 8,
                             sets: Iterable[tuple[int, ...]] = TRAIN_SETS,
                             beta_range: tuple[float, float] = BETA_RANGE,
                             bank_size: int = 1024, bank_per_group: int = 3,
                             num_steps: int = NUM_STEPS,
                             out_dir: str | Path | None = None) -> RTBTrainer:
    """An RTB trainer for one posterior amortised over class sets and beta (VarGrad).

    With `bank_size` > 0, batches also draw from a bank of prior trajectories
    (`PriorBankTrainer`); 0 gives the plain on-policy-with-exploration trainer.
    """
    prior = prior or load_prior()
    classifier = classifier or load_classifier()
    config = config or CONDITIONAL_CONFIG
    reward = conditional_reward(classifier)
    args = (prior, make_posterior(prior, rank, conditional=True), make_family(num_steps),
            lambda x, cond: reward(decode(prior, x), cond), IMAGE_SHAPE, config)
    kwargs = {"cond_sampler": sample_conditions(sets, beta_range),
              "beta_of_cond": lambda cond: split_condition(cond)[1], "out_dir": out_dir}
    if bank_size == 0:
        return RTBTrainer(*args, **kwargs)
    bank, _, log_probs = mnist_bank.prior_bank(prior, classifier, bank_size,
                                               seed=config.seed + 100, num_steps=num_steps)
    return mnist_bank.PriorBankTrainer(*args, **kwargs, bank=bank, bank_log_probs=log_probs,
                                       bank_per_group=bank_per_group)


# ------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate_images(x: Tensor, classes: str | int | Iterable[int], classifier: DigitClassifier,
                    reference: Tensor | None = None) -> dict[str, float]:
    """The paper's metrics for samples x [N, 1, 28, 28] and a target class set.

    Returns:
        mean_log_reward (E[log r]), in_set (share classified in the set), diversity
        (mean pairwise cosine distance of classifier features) and, with `reference`
        images of the target classes, fid (Frechet distance of those features).
    """
    mask = class_mask(classes)
    features = classifier.features(x)
    log_p = torch.log_softmax(classifier.head(features), 1)
    log_r = set_log_prob(log_p, mask)
    metrics = {"mean_log_reward": float(log_r.mean()),
               "in_set": float(mask.to(x.device)[log_p.argmax(1)].mean()),
               "diversity": cosine_diversity(features)}
    if reference is not None:
        metrics["fid"] = frechet_distance(features, classifier.features(reference))
    return metrics


def target_images(classes: str | int | Iterable[int], split: str = "test",
                  limit: int = 1000) -> Tensor:
    """Real images of the target classes (the FID reference), [N, 1, 28, 28]."""
    data = load_mnist(split, verbose=False)
    images, labels = data.tensors()
    keep = class_mask(classes)[labels] > 0.5
    return images[keep][:limit]


def make_evaluator(classes: str | int | Iterable[int], classifier: DigitClassifier,
                   num_samples: int = 256, cond: Tensor | None = None
                   ) -> Callable[[RTBTrainer], dict[str, float]]:
    """An evaluator for RTBTrainer: metrics of `num_samples` posterior samples."""
    reference = target_images(classes)

    def evaluate(trainer: RTBTrainer) -> dict[str, float]:
        rows = None if cond is None else cond.expand(num_samples, -1)
        x = decode(trainer.prior, trainer.sample(num_samples, cond=rows).x)
        return evaluate_images(x, classes, classifier, reference)

    return evaluate


def finetune(classes: str | int | Iterable[int] = "even", beta: float = 1.0,
             config: TrainConfig | None = None, *, prior: EpsNet | None = None,
             classifier: DigitClassifier | None = None, out_dir: str | Path | None = None,
             progress: bool = True) -> RTBTrainer:
    """Fine-tune the prior towards p(x) r_S(x)^beta with RTB and return the trainer.

    Evaluates E[log r], the in-set share, diversity and feature FID every eval_every steps.
    """
    classifier = classifier or load_classifier()
    trainer = make_trainer(classes, beta, config or train_config(), prior=prior,
                           classifier=classifier, out_dir=out_dir,
                           evaluator=make_evaluator(classes, classifier))
    trainer.train(progress=progress)
    return trainer


def conditional_sampler(posterior: LoRAPosterior, prior: EpsNet, num_steps: int = NUM_STEPS,
                        seed: int = 0) -> Callable[[Iterable[int], float, int], Tensor]:
    """``sample(classes, beta, n) -> [n, 1, 28, 28]`` images from a conditional posterior.

    Every call reuses the same noise (seed), so changing the classes or beta in a widget
    shows the effect of the condition alone.
    """
    family = make_family(num_steps)
    device = next(posterior.parameters()).device

    def sample(classes: Iterable[int], beta: float, n: int) -> Tensor:
        cond = make_condition(tuple(classes), beta, n).to(device)
        x_end = sample_trajectories(posterior, family, n, IMAGE_SHAPE, cond=cond, device=device,
                                    generator=torch.Generator().manual_seed(seed)).x
        return decode(prior, x_end)

    return sample


def set_evaluator(classifier: DigitClassifier
                  ) -> Callable[[str | int | Iterable[int], Tensor], dict[str, float]]:
    """``evaluate(classes, x) -> {in_set, mean_log_reward, diversity}`` (no FID: fast)."""
    return lambda classes, x: evaluate_images(x, classes, classifier)
