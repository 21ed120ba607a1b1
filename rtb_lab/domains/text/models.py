"""The two small transformers of the text domain, both on torch's own TransformerEncoder.

- `MaskedDenoiser`: the masked-diffusion language model (the prior). It reads a context
  (the story's beginning, or beginning and ending for the supervised infiller) and a
  partially masked middle, and returns logits for every middle position. It ignores
  the time input: in absorbing-state diffusion the number of masks already tells the
  network how far generation is, and a time-free denoiser is what masked diffusion LMs
  use.
- `CausalLM`: a left-to-right language model over whole stories ``<bos> beginning
  <sep> middle <sep> ending <eos>`` (the paper's GPT-2 reward, in miniature); it scores
  log p(ending | beginning, middle) and can continue a prompt.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _encoder(d_model: int, heads: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout,
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class MaskedDenoiser(nn.Module):
    """Logits [N, L, V] for a masked middle x [N, L] given a context [N, C] of token ids.

    Args:
        vocab_size: V.
        context_len: C, the context's padded length.
        length: L, the middle's length.
        pad_id: the padding id (padded context positions are not attended to).
        d_model, heads, layers, dropout: the transformer's size.
    """

    def __init__(self, vocab_size: int, context_len: int, length: int, pad_id: int = 0,
                 d_model: int = 128, heads: int = 4, layers: int = 3,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.vocab_size, self.context_len, self.length, self.pad_id = (
            vocab_size, context_len, length, pad_id)
        self.d_model, self.heads, self.layers = d_model, heads, layers
        self.token = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(context_len + length, d_model)
        self.segment = nn.Embedding(2, d_model)  # 0: context, 1: the middle being generated
        self.encoder = _encoder(d_model, heads, layers, dropout)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, x: Tensor, t: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        if cond is None:
            raise ValueError(f"the denoiser needs its context: cond [N, {self.context_len}] "
                             "token ids")
        if x.shape[1:] != (self.length,) or cond.shape[1:] != (self.context_len,):
            raise ValueError(f"expected x [N, {self.length}] and cond [N, {self.context_len}], "
                             f"got {tuple(x.shape)} and {tuple(cond.shape)}")
        tokens = torch.cat([cond, x], 1)
        segment = torch.cat([torch.zeros_like(cond), torch.ones_like(x)], 1)
        positions = torch.arange(tokens.shape[1], device=x.device)
        h = self.token(tokens) + self.position(positions) + self.segment(segment)
        ignore = torch.cat([cond == self.pad_id, torch.zeros_like(x, dtype=torch.bool)], 1)
        h = self.encoder(h, src_key_padding_mask=ignore)
        return self.head(self.norm(h[:, self.context_len:]))

    def config(self) -> dict[str, int]:
        """Constructor arguments, saved beside the weights."""
        return {"vocab_size": self.vocab_size, "context_len": self.context_len,
                "length": self.length, "pad_id": self.pad_id, "d_model": self.d_model,
                "heads": self.heads, "layers": self.layers}


class CausalLM(nn.Module):
    """A decoder-only transformer: logits [N, S, V] for the next token at every position.

    Args:
        vocab_size: V.
        max_len: the longest sequence it reads.
        d_model, heads, layers, dropout: the transformer's size.
    """

    def __init__(self, vocab_size: int, max_len: int, d_model: int = 128, heads: int = 4,
                 layers: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.vocab_size, self.max_len = vocab_size, max_len
        self.d_model, self.heads, self.layers = d_model, heads, layers
        self.token = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(max_len, d_model)
        self.encoder = _encoder(d_model, heads, layers, dropout)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"sequence of {tokens.shape[1]} tokens is longer than the "
                             f"model's {self.max_len}")
        length = tokens.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        h = self.token(tokens) + self.position(torch.arange(length, device=tokens.device))
        return self.head(self.norm(self.encoder(h, mask=causal, is_causal=True)))

    def config(self) -> dict[str, int]:
        """Constructor arguments, saved beside the weights."""
        return {"vocab_size": self.vocab_size, "max_len": self.max_len,
                "d_model": self.d_model, "heads": self.heads, "layers": self.layers}
