"""Story data: the ROCStories loader, the generated corpus, and padded id tensors.

    train, test = generated_corpus(n_train=20000, n_test=500)
    tok = StoryTokenizer.from_words(words_of(train + test))
    data = encode_stories(train, tok)     # data.beginning [N, 24], middle [N, 7], ending [N, 8]
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from rtb_lab.domains.text.grammar import (
    MAX_BEGINNING_TOKENS,
    MAX_ENDING_TOKENS,
    MAX_MIDDLE_TOKENS,
    Story,
    StoryGrammar,
)
from rtb_lab.domains.text.tokenizer import StoryTokenizer, normalise

__all__ = [
    "ROCSTORIES_URL",
    "EncodedStories",
    "encode_stories",
    "generated_corpus",
    "load_rocstories_csv",
    "words_of",
]

ROCSTORIES_URL = "https://cs.rochester.edu/nlp/rocstories/"
_SENTENCE_COLUMNS = tuple(f"sentence{i}" for i in range(1, 6))


def load_rocstories_csv(path: str | Path) -> list[Story]:
    """The stories of a ROCStories-format CSV, each sentence in normal form.

    Columns sentence1 .. sentence5 are required; others (storyid, storytitle) are ignored.
    Sentences 1-3 are the beginning, 4 the middle, 5 the ending.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ROCStories CSV at {path}. ROCStories is not "
                                f"redistributable: download it from {ROCSTORIES_URL} and "
                                "pass the CSV")
    stories = []
    # utf-8-sig: spreadsheet exports often start with a byte-order mark.
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in _SENTENCE_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"{path} is missing the columns {missing} (found {columns}); a "
                             "ROCStories CSV has sentence1 .. sentence5")
        reader.fieldnames = columns
        for row_number, row in enumerate(reader, start=1):
            sentences = [normalise(row[c] or "") for c in _SENTENCE_COLUMNS]
            for column, sentence in zip(_SENTENCE_COLUMNS, sentences, strict=True):
                if not sentence:
                    raise ValueError(f"{path}: row {row_number} (line {reader.line_num}) has "
                                     f"an empty {column}")
            stories.append(Story(tuple(sentences[:3]), sentences[3], sentences[4]))
    return stories


def words_of(stories: Iterable[Story]) -> list[str]:
    """Every word of every sentence of `stories`, sorted (a tokenizer's vocabulary)."""
    return sorted({w for s in stories for sentence in s.sentences for w in sentence.split()})


def generated_corpus(grammar: StoryGrammar | None = None, n_train: int = 20000,
                     n_test: int = 500, seed: int = 0) -> tuple[list[Story], list[Story]]:
    """Train and test stories from the grammar, with held-out beginnings in the test set."""
    grammar = StoryGrammar.default() if grammar is None else grammar
    return grammar.split(n_train, n_test, seed)


@dataclass
class EncodedStories:
    """Stories as <pad>-padded id tensors: beginning [N, Lb], middle [N, Lm], ending [N, Le].

    Index with an index tensor, a list of indices, a boolean mask or a slice to get a
    subset (an int gives a subset of one story).
    """

    beginning: Tensor
    middle: Tensor
    ending: Tensor
    stories: list[Story]

    def __post_init__(self) -> None:
        sizes = {self.beginning.shape[0], self.middle.shape[0], self.ending.shape[0],
                 len(self.stories)}
        if len(sizes) != 1:
            raise ValueError(f"beginning, middle, ending and stories must have the same "
                             f"length, got {sorted(sizes)}")

    def __len__(self) -> int:
        return len(self.stories)

    def __getitem__(self, index: Tensor | Sequence[int] | slice | int) -> EncodedStories:
        if isinstance(index, int):
            index = [index]
        if isinstance(index, slice):
            rows = list(range(len(self)))[index]
        else:
            index = torch.as_tensor(index)
            if index.dtype == torch.bool:
                index = index.nonzero().flatten()
            rows = index.long().tolist()
        picked = torch.as_tensor(rows, dtype=torch.long)
        return EncodedStories(self.beginning[picked.to(self.beginning.device)],
                              self.middle[picked.to(self.middle.device)],
                              self.ending[picked.to(self.ending.device)],
                              [self.stories[i] for i in rows])

    def to(self, device: torch.device | str) -> EncodedStories:
        """The same stories with the tensors on `device`."""
        return EncodedStories(self.beginning.to(device), self.middle.to(device),
                              self.ending.to(device), self.stories)


def encode_stories(stories: Sequence[Story], tokenizer: StoryTokenizer,
                   beginning_len: int = MAX_BEGINNING_TOKENS,
                   middle_len: int = MAX_MIDDLE_TOKENS,
                   ending_len: int = MAX_ENDING_TOKENS) -> EncodedStories:
    """Encode and pad every story's beginning, middle and ending (strict vocabulary)."""
    stories = list(stories)
    parts = {"beginning": ([" ".join(s.beginning) for s in stories], beginning_len),
             "middle": ([s.middle for s in stories], middle_len),
             "ending": ([s.ending for s in stories], ending_len)}
    tensors = {}
    for part, (texts, length) in parts.items():
        try:
            tensors[part] = tokenizer.encode_batch(texts, length)
        except ValueError:
            # The slow path only runs to name the first story at fault.
            for i, text in enumerate(texts):
                try:
                    tokenizer.encode(text, length)
                except ValueError as err:
                    raise ValueError(f"story {i}: its {part} does not fit ({err})") from None
            raise
    return EncodedStories(tensors["beginning"], tensors["middle"], tensors["ending"], stories)
