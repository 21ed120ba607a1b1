"""RTB on tokens: the same trainer as for pixels, with the masked-diffusion family.

`make_infilling_trainer` fine-tunes a full copy of the prior (its context bound to one
story's beginning) into p_θ(middle | beginning) · r(middle)^β for that story's ending.
Nothing in `rtb_lab.rtb` or `rtb_lab.train` knows that the states are token ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from rtb_lab.diffusion import MaskedDiffusion
from rtb_lab.domains.text.grammar import MAX_MIDDLE_TOKENS
from rtb_lab.domains.text.infilling import BoundContext, InfillingProblem, binned_tv, policy_bins
from rtb_lab.domains.text.models import MaskedDenoiser
from rtb_lab.domains.text.tokenizer import StoryTokenizer
from rtb_lab.nets import posterior_from_prior
from rtb_lab.rtb import freeze
from rtb_lab.train import RTBTrainer, TrainConfig

# One token per reverse step: a coarser schedule draws the tokens it reveals together
# independently, and cannot put its mass on a few sentences only (docs/text.md).
SCHEDULE = "one-at-a-time"
NUM_STEPS = MAX_MIDDLE_TOKENS

# The per-story recipe (docs/text.md has the measurements): a full copy of the prior,
# VarGrad, tokens drawn at temperature 1.5 all along, and half of each batch replayed
# (by reward rank) from a buffer that starts with PRIOR_REPLAY prior trajectories.
INFILL_CONFIG = TrainConfig(steps=200, batch_size=64, lr=3e-4, lr_end=1e-5, loss="vargrad",
                            explore=0.5, explore_hold=200, explore_end=200,
                            replay_fraction=0.5, grad_clip=1.0, log_z_init_samples=256,
                            eval_every=0)
PRIOR_REPLAY = 2048


def make_family(tok: StoryTokenizer, num_steps: int = NUM_STEPS,
                schedule: str = SCHEDULE) -> MaskedDiffusion:
    """The masked-diffusion family over the tokenizer's vocabulary."""
    return MaskedDiffusion(num_steps, tok.vocab_size, tok.mask_id, schedule=schedule)


def bind_prior(problem: InfillingProblem, prior: MaskedDenoiser) -> BoundContext:
    """The frozen prior with this story's beginning as its context."""
    return freeze(BoundContext(prior, problem.beginning_ids[0]))


def make_evaluator(problem: InfillingProblem, family: MaskedDiffusion, num_samples: int = 256,
                   exact: bool = True) -> Callable[[RTBTrainer], dict[str, float]]:
    """Mean log-reward and distinct middles of posterior samples; with the grammar, the
    exact TV to the posterior over the candidate middles (+ one bin for the rest)."""
    truth: dict | None = None  # the exact posterior, computed at the first evaluation

    def evaluate(trainer: RTBTrainer) -> dict[str, float]:
        nonlocal truth
        generator = torch.Generator().manual_seed(10_007 + trainer.step)
        traj = trainer.sample(num_samples, generator=generator)
        texts = problem.decode(traj.x)
        metrics = {"log_reward": float(traj.log_reward.mean()),
                   "distinct": len(set(texts)) / len(texts), "log_z": trainer.current_log_z()}
        if exact and problem.grammar is not None:
            if truth is None:
                truth = problem.exact(trainer.prior, family)
            _, ids = problem.candidates()
            q = policy_bins(trainer.posterior, family, ids)
            metrics["tv"] = binned_tv(q, truth["posterior"])
            metrics["prior_tv"] = binned_tv(truth["prior"], truth["posterior"])
            metrics["other_mass"] = float(q[-1])
        return metrics

    return evaluate


def make_infilling_trainer(problem: InfillingProblem, prior: MaskedDenoiser,
                           config: TrainConfig | None = None, *,
                           out_dir: str | Path | None = None, eval_samples: int = 256,
                           num_steps: int = NUM_STEPS,
                           prior_replay: int = PRIOR_REPLAY) -> RTBTrainer:
    """An RTB trainer for one story's middle; the posterior starts as a copy of the prior.

    `prior_replay` > 0 fills the replay buffer with that many prior trajectories first:
    off-policy data that covers every middle the prior can write, so the posterior's
    early favourites do not crowd out the other modes (needs ``replay_fraction > 0``).
    """
    config = replace(config or INFILL_CONFIG, beta=problem.beta)
    family = make_family(problem.tok, num_steps)
    bound = bind_prior(problem, prior)
    posterior: nn.Module = posterior_from_prior(bound)
    trainer = RTBTrainer(bound, posterior, family, problem.log_reward, (problem.middle_len,),
                         config, evaluator=make_evaluator(problem, family, eval_samples),
                         out_dir=out_dir)
    if prior_replay:
        trainer.replay.add(trainer.sample(prior_replay, use_prior=True,
                                          generator=trainer.generator))
    return trainer
