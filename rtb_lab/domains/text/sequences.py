"""Token sequences for the language model: packing stories, scoring endings, prompting.

Stories are stored as padded blocks (beginning [N, Lb], middle [N, Lm], ending [N, Le]);
the language model reads them packed, pads moved to the end:

    <bos> beginning <sep> middle <sep> ending <eos> <pad> ...

The reward is log p_LM(ending <eos> | <bos> beginning <sep> middle <sep>): the ending's
tokens scored after the middle, as the paper describes. (The official code's released
reward scores the last |ending| tokens of beginning + middle without appending the
ending; rtb-lab does not reproduce that.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from rtb_lab.domains.text.models import CausalLM
from rtb_lab.domains.text.tokenizer import StoryTokenizer

# Segment ids of packed tokens: what each position belongs to.
PROMPT, MIDDLE, ENDING, PAD = 0, 1, 2, 3


def _column(value: int, like: Tensor) -> Tensor:
    return torch.full((like.shape[0], 1), value, dtype=torch.long, device=like.device)


def pack(blocks: list[Tensor], segments: list[int], pad_id: int) -> tuple[Tensor, Tensor]:
    """Concatenate padded blocks [N, L_i] and move every pad to the end of its row.

    Returns tokens [N, S] and the segment id of each position [N, S] (PAD for pads).
    """
    tokens = torch.cat(blocks, 1)
    segment = torch.cat([torch.full_like(b, s) for b, s in zip(blocks, segments, strict=True)],
                        1)
    is_pad = tokens == pad_id
    order = torch.sort(is_pad.long(), dim=1, stable=True).indices  # keeps the words' order
    tokens, segment = tokens.gather(1, order), segment.gather(1, order)
    return tokens, segment.masked_fill(tokens == pad_id, PAD)


def story_tokens(tok: StoryTokenizer, beginning: Tensor, middle: Tensor, ending: Tensor
                 ) -> tuple[Tensor, Tensor]:
    """Packed ``<bos> b <sep> m <sep> e <eos>`` [N, S] and segment ids [N, S]."""
    blocks = [_column(tok.bos_id, beginning), beginning, _column(tok.sep_id, beginning),
              middle, _column(tok.sep_id, beginning), ending, _column(tok.eos_id, beginning)]
    return pack(blocks, [PROMPT, PROMPT, PROMPT, MIDDLE, MIDDLE, ENDING, ENDING], tok.pad_id)


def lm_log_probs(lm: CausalLM, tokens: Tensor) -> Tensor:
    """[N, S-1] log p(tokens[:, i+1] | tokens[:, :i+1]) for every position."""
    log_p = torch.log_softmax(lm(tokens[:, :-1]).float(), -1)
    return log_p.gather(-1, tokens[:, 1:].unsqueeze(-1))[..., 0]


def ending_log_likelihood(lm: CausalLM, tok: StoryTokenizer, beginning: Tensor,
                          middle: Tensor, ending: Tensor) -> Tensor:
    """[N] log p_LM(ending, <eos> | beginning, middle), the text domain's reward."""
    tokens, segment = story_tokens(tok, beginning, middle, ending)
    scored = segment[:, 1:] == ENDING
    return (lm_log_probs(lm, tokens) * scored).sum(1)


def lm_loss(lm: CausalLM, tok: StoryTokenizer, beginning: Tensor, middle: Tensor,
            ending: Tensor) -> Tensor:
    """Mean next-token cross-entropy over every non-pad token of the packed stories."""
    tokens, segment = story_tokens(tok, beginning, middle, ending)
    real = segment[:, 1:] != PAD
    return -(lm_log_probs(lm, tokens) * real).sum() / real.sum()


@torch.no_grad()
def continue_prompt(lm: CausalLM, tok: StoryTokenizer, prompt_blocks: list[Tensor],
                    length: int, *, generator: torch.Generator | None = None,
                    temperature: float = 1.0) -> Tensor:
    """Sample up to `length` tokens after a prompt, stopping at <sep>; [N, length] padded
    (a row still going after `length` tokens is cut there).

    `prompt_blocks` are padded blocks joined in order (e.g. ``[<bos>, beginning, <sep>]``).
    Rows are generated one token at a time from their own (packed) prompt end.
    """
    prompt, _ = pack(prompt_blocks, [PROMPT] * len(prompt_blocks), tok.pad_id)
    n = prompt.shape[0]
    ends = (prompt != tok.pad_id).sum(1)  # where each row's next token goes
    # room for the longest prompt's continuation, and at least the packed prompt's width
    width = max(prompt.shape[1], int(ends.max()) + length)
    tokens = torch.full((n, width), tok.pad_id, dtype=torch.long)
    tokens[:, :prompt.shape[1]] = prompt
    out = torch.full((n, length), tok.pad_id, dtype=torch.long)
    done = torch.zeros(n, dtype=torch.bool)
    banned = [tok.pad_id, tok.mask_id, tok.bos_id, tok.unk_id]
    rows = torch.arange(n)
    for i in range(length):
        position = ends + i
        logits = lm(tokens[:, :int(position.max())])[rows, position - 1].float() / temperature
        logits[:, banned] = -float("inf")
        nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
        done |= nxt == tok.sep_id
        write = ~done
        out[write, i] = nxt[write]
        tokens[rows, position] = torch.where(done, tok.sep_id, nxt)
    return out


@torch.no_grad()
def continuation_log_prob(lm: CausalLM, tok: StoryTokenizer, prompt_blocks: list[Tensor],
                          middle: Tensor) -> Tensor:
    """[N] log p_LM(middle, <sep> | prompt): the exact probability that `continue_prompt`
    writes each middle [N, L] (the prompting baselines' distribution, for exact TV)."""
    sep = _column(tok.sep_id, middle)
    blocks = [*prompt_blocks, middle, sep]
    tokens, segment = pack(blocks, [PROMPT] * len(prompt_blocks) + [MIDDLE, MIDDLE],
                           tok.pad_id)
    return (lm_log_probs(lm, tokens) * (segment[:, 1:] == MIDDLE)).sum(1)


def prompt_blocks(tok: StoryTokenizer, beginning: Tensor, ending: Tensor | None = None
                  ) -> list[Tensor]:
    """``<bos> beginning <sep>``, or ``<bos> ending <sep> beginning <sep>`` with the ending."""
    blocks = [_column(tok.bos_id, beginning)]
    if ending is not None:
        blocks += [ending, _column(tok.sep_id, beginning)]
    return blocks + [beginning, _column(tok.sep_id, beginning)]
