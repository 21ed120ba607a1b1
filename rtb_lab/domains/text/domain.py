"""Text infilling as a `rtb_lab.domain.Domain`: what the generic CLI and comparison use."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from rtb_lab.domain import Command, MethodRunner
from rtb_lab.domains.text import commands, compare, io
from rtb_lab.domains.text.grammar import MAX_MIDDLE_TOKENS, StoryGrammar
from rtb_lab.domains.text.infilling import InfillingProblem, StorySet
from rtb_lab.domains.text.trainer import INFILL_CONFIG, make_family, make_infilling_trainer
from rtb_lab.train import RTBTrainer, TrainConfig

TARGET_HELP = ("heldout-N (the N-th held-out generated story, 0-499, rewarded by the LM's "
               "p(ending | beginning, middle)), oracle-N (the same story, rewarded by the "
               "grammar's exact p(ending | beginning, middle)), or heldout-set-K / "
               "oracle-set-K (K held-out stories with distinct beginnings, 1-56, metrics "
               "averaged over them)")


def _story(story, reward: str, beta: float) -> InfillingProblem:
    return InfillingProblem(io.load_tokenizer(), " ".join(story.beginning), story.ending,
                            lm=io.load_lm() if reward == "lm" else None,
                            grammar=StoryGrammar.default(), beta=beta, reward=reward,
                            reference=story.middle)


def distinct_beginnings(k: int) -> list[int]:
    """Indices of the first held-out story of each of the first k distinct beginnings."""
    _, test = io.corpus()
    first: dict[tuple[str, ...], int] = {}
    for index, story in enumerate(test.stories):
        first.setdefault(tuple(story.beginning), index)
    if not 1 <= k <= len(first):
        raise KeyError(f"a story set has 1 to {len(first)} stories (the held-out split's "
                       f"distinct beginnings), got {k}")
    return list(first.values())[:k]


def story_problem(name: str, beta: float = 1.0) -> InfillingProblem | StorySet:
    """The target called `name` (see TARGET_HELP); KeyError naming the valid forms."""
    found = re.fullmatch(r"(heldout|oracle)-(set-)?(\d+)", name)
    _, test = io.corpus()
    if found is None or (not found.group(2) and int(found.group(3)) >= len(test)):
        raise KeyError(f"unknown text target {name!r}; use {TARGET_HELP}")
    reward, number = ("lm" if found.group(1) == "heldout" else "oracle"), int(found.group(3))
    if found.group(2):
        return StorySet(tuple(_story(test.stories[i], reward, beta)
                              for i in distinct_beginnings(number)))
    return _story(test.stories[number], reward, beta)


class TextDomain:
    """Infill a story's middle sentence: a masked-diffusion prior p(middle | beginning),
    the reward p(ending | beginning, middle); the exact posterior is known on the
    grammar's candidate middles."""

    name = "text"
    summary = ("story infilling with a masked-diffusion prior and an LM reward; exact "
               "posterior over the grammar's middles")
    event_shape = (MAX_MIDDLE_TOKENS,)
    default_target = "heldout-0"
    target_help = TARGET_HELP
    methods = compare.METHODS
    metrics = compare.METRICS
    plot_metrics = compare.PLOT_METRICS
    budgets = (compare.FAST_BUDGET, compare.FULL_BUDGET)

    def make_family(self):
        return make_family(io.load_tokenizer())

    def load_prior(self, path: str | Path | None = None, device: Any = "cpu") -> nn.Module:
        return io.load_denoiser(path, device=device)

    def make_target(self, name: str, beta: float = 1.0) -> InfillingProblem | StorySet:
        return story_problem(name, beta)

    def train_config(self, fast: bool = False) -> TrainConfig:
        return INFILL_CONFIG.with_steps(100) if fast else INFILL_CONFIG

    def make_trainer(self, target: InfillingProblem, config: TrainConfig | None = None, *,
                     prior: nn.Module | None = None,
                     out_dir: str | Path | None = None) -> RTBTrainer:
        if isinstance(target, StorySet):
            raise ValueError("a story set (heldout-set-K) is a comparison target; fine-tune "
                             "one story instead (heldout-N or oracle-N)")
        config = replace(config or INFILL_CONFIG, beta=target.beta)
        return make_infilling_trainer(target, prior if prior is not None
                                      else io.load_denoiser(), config, out_dir=out_dir)

    def compare_runners(self) -> dict[str, MethodRunner]:
        return {method: compare.method_runner(method) for method in compare.METHODS}

    def describe(self, metrics: dict[str, float]) -> str:
        return f"tv {metrics['tv']:.3f}, oracle log r {metrics['oracle_log_r']:.2f}"

    def commands(self) -> dict[str, Command]:
        return commands.commands()


DOMAIN = TextDomain()
