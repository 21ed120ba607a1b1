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
# # 01 · Relative Trajectory Balance on 2D mixtures
#
# In 2D everything is known, so every claim can be checked against the truth:
#
# 1. the prior, a reward and the **exact posterior** on a grid;
# 2. why **naive guidance is biased**;
# 3. the **RTB objective** and why it needs no backprop through the sampler;
# 4. training with a **live dashboard**; on-policy against **off-policy** exploration;
# 5. **your own reward**: pick modes and β, compare RTB with the exact answer;
# 6. **trajectories**: particles over time, and the per-step log q/p ratio;
# 7. a posterior **amortised over β**: one network, any β, instantly.

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("rtb_lab") is None:  # Colab / Binder newcomers: install first
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "rtb-lab[notebooks] @ git+https://github.com/rtb-lab/rtb-lab"], check=True)

# %matplotlib inline
import torch
from dataclasses import replace
from IPython.display import display

import rtb_lab
from rtb_lab.baselines.guidance import sample_guided
from rtb_lab.domains import toy2d
from rtb_lab.domains.toy2d import amortised as toy2d_amortised
from rtb_lab.viz import animate, plots, widgets

device = rtb_lab.get_device()
FAST = rtb_lab.is_fast()
print(f"device: {device} · fast mode: {FAST}")
rtb_lab.seed_everything(0);

# %% [markdown]
# ## 1. Prior, reward, exact posterior
# The prior network runs 100 Euler–Maruyama steps from $x_0 = 0$,
# $x_{k+1} = x_k + f(x_k, t_k)\,\Delta t + \sigma\sqrt{\Delta t}\,\varepsilon_k$, with $\sigma^2 = 5$,
# and was trained so that $x_{100}$ follows a mixture of 25 Gaussians. The paper's reward
# $r(x) = p_9(x)/p_{25}(x)$ keeps 9 modes with weights $\{4,10,4,5,10,5,4,15,4\}/61$.
# On a grid we integrate the truth directly:
#
# $$Z = \int p(x)\, r(x)^\beta\, dx, \qquad p^{\text{post}}(x) = p(x)\, r(x)^\beta / Z .$$

# %%
prior = toy2d.load_prior(device=device)
family = toy2d.make_family()
target = toy2d.get_target("25to9", beta=1.0)
truth = target.truth()
print(f"exact log Z = {truth.log_z:.4f}; modes with mass: {len(truth.active_modes)}")
exact_x = truth.sample(2000, torch.Generator().manual_seed(0))
prior_x = rtb_lab.sample_trajectories(prior, family, 2000, (2,), device=device).x.cpu()
plots.compare_panels({"prior": prior_x, "exact posterior": exact_x}, truth)

# %% [markdown]
# ## 2. Naive guidance is biased
# Classifier guidance adds $\sigma^2 \nabla_x \log r$ to the prior's drift. But the right
# correction at time $t$ is $\nabla_x \log \mathbb{E}[r(x_1)^\beta \mid x_t]$: an expectation
# over all futures of $x_t$, not $r$ at the noisy point. Evaluating $r$ at $x_t$ (or at a
# one-shot denoised guess, DPS) gets the mode weights wrong:

# %%
guided = {f"guidance, {'DPS' if dps else 'noisy x'}": sample_guided(
    prior, family, target.checked_log_reward, 2000, denoise=dps,
    generator=torch.Generator().manual_seed(1)).x for dps in (False, True)}
guided_metrics = {name: target.evaluate(x) for name, x in guided.items()}
plots.compare_panels({"exact posterior": exact_x, **guided}, truth, guided_metrics)

# %% [markdown]
# ## 3. The RTB objective
# Let $q_\phi$ be a trainable copy of the prior. For a trajectory $\tau = (x_0, \dots, x_T)$,
#
# $$\delta(\tau) = \log Z + \sum_k \log q_\phi(x_{k+1}\mid x_k) - \sum_k \log p(x_{k+1}\mid x_k) - \beta \log r(x_T),
# \qquad \mathcal{L} = \mathbb{E}_\tau\, \delta(\tau)^2 .$$
#
# If $\delta = 0$ for every trajectory, then $q_\phi(\tau) = p(\tau)\, r(x_T)^\beta / Z$, and
# summing over the paths that end in $x$ gives $q_\phi(x) = p^{\text{post}}(x)$.
# The loss only needs log-densities of a *given* trajectory, so trajectories are plain
# data: they can come from any policy (noisier exploration, a replay buffer) and no
# gradient flows through the sampler. rtb-lab scores all $T$ steps in one batched
# network call. At step 0, $q_\phi = p$ and $\delta = \log Z - \beta \log r$; the trainer
# starts $\log Z$ at the importance estimate $\log \frac1N\sum_i r(x^i)^\beta$, $x^i \sim p$.
#
# ## 4. Training, live
# The dashboard is attached through the trainer's callbacks (the trainer itself knows
# nothing about widgets). Interrupting the cell (■) stops cleanly; run
# `trainer.train()` again to continue.

# %%
config = rtb_lab.TrainConfig(seed=0).fast()
live_config = config.with_steps(100) if FAST else config
dashboard = widgets.TrainingDashboard(truth, every=25)
display(dashboard.widget)
trainer = toy2d.finetune(target, live_config, device=device,
                         callbacks=[dashboard.on_step], eval_callbacks=[dashboard.on_eval])

# %% [markdown]
# In fast mode the live run is short; the shipped posterior (trained to convergence)
# is shown beside it, with its TV and the exact log Z.

# %%
amortised, meta = toy2d_amortised.load_amortised(device=device)
shipped_x = toy2d_amortised.sample_posterior(amortised, 1.0, 4000)
results = {f"live ({trainer.step} steps)": trainer.evaluations[-1],
           "shipped": target.evaluate(shipped_x)}
for name, metrics in results.items():
    print(f"{name:>18}: {widgets.format_metrics(metrics)}")

# %% [markdown]
# ### On-policy against off-policy
# Same number of steps, same seed; the only difference is whether training
# trajectories are sampled with extra noise (exploration std 0.5 per step, decayed to 0).
# Exploration finds the modes the current posterior would miss.

# %%
steps = 150 if FAST else 400
runs = {name: toy2d.finetune(target, replace(config, explore=e).with_steps(steps), device=device)
        for name, e in [("on-policy", 0.0), ("off-policy", 0.5)]}
plots.compare_panels({name: run.sample(2000).x.cpu() for name, run in runs.items()}, truth,
                     {name: run.evaluations[-1] for name, run in runs.items()})

# %% [markdown]
# ## 5. Your own reward
# Pick modes of the prior and β; the button fine-tunes RTB for that reward
# ($r = p_{\text{picked}}/p$) and shows it beside the exact posterior with both TVs.
# Below we pick four corners from Python; try your own choice in the widget.

# %%
picker_config = config.with_steps(120 if FAST else 500)
picker = widgets.ModePicker(target.prior.means,
                            widgets.rtb_vs_exact_view(target.prior, picker_config),
                            action="train RTB and compare")
picker.modes.value = (0, 4, 20, 24)  # the corners (±10, ±10)
picker.beta_slider.value = 1.0
display(picker.widget)
picker.apply()

# %% [markdown]
# ## 6. Trajectories
# Each particle follows one trajectory of the trained posterior; its colour is the mode
# where it ends. Press ▶ to play.

# %%
traj = toy2d_amortised.sample_trajectory(amortised, 1.0, 300)
animate.trajectory_animation(traj, truth.centers)

# %% [markdown]
# Where does the posterior depart from the prior? The per-step log-ratio
# $\log q_\phi(x_{k+1}\mid x_k) - \log p(x_{k+1}\mid x_k)$ along trajectories, and its running
# sum, which at the end equals $\beta \log r(x_T) - \log Z$ when $\delta = 0$.

# %%
with torch.no_grad():
    log_q = rtb_lab.step_log_probs(amortised, family, traj.to(device)).cpu()
    log_p = rtb_lab.step_log_probs(prior, family, traj.to(device)).cpu()
animate.log_ratio_figure(log_q, log_p)

# %% [markdown]
# ## 7. One posterior for every β
# Beyond the paper: the shipped posterior takes $\log\beta$ as an input and was trained
# once over β ∈ [0.25, 4] (VarGrad per β group). Its distance to the exact posterior:

# %%
print(widgets.format_metrics(toy2d_amortised.evaluate_betas(amortised, target)))
panel = widgets.BetaPanel(lambda b, n: toy2d_amortised.sample_posterior(amortised, b, n),
                          lambda b: target.with_beta(b).truth(200),
                          betas=tuple(meta["beta_range"]))
panel.set_beta(0.5)
display(panel.widget)

# %% [markdown]
# **Where next:** `rtb_lab.domains.toy2d.custom_target(prior, log_r, beta)` takes any
# mixture prior and any reward; `rtb-lab finetune toy2d --help` runs the same from a shell.
