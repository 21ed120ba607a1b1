"""Text metrics, as in the paper's infilling table: BLEU-4 and GLEU against the true middle
(nltk, smoothed), and diversity: distinct-n and self-BLEU over a method's samples."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from nltk.translate.gleu_score import sentence_gleu

_SMOOTH = SmoothingFunction().method1  # short sentences: no zero 4-gram precision


def bleu4(samples: Sequence[str], reference: str) -> float:
    """Mean sentence BLEU-4 of `samples` against one reference sentence."""
    ref = [reference.split()]
    return statistics.fmean(sentence_bleu(ref, s.split(), smoothing_function=_SMOOTH)
                            for s in samples)


def gleu(samples: Sequence[str], reference: str) -> float:
    """Mean sentence GLEU of `samples` against one reference sentence."""
    ref = [reference.split()]
    return statistics.fmean(sentence_gleu(ref, s.split()) for s in samples)


def distinct_n(samples: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams over all n-grams of the samples (1: every n-gram is new)."""
    grams = [tuple(words[i:i + n]) for s in samples
             for words in [s.split()] for i in range(len(words) - n + 1)]
    return len(set(grams)) / max(1, len(grams))


def self_bleu(samples: Sequence[str], max_samples: int = 100) -> float:
    """Mean BLEU-4 of each sample against the others (higher: less diverse)."""
    chosen = list(samples[:max_samples])
    if len(chosen) < 2:
        raise ValueError("self-BLEU needs at least two samples")
    scores = []
    for i, sample in enumerate(chosen):
        others = [s.split() for j, s in enumerate(chosen) if j != i]
        scores.append(sentence_bleu(others, sample.split(), smoothing_function=_SMOOTH))
    return statistics.fmean(scores)
