"""The text domain: packing and scoring by hand, the shipped networks against the grammar
they learned, RTB on tokens against the exact posterior, bad input, the commands."""

from __future__ import annotations

import argparse

import pytest
import torch

from rtb_lab import domains
from rtb_lab.checkpoint import CheckpointError
from rtb_lab.domains.text import io
from rtb_lab.domains.text.commands import commands
from rtb_lab.domains.text.grammar import StoryGrammar
from rtb_lab.domains.text.infilling import InfillingProblem, binned_tv
from rtb_lab.domains.text.models import CausalLM
from rtb_lab.domains.text.sequences import (
    MIDDLE,
    PAD,
    PROMPT,
    continuation_log_prob,
    continue_prompt,
    ending_log_likelihood,
    lm_log_probs,
    pack,
    prompt_blocks,
)
from rtb_lab.domains.text.tokenizer import StoryTokenizer
from rtb_lab.domains.text.trainer import bind_prior, make_family, make_infilling_trainer
from rtb_lab.fitting import fit_minibatches


@pytest.fixture(scope="module")
def shipped():
    torch.manual_seed(0)
    _, test = io.corpus()
    return {"tok": io.load_tokenizer(), "prior": io.load_denoiser(), "lm": io.load_lm(),
            "grammar": StoryGrammar.default(), "test": test}


def _problem(shipped, index: int, reward: str = "oracle", beta: float = 1.0
             ) -> InfillingProblem:
    story = shipped["test"].stories[index]
    return InfillingProblem(shipped["tok"], " ".join(story.beginning), story.ending,
                            lm=shipped["lm"], grammar=shipped["grammar"], beta=beta,
                            reward=reward, reference=story.middle)


def test_packing_moves_pads_to_the_end_and_the_reward_scores_the_ending_only():
    tok = StoryTokenizer.from_words(["a", "b", "c", "."])
    a, b, c, dot = (tok.encode(w)[0] for w in ("a", "b", "c", "."))
    tokens, segment = pack([torch.tensor([[a, tok.pad_id]]), torch.tensor([[b, c, tok.pad_id]])],
                           [PROMPT, MIDDLE], tok.pad_id)
    assert tokens.tolist() == [[a, b, c, tok.pad_id, tok.pad_id]]
    assert segment.tolist() == [[PROMPT, MIDDLE, MIDDLE, PAD, PAD]]
    torch.manual_seed(0)
    lm = CausalLM(tok.vocab_size, 16, d_model=16, heads=2, layers=1).eval()
    begin, middle, end = (torch.tensor([[a, dot]]), torch.tensor([[b, tok.pad_id]]),
                          torch.tensor([[c, dot, tok.pad_id]]))
    # <bos> a . <sep> b <sep> c . <eos>: the ending is c, ., <eos> (positions 6, 7, 8).
    story = torch.tensor([[tok.bos_id, a, dot, tok.sep_id, b, tok.sep_id, c, dot, tok.eos_id]])
    by_hand = lm_log_probs(lm, story)[0, 5:].sum()
    assert ending_log_likelihood(lm, tok, begin, middle, end).item() == pytest.approx(
        by_hand.item(), abs=1e-5)


def test_prompt_sampling_frequencies_match_the_exact_continuation_probabilities(shipped):
    tok, lm = shipped["tok"], shipped["lm"]
    problem = _problem(shipped, 0)
    texts, ids = problem.candidates()
    n = 3000
    blocks = prompt_blocks(tok, problem.beginning_ids.expand(n, -1))
    x = continue_prompt(lm, tok, blocks, problem.middle_len,
                        generator=torch.Generator().manual_seed(0))
    frequency = (x[:, None] == ids[None]).all(-1).float().mean(0)
    exact = continuation_log_prob(lm, tok, prompt_blocks(tok, problem.beginning_ids.expand(
        len(ids), -1)), ids).exp()
    assert (frequency - exact).abs().max().item() <= 0.03
    assert exact.sum().item() >= 0.8  # the LM writes the grammar's middles


def test_prompting_with_short_texts_in_wide_padded_blocks_writes_the_continuation():
    # The packed prompt (its blocks' padded widths) can be wider than the longest
    # prompt's words plus the continuation: story 8 of the held-out split once crashed.
    tok = StoryTokenizer.from_words(["a", "b", "."])
    a, b, dot = (tok.encode(w)[0] for w in ("a", "b", "."))
    torch.manual_seed(0)
    lm = CausalLM(tok.vocab_size, 32, d_model=16, heads=2, layers=1).eval()
    begin = torch.tensor([[a, dot] + [tok.pad_id] * 10])
    end = torch.tensor([[b, dot] + [tok.pad_id] * 10])
    x = continue_prompt(lm, tok, prompt_blocks(tok, begin, end), 2,
                        generator=torch.Generator().manual_seed(0))
    assert x.shape == (1, 2) and bool((x != tok.mask_id).all())


def test_shipped_networks_learned_the_grammar_on_held_out_stories(shipped):
    """The prior's exact p(middle | beginning) and the LM's p(ending | beginning, middle)
    against the grammar's own, on beginnings never seen in training."""
    family, grammar = make_family(shipped["tok"]), shipped["grammar"]
    tvs, other, reward_err = [], [], []
    for index in (0, 10, 20):
        problem = _problem(shipped, index)
        texts, ids = problem.candidates()
        truth = problem.exact(bind_prior(problem, shipped["prior"]), family)
        story = shipped["test"].stories[index]
        grammar_bins = torch.tensor([grammar.middles(story.beginning)[t] for t in texts] + [0.0])
        tvs.append(binned_tv(truth["prior"], grammar_bins))
        other.append(float(truth["prior"][-1]))
        lm_reward = InfillingProblem(problem.tok, problem.beginning, problem.ending,
                                     lm=shipped["lm"]).log_reward(ids)
        reward_err.append(float((lm_reward - problem.log_reward(ids)).abs().mean()))
    print("prior TV to the grammar", tvs, "ungrammatical mass", other,
          "mean |log r_LM - log r_oracle|", reward_err)
    assert max(tvs) <= 0.2 and max(other) <= 0.1
    assert sum(reward_err) / len(reward_err) <= 1.0


@pytest.mark.slow
def test_rtb_on_tokens_reaches_the_exact_posterior_and_prompting_does_not(shipped):
    """Oracle reward on a held-out story: RTB's exact TV to the posterior over middles
    <= 0.05 (measured 0.003-0.04 on stories 0, 2, 6); the prompting baseline >= 0.5."""
    torch.set_num_threads(2)
    problem = _problem(shipped, 2)
    trainer = make_infilling_trainer(problem, shipped["prior"])
    trainer.train(progress=False)
    final = trainer.evaluations[-1]
    _, ids = problem.candidates()
    prompt = continuation_log_prob(shipped["lm"], problem.tok, prompt_blocks(
        problem.tok, problem.beginning_ids.expand(len(ids), -1)), ids).exp()
    truth = problem.exact(trainer.prior, trainer.family)
    prompt_tv = binned_tv(torch.cat([prompt, (1 - prompt.sum()).view(1)]), truth["posterior"])
    print("RTB", final, "prompt TV", prompt_tv)
    assert final["tv"] <= 0.05
    assert final["prior_tv"] >= 0.5 and prompt_tv >= 0.5


def test_bad_input_gets_a_clear_error(shipped):
    tok, lm, grammar = shipped["tok"], shipped["lm"], shipped["grammar"]
    begin = "anna wanted to bake a cake . she went to the kitchen . but the oven was broken ."
    with pytest.raises(ValueError, match="beta must be a positive number"):
        InfillingProblem(tok, begin, "she ate the cake .", lm=lm, beta=0.0)
    with pytest.raises(ValueError, match="the ending is empty"):
        InfillingProblem(tok, begin, "  ", lm=lm)
    with pytest.raises(ValueError, match="first three sentences"):
        InfillingProblem(tok, "anna wanted to bake a cake .", "she ate the cake .", lm=lm)
    with pytest.raises(ValueError, match=r"not in the vocabulary: \['zebra'\]"):
        InfillingProblem(tok, begin, "a zebra ate the cake .", lm=lm)
    with pytest.raises(ValueError, match="needs the reward language model"):
        InfillingProblem(tok, begin, "she ate the cake .")
    problem = InfillingProblem(tok, begin, "she ate the cake .", lm=lm, grammar=grammar)
    with pytest.raises(ValueError, match=rf"must lie in \[0, {tok.vocab_size}\)"):
        problem.log_reward(torch.full((2, 7), tok.vocab_size + 3))
    with pytest.raises(ValueError, match=r"middles must be \[B, 7\]"):
        problem.log_reward(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="needs its context"):
        shipped["prior"](torch.zeros(1, 7, dtype=torch.long))
    text = domains.get("text")
    with pytest.raises(KeyError, match="heldout-N"):
        text.make_target("story-3")
    with pytest.raises(CheckpointError, match="not found"):
        io.load_denoiser("/nonexistent/prior.safetensors")


def test_the_domain_builds_a_trainer_whose_posterior_starts_at_the_prior(shipped):
    text = domains.get("text")
    problem = text.make_target("oracle-0", beta=2.0)
    assert problem.reward == "oracle" and problem.beta == 2.0
    trainer = text.make_trainer(problem, text.train_config(fast=True).with_steps(1))
    assert len(trainer.replay) > 0  # the prior's trajectories, for off-policy replay
    from rtb_lab.diffusion import trajectory_log_prob

    traj = trainer.sample(8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(trajectory_log_prob(trainer.posterior, trainer.family, traj),
                          trajectory_log_prob(trainer.prior, trainer.family, traj), atol=1e-5)
    record = trainer.train_step()
    assert set(record) >= {"loss", "log_z"}


def test_commands_train_save_and_reload_and_ctrl_c_keeps_the_network(tmp_path):
    command = commands()["train-infiller"]
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = tmp_path / "infiller.safetensors"
    args = parser.parse_args(["--steps", "2", "--d-model", "16", "--layers", "1", "--quiet",
                              "--out", str(out)])
    result = command.run(args)
    assert result["trained_steps"] == 2 and result["denoiser_nll"] > 0
    reloaded = io.load_denoiser(out)
    assert reloaded.context_len == 24 + 1 + 8 and not any(
        p.requires_grad for p in reloaded.parameters())
    net = torch.nn.Linear(2, 1)
    calls = {"n": 0}

    def loss_fn(index, generator):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return net(torch.randn(len(index), 2)).square().mean()

    fitted = fit_minibatches(net, loss_fn, 10, 100, 4, 1e-2, 0, "test", progress=False)
    assert fitted.trained_steps == 3


def test_a_story_set_averages_each_story_run_over_distinct_held_out_beginnings(shipped):
    from rtb_lab.domains.text import compare
    from rtb_lab.domains.text.domain import distinct_beginnings
    from rtb_lab.domains.text.infilling import StorySet

    text = domains.get("text")
    chosen = distinct_beginnings(3)
    beginnings = [tuple(shipped["test"].stories[i].beginning) for i in chosen]
    assert len(set(beginnings)) == 3 and chosen[0] == 0
    story_set = text.make_target("oracle-set-2")
    assert isinstance(story_set, StorySet) and len(story_set.problems) == 2
    averaged, x = compare.run_method("prior", story_set, compare.FAST_BUDGET, seed=1)
    singles = [compare.run_method("prior", problem, compare.FAST_BUDGET, seed=1)[0]
               for problem in story_set.problems]
    for name in ("tv", "oracle_log_r", "bleu4"):
        assert averaged[name] == pytest.approx((singles[0][name] + singles[1][name]) / 2)
    assert x.shape == (compare.FINAL_SAMPLES, 7)
    with pytest.raises(KeyError, match="1 to 56 stories"):
        text.make_target("heldout-set-57")
    with pytest.raises(ValueError, match="comparison target"):
        text.make_trainer(story_set)
