"""A word-level tokenizer for normal-form stories, built on the `tokenizers` library.

Ids 0..5 are the special tokens (`SPECIAL_TOKENS`), then the words in sorted order. The
text is split on whitespace only, so text must be in normal form first (see `normalise`).

    tok = StoryTokenizer.from_words(StoryGrammar.default().vocabulary())
    ids = tok.encode("anna wanted to bake a cake .", length=12)
    tok.decode(ids)                      # "anna wanted to bake a cake ."
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Encoding, Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from torch import Tensor

__all__ = ["SPECIAL_TOKENS", "StoryTokenizer", "normalise"]

SPECIAL_TOKENS = ("<pad>", "<mask>", "<unk>", "<bos>", "<sep>", "<eos>")

# Punctuation that becomes a token of its own.
_PUNCTUATION = re.compile(r"""([.,!?;:'"])""")
# Typographic quotes and dashes that ROCStories and pasted text contain.
_ASCII = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                        "\u2013": " ", "\u2014": " "})


def normalise(text: str) -> str:
    """Normal form: lower-case, punctuation (. , ! ? ; : ' ") split off, single spaces.

    >>> normalise("Anna's cat, Tom, ran!")
    "anna ' s cat , tom , ran !"
    """
    text = text.translate(_ASCII).lower()
    return " ".join(_PUNCTUATION.sub(r" \1 ", text).split())


class StoryTokenizer:
    """A `tokenizers.Tokenizer` with a WordLevel model and a WhitespaceSplit pre-tokenizer."""

    # The special tokens' ids: their order in SPECIAL_TOKENS.
    pad_id, mask_id, unk_id, bos_id, sep_id, eos_id = range(len(SPECIAL_TOKENS))

    def __init__(self, tokenizer: Tokenizer) -> None:
        for i, token in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(token) != i:
                raise ValueError(f"the tokenizer must give {token!r} the id {i}; special "
                                 f"tokens are {SPECIAL_TOKENS} with ids 0..5")
        self._tok = tokenizer

    @classmethod
    def from_words(cls, words: Iterable[str]) -> StoryTokenizer:
        """A tokenizer knowing `words` (deduplicated and sorted; specials are skipped)."""
        words = sorted(set(words) - set(SPECIAL_TOKENS))
        bad = [w for w in words if not w or len(w.split()) != 1 or w != w.strip()]
        if bad:
            raise ValueError(f"vocabulary words must be single non-empty words, got {bad[:5]}")
        vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *words))}
        tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
        tokenizer.pre_tokenizer = WhitespaceSplit()
        # Registered as special so that "<mask>" in a text is one token and decoders know them.
        tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
        return cls(tokenizer)

    def save(self, path: str | Path) -> None:
        """Write the tokenizer in the `tokenizers` JSON format."""
        self._tok.save(str(path))

    @classmethod
    def load(cls, path: str | Path) -> StoryTokenizer:
        """Read a tokenizer written by `save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {path} (write one with "
                                    "StoryTokenizer.save)")
        return cls(Tokenizer.from_file(str(path)))

    # ------------------------------------------------------------------ ids

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def words(self) -> list[str]:
        """The ordinary (non-special) words, in id order."""
        return [self._tok.id_to_token(i) for i in range(len(SPECIAL_TOKENS), self.vocab_size)]

    # ------------------------------------------------------------------ encoding

    def encode(self, text: str, length: int | None = None, strict: bool = True) -> list[int]:
        """The ids of `text` (normal form), padded with <pad> to `length` if given.

        strict: out-of-vocabulary words are an error (otherwise they become <unk>).
        """
        return self._finish(text, self._tok.encode(text), length, strict)

    def encode_batch(self, texts: Sequence[str], length: int,
                     strict: bool = True) -> Tensor:
        """[N, length] long ids of `texts`, each padded with <pad> (see `encode`)."""
        texts = list(texts)
        rows = []
        encodings = self._tok.encode_batch(texts)
        for i, (text, encoding) in enumerate(zip(texts, encodings, strict=True)):
            try:
                rows.append(self._finish(text, encoding, length, strict))
            except ValueError as err:
                raise ValueError(f"text {i} of the batch: {err}") from None
        if not rows:
            return torch.zeros(0, length, dtype=torch.long)
        return torch.tensor(rows, dtype=torch.long)

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The text of `ids`: <pad> dropped, <mask> shown as "_", other specials kept."""
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        self.check_ids(torch.tensor(ids, dtype=torch.long))
        tokens = [self._tok.id_to_token(i) for i in ids if i != self.pad_id]
        return " ".join("_" if t == "<mask>" else t for t in tokens)

    def check_ids(self, ids: Tensor) -> None:
        """ValueError unless every id lies in [0, vocab_size)."""
        if ids.numel() == 0:
            return
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"token ids must be an integer tensor, got {ids.dtype}")
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}) for this tokenizer, "
                             f"got min {lo} and max {hi}")

    def _finish(self, text: str, encoding: Encoding, length: int | None,
                strict: bool) -> list[int]:
        ids = list(encoding.ids)
        if strict:
            # Offsets recover the original words; a literal "<unk>" in the text is allowed.
            unknown = [text[a:b] for i, (a, b) in zip(ids, encoding.offsets, strict=True)
                       if i == self.unk_id and text[a:b] != "<unk>"]
            if unknown:
                unknown = list(dict.fromkeys(unknown))
                raise ValueError(f"words not in the vocabulary: {unknown} (the tokenizer knows "
                                 f"{self.vocab_size - len(SPECIAL_TOKENS)} words)")
        if length is not None:
            if len(ids) > length:
                raise ValueError(f"the text has {len(ids)} tokens, more than length={length}: "
                                 f"{text!r}")
            ids += [self.pad_id] * (length - len(ids))
        return ids

    def __repr__(self) -> str:
        return f"StoryTokenizer(vocab_size={self.vocab_size})"
