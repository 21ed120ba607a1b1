"""The masked (absorbing-state) discrete diffusion family: hand-computed step log-probs,
sampling against scoring, and the exact marginal against brute-force enumeration."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from rtb_lab.diffusion import (
    MaskedDiffusion,
    Trajectory,
    exact_log_marginal,
    sample_trajectories,
    sequential_log_prob,
    trajectory_log_prob,
)

MASK = 3  # vocabulary: tokens 0, 1, 2 and <mask> = 3


class TinyDenoiser(nn.Module):
    """Logits that depend on the whole partially revealed sequence and on t."""

    def __init__(self, length: int = 3, vocab: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.length, self.vocab = length, vocab
        self.net = nn.Sequential(nn.Linear(length * vocab + 1, 32), nn.Tanh(),
                                 nn.Linear(32, length * vocab))

    def forward(self, x, t, cond=None):
        h = torch.cat([nn.functional.one_hot(x, self.vocab).flatten(1).float(), t[:, None]], 1)
        return 2.0 * self.net(h).view(-1, self.length, self.vocab)


def test_step_log_probs_match_a_hand_computation_on_three_tokens():
    family = MaskedDiffusion(num_steps=2, vocab_size=4, mask_id=MASK)  # u = (1/2, 1)
    assert torch.allclose(family.reveal_prob, torch.tensor([0.5, 1.0]))
    logits = torch.log(torch.tensor([[[0.2, 0.3, 0.5, 1.0]] * 3]))  # <mask>'s 1.0 is ignored
    probs = [0.2, 0.3, 0.5]
    states = torch.tensor([[[MASK, MASK, MASK], [2, MASK, MASK], [2, 0, 1]]])
    net = lambda x, t, cond: logits.expand(x.shape[0], -1, -1)  # noqa: E731
    step0 = family.log_prob(states[:, 1], logits, states[:, 0], torch.tensor([0]))
    step1 = family.log_prob(states[:, 2], logits, states[:, 1], torch.tensor([1]))
    # Step 0: position 0 revealed as 2 (1/2 * 0.5), positions 1 and 2 stay masked (1/2 each).
    assert step0.item() == pytest.approx(math.log(0.5 * 0.5) + 2 * math.log(0.5))
    # Step 1 reveals everything (u = 1): tokens 0 and 1; the revealed 2 is kept (log 1 = 0).
    assert step1.item() == pytest.approx(math.log(probs[0]) + math.log(probs[1]))
    traj = Trajectory(states)
    total = math.log(0.25 * 0.25) + math.log(0.2 * 0.3)
    assert trajectory_log_prob(net, family, traj).item() == pytest.approx(total)
    assert sequential_log_prob(net, family, traj).item() == pytest.approx(total)
    # Impossible steps: a revealed token that changes, or a mask that survives the last step.
    changed = torch.tensor([[1, MASK, MASK]])
    assert family.log_prob(changed, logits, states[:, 1], torch.tensor([0])).item() == -math.inf
    kept = torch.tensor([[2, MASK, 1]])
    assert family.log_prob(kept, logits, states[:, 1], torch.tensor([1])).item() == -math.inf


def test_one_at_a_time_step_log_probs_match_a_hand_computation():
    family = MaskedDiffusion(num_steps=3, vocab_size=4, mask_id=MASK, schedule="one-at-a-time")
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])  # per position
    logits = torch.log(torch.cat([probs, torch.ones(3, 1)], 1))[None]
    states = torch.tensor([[[MASK, MASK, MASK], [2, MASK, MASK], [2, MASK, 1], [2, 0, 1]]])
    net = lambda x, t, cond: logits.expand(x.shape[0], -1, -1)  # noqa: E731
    # 1/3 * p0(2), then 1/2 * p2(1), then 1 * p1(0).
    total = math.log(0.5 / 3) + math.log(0.1 / 2) + math.log(0.6)
    assert trajectory_log_prob(net, family, Trajectory(states)).item() == pytest.approx(total)
    two_at_once = torch.tensor([[2, 0, MASK]])
    assert family.log_prob(two_at_once, logits, states[:, 0], torch.tensor([0])).item() \
        == -math.inf
    with pytest.raises(ValueError, match="num_steps = 3 tokens"):
        family.start(2, (4,))


@pytest.mark.parametrize("schedule,steps", [("linear", 5), ("cosine", 5), ("one-at-a-time", 3)])
def test_sampling_and_scoring_agree_and_the_last_step_reveals_everything(schedule, steps):
    family = MaskedDiffusion(num_steps=steps, vocab_size=4, mask_id=MASK, schedule=schedule)
    net = TinyDenoiser()
    traj = sample_trajectories(net, family, 64, (3,), keep_log_pf=True,
                               generator=torch.Generator().manual_seed(0))
    assert traj.states.dtype == torch.long
    assert (traj.states[:, 0] == MASK).all() and not (traj.x == MASK).any()
    assert torch.allclose(traj.log_pf, trajectory_log_prob(net, family, traj), atol=1e-5)
    # A revealed position never changes along a trajectory.
    revealed = traj.states[:, :-1] != MASK
    assert (traj.states[:, 1:][revealed] == traj.states[:, :-1][revealed]).all()
    explored = sample_trajectories(net, family, 64, (3,), explore=1.0, keep_log_pf=True,
                                   generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(explored.log_pf).all()
    assert torch.allclose(explored.log_pf, trajectory_log_prob(net, family, explored), atol=1e-5)


def _brute_force_log_marginal(net, family, length, vocab):
    """log p(x) for every x by summing exp(log q(tau)) over every trajectory: each
    position's reveal step and token, all combinations."""
    steps, total = family.num_steps, {}
    for reveal_at in itertools.product(range(steps), repeat=length):
        for tokens in itertools.product(range(vocab), repeat=length):
            states = [[MASK] * length]
            for k in range(steps):
                states.append([tokens[j] if reveal_at[j] <= k else MASK for j in range(length)])
            traj = Trajectory(torch.tensor([states]))
            log_q = trajectory_log_prob(net, family, traj).item()
            total[tokens] = total.get(tokens, 0.0) + math.exp(log_q)
    return {x: math.log(p) for x, p in total.items()}


@pytest.mark.parametrize("schedule", ["cosine", "one-at-a-time"])
def test_exact_marginal_equals_the_sum_over_every_trajectory(schedule):
    family = MaskedDiffusion(num_steps=3, vocab_size=4, mask_id=MASK, schedule=schedule)
    net = TinyDenoiser(seed=1)
    brute = _brute_force_log_marginal(net, family, 3, 3)
    xs = torch.tensor(list(brute))
    exact = exact_log_marginal(net, family, xs)
    assert torch.allclose(exact, torch.tensor(list(brute.values())), atol=1e-4)
    assert torch.logsumexp(exact, 0).item() == pytest.approx(0.0, abs=1e-4)


def test_exact_marginal_matches_sample_frequencies():
    family = MaskedDiffusion(num_steps=4, vocab_size=4, mask_id=MASK)
    net = TinyDenoiser(seed=2)
    x = sample_trajectories(net, family, 20_000, (3,),
                            generator=torch.Generator().manual_seed(0)).x
    xs = torch.tensor(list(itertools.product(range(3), repeat=3)))
    exact = exact_log_marginal(net, family, xs).exp()
    codes = (x * torch.tensor([9, 3, 1])).sum(1)
    freq = torch.bincount(codes, minlength=27).float() / len(x)
    assert 0.5 * (freq - exact).abs().sum().item() <= 0.03


def test_bad_input_is_rejected_with_a_clear_error():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        MaskedDiffusion(4, vocab_size=4, mask_id=4)
    with pytest.raises(ValueError, match="unknown schedule"):
        MaskedDiffusion(4, vocab_size=4, mask_id=3, schedule="sqrt")
    family = MaskedDiffusion(4, vocab_size=4, mask_id=MASK)
    with pytest.raises(ValueError, match=r"expected logits \[N, L, 4\]"):
        family.log_prob(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, 5),
                        torch.zeros(1, 3, dtype=torch.long), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 4\)"):
        family.check_tokens(torch.tensor([[0, 7]]))
    with pytest.raises(ValueError, match="fully revealed"):
        exact_log_marginal(TinyDenoiser(), family, torch.tensor([[0, MASK, 1]]))
