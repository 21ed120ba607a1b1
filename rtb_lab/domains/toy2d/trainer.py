"""RTB fine-tuning on the 2D toy targets (trainers that report their gap to the truth)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rtb_lab.domains.toy2d.prior import load_prior, make_family
from rtb_lab.domains.toy2d.targets import Toy2DTarget, resolve_target
from rtb_lab.nets import posterior_from_prior
from rtb_lab.train import RTBTrainer, TrainConfig

# The configuration `benchmarks/bench_toy2d.py` times to TV <= 0.05 (batch 128, lr 1e-3).
BENCH_CONFIG = TrainConfig(steps=1500, batch_size=128, eval_every=0)


def make_evaluator(target: Toy2DTarget, num_samples: int = 4000
                   ) -> Callable[[RTBTrainer], dict[str, float]]:
    """An evaluator for RTBTrainer: sample the posterior and compare with the truth."""

    def evaluate(trainer: RTBTrainer) -> dict[str, float]:
        generator = torch.Generator().manual_seed(10_007 + trainer.step)
        x = trainer.sample(num_samples, generator=generator).x
        return target.evaluate(x, trainer.current_log_z())

    return evaluate


def make_trainer(target: Toy2DTarget | str = "25to9", config: TrainConfig | None = None, *,
                 prior: nn.Module | None = None, out_dir: str | Path | None = None,
                 eval_samples: int = 4000, device: torch.device | str = "cpu",
                 trainer_cls: type[RTBTrainer] = RTBTrainer, **trainer_kwargs: Any
                 ) -> RTBTrainer:
    """An RTBTrainer for a toy target, with the posterior starting at the prior.

    Args:
        target: a Toy2DTarget or a name in `TARGETS`.
        config: training hyper-parameters (beta is taken from the target).
        prior: the prior network (default: the shipped one, which models the 25-mode grid).
        out_dir: where checkpoints are written.
        eval_samples: samples per evaluation.
        device: where the shipped prior and the posterior live (see `rtb_lab.get_device`).
        trainer_cls: the trainer class, e.g. `rtb_lab.baselines.rl.RLTrainer` for the RL
            baselines, which share everything but the loss.
        **trainer_kwargs: extra keyword arguments of `trainer_cls` (e.g. kl_weight).
    """
    target = resolve_target(target)
    config = replace(config or TrainConfig(), beta=target.beta)
    prior = prior if prior is not None else load_prior(device=device)
    return trainer_cls(prior, posterior_from_prior(prior), make_family(),
                       target.checked_log_reward, (2,), config,
                       evaluator=make_evaluator(target, eval_samples), out_dir=out_dir,
                       **trainer_kwargs)


def finetune(target: Toy2DTarget | str = "25to9", config: TrainConfig | None = None, *,
             prior: nn.Module | None = None, out_dir: str | Path | None = None,
             progress: bool = True, device: torch.device | str = "cpu",
             callbacks: list | None = None, eval_callbacks: list | None = None,
             trainer_cls: type[RTBTrainer] = RTBTrainer, **trainer_kwargs: Any) -> RTBTrainer:
    """Fine-tune the prior into the target's posterior with RTB; returns the trained trainer.

    The final metrics are ``trainer.evaluations[-1]`` (tv, mass_in_modes, log_z_err, ...).
    Callbacks are passed to `RTBTrainer.train` (e.g. a live dashboard's on_step/on_eval);
    `trainer_cls` and `trainer_kwargs` go to `make_trainer` (e.g. the RL baselines).
    """
    trainer = make_trainer(target, config, prior=prior, out_dir=out_dir, device=device,
                           trainer_cls=trainer_cls, **trainer_kwargs)
    trainer.train(progress=progress, callbacks=callbacks, eval_callbacks=eval_callbacks)
    return trainer
