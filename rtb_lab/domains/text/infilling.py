"""One infilling problem: a story's beginning and ending, a reward, and its exact posterior.

The target is p_θ(middle | beginning) · r(middle)^β, where p_θ is the masked-diffusion
prior and r is either the reward LM's p_LM(ending | beginning, middle) or the grammar's
exact p(ending | beginning, middle) (the oracle). Because the middle is short, the
prior's probability of any given middle is exact (`exact_log_marginal`), so on the
grammar's candidate middles the posterior is known exactly: every figure is a gap to
the truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from rtb_lab.diffusion import MaskedDiffusion, exact_log_marginal
from rtb_lab.domains.text.grammar import MAX_BEGINNING_TOKENS, MAX_ENDING_TOKENS, StoryGrammar
from rtb_lab.domains.text.models import CausalLM, MaskedDenoiser
from rtb_lab.domains.text.sequences import ending_log_likelihood
from rtb_lab.domains.text.tokenizer import StoryTokenizer, normalise

REWARDS = ("lm", "oracle")


class BoundContext(nn.Module):
    """A denoiser with its context fixed: ``net(x, t) = denoiser(x, t, context)``.

    The RTB trainer then sees an unconditional policy over middles for one story.
    """

    def __init__(self, denoiser: MaskedDenoiser, context: Tensor) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.register_buffer("context", context.view(1, -1).clone())

    def forward(self, x: Tensor, t: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        return self.denoiser(x, t, self.context.expand(x.shape[0], -1))


@dataclass
class InfillingProblem:
    """Infill the middle of one story.

    Args:
        tok: the tokenizer.
        beginning: the first three sentences (one string).
        ending: the last sentence.
        lm: the reward language model (needed when reward == "lm").
        grammar: the story grammar (needed for the oracle reward and the exact posterior).
        beta: the reward exponent (> 0).
        reward: "lm" (the paper's setting) or "oracle" (the grammar's exact likelihood).
        middle_len: the middle's padded length.
        reference: the story's true middle, if known (for BLEU).
    """

    tok: StoryTokenizer
    beginning: str
    ending: str
    lm: CausalLM | None = None
    grammar: StoryGrammar | None = None
    beta: float = 1.0
    reward: str = "lm"
    middle_len: int = 7
    reference: str | None = None
    beginning_ids: Tensor = field(init=False)
    ending_ids: Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.beginning, self.ending = normalise(self.beginning), normalise(self.ending)
        if not self.ending.strip():
            raise ValueError("the ending is empty: give the story's last sentence")
        if not self.beginning.strip():
            raise ValueError("the beginning is empty: give the story's first sentences")
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be a positive number, got {self.beta}")
        if self.reward not in REWARDS:
            raise ValueError(f"unknown reward {self.reward!r}; choose one of {REWARDS}")
        if self.reward == "lm" and self.lm is None:
            raise ValueError("reward 'lm' needs the reward language model (lm=...)")
        if self.reward == "oracle" and self.grammar is None:
            raise ValueError("reward 'oracle' needs the story grammar (grammar=...)")
        if len(self._split_beginning()) != 3:
            raise ValueError("the beginning must be the story's first three sentences (the "
                             "fourth is the masked middle, the fifth the ending); got "
                             f"{len(self._split_beginning())}: {self.beginning!r}")
        self.beginning_ids = torch.tensor([self.tok.encode(self.beginning,
                                                           MAX_BEGINNING_TOKENS)])
        self.ending_ids = torch.tensor([self.tok.encode(self.ending, MAX_ENDING_TOKENS)])

    def _split_beginning(self) -> list[str]:
        """Sentences of the (normalised) beginning: each ends at ".", "!" or "?"."""
        sentences, words = [], []
        for word in self.beginning.split():
            words.append(word)
            if word in (".", "!", "?"):
                sentences.append(" ".join(words))
                words = []
        return sentences + ([" ".join(words)] if words else [])

    @property
    def sentences(self) -> tuple[str, str, str]:
        """The beginning split into its three sentences (the grammar's key)."""
        return tuple(self._split_beginning())  # type: ignore[return-value]

    def decode(self, x: Tensor) -> list[str]:
        """The middles x [B, L] as text."""
        return [self.tok.decode(row.tolist()) for row in x]

    def log_reward(self, x: Tensor) -> Tensor:
        """[B] log r(middle) for middles x [B, L] (token ids)."""
        self.tok.check_ids(x)
        if x.shape[1:] != (self.middle_len,):
            raise ValueError(f"middles must be [B, {self.middle_len}] token ids, got "
                             f"{tuple(x.shape)}")
        if self.reward == "oracle":
            return torch.tensor([self._oracle(row) for row in x])
        with torch.no_grad():
            n = x.shape[0]
            return ending_log_likelihood(self.lm, self.tok, self.beginning_ids.expand(n, -1), x,
                                         self.ending_ids.expand(n, -1))

    def _oracle(self, row: Tensor) -> float:
        """The grammar's log p(ending | beginning, middle); the floor for a middle that is
        not written the grammar's way (e.g. with a pad between words), so that the
        exact bins and the reward agree on what counts as a candidate."""
        text = self.tok.decode(row.tolist())
        canonical = self.tok.encode(text, self.middle_len, strict=False) == row.tolist()
        return self.grammar.ending_log_prob(self.sentences, text if canonical else "", self.ending)

    def candidates(self) -> tuple[list[str], Tensor]:
        """The grammar's possible middles for this beginning, as text and ids [M, L]."""
        if self.grammar is None:
            raise ValueError("the candidate middles come from the grammar (grammar=...)")
        texts = sorted(self.grammar.middles(self.sentences))
        return texts, self.tok.encode_batch(texts, self.middle_len)

    def exact(self, prior: nn.Module, family: MaskedDiffusion) -> dict[str, Tensor]:
        """The exact prior and posterior over the candidate middles, plus an 'other' bin.

        `prior` is the bound prior (``BoundContext``). Returns tensors over M + 1 bins
        (the candidates, then everything else): ``prior`` p_θ, ``posterior`` π. With the
        oracle reward every non-candidate middle has the same (floor) reward, so the
        'other' bin's posterior mass is exact too; with the LM reward it is bounded by
        the prior's 'other' mass times the largest candidate reward (``other_bound``,
        an estimate: it assumes no other middle beats the best candidate).
        """
        texts, ids = self.candidates()
        log_p = exact_log_marginal(prior, family, ids)
        log_r = self.log_reward(ids) * self.beta
        p_other = (1 - log_p.exp().sum()).clamp_min(0)
        if self.reward == "oracle":  # every other middle has the floor reward: exact
            floor = self.grammar.ending_log_prob(self.sentences, "", self.ending)
            posterior = torch.softmax(torch.cat([log_p + log_r, (torch.log(p_other)
                                                                 + self.beta * floor).view(1)]), 0)
            bound = posterior[-1]
        else:  # the candidates' share assuming no mass elsewhere; the bound says how much
            weights = torch.cat([log_p + log_r, (torch.log(p_other) + log_r.max()).view(1)])
            posterior = torch.cat([torch.softmax(log_p + log_r, 0), torch.zeros(1)])
            bound = torch.softmax(weights, 0)[-1]
        return {"texts": texts, "prior": torch.cat([log_p.exp(), p_other.view(1)]),
                "posterior": posterior, "other_bound": bound}


@dataclass(frozen=True)
class StorySet:
    """Several infilling problems compared as one target: each method runs on every story
    with the same seed and budget (per story), and the metrics are averaged over stories."""

    problems: tuple[InfillingProblem, ...]

    def __post_init__(self) -> None:
        if not self.problems:
            raise ValueError("a story set needs at least one story")


def binned_tv(probs: Tensor, truth: Tensor) -> float:
    """TV between two distributions over the same bins (candidates + 'other')."""
    return 0.5 * float((probs - truth).abs().sum())


def policy_bins(policy: nn.Module, family: MaskedDiffusion, ids: Tensor) -> Tensor:
    """A masked-diffusion policy's exact mass on each candidate [M] and on the rest."""
    mass = exact_log_marginal(policy, family, ids).exp()
    return torch.cat([mass, (1 - mass.sum()).clamp_min(0).view(1)])
