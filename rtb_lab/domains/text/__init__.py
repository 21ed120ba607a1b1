"""Text infilling: a masked-diffusion prior over a story's middle sentence, an
autoregressive reward LM, and RTB between them (docs/text.md).

The data (a generated story grammar with an exact oracle, and a ROCStories loader),
the tokenizer, the two transformers, the per-story RTB trainer and the comparison.
"""

from rtb_lab.domains.text.data import (
    EncodedStories,
    encode_stories,
    generated_corpus,
    load_rocstories_csv,
)
from rtb_lab.domains.text.domain import DOMAIN, TextDomain, story_problem
from rtb_lab.domains.text.grammar import Story, StoryGrammar
from rtb_lab.domains.text.infilling import (
    BoundContext,
    InfillingProblem,
    StorySet,
    binned_tv,
    policy_bins,
)
from rtb_lab.domains.text.io import corpus, load_denoiser, load_lm, load_tokenizer
from rtb_lab.domains.text.models import CausalLM, MaskedDenoiser
from rtb_lab.domains.text.tokenizer import StoryTokenizer, normalise
from rtb_lab.domains.text.trainer import INFILL_CONFIG, make_family, make_infilling_trainer

__all__ = ["DOMAIN", "INFILL_CONFIG", "BoundContext", "CausalLM", "EncodedStories",
           "InfillingProblem", "MaskedDenoiser", "Story", "StoryGrammar", "StorySet",
           "StoryTokenizer", "TextDomain", "binned_tv", "corpus", "encode_stories",
           "generated_corpus", "load_denoiser", "load_lm", "load_rocstories_csv", "load_tokenizer",
           "make_family", "make_infilling_trainer", "normalise", "policy_bins", "story_problem"]
