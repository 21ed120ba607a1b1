"""Absorbing-state (masked) discrete diffusion: the transition family for token sequences.

Forward process (noising, not simulated here): each token of a sequence x [L] is
replaced by the absorbing <mask> token independently, and stays masked. In generation
order, time t runs from 0 (every position masked) to 1 (the clean sequence); the
schedule a(t) is the probability that a position is already revealed at time t:
``a(t) = t`` (the log-linear noise schedule of masked diffusion LMs) or
``a(t) = 1 - cos(pi t / 2)`` (cosine).

Reverse step k (t_k = k/T -> t_{k+1}): every position that is still masked is revealed
with probability ``u_k = (a(t_{k+1}) - a(t_k)) / (1 - a(t_k))`` (u_{T-1} = 1: the last
step reveals everything), and a revealed position takes a token drawn from the
network's categorical distribution at that position. Revealed tokens never change.
So the exact log-probability of one step is a sum over the positions masked at x_k:

    log(1 - u_k)                              if the position stays masked,
    log u_k + log softmax(logits)[v]          if it is revealed as token v,

and 0 for the positions already revealed (-inf if one of them changed). With the
"one-at-a-time" schedule a step reveals exactly one masked position, chosen uniformly:
log(1 / #masked) + log softmax(logits)[v]. The timing terms are the same for every
network, so they cancel in the RTB residual: only the token choices carry the
posterior's learning. The network never puts mass on <mask>.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rtb_lab.diffusion.family import TransitionFamily

SCHEDULES = ("linear", "cosine", "one-at-a-time")


def revealed_fraction(t: Tensor, schedule: str) -> Tensor:
    """a(t): the probability that a position is revealed at generation time t in [0, 1]."""
    if schedule == "linear":
        return t
    if schedule == "cosine":
        return 1 - torch.cos(0.5 * math.pi * t)
    raise ValueError(f"schedule {schedule!r} has no a(t); the scheduled ones are "
                     f"{SCHEDULES[:2]}")


class MaskedDiffusion(TransitionFamily):
    """Masked (absorbing-state) diffusion over sequences of token ids, in `num_steps` steps.

    The network is called as ``net(x [N, L] long, t [N], cond) -> logits [N, L, V]``.

    Schedules: "linear" or "cosine" (see `revealed_fraction`): each step reveals a
    random number of positions, and the tokens revealed in the same step are drawn
    independently of each other, so a coarse schedule cannot write two words that
    must agree; "one-at-a-time": exactly one position per step, chosen uniformly among
    the masked ones, with ``num_steps = L``. That is the limit of any schedule as the
    steps get fine (reveal times are i.i.d., so their order is uniform), and the only
    schedule whose reverse process can express every distribution over sequences.

    Args:
        num_steps: T, the number of reverse steps (L for "one-at-a-time").
        vocab_size: V, the size of the vocabulary (the logits' last dimension).
        mask_id: the id of the absorbing <mask> token.
        schedule: one of SCHEDULES.
    """

    def __init__(self, num_steps: int, vocab_size: int, mask_id: int,
                 schedule: str = "linear") -> None:
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if not 0 <= mask_id < vocab_size:
            raise ValueError(f"mask_id {mask_id} is outside the vocabulary [0, {vocab_size})")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
        self.num_steps, self.vocab_size, self.mask_id = num_steps, vocab_size, mask_id
        self.schedule = schedule
        self.reveal_prob = torch.ones(num_steps)  # unused by one-at-a-time
        if schedule != "one-at-a-time":
            a = revealed_fraction(torch.linspace(0, 1, num_steps + 1, dtype=torch.float64),
                                  schedule)
            reveal = ((a[1:] - a[:-1]) / (1 - a[:-1])).clamp(0, 1)
            reveal[-1] = 1.0  # whatever the schedule's rounding, the last step reveals all
            self.reveal_prob = reveal.float()  # [T] u_k

    def time(self, k: Tensor) -> Tensor:
        return k.float() / self.num_steps

    def start(self, batch_size, event_shape, *, generator=None, device="cpu"):
        if self.schedule == "one-at-a-time" and event_shape != (self.num_steps,):
            raise ValueError(f"one-at-a-time reveals one of L positions per step: sequences "
                             f"must have num_steps = {self.num_steps} tokens, got {event_shape}")
        return torch.full((batch_size, *event_shape), self.mask_id, dtype=torch.long,
                          device=device)

    def token_log_probs(self, logits: Tensor) -> Tensor:
        """[N, L, V] log-probabilities of the revealed token, <mask> excluded."""
        self._check_logits(logits)
        masked = logits.float().clone()
        masked[..., self.mask_id] = -math.inf
        return torch.log_softmax(masked, -1)

    def timing_log_prob(self, k: Tensor, n_masked: Tensor, n_revealed: Tensor) -> Tensor:
        """[N] log-probability that step k reveals `n_revealed` given positions out of
        `n_masked` masked ones (the same for every network: it cancels in RTB)."""
        if self.schedule == "one-at-a-time":
            one = n_revealed == 1
            return torch.where(one, -torch.log(n_masked.clamp_min(1).double()),
                               torch.where((n_masked == 0) & (n_revealed == 0), 0.0,
                                           -math.inf)).float()
        u = self.reveal_prob.to(k.device)[k].double()
        stay = (n_masked - n_revealed).double()
        return (_count_log(n_revealed.double(), u) + _count_log(stay, 1 - u)).float()

    def sample_step(self, net_out, x, k, *, explore=0.0, generator=None):
        """Reveal masked positions (each with probability u_k, or exactly one); draw each
        revealed token from the logits.

        `explore` > 0 draws the tokens at temperature 1 + explore (flatter), an
        off-policy step scored later under the untempered policy by `log_prob`.
        """
        log_p = self.token_log_probs(net_out / (1.0 + explore))
        is_masked = x == self.mask_id
        draw = torch.rand(x.shape, generator=generator, device="cpu").to(x.device)
        if self.schedule == "one-at-a-time":  # the masked position with the largest draw
            pick = draw.masked_fill(~is_masked, -1.0).argmax(-1, keepdim=True)
            reveal = torch.zeros_like(is_masked).scatter(-1, pick, True) & is_masked
        else:
            reveal = is_masked & (draw < self.reveal_prob.to(x.device)[k].view(-1, 1))
        flat = log_p.exp().flatten(0, 1)
        tokens = torch.multinomial(flat.cpu(), 1, generator=generator).view(x.shape).to(x.device)
        return torch.where(reveal, tokens, x)

    def log_prob(self, x_next, net_out, x, k):
        log_p = self.token_log_probs(net_out)
        was_masked, still_masked = x == self.mask_id, x_next == self.mask_id
        revealed = was_masked & ~still_masked
        chosen = log_p.gather(-1, x_next.clamp(0, self.vocab_size - 1).unsqueeze(-1))[..., 0]
        tokens = torch.where(revealed, chosen, 0.0).sum(-1)  # a mask scores -inf: keep it out
        timing = self.timing_log_prob(k, was_masked.sum(-1), revealed.sum(-1))
        changed = (~was_masked & (x_next != x)).any(-1)  # a revealed token never changes
        return (timing + tokens).masked_fill(changed, -math.inf)

    def _check_logits(self, logits: Tensor) -> None:
        if logits.dim() != 3 or logits.shape[-1] != self.vocab_size:
            raise ValueError(f"expected logits [N, L, {self.vocab_size}], got "
                             f"{tuple(logits.shape)}")

    def check_tokens(self, x: Tensor) -> None:
        """ValueError unless x holds token ids in [0, vocab_size)."""
        if x.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(f"token sequences must be integer ids, got {x.dtype}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), got "
                             f"min {int(x.min())}, max {int(x.max())}")


def _subset_pairs(length: int) -> tuple[Tensor, Tensor, Tensor]:
    """Every pair S ⊆ S' of subsets of `length` positions, as bitmasks.

    Returns (before [P], after [P], added [P, L] bool) with P = 3**length.
    """
    before, after = [], []
    for full in range(1 << length):
        sub = full
        while True:  # every submask of `full`, including 0
            before.append(sub)
            after.append(full)
            if sub == 0:
                break
            sub = (sub - 1) & full
    before_t, after_t = torch.tensor(before), torch.tensor(after)
    bits = 1 << torch.arange(length)
    added = ((after_t ^ before_t)[:, None] & bits) > 0
    return before_t, after_t, added


@torch.no_grad()
def exact_log_marginal(net, family: MaskedDiffusion, x: Tensor, cond: Tensor | None = None,
                       batch_rows: int = 8192) -> Tensor:
    """[M] log of the exact probability that the process generates each sequence x [M, L].

    The sum over every trajectory that ends in x: which positions are revealed at which
    step. After step k the state is "x on a set S of positions, <mask> elsewhere", so a
    dynamic programme over the 2^L subsets S and the T steps is exact (3^L subset pairs
    per step, 2^L * T network rows per sequence). Use it for L up to about 8.
    """
    family.check_tokens(x)
    if (x == family.mask_id).any():
        raise ValueError("the sequences to score must be fully revealed (no <mask> tokens)")
    m, length = x.shape
    n_sets = 1 << length
    bits = 1 << torch.arange(length, device=x.device)
    in_set = (torch.arange(n_sets, device=x.device)[:, None] & bits) > 0  # [2^L, L]
    partial = torch.where(in_set[None], x[:, None, :],
                          torch.full_like(x[:, None, :], family.mask_id))  # [M, 2^L, L]
    before, after, added = (t.to(x.device) for t in _subset_pairs(length))
    n_revealed = in_set.sum(1)  # [2^L]
    log_f = torch.full((m, n_sets), -math.inf, device=x.device)
    log_f[:, 0] = 0.0
    rows, targets = partial.flatten(0, 1), x.repeat_interleave(n_sets, 0)
    cond_rows = None if cond is None else cond.repeat_interleave(n_sets, 0)
    scatter = torch.zeros(len(after), n_sets, device=x.device)
    scatter[torch.arange(len(after)), after] = 1.0
    for k in range(family.num_steps):
        t = family.time(torch.full((rows.shape[0],), k, device=x.device))
        chosen = []
        for start in range(0, rows.shape[0], batch_rows):
            part = slice(start, start + batch_rows)
            log_p = family.token_log_probs(
                net(rows[part], t[part], None if cond_rows is None else cond_rows[part]))
            chosen.append(log_p.gather(-1, targets[part].unsqueeze(-1))[..., 0])
        log_tok = torch.cat(chosen).view(m, n_sets, length)  # log p_k(x_j | x_S)
        timing = family.timing_log_prob(torch.full_like(before, k), length - n_revealed[before],
                                        added.sum(1))  # [P]
        tokens = (log_tok[:, before] * added).sum(-1)  # [M, P]
        contrib = log_f[:, before] + timing + tokens
        top = contrib.max(1, keepdim=True).values.clamp_min(-1e30)
        log_f = torch.log((contrib - top).exp() @ scatter) + top
    return log_f[:, -1]


def _count_log(count: Tensor, p: Tensor) -> Tensor:
    """count * log p, with 0 * log 0 = 0 (no position took a branch of probability 0)."""
    return torch.where(count > 0, count * torch.log(p), 0.0)

