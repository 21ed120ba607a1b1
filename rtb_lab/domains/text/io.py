"""The text domain's data and shipped networks: the generated corpus, the tokenizer, and
the prior, reward LM and supervised infiller as sha256-checked safetensors."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from rtb_lab.checkpoint import CheckpointError, load_module, save_weights, sha256_of, shipped_asset
from rtb_lab.domains.text.data import EncodedStories, encode_stories, generated_corpus
from rtb_lab.domains.text.grammar import StoryGrammar
from rtb_lab.domains.text.models import CausalLM, MaskedDenoiser
from rtb_lab.domains.text.tokenizer import StoryTokenizer
from rtb_lab.rtb import freeze

PRIOR_ASSET = "text_prior.safetensors"
LM_ASSET = "text_lm.safetensors"
INFILLER_ASSET = "text_infiller.safetensors"
TOKENIZER_ASSET = "text_tokenizer.json"
# The corpus every shipped network was trained on: StoryGrammar.default(), seed 0.
CORPUS = {"n_train": 20_000, "n_test": 500, "seed": 0}


@lru_cache(maxsize=1)
def corpus() -> tuple[EncodedStories, EncodedStories]:
    """The generated (train, held-out test) stories, encoded with the grammar's tokenizer
    (the same words, so the same ids, as the shipped one: tests/test_text.py checks it)."""
    train, test = generated_corpus(StoryGrammar.default(), **CORPUS)
    tok = grammar_tokenizer()
    return encode_stories(train, tok), encode_stories(test, tok)


def grammar_tokenizer(grammar: StoryGrammar | None = None) -> StoryTokenizer:
    """A word-level tokenizer over the grammar's vocabulary (what `train-prior` ships)."""
    return StoryTokenizer.from_words((grammar or StoryGrammar.default()).vocabulary())


def load_tokenizer(path: str | Path | None = None) -> StoryTokenizer:
    """The shipped tokenizer (sha256-checked), or yours."""
    if path is None:
        path, sha256 = shipped_asset(TOKENIZER_ASSET)
        if sha256_of(path) != sha256:
            raise CheckpointError(f"{path} is corrupt (sha256 mismatch); reinstall rtb-lab")
    return StoryTokenizer.load(path)


def save_denoiser(net: MaskedDenoiser, path: str | Path, command: str, context: str) -> str:
    """Save a denoiser (prior: context "beginning"; infiller: "both"); return its sha256."""
    return save_weights(net, path, {"arch": "MaskedDenoiser", "context": context,
                                    "command": command, **net.config()})


def load_denoiser(path: str | Path | None = None, asset: str = PRIOR_ASSET,
                  device: torch.device | str = "cpu") -> MaskedDenoiser:
    """A frozen denoiser: the shipped prior (or `asset`), or your file."""
    def build(meta: dict) -> MaskedDenoiser:
        keys = ("vocab_size", "context_len", "length", "pad_id", "d_model", "heads", "layers")
        return MaskedDenoiser(**{k: int(meta[k]) for k in keys})

    return freeze(load_module(path, asset, "MaskedDenoiser", "a text denoiser", build).to(device))


def save_lm(lm: CausalLM, path: str | Path, command: str) -> str:
    """Save the reward language model; return its sha256."""
    return save_weights(lm, path, {"arch": "CausalLM", "command": command, **lm.config()})


def load_lm(path: str | Path | None = None, device: torch.device | str = "cpu") -> CausalLM:
    """The frozen reward language model: the shipped one, or your file."""
    def build(meta: dict) -> CausalLM:
        keys = ("vocab_size", "max_len", "d_model", "heads", "layers")
        return CausalLM(**{k: int(meta[k]) for k in keys})

    return freeze(load_module(path, LM_ASSET, "CausalLM", "a text reward LM", build).to(device))
