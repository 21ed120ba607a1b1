"""The text domain's comparison on one story: RTB against the paper's baselines.

- ``rtb``: the prior fine-tuned by RTB on this story's reward (`make_infilling_trainer`);
- ``prior``: the masked-diffusion prior alone (sees the beginning only);
- ``prompt``: the reward LM continuing ``<bos> beginning <sep>`` (beginning only);
- ``prompt-ending``: the reward LM continuing ``<bos> ending <sep> beginning <sep>``: the
  ending in the prompt, a format the LM was never trained on (as for GPT-2 in the paper);
- ``best-of-n``: each output is the highest-reward of n prior samples, n set by the budget;
- ``supervised``: a denoiser trained on true middles given beginning and ending (the
  upper bound: it was taught the task the others must infer).

Every network row (prior, posterior, LM, infiller) is charged to the budget. Metrics:
the exact-posterior TV (binned: the grammar's candidate middles and one bin for the
rest), the oracle log-reward log p_grammar(ending | beginning, middle), the LM
log-reward, BLEU-4 and GLEU against the true middle, distinct-2 and self-BLEU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor
from tqdm.auto import tqdm

from rtb_lab.compare import EvalCounter, train_within
from rtb_lab.diffusion import sample_trajectories
from rtb_lab.domain import MethodRunner
from rtb_lab.domains.text import io
from rtb_lab.domains.text.infilling import BoundContext, InfillingProblem, StorySet, binned_tv
from rtb_lab.domains.text.metrics import bleu4, distinct_n, gleu, self_bleu
from rtb_lab.domains.text.sequences import continue_prompt, prompt_blocks
from rtb_lab.domains.text.trainer import (
    INFILL_CONFIG,
    bind_prior,
    make_family,
    make_infilling_trainer,
)
from rtb_lab.domains.text.training import make_context

METHODS = ("rtb", "prior", "prompt", "prompt-ending", "best-of-n", "supervised")
METRICS = ("tv", "oracle_log_r", "lm_log_r", "bleu4", "gleu", "distinct2", "self_bleu",
           "evals", "seconds")
PLOT_METRICS = ("tv", "oracle_log_r", "bleu4", "distinct2")
FINAL_SAMPLES = 500
# About 1,100 rows per RTB step (32 new trajectories, 64 scored under prior and posterior,
# 7 steps each) plus the prior's replay trajectories and the final samples: the fast
# budget is RTB's 200-step recipe, the full one about 4x that.
FAST_BUDGET = 250_000
FULL_BUDGET = 1_000_000


def _sample_policy(policy, problem: InfillingProblem, n: int, seed: int,
                   chunk: int = 4096) -> Tensor:
    family, generator = make_family(problem.tok), torch.Generator().manual_seed(seed)
    return torch.cat([sample_trajectories(policy, family, min(chunk, n - start),
                                          (problem.middle_len,), generator=generator).x
                      for start in range(0, n, chunk)])


def _run_rtb(problem, budget, seed, counter, nets):
    # train_within fits the schedule to the budget
    trainer = make_infilling_trainer(problem, nets["prior"], replace(INFILL_CONFIG, seed=seed))
    return train_within(trainer, budget, counter, FINAL_SAMPLES).traj.x


def _run_prior(problem, budget, seed, counter, nets):
    return _sample_policy(bind_prior(problem, nets["prior"]), problem, FINAL_SAMPLES, seed)


def _run_best_of_n(problem, budget, seed, counter, nets):
    # each candidate costs T denoiser rows and (LM reward) one LM row: both charged
    per_candidate = make_family(problem.tok).num_steps + (problem.reward == "lm")
    n = max(1, budget // (FINAL_SAMPLES * per_candidate))
    x = _sample_policy(bind_prior(problem, nets["prior"]), problem, n * FINAL_SAMPLES, seed)
    scores = torch.cat([problem.log_reward(part) for part in x.split(4096)]).view(
        FINAL_SAMPLES, n)
    best = scores.argmax(1)
    return x.view(FINAL_SAMPLES, n, -1)[torch.arange(FINAL_SAMPLES), best]


def _run_supervised(problem, budget, seed, counter, nets):
    context = make_context(problem.tok, problem.beginning_ids, problem.ending_ids)[0]
    return _sample_policy(BoundContext(nets["infiller"], context), problem, FINAL_SAMPLES, seed)


def _run_prompt(with_ending: bool):
    def run(problem, budget, seed, counter, nets):
        n = FINAL_SAMPLES
        blocks = prompt_blocks(problem.tok, problem.beginning_ids.expand(n, -1),
                               problem.ending_ids.expand(n, -1) if with_ending else None)
        return continue_prompt(nets["lm"], problem.tok, blocks, problem.middle_len,
                               generator=torch.Generator().manual_seed(seed))
    return run


RUNNERS: dict[str, Callable] = {"rtb": _run_rtb, "prior": _run_prior,
                                "prompt": _run_prompt(False), "prompt-ending": _run_prompt(True),
                                "best-of-n": _run_best_of_n, "supervised": _run_supervised}


def bins_of(problem: InfillingProblem, x: Tensor) -> Tensor:
    """Empirical mass of samples x [N, L] on each candidate middle and on the rest."""
    _, ids = problem.candidates()
    match = (x[:, None, :] == ids[None]).all(-1)  # [N, M]
    mass = match.float().mean(0)
    return torch.cat([mass, (1 - mass.sum()).view(1)])


def score_middles(problem: InfillingProblem, x: Tensor, truth: dict | None,
                  reference: str | None, lm=None) -> dict[str, float]:
    """The comparison's sample metrics for middles x [N, L] (token ids)."""
    texts = problem.decode(x)
    metrics = {"distinct2": distinct_n(texts, 2), "self_bleu": self_bleu(texts)}
    if truth is not None:
        metrics["tv"] = binned_tv(bins_of(problem, x), truth["posterior"])
    if problem.grammar is not None:
        oracle = InfillingProblem(problem.tok, problem.beginning, problem.ending,
                                  grammar=problem.grammar, reward="oracle")
        metrics["oracle_log_r"] = float(oracle.log_reward(x).mean())
    if lm is not None:
        scored = InfillingProblem(problem.tok, problem.beginning, problem.ending, lm=lm)
        metrics["lm_log_r"] = float(scored.log_reward(x).mean())
    if reference is not None:
        metrics["bleu4"], metrics["gleu"] = bleu4(texts, reference), gleu(texts, reference)
    return metrics


_TRUTHS: dict[tuple, dict] = {}


def _exact_truth(problem: InfillingProblem, prior) -> dict:
    """The story's exact posterior under the shipped prior, once per story, reward and β
    (every method and seed of a comparison is scored against the same one)."""
    key = (problem.beginning, problem.ending, problem.reward, problem.beta)
    if key not in _TRUTHS:
        _TRUTHS[key] = problem.exact(bind_prior(problem, prior), make_family(problem.tok))
    return _TRUTHS[key]


def run_method(method: str, problem: InfillingProblem | StorySet, budget: int, seed: int
               ) -> tuple[dict[str, float], Tensor]:
    """One method on one story: (metrics, its middles [N, L]); BLEU against
    ``problem.reference`` when the story has one. On a `StorySet`, the method runs on
    every story (same seed, `budget` each): metrics are the mean over stories ("evals"
    and "seconds" too, per story), the middles those of the first story."""
    if isinstance(problem, StorySet):
        runs = [run_method(method, story, budget, seed)
                for story in tqdm(problem.problems, desc=method, leave=False)]
        return {name: sum(metrics[name] for metrics, _ in runs) / len(runs)
                for name in runs[0][0]}, runs[0][1]
    torch.manual_seed(seed)
    nets = {"prior": io.load_denoiser(), "lm": io.load_lm(),
            "infiller": io.load_denoiser(asset=io.INFILLER_ASSET)}  # fresh: counted per run
    counter = EvalCounter()
    for net in nets.values():
        counter.attach(net)
    if problem.lm is not None:  # the reward's LM calls are charged too
        problem = replace(problem, lm=nets["lm"])
    started = time.perf_counter()
    x = RUNNERS[method](problem, budget, seed, counter, nets)
    seconds = time.perf_counter() - started
    with counter.paused():
        truth = _exact_truth(problem, nets["prior"])
        metrics = score_middles(problem, x, truth, problem.reference, nets["lm"])
    return {**metrics, "evals": float(counter.count), "seconds": seconds}, x


def method_runner(method: str) -> MethodRunner:
    """``run(problem, budget, seed) -> (metrics, middles)`` for the harness."""
    return lambda problem, budget, seed: run_method(method, problem, budget, seed)
