# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Offline control: a diffusion behaviour prior and a Q-function reward
#
# Offline RL learns a policy from a fixed data set of someone else's behaviour, with no
# new interaction. Stray far from the data and the learned values lie; stay on it and
# you only copy. The classic compromise is the **KL-regularised optimal policy**
#
# $$\pi^*(a \mid s) \;\propto\; \mu(a \mid s)\, \exp\big(Q(s, a) / \alpha\big),$$
#
# where $\mu$ is the behaviour policy of the data and $Q$ a value function learned
# from it. That is RTB's target $p(x)\, r(x)^\beta$ with the prior $p = \mu(\cdot \mid s)$
# (here a **diffusion model over actions**, conditioned on the state), the reward
# $r = e^{Q}$ and $\beta = 1/\alpha$. Small α trusts Q; large α stays with the data.
#
# The task is gymnasium's Pendulum-v1: swing a pendulum up and balance it, with a
# torque in [-2, 2]. Its action is one number, so $\pi^*$ at a state can be drawn
# exactly on a grid and RTB checked against it.

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("rtb_lab") is None:  # Colab / Binder newcomers: install first
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "rtb-lab[notebooks,control] @ git+https://github.com/rtb-lab/rtb-lab"],
                   check=True)

# %matplotlib inline
import math

import matplotlib.pyplot as plt
import torch
from IPython.display import display

import rtb_lab
from rtb_lab import domains
from rtb_lab.compare import compare
from rtb_lab.domains.control import compare as control_compare
from rtb_lab.domains.control.data import QUALITIES, load_dataset
from rtb_lab.domains.control.policy import POLICY_CONFIG, make_policy_trainer
from rtb_lab.domains.control.rollout import rollout
from rtb_lab.viz import control as views
from rtb_lab.viz.widgets import figure_png

device = rtb_lab.get_device()  # the networks are tiny: this notebook runs on the CPU
FAST = rtb_lab.is_fast()
print(f"device: {device} (unused here) · fast mode: {FAST}")
rtb_lab.seed_everything(0)
task = domains.get("control").make_target("pendulum-medium")
data = load_dataset("pendulum", "medium")
bound = data.spec.action_bound
print(f"{len(data)} transitions, {len(data.episode_returns())} episodes, mean return "
      f"{data.episode_returns().mean():.0f} (normalised {data.normalised_score():.0f}: 0 is "
      "random, 100 an expert)")

# %% [markdown]
# ## 1. The data sets
# Four qualities, as in D4RL: uniform random actions; a *medium* policy (an SAC
# snapshot partway through training); the replay buffer up to that snapshot; and the
# trained SAC (*expert*). We learn from **medium**: it swings up about half the time.

# %%
figure, (returns_ax, states_ax) = plt.subplots(1, 2, figsize=(10, 3.4))
for quality in QUALITIES:
    returns_ax.hist(load_dataset("pendulum", quality).episode_returns().numpy(), bins=30,
                    alpha=0.6, label=quality)
returns_ax.set(xlabel="episode return", ylabel="episodes", title="returns per data set")
returns_ax.legend()
shown = data.states[::20]
theta = torch.atan2(shown[:, 1], shown[:, 0])
points = states_ax.scatter(theta, shown[:, 2], c=data.actions[::20, 0], s=3, cmap="coolwarm")
states_ax.set(xlabel="angle θ (0 = upright)", ylabel="velocity θ'",
              title="medium: where it goes, and its torque")
figure.colorbar(points, ax=states_ax, label="torque")
display(figure_png(figure))
plt.close(figure)

# %% [markdown]
# ## 2. The behaviour prior μ(a | s) and the Q-function
# μ is a small DDPM over the (normalised) action, conditioned on the state, sampled in
# 20 denoising steps; it was fitted to the medium data (`rtb-lab train-prior control`).
# Q was learned by IQL (Kostrikov et al., 2022, through d3rlpy: `rtb-lab train-reward
# control`). Both are shipped. Below, at three states, μ's actions (histogram) and
# Q(s, a) across actions (dotted, right axis).

# %%
states = {"hanging at rest": views.pendulum_state(math.pi, 0.0),
          "swinging through the side": views.pendulum_state(math.pi / 2, 2.0),
          "near the top": views.pendulum_state(0.3, -1.0)}
for name, state in states.items():
    figure, _ = views.posterior_at(task.prior, task.q, None, state, alpha=1.0, bound=bound,
                                   n=5000 if FAST else 20_000)
    figure.update_layout(title=f"{name}: μ, Q and π* at α = 1")
    display(figure)

# %% [markdown]
# ## 3. The posterior under an α slider
# The exact π* at a state (red) is the prior's actions reweighted by $e^{Q/\alpha}$: a
# bank of 20,000 prior actions, exact up to Monte Carlo error (its effective sample
# size is in the title). Blue is the shipped **RTB policy**: one network for every
# state and every α in [0.1, 10] (`rtb-lab train-amortised control`), trained by
# VarGrad on 64 actions per (state, α) and guided by ∇Q with learned per-step scales,
# as in the paper. Move the sliders: the RTB policy follows π* without retraining.

# %%
display(views.alpha_widget(task.prior, task.q, task.policy, bound, alpha=1.0,
                           n=5000 if FAST else 20_000))

# %% [markdown]
# ## 4. Rollouts: RTB against behaviour cloning
# Behaviour cloning acts with μ itself. RTB acts with π* at α = 10 (the comparison's
# tuned value). Same start, same seeds; press play.

# %%
runs = {name: rollout(control_compare.method_act(method, task), "pendulum", 1, seed=3)
        for name, method in (("BC (μ)", "bc"), ("RTB α=10", "rtb"))}
for name, run in runs.items():
    print(f"{name}: return {run.returns[0]:.0f}")
display(views.pendulum_animation({name: run.observations[0] for name, run in runs.items()}))

# %% [markdown]
# ## 5. The returns table
# Every method acts with networks trained once on the medium data: RTB at three α,
# behaviour cloning, IQL's own policy, TD3+BC (d3rlpy), and Q-guided diffusion (the
# prior's noise shifted by the gradient of Q at its clean estimate: the control
# analogue of classifier guidance, biased). Seeds are evaluation seeds; `normalised` is
# D4RL's score (0 random, 100 expert).
#
# What the full comparison measured (3 seeds × 10 episodes, docs/control.md): a mild
# tilt, α = 10, beats behaviour cloning by about 12 normalised points and matches IQL;
# a strong one (α ≤ 3) does *worse* than μ. That is not RTB failing to sample π*
# (section 3 shows it does): the exact π* for this Q-function does worse too at small
# α (measured by importance resampling). Q's preference between actions (a few units
# against values near −400) is within its error, so trusting it a lot hurts. The two
# fast-mode episodes below are too few to tell these apart: Pendulum's returns depend
# mostly on where an episode starts.

# %%
table = compare("control", seeds=1 if FAST else 3, budget=2 if FAST else 5,
                target="pendulum-medium", progress=print)
print(table.to_markdown())

# %% [markdown]
# ## 6. Train an RTB policy yourself
# Here for one α only, on the three states above, from the prior: a hundred steps
# move it most of the way onto π*. Interrupt the cell to stop early; `trainer.train()`
# continues.

# %%
alpha = 1.0
trainer = make_policy_trainer(task.prior, task.q, torch.stack(list(states.values())),
                              POLICY_CONFIG.with_steps(40 if FAST else 300),
                              alpha_range=(alpha, alpha))
trainer.train()
for name, state in states.items():
    figure, stats = views.posterior_at(task.prior, task.q, trainer.posterior, state, alpha,
                                       bound, n=5000 if FAST else 20_000)
    figure.update_layout(title=f"{name}: {figure.layout.title.text}")
    display(figure)
