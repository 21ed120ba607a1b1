# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Text infilling: RTB on tokens
#
# A story has five sentences. You see the **beginning** (sentences 1–3) and the
# **ending** (sentence 5); write the **middle** (sentence 4) so that the ending makes
# sense. Two models are at hand:
#
# - a **prior** $p_\theta(m \mid b)$ that writes middles from the beginning alone: a
#   *masked diffusion* language model, which starts from a fully masked sentence and
#   reveals one token per step;
# - a **reward** $r(m) = p_{\text{LM}}(e \mid b, m)$: a small left-to-right language
#   model's probability of the ending after beginning and middle (the paper uses GPT-2).
#
# The posterior $p_\theta(m \mid b)\, r(m)^\beta / Z$ is RTB's target, exactly as for
# pixels: the loss, the trainer and the off-policy tricks are the same; only the
# transition family (a categorical step over the vocabulary) is new. The stories come
# from a **story grammar** with real causal structure, so the grammar's own
# $p(e \mid b, m)$ (an *oracle* reward) and the exact posterior over middles are known.

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("rtb_lab") is None:  # Colab / Binder newcomers: install first
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "rtb-lab[notebooks] @ git+https://github.com/rtb-lab/rtb-lab"], check=True)

# %matplotlib inline
from dataclasses import replace

import torch
from IPython.display import display

import rtb_lab
from rtb_lab.compare import compare
from rtb_lab.diffusion import sample_trajectories
from rtb_lab.domains import text
from rtb_lab.domains.text.compare import FAST_BUDGET
from rtb_lab.domains.text.trainer import INFILL_CONFIG, bind_prior
from rtb_lab.viz import text as text_views
from rtb_lab.viz.widgets import figure_png

device = rtb_lab.get_device()  # the text models are small: this notebook runs on the CPU
FAST = rtb_lab.is_fast()
print(f"device: {device} (unused here) · fast mode: {FAST}")
rtb_lab.seed_everything(0)
tok, prior, lm = text.load_tokenizer(), text.load_denoiser(), text.load_lm()
grammar = text.StoryGrammar.default()
train, test = text.corpus()
family = text.make_family(tok)
print(f"{len(train)} training stories, {len(test)} held-out ones (their beginnings never "
      f"occur in training); {tok.vocab_size} tokens; middles of {family.num_steps} tokens")

# %% [markdown]
# ## 1. The stories and their causal structure
# A character wants something, prepares, meets an obstacle (sentences 1–3). The middle
# is an action: a fix for *this* obstacle, a generic action (ask for help), something
# irrelevant, or giving up. The ending is a success or a failure, drawn with a
# probability that depends on the middle. So the ending carries information about the
# middle, which is what the posterior exploits.

# %%
story = test.stories[0]
print("\n".join(story.sentences), "\n")
for middle, p in sorted(grammar.middles(story.beginning).items(), key=lambda kv: -kv[1]):
    success = sum(q for e, q in grammar.endings(story.beginning, middle).items()
                  if e in grammar.success_endings(story.beginning))
    print(f"p(m | b) = {p:.3f}   p(success | b, m) = {success:.2f}   {middle}")

# %% [markdown]
# ## 2. Pick a story
# Choose a held-out story or type your own beginning (three sentences) and ending, in
# the grammar's words. Then run the cells below.

# %%
picker = text_views.StoryPicker(test.stories, lambda beginning, ending, middle:
                                text.InfillingProblem(tok, beginning, ending, lm=lm,
                                                      grammar=grammar, reference=middle))
display(picker)

# %% [markdown]
# ## 3. The prior, one token at a time
# Each step reveals one masked position, chosen at random, and draws its token from
# the network's categorical distribution. Drag the slider to see other samples; bold
# marks the token revealed at that step, `·` the padding that ends a short sentence.

# %%
problem = picker.problem
bound = bind_prior(problem, prior)
traj = sample_trajectories(bound, family, 12, (family.num_steps,),
                           generator=torch.Generator().manual_seed(0))
display(text_views.trajectory_widget(traj.states, tok))

# %% [markdown]
# Because a middle has 7 tokens, the probability that the prior writes a given middle
# is a sum over the 7! orders in which it can be revealed: a dynamic programme over
# the subsets of revealed positions computes it **exactly**
# (`rtb_lab.diffusion.exact_log_marginal`). Here it is beside the grammar's own
# $p(m \mid b)$: the prior learned the grammar from 20,000 stories, not perfectly.

# %%
exact = problem.exact(bound, family)
texts, ids = problem.candidates()
sentences = problem.sentences
in_grammar = grammar.middles(sentences) if sentences in set(grammar.beginnings()) else {}
bins = {"prior p_θ(m | b)": exact["prior"]}
if in_grammar:
    bins["grammar p(m | b)"] = torch.tensor([in_grammar[t] for t in texts] + [0.0])
display(figure_png(text_views.distribution_figure(texts, bins, "what the prior writes")))

# %% [markdown]
# ## 4. The reward and the exact posterior
# $\log r(m) = \log p_{\text{LM}}(e \mid b, m)$, scored after the middle. The slider
# shows the exact posterior over the candidate middles for any β, computed from the
# prior's exact probabilities: no training needed, so it follows the slider live.
# Large β sharpens towards the middles that best explain the ending; small β stays near
# the prior.

# %%
log_reward = problem.log_reward(ids)
display(text_views.exact_beta_widget(texts, exact["prior"][:-1].log(), log_reward))

# %% [markdown]
# ## 5. Fine-tune the prior with RTB
# The posterior starts as a copy of the prior. Each step samples middles from it (at
# temperature 1.5: off-policy exploration), mixes in replayed trajectories (the buffer
# starts with the prior's own samples), and minimises the batch variance of
# $\log q(\tau) - \log p(\tau) - \beta \log r(m)$ (VarGrad). Interrupt the cell to stop
# early: the trainer keeps what it learned, and `trainer.train()` continues.

# %%
config = INFILL_CONFIG.with_steps(60) if FAST else INFILL_CONFIG
trainer = text.make_infilling_trainer(problem, prior, replace(config, eval_every=0))
trainer.train()
print({k: round(v, 3) for k, v in trainer.evaluations[-1].items()})

# %%
n_show = 8
prior_x = sample_trajectories(bound, family, n_show, (family.num_steps,),
                              generator=torch.Generator().manual_seed(1)).x
rtb_x = trainer.sample(n_show, generator=torch.Generator().manual_seed(1)).x
text_views.show_middles({"prior": problem.decode(prior_x), "RTB posterior": problem.decode(rtb_x)},
                        {"prior": problem.log_reward(prior_x),
                         "RTB posterior": problem.log_reward(rtb_x)})
print("the true middle:", problem.reference)

# %% [markdown]
# The RTB posterior's probabilities are exact too (the same dynamic programme, run on
# the fine-tuned network): here are prior, exact posterior and RTB side by side.

# %%
rtb_bins = text.policy_bins(trainer.posterior, family, ids)
figure = text_views.distribution_figure(
    texts, {"prior": exact["prior"], "exact posterior": exact["posterior"], "RTB": rtb_bins},
    f"TV(RTB, exact) = {text.binned_tv(rtb_bins, exact['posterior']):.3f}, "
    f"TV(prior, exact) = {text.binned_tv(exact['prior'], exact['posterior']):.3f}")
display(figure_png(figure))

# %% [markdown]
# ## 6. RTB against the paper's baselines
# On one held-out story, at the same budget of network evaluations: the prior alone;
# the reward LM prompted with the beginning; the LM prompted with ending and beginning
# (a format it never saw in training, like GPT-2 in the paper); best-of-n reranking of
# prior samples by the reward; and a supervised infiller trained on true middles given
# both sides (the upper bound). `tv` is the exact posterior's distance (binned over the
# candidate middles); `oracle_log_r` is the grammar's log p(ending | beginning, middle).

# %%
methods = ("rtb", "prior", "prompt", "prompt-ending", "best-of-n", "supervised")
table = compare("text", methods=methods, seeds=1,
                budget=FAST_BUDGET // 3 if FAST else FAST_BUDGET, target="heldout-0",
                progress=print)
print(table.to_markdown())
