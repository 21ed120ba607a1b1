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
# # 04 · Inverse problems: enhance a blurry image, with its uncertainty
#
# You observe a degraded image $y = A x + \sigma\varepsilon$: blurred, with holes, or
# shrunk. Many images $x$ explain it; Bayes' rule says which, and how sure to be:
#
# $$p(x \mid y) \;\propto\; p(x)\, \mathcal N(y;\, A x,\, \sigma^2 I).$$
#
# That is exactly RTB's target $p(x)\, r(x)^\beta$ with the **measurement likelihood as
# the reward** and $\beta = 1$; its normaliser $Z = \mathbb E_p[r]$ is the evidence
# $p(y)$. This notebook
#
# 1. builds the degradations and the reward;
# 2. solves a 2D problem where the **exact posterior** is on screen, and shows where
#    DPS, the standard guidance method, goes wrong and RTB does not;
# 3. restores MNIST digits: samples, their **mean and per-pixel uncertainty**, and how
#    calibrated that uncertainty is;
# 4. fine-tunes RTB for one observation.

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("rtb_lab") is None:  # Colab / Binder newcomers: install first
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "rtb-lab[notebooks] @ git+https://github.com/rtb-lab/rtb-lab"], check=True)

# %matplotlib inline
import torch
from IPython.display import display

import rtb_lab
from rtb_lab import inverse
from rtb_lab.domains import mnist, toy2d
from rtb_lab.domains.mnist import data as mnist_data
from rtb_lab.domains.toy2d.trainer import make_trainer
from rtb_lab.inverse import images as inverse_images
from rtb_lab.inverse import metrics as inverse_metrics
from rtb_lab.inverse.toy import measurement_target
from rtb_lab.viz import images as viz_images
from rtb_lab.viz import inverse as inverse_views
from rtb_lab.viz import plots, widgets

device = rtb_lab.get_device()  # the image sections below run on the CPU (DPS is light)
FAST = rtb_lab.is_fast()
print(f"device: {device} · fast mode: {FAST}")
rtb_lab.seed_everything(0);

# %% [markdown]
# ## 1. Degradations and the reward
# Each operator is a linear map $A$ with its adjoint $A^\top$ (checked by the
# dot-product test $\langle Ax, y\rangle = \langle x, A^\top y\rangle$ in the test suite).
# The reward is the Gaussian log-density of the observation:
#
# $$\log r(x) = -\frac{\lVert y - A x\rVert^2}{2\sigma^2} - \frac m2 \log(2\pi\sigma^2).$$

# %%
digits, labels = mnist_data.load_mnist("test", verbose=False).tensors()
shape = tuple(digits.shape[1:])
operators = {
    "blur (width 1.5 px)": inverse.GaussianBlur(shape, width=1.5),
    "box inpainting": inverse.Inpaint(shape, inverse.box_mask(shape, 9, 4, 10, 20)),
    "2x super-resolution": inverse.Downsample(shape, 2),
}
x = digits[:4]
observed = {name: op.show(inverse.measure(op, x, 0.1, torch.Generator().manual_seed(0)))
            for name, op in operators.items()}
display(viz_images.grid_figure({"truth": x, **observed}, ncol=2))

# %% [markdown]
# ## 2. In 2D, against the exact posterior
# The 25-mode prior of notebook 01; we observe only the first coordinate,
# $y = x_1 + \varepsilon$ with $\sigma = 1$. The posterior keeps two columns of modes
# and, inside each mode, moves $x_1$ towards $y$. The grid integral gives it exactly,
# and $\log Z = \log p(y)$.

# %%
target = measurement_target(y=3.0, sigma=1.0)
truth = target.truth()
print(f"exact log p(y) = {truth.log_z:.3f}")
prior2d, family2d = toy2d.load_prior(), toy2d.make_family()
dps_2d = {f"DPS ζ = {z}": inverse.dps_sample(prior2d, family2d, target.log_reward, z, 2000,
                                              (2,), generator=torch.Generator().manual_seed(0))
          for z in (0.03, 0.05)}
metrics_2d = {name: {**target.evaluate(x2), "marginal_tv": truth.marginal_tv(x2)}
              for name, x2 in dps_2d.items()}
plots.compare_panels({"exact posterior": truth.sample(2000), **dps_2d}, truth, metrics_2d)

# %% [markdown]
# DPS steps along $-\zeta\nabla\lVert y - A\hat x(x_t)\rVert$, the measurement error of the
# prior's one-shot guess $\hat x$ of the final point. A small ζ leaves too much mass in
# the far column; a larger one fixes the column weights but drags every mode past the
# truth towards $y$ (look at the $x_1$ position of the right-hand modes). No ζ gets
# both, because the guess is not the average over the futures of $x_t$.
#
# RTB trains a policy whose trajectories end exactly at $p(x)\,r(x)/Z$ (here a short
# run; `tests/test_inverse.py` trains 2000 steps and reaches mode TV ≤ 0.05):

# %%
steps_2d = 300 if FAST else 2000
trainer_2d = make_trainer(target, rtb_lab.TrainConfig(steps=steps_2d, batch_size=128,
                                                      eval_every=0, seed=0))
trainer_2d.train()
rtb_2d = trainer_2d.sample(2000, generator=torch.Generator().manual_seed(0)).x
rtb_metrics = {**target.evaluate(rtb_2d, trainer_2d.current_log_z()),
               "marginal_tv": truth.marginal_tv(rtb_2d)}
plots.compare_panels({"exact posterior": truth.sample(2000), f"RTB ({steps_2d} steps)": rtb_2d},
                     truth, {f"RTB ({steps_2d} steps)": rtb_metrics})
print(f"learned log Z {trainer_2d.current_log_z():.3f} vs exact log p(y) {truth.log_z:.3f}")

# %% [markdown]
# ### Try it: move the observation
# The exact posterior and DPS (ζ = 0.04) for any $y$ and σ, instantly. Where is DPS
# furthest from the truth: $y$ between two columns, or on one?

# %%
display(inverse_views.observation_widget(prior2d, family2d, zeta=0.04))

# %% [markdown]
# ## 3. Restoring digits
# Now the prior is the MNIST DDPM of notebook 02. Pick a test digit, a degradation and
# the noise; DPS draws posterior samples (ζ tuned per degradation on held-out digits,
# see docs/inverse.md). The **mean** is the best guess in squared error; the **per-pixel
# standard deviation** says where the observation leaves the digit open. Calibration is
# the share of true pixels inside their central 90% interval: 0.9 when the uncertainty
# is right, lower when it is overconfident.

# %%
prior = mnist.load_prior()
num_samples = 8 if FAST else 32
display(inverse_views.restore_widget(prior, digits, operators, num_samples))

# %% [markdown]
# ## 4. RTB for one observation
# DPS needs no training but is biased (section 2). RTB learns the posterior itself: a
# LoRA copy of the prior trained on trajectories of its own and of an explorer, with the
# measurement likelihood of the decoded final state as the reward. Its learned $\log Z$
# estimates the evidence $\log p(y)$. The likelihood of 784 pixels at σ = 0.1 is very
# sharp, which makes this a hard target to reach from the prior in a few steps: the
# fast-mode run below shows the start of it. For the same reason the prior's
# importance-resampled posterior (a bank of prior samples reweighted by the likelihood)
# collapses onto one sample (an effective sample size of 1.0 of 1,024 on the first three
# test digits): its effective sample size is printed.

# %%
index, operator, sigma = 0, operators["blur (width 1.5 px)"], 0.1
y = inverse.measure(operator, digits[index:index + 1], sigma, torch.Generator().manual_seed(0))
problem = inverse_images.ImageProblem(prior, operator, sigma, y)
steps = 6 if FAST else 200
trainer = inverse_images.observation_trainer(problem, inverse_images.OBSERVATION_CONFIG
                                             .with_steps(steps))
dashboard = widgets.TrainingDashboard(
    None, sample_fn=lambda n: inverse_images.posterior_images(trainer, n), every=2 if FAST else 10,
    num_samples=8, plot_fn=viz_images.draw_grid)
display(dashboard.widget)
trainer.train(callbacks=[dashboard.on_step])
rtb_samples = inverse_images.posterior_images(trainer, num_samples,
                                              torch.Generator().manual_seed(2))
bank_samples, ess = inverse_images.bank_images(problem, num_samples, 256 if FAST else 2048,
                                               torch.Generator().manual_seed(3))
rows = {f"RTB ({trainer.step} steps)": rtb_samples, "prior bank": bank_samples}
for name, samples in rows.items():
    print(f"{name:>16}:", widgets.format_metrics(
        inverse_metrics.summarise(samples[:, None], digits[index:index + 1], problem.reward)))
print(f"bank ESS {ess:.1f} of {256 if FAST else 2048}; RTB log Z {trainer.current_log_z():.1f}")
display(viz_images.grid_figure({"observed": operator.show(y), **{k: v[:8] for k, v in
                                                                rows.items()}}, ncol=4))
