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
# # 00 · Quickstart: from a prior to a posterior in five minutes
#
# A diffusion model gives us a **prior** $p(x)$. A **reward** $r(x) \ge 0$ says what
# we like. Relative Trajectory Balance (RTB) fine-tunes a copy of the prior into a
# model of the **posterior**
#
# $$p^{\text{post}}(x) \propto p(x)\, r(x)^\beta ,$$
#
# exactly, without ever backpropagating through the sampler. This notebook is the
# five-minute tour; `01_toy_2d` is the full tutorial.

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("rtb_lab") is None:  # Colab / Binder newcomers: install first
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "rtb-lab[notebooks] @ git+https://github.com/rtb-lab/rtb-lab"], check=True)

# %matplotlib inline
import torch
from matplotlib.figure import Figure
from IPython.display import display

import rtb_lab
from rtb_lab.domains import toy2d
from rtb_lab.domains.toy2d import amortised as toy2d_amortised
from rtb_lab.viz import plots, widgets

device = rtb_lab.get_device()
FAST = rtb_lab.is_fast()
print(f"device: {device} · fast mode: {FAST}")
rtb_lab.seed_everything(0);

# %% [markdown]
# ## 1. The prior
# Our prior is a small network that turns the point $x_0 = 0$ into a sample in
# 100 noisy steps (an Euler–Maruyama discretisation of $dx = f(x,t)\,dt + \sigma\, dW$).
# It was trained to produce a mixture of 25 Gaussians on a grid.

# %%
prior = toy2d.load_prior(device=device)
target = toy2d.get_target("25to9")      # prior mixture + reward + beta
prior_x = rtb_lab.sample_trajectories(prior, toy2d.make_family(), 2000, (2,), device=device).x

# %% [markdown]
# ## 2. The reward
# The paper's reward keeps 9 of the 25 modes and re-weights them:
# $r(x) = p_9(x) / p_{25}(x)$. At $\beta = 1$ the posterior is exactly the 9-mode
# mixture, and because everything here is known we can compute it on a grid.

# %%
truth = target.truth()
figure = Figure(figsize=(8, 3.6), layout="constrained")
left, right = figure.subplots(1, 2)
plots.plot_samples(left, prior_x.cpu(), truth, title="prior samples over the posterior")
plots.plot_density(right, truth, filled=True).set_title(f"exact posterior (log Z = {truth.log_z:.3f})")
figure

# %% [markdown]
# ## 3. RTB in a few lines
# For a trajectory $\tau$ ending in $x$, RTB asks
# $\log Z + \log q_\phi(\tau) = \log p(\tau) + \beta \log r(x)$ and minimises the squared
# difference $\delta(\tau)^2$ over trajectories from *any* policy (here: the posterior with
# extra noise for exploration). The trainer does exactly that:

# %%
config = rtb_lab.TrainConfig(seed=0).fast()
config = config.with_steps(120) if FAST else config  # fast mode: a short live run
trainer = toy2d.finetune(target, config, device=device)
print(widgets.format_metrics(trainer.evaluations[-1]))

# %% [markdown]
# Before and after. In fast mode the live run above is short, so we also load the
# shipped posterior that was trained to convergence (an amortised one: it takes β as
# an input, see below) and show it beside the live run.

# %%
amortised, meta = toy2d_amortised.load_amortised(device=device)
shipped_x = toy2d_amortised.sample_posterior(amortised, 1.0, 2000)
live_x = trainer.sample(2000).x.cpu()
plots.compare_panels({"prior": prior_x.cpu(), f"RTB, {trainer.step} live steps": live_x,
                      "RTB, shipped": shipped_x}, truth)

# %% [markdown]
# ## 4. One slider: β
# β sharpens ($\beta > 1$) or flattens ($\beta < 1$) the reward. The shipped posterior was
# trained once for every β in [0.25, 4], so moving the slider samples instantly; the
# label shows the distance (TV of the mode weights) to the exact posterior at that β.

# %%
panel = widgets.BetaPanel(lambda beta, n: toy2d_amortised.sample_posterior(amortised, beta, n),
                          lambda beta: target.with_beta(beta).truth(200),
                          betas=tuple(meta["beta_range"]), num_samples=2000)
panel.set_beta(2.0)
display(panel.widget)
print(f"TV to the exact posterior at β = 2: {panel.last_metrics['tv']:.3f}")

# %% [markdown]
# **Next:** `01_toy_2d` explains why this works, why naive guidance does not, and lets
# you pick your own modes and watch trajectories move.
