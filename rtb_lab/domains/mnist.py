"""MNIST: RTB fine-tuning of the DDPM prior with LoRA, for one class set or amortised.

The posteriors (`mnist_posterior`) are copies of the prior's UNet with LoRA adapters
(peft) on every ResNet convolution and time projection, zero-initialised, so a fresh
posterior is exactly the prior. The prior itself stays frozen. This module builds
the trainers, the evaluation metrics and the samplers the notebook uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rtb_lab.config import is_fast
from rtb_lab.diffusion import sample_trajectories
from rtb_lab.domains import mnist_bank
from rtb_lab.domains.images import load_mnist
from rtb_lab.domains.mnist_guided import GuidedPosterior
from rtb_lab.domains.mnist_posterior import (  # noqa: F401  (re-exported)
    BETA_RANGE,
    CONDITIONAL_ASSET,
    CONDITIONAL_LORA_ASSET,
    EVEN_ASSET,
    TRAIN_SETS,
    LoRAPosterior,
    SetExpertPosterior,
    load_conditional_posterior,
    load_posterior,
    make_posterior,
    save_posterior,
    scale_adapter,
    warm_start,
)
from rtb_lab.domains.mnist_prior import (
    IMAGE_SHAPE,
    NUM_STEPS,
    EpsNet,
    decode,
    load_prior,
    make_family,
)
from rtb_lab.domains.mnist_reward import (
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
from rtb_lab.domains.mnist_value import (  # noqa: F401
    CHAIN_VALUE_ASSET,
    VALUE_ASSET,
    NoisyClassifier,
    load_noisy_classifier,
    value_network,
)
from rtb_lab.metrics import cosine_diversity, frechet_distance
from rtb_lab.resample import resample_posterior
from rtb_lab.rtb import check_beta
from rtb_lab.train import RTBTrainer, TrainConfig

# RTB on MNIST: batch 32 of T = 20 steps, gradient through 5 random steps of the 20
# (unbiased): ~3.5 s per iteration on 1 CPU core. lr 3e-3 reached 76% even digits
# after 60 steps where 1e-3 reached 64% (measured from the shipped prior), but then
# oscillates (68-83%), hence the cosine decay to 3e-4 over the run.
MNIST_CONFIG = TrainConfig(steps=300, batch_size=32, lr=3e-3, lr_end=3e-4, log_z_lr=0.1,
                           explore=0.2, explore_hold=20, explore_end=100, chunk_steps=10,
                           grad_steps=5, grad_clip=1.0, log_z_init_samples=256, eval_every=50)
# The conditional posterior (sized for a GPU): VarGrad within each of 12 groups of 64
# trajectories, one group per trained class set, each with its own beta. Every set owns
# its LoRA block, so each block sees the batch a single-target run would (64, not 32).
CONDITIONAL_CONFIG = replace(MNIST_CONFIG, loss="vargrad", cond_groups=len(TRAIN_SETS),
                             batch_size=64 * len(TRAIN_SETS), steps=1000,
                             residual_per_beta=True, eval_every=100, checkpoint_every=100)


def conditional_config(steps: int | None = None, per_set_batch: int | None = None,
                       lr: float | None = None, *, warm: bool = False, seed: int = 0,
                       num_sets: int = len(TRAIN_SETS)) -> TrainConfig:
    """CONDITIONAL_CONFIG with `steps`, `per_set_batch` trajectories per set and step,
    a start `lr` (cosine-decayed to a tenth of it). `warm` (training continues from a
    trained posterior) turns exploration off: it is for a policy still near the prior."""
    config = replace(CONDITIONAL_CONFIG, seed=seed)
    if steps is not None:
        config = config.with_steps(steps)
    if per_set_batch is not None:
        config = replace(config, batch_size=per_set_batch * num_sets, cond_groups=num_sets)
    if lr is not None:
        config = replace(config, lr=lr, lr_end=lr / 10, scalar_lr=10 * lr)
    return replace(config, explore=0.0) if warm else config


def train_config(fast: bool | None = None) -> TrainConfig:
    """MNIST_CONFIG, or its short version in fast mode (RTB_LAB_FAST / CI)."""
    fast = is_fast() if fast is None else fast
    return replace(MNIST_CONFIG.with_steps(15), eval_every=0) if fast else MNIST_CONFIG


# ------------------------------------------------------------------ trainers
def sample_conditions(sets: Iterable[tuple[int, ...]] = TRAIN_SETS,
                      beta_range: tuple[float, float] = BETA_RANGE
                      ) -> Callable[[int, torch.Generator], Tensor]:
    """A sampler of conditions: class sets in a random order (each once per len(sets)
    draws, so a batch of len(sets) groups covers them all), beta log-uniformly."""
    sets = list(sets)
    low, high = (torch.tensor(b).log() for b in beta_range)

    def draw(n: int, generator: torch.Generator) -> Tensor:
        rounds = -(-n // len(sets))
        picks = torch.cat([torch.randperm(len(sets), generator=generator)
                           for _ in range(rounds)])[:n].tolist()
        betas = (low + (high - low) * torch.rand(n, generator=generator)).exp()
        return torch.cat([make_condition(sets[i], float(b)) for i, b in zip(picks, betas,
                                                                            strict=True)])

    return draw


def make_trainer(classes: str | int | Iterable[int] = "even", beta: float = 1.0,
                 config: TrainConfig | None = None, *, prior: EpsNet | None = None,
                 classifier: DigitClassifier | None = None, rank: int = 8,
                 num_steps: int = NUM_STEPS, out_dir: str | Path | None = None,
                 evaluator: Callable[[RTBTrainer], dict[str, float]] | None = None,
                 value: NoisyClassifier | None = None, init_scale: float = 1.0,
                 lookahead: bool = False) -> RTBTrainer:
    """An RTB trainer for p(x) r_S(x)^beta, r_S(x) = max_{c in S} p(c | x).

    The policy is a rank-`rank` LoRA posterior; with a `value` network, a value-guided
    `mnist_guided.GuidedPosterior` around it whose per-step scales start at `init_scale`
    (`lookahead`: its mean-shift form, see `GuidedPosterior`).
    """
    check_beta(beta)
    prior = prior or load_prior()
    classifier = classifier or load_classifier()
    config = replace(config or MNIST_CONFIG, beta=beta)
    reward = class_set_reward(classifier, parse_classes(classes))
    posterior = make_posterior(prior, rank)
    if value is not None:
        posterior = GuidedPosterior(posterior, prior, None, classes, beta, num_steps,
                                    value=value, init_scale=init_scale, lookahead=lookahead)
    return RTBTrainer(prior, posterior, make_family(num_steps),
                      lambda x: reward(decode(prior, x)), IMAGE_SHAPE, config,
                      evaluator=evaluator, out_dir=out_dir)


def make_conditional_trainer(config: TrainConfig | None = None, *,
                             prior: EpsNet | None = None,
                             classifier: DigitClassifier | None = None, rank: int = 4,
                             sets: Iterable[tuple[int, ...]] = TRAIN_SETS,
                             beta_range: tuple[float, float] = BETA_RANGE,
                             bank_size: int = 0, bank_per_group: int = 3,
                             num_steps: int = NUM_STEPS, device: torch.device | str = "cpu",
                             evaluator: Callable[[RTBTrainer], dict[str, float]] | None = None,
                             out_dir: str | Path | None = None, learn_std: bool = False,
                             init_from: str | Path | None = None,
                             value: NoisyClassifier | None = None,
                             init_scale: float = 1.0, lookahead: bool = False) -> RTBTrainer:
    """An RTB trainer for one posterior conditioned on (class set, beta), with VarGrad.

    The posterior is a `SetExpertPosterior` (a LoRA block of `rank` per set). With
    `bank_size` > 0, batches also draw from a bank of prior trajectories
    (`PriorBankTrainer`); 0 (default) gives on-policy sampling with exploration. See
    `conditional_evaluator` for an evaluator. `learn_std` adds learned per-step std
    factors; `init_from` starts from a saved conditional posterior (same sets and rank).
    With a `value` network the policy is a value-guided `mnist_guided.GuidedPosterior`
    around the set experts, its per-set, per-step guidance scales starting at
    `init_scale` (`lookahead`: its mean-shift form).
    """
    prior = prior or load_prior(device=device)
    classifier = classifier or load_classifier(device=device)
    config = config or CONDITIONAL_CONFIG
    sets = tuple(sets)
    reward = conditional_reward(classifier)
    posterior = SetExpertPosterior(prior, sets, rank, learn_std, num_steps)
    trained = None if init_from is None else load_conditional_posterior(prior, init_from)
    if trained is not None:
        warm_start(posterior, getattr(trained, "base", trained))
    if value is not None:
        posterior = GuidedPosterior(posterior, prior, None, num_steps=num_steps, value=value,
                                    init_scale=init_scale, lookahead=lookahead)
        if isinstance(trained, GuidedPosterior):  # continue its learned scales too
            with torch.no_grad():
                posterior.guide.copy_(trained.guide)
    args = (prior, posterior, make_family(num_steps),
            lambda x, cond: reward(decode(prior, x), cond), IMAGE_SHAPE, config)
    kwargs = {"cond_sampler": sample_conditions(sets, beta_range),
              "beta_of_cond": lambda cond: split_condition(cond)[1], "out_dir": out_dir,
              "evaluator": evaluator}
    if bank_size == 0:
        return RTBTrainer(*args, **kwargs)
    bank, _, log_probs = mnist_bank.prior_bank(prior, classifier, bank_size,
                                               seed=config.seed + 100, num_steps=num_steps)
    return mnist_bank.PriorBankTrainer(*args, **kwargs, bank=bank, bank_log_probs=log_probs,
                                       bank_per_group=bank_per_group)


def conditional_evaluator(classifier: DigitClassifier,
                          targets: Iterable[tuple[str | int, float]] = (("even", 1.0), (1, 1.0),
                                                                        (3, 1.0)),
                          num_samples: int = 256) -> Callable[[RTBTrainer], dict[str, float]]:
    """An evaluator for a conditional trainer: ``in_set/<set>@<beta>`` and
    ``log_r/<set>@<beta>`` from `num_samples` posterior samples per target."""

    def evaluate(trainer: RTBTrainer) -> dict[str, float]:
        metrics = {}
        for classes, beta in targets:
            cond = make_condition(classes, beta, num_samples).to(trainer.device)
            x = decode(trainer.prior, trainer.sample(num_samples, cond=cond).x)
            found = evaluate_images(x, classes, classifier)
            metrics[f"in_set/{classes}@{beta:g}"] = found["in_set"]
            metrics[f"log_r/{classes}@{beta:g}"] = found["mean_log_reward"]
        return metrics

    return evaluate


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
        metrics["fid"] = frechet_distance(features, classifier.features(reference.to(x.device)))
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
                        seed: int = 0, candidates: int = 1,
                        classifier: DigitClassifier | None = None
                        ) -> Callable[[str | int | Iterable[int], float, int], Tensor]:
    """``sample(classes, beta, n) -> [n, 1, 28, 28]`` images from a conditional posterior.

    Every call reuses the same noise (seed), so changing the classes or beta in a widget
    shows the effect of the condition alone. A `SetExpertPosterior` is specialised to
    the requested condition first (same samples, cheaper network). With `candidates`
    K > 1, each image is resampled from K posterior samples by its exact importance
    weight toward p r^beta (`rtb_lab.resample`; needs the reward's `classifier`).
    """
    if candidates > 1 and classifier is None:
        raise ValueError("resampling (candidates > 1) needs the reward's classifier=")
    family = make_family(num_steps)
    device = next(posterior.parameters()).device

    def sample(classes: str | int | Iterable[int], beta: float, n: int) -> Tensor:
        if posterior.cond_dim > 0:  # a conditional posterior (maybe guided)
            net, cond = posterior.specialise(prior, classes, beta), None
        else:
            net, cond = posterior, make_condition(classes, beta, n).to(device)
        generator = torch.Generator().manual_seed(seed)
        if candidates == 1:
            x_end = sample_trajectories(net, family, n, IMAGE_SHAPE, cond=cond, device=device,
                                        generator=generator).x
            return decode(prior, x_end)
        reward = class_set_reward(classifier, parse_classes(classes))
        found = resample_posterior(net, prior, family, lambda x, *_: reward(decode(prior, x)),
                                   n, IMAGE_SHAPE, candidates=candidates, beta=beta,
                                   cond=None if cond is None else cond[0],
                                   generator=generator, device=device)
        return decode(prior, found.x)

    return sample


class AmortisedOrExact:
    """``sample(classes, beta, n)``: the RTB conditional posterior where it was trained
    (its class sets, beta in `beta_range`), else the exact posterior from a resampled
    prior bank. `source` names the one that drew the last samples; `evaluate` measures
    them beside the exact posterior (a widget's `evaluate_fn`).

    Args:
        posterior: a conditional `SetExpertPosterior`.
        prior: the frozen prior (decodes the final states).
        bank: an `mnist_bank.ImportanceBank` for the other conditions and the exact figures.
        classifier: the reward classifier (for `evaluate`).
        beta_range: the betas the posterior was trained on.
        seed: the noise seed of the RTB samples (fixed: only the condition changes them).
        candidates: K > 1 resamples each RTB image from K by importance weight
            (`conditional_sampler`; needs `classifier`).
    """

    def __init__(self, posterior: SetExpertPosterior, prior: EpsNet,
                 bank: mnist_bank.ImportanceBank, classifier: DigitClassifier | None = None,
                 beta_range: tuple[float, float] = BETA_RANGE, seed: int = 0,
                 candidates: int = 1) -> None:
        self.posterior, self.bank, self.beta_range = posterior, bank, beta_range
        self.classifier = classifier
        self.rtb = conditional_sampler(posterior, prior, seed=seed, candidates=candidates,
                                       classifier=classifier)
        self.rtb_name = "RTB posterior" if candidates == 1 else \
            f"RTB posterior, 1 of {candidates} resampled"
        self.source = ""
        self.last_beta = float("nan")

    def trained_on(self, classes: str | int | Iterable[int], beta: float) -> bool:
        """Whether the RTB posterior was trained for this class set and beta."""
        low, high = self.beta_range
        return parse_classes(classes) in self.posterior.sets and low <= beta <= high

    def __call__(self, classes: str | int | Iterable[int], beta: float, n: int) -> Tensor:
        self.last_beta = beta
        if self.trained_on(classes, beta):
            self.source = self.rtb_name
            return self.rtb(classes, beta, n)
        self.source = "exact (prior bank)"
        return self.bank.sample(classes, beta, n)

    def evaluate(self, classes: str | int | Iterable[int], x: Tensor) -> dict[str, Any]:
        """Who drew `x`, its in-set share, E[log r] and diversity, and the exact
        posterior's in-set share and bank ESS at the last beta."""
        if self.classifier is None:
            raise ValueError("AmortisedOrExact.evaluate needs the classifier= argument")
        exact = self.bank.exact_metrics(classes, self.last_beta)
        return {"drawn by": self.source, **evaluate_images(x, classes, self.classifier),
                "exact in_set": exact["in_set"], "bank ESS": exact["ess"]}


def set_evaluator(classifier: DigitClassifier
                  ) -> Callable[[str | int | Iterable[int], Tensor], dict[str, float]]:
    """``evaluate(classes, x) -> {in_set, mean_log_reward, diversity}`` (no FID: fast)."""
    return lambda classes, x: evaluate_images(x, classes, classifier)
