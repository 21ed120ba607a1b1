"""One image posterior conditioned on (class set, beta): the set-expert posterior trained
with VarGrad over groups of conditions, and its sampler."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from rtb_lab.diffusion import sample_trajectories
from rtb_lab.domains.images.classes import Classes, ClassSpace
from rtb_lab.domains.images.classifier import class_set_log_prob
from rtb_lab.domains.images.evaluation import evaluate_images
from rtb_lab.domains.images.posterior import LoRAPosterior, SetExpertPosterior
from rtb_lab.domains.images.prior import NUM_STEPS, EpsNet, decode, make_family
from rtb_lab.train import RTBTrainer, TrainConfig


def sample_conditions(space: ClassSpace, sets: Iterable[tuple[int, ...]],
                      beta_range: tuple[float, float]
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
        return torch.cat([space.condition(sets[i], float(b))
                          for i, b in zip(picks, betas, strict=True)])

    return draw


def set_expert_trainer(prior: EpsNet, classifier: nn.Module, config: TrainConfig, *,
                       space: ClassSpace, sets: Iterable[tuple[int, ...]],
                       beta_range: tuple[float, float], rank: int = 4,
                       posterior: nn.Module | None = None, num_steps: int = NUM_STEPS,
                       evaluator: Callable[[RTBTrainer], dict[str, float]] | None = None,
                       out_dir: str | Path | None = None) -> RTBTrainer:
    """An RTB trainer for one posterior conditioned on (class set, beta).

    The policy is `posterior` or a fresh `SetExpertPosterior` (a LoRA block of `rank` per
    set); give the config ``loss="vargrad"`` and ``cond_groups=len(sets)`` so that each
    group of trajectories shares one condition.
    """
    sets = tuple(space.parse(list(s)) for s in sets)
    posterior = posterior if posterior is not None else \
        SetExpertPosterior(prior, sets, rank, space)

    def log_reward(x: Tensor, cond: Tensor) -> Tensor:
        return class_set_log_prob(classifier, decode(prior, x), space.split_condition(cond)[0])

    return RTBTrainer(prior, posterior, make_family(num_steps), log_reward, prior.image_shape,
                      config, cond_sampler=sample_conditions(space, sets, beta_range),
                      beta_of_cond=lambda cond: space.split_condition(cond)[1],
                      out_dir=out_dir, evaluator=evaluator)


def conditional_evaluator(classifier: nn.Module, space: ClassSpace,
                          targets: Iterable[tuple[Classes, float]], num_samples: int = 128
                          ) -> Callable[[RTBTrainer], dict[str, float]]:
    """An evaluator for a conditional trainer: ``in_set/<set>@<beta>`` and
    ``log_r/<set>@<beta>`` from `num_samples` posterior samples per target."""
    def evaluate(trainer: RTBTrainer) -> dict[str, float]:
        metrics = {}
        for classes, beta in targets:
            cond = space.condition(classes, beta, num_samples).to(trainer.device)
            x = decode(trainer.prior, trainer.sample(num_samples, cond=cond).x)
            found = evaluate_images(x, classes, classifier, space=space)
            name = space.name(classes)
            metrics[f"in_set/{name}@{beta:g}"] = found["in_set"]
            metrics[f"log_r/{name}@{beta:g}"] = found["mean_log_reward"]
        return metrics

    return evaluate


def specialised_sampler(posterior: LoRAPosterior, prior: EpsNet, space: ClassSpace,
                        num_steps: int = NUM_STEPS, seed: int = 0
                        ) -> Callable[[Classes, float, int], Tensor]:
    """``sample(classes, beta, n) -> [n, C, H, W]`` decoded images of a set-expert posterior,
    specialised to each condition (same samples, cheaper network). Every call reuses the
    same noise (seed), so a widget shows the effect of the condition alone."""
    family = make_family(num_steps)
    device = next(posterior.parameters()).device

    def sample(classes: Classes, beta: float, n: int) -> Tensor:
        net = posterior.specialise(prior, classes, beta)
        x_end = sample_trajectories(net, family, n, prior.image_shape, device=device,
                                    generator=torch.Generator().manual_seed(seed)).x
        return decode(prior, x_end)

    return sample
