"""Training the text domain's networks: the masked-diffusion prior, the supervised infiller
and the reward language model (plain maximum likelihood; no RTB here).

Ctrl-C (KeyboardInterrupt) stops a run and returns the network trained so far, with
`trained_steps` set, so nothing is lost.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rtb_lab.domains.text.data import EncodedStories
from rtb_lab.domains.text.models import CausalLM, MaskedDenoiser
from rtb_lab.domains.text.sequences import lm_loss
from rtb_lab.domains.text.tokenizer import StoryTokenizer
from rtb_lab.fitting import fit_minibatches

CONTEXTS = ("beginning", "both")


def make_context(tok: StoryTokenizer, beginning: Tensor, ending: Tensor | None = None
                 ) -> Tensor:
    """The denoiser's context: the beginning [N, Lb], or ``beginning <sep> ending``."""
    if ending is None:
        return beginning
    sep = torch.full((beginning.shape[0], 1), tok.sep_id, dtype=torch.long,
                     device=beginning.device)
    return torch.cat([beginning, sep, ending], 1)


def context_of(data: EncodedStories, tok: StoryTokenizer, context: str) -> Tensor:
    """The context rows of a data set: "beginning" (the prior) or "both" (supervised)."""
    if context not in CONTEXTS:
        raise ValueError(f"unknown context {context!r}; choose one of {CONTEXTS}")
    return make_context(tok, data.beginning, data.ending if context == "both" else None)


def masked_lm_loss(net: MaskedDenoiser, middle: Tensor, context: Tensor, mask_id: int,
                   generator: torch.Generator) -> Tensor:
    """Cross-entropy of the masked positions, each row masked at a uniform random ratio.

    The reverse step uses the network as p(x_j | the revealed positions) at every mask
    ratio, which is exactly what this objective fits.
    """
    ratio = torch.rand(middle.shape[0], 1, generator=generator)
    masked = torch.rand(middle.shape, generator=generator) < ratio
    masked[torch.arange(len(middle)), torch.randint(middle.shape[1], (len(middle),),
                                                    generator=generator)] = True
    x = middle.masked_fill(masked, mask_id)
    logits = net(x, None, context)
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), middle.flatten(), reduction="none")
    return (loss * masked.flatten()).sum() / masked.sum()


def train_denoiser(data: EncodedStories, tok: StoryTokenizer, *, context: str = "beginning",
                   steps: int = 4000, batch_size: int = 128, lr: float = 1e-3,
                   d_model: int = 128, layers: int = 3, seed: int = 0,
                   progress: bool = True) -> MaskedDenoiser:
    """Fit a `MaskedDenoiser` to the middles of `data` given their context; returned frozen.

    context "beginning" makes the prior p(middle | beginning); "both" the supervised
    infiller p(middle | beginning, ending), the comparison's upper bound.
    """
    torch.manual_seed(seed)
    rows = context_of(data, tok, context)
    net = MaskedDenoiser(tok.vocab_size, rows.shape[1], data.middle.shape[1], tok.pad_id,
                         d_model=d_model, layers=layers)

    def loss_fn(index: Tensor, generator: torch.Generator) -> Tensor:
        return masked_lm_loss(net, data.middle[index], rows[index], tok.mask_id, generator)

    return fit_minibatches(net, loss_fn, len(data), steps, batch_size, lr, seed,
                f"denoiser ({context})", progress)


def train_lm(data: EncodedStories, tok: StoryTokenizer, *, steps: int = 4000,
             batch_size: int = 128, lr: float = 1e-3, d_model: int = 128, layers: int = 3,
             seed: int = 0, progress: bool = True) -> CausalLM:
    """Fit the reward `CausalLM` to whole stories (natural order only); returned frozen."""
    torch.manual_seed(seed)
    max_len = sum(block.shape[1] for block in (data.beginning, data.middle, data.ending)) + 4
    lm = CausalLM(tok.vocab_size, max_len, d_model=d_model, layers=layers)

    def loss_fn(index: Tensor, generator: torch.Generator) -> Tensor:
        return lm_loss(lm, tok, data.beginning[index], data.middle[index], data.ending[index])

    return fit_minibatches(lm, loss_fn, len(data), steps, batch_size, lr, seed, "reward LM",
                           progress)


@torch.no_grad()
def held_out_losses(denoiser: MaskedDenoiser | None, lm: CausalLM | None,
                    data: EncodedStories, tok: StoryTokenizer, context: str = "beginning",
                    seed: int = 0) -> dict[str, float]:
    """Held-out cross-entropies (nats per token) of a denoiser and/or the reward LM."""
    generator = torch.Generator().manual_seed(seed)
    losses = {}
    if denoiser is not None:
        rows = context_of(data, tok, context)
        losses["denoiser_nll"] = float(masked_lm_loss(denoiser, data.middle, rows,
                                                      tok.mask_id, generator))
    if lm is not None:
        losses["lm_nll"] = float(lm_loss(lm, tok, data.beginning, data.middle, data.ending))
    return losses
