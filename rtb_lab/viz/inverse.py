"""Widgets of the inverse-problems tutorial: move a 2D observation, restore a digit.

Both redraw on every change of their sliders (`ipywidgets.interactive`); the figures
themselves come from plain functions, so they can be used without widgets.
"""

from __future__ import annotations

from collections.abc import Mapping

import ipywidgets as ipw
import torch
from IPython.display import display
from matplotlib.figure import Figure
from torch import Tensor, nn

from rtb_lab.diffusion import TransitionFamily
from rtb_lab.inverse import dps_sample, measure
from rtb_lab.inverse import images as inverse_images
from rtb_lab.inverse.metrics import summarise
from rtb_lab.inverse.operators import LinearOperator
from rtb_lab.inverse.toy import measurement_target
from rtb_lab.viz.images import grid_figure
from rtb_lab.viz.plots import compare_panels
from rtb_lab.viz.widgets import format_metrics


def observation_figure(prior: nn.Module, family: TransitionFamily, y: float, sigma: float,
                       zeta: float = 0.04, num: int = 1000) -> tuple[Figure, dict[str, float]]:
    """The exact 2D posterior of observing x_1 = y +- sigma beside DPS's samples, and DPS's
    distances to it (mode TV, x_1-marginal TV) with the exact log p(y)."""
    problem = measurement_target(y, sigma)
    exact = problem.truth(grid_size=250)
    guided = dps_sample(prior, family, problem.log_reward, zeta, num, (2,),
                        generator=torch.Generator().manual_seed(0))
    figure = compare_panels({"exact posterior": exact.sample(num),
                             f"DPS ζ = {zeta}": guided}, exact)
    metrics = {"tv": problem.evaluate(guided)["tv"], "marginal_tv": exact.marginal_tv(guided),
               "log_p_y": exact.log_z}
    return figure, metrics


def observation_widget(prior: nn.Module, family: TransitionFamily, zeta: float = 0.04,
                       num: int = 1000) -> ipw.Widget:
    """Sliders for y and sigma -> `observation_figure`, redrawn on every change."""

    def show(y: float, sigma: float) -> None:
        figure, metrics = observation_figure(prior, family, y, sigma, zeta, num)
        display(figure)
        print("DPS:", format_metrics(metrics))

    return ipw.interactive(show, y=ipw.FloatSlider(value=3.0, min=-10, max=10, step=0.5),
                           sigma=ipw.FloatSlider(value=1.0, min=0.3, max=3.0, step=0.1,
                                                 description="σ"))


def restore_figure(prior: nn.Module, truth: Tensor, operator: LinearOperator, sigma: float,
                   num_samples: int = 16, seed: int = 0) -> tuple[Figure, dict[str, float]]:
    """Degrade one image [1, C, H, W], restore it with DPS (the tuned zeta of
    `inverse.images.DPS_ZETA`), and show truth, observation, samples, mean and the
    per-pixel standard deviation; with `inverse.metrics.summarise`'s figures."""
    y = measure(operator, truth, sigma, torch.Generator().manual_seed(seed))
    problem = inverse_images.ImageProblem(prior, operator, sigma, y)
    zeta = inverse_images.DPS_ZETA[operator.name]
    samples = inverse_images.dps_images(problem, zeta, num_samples,
                                        torch.Generator().manual_seed(seed + 1))
    metrics = summarise(samples[:, None], truth, problem.reward)
    # std 0 -> black, 0.5 -> white, on the images' [-1, 1] scale.
    figure = grid_figure({"truth": truth, "observed": operator.show(y),
                          f"DPS samples (ζ = {zeta:g})": samples[:8],
                          "posterior mean": samples.mean(0, keepdim=True),
                          "std (white = unsure)": samples.std(0, keepdim=True) * 4 - 1},
                         ncol=4)
    return figure, metrics


def restore_widget(prior: nn.Module, images: Tensor, operators: Mapping[str, LinearOperator],
                   num_samples: int = 16) -> ipw.Widget:
    """A test-image slider, a degradation menu and a sigma slider -> `restore_figure`."""

    def show(index: int, degradation: str, sigma: float) -> None:
        figure, metrics = restore_figure(prior, images[index:index + 1], operators[degradation],
                                         sigma, num_samples, seed=index)
        display(figure)
        print(format_metrics(metrics))

    view = ipw.interactive(
        show, index=ipw.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
        degradation=ipw.Dropdown(options=list(operators)),
        sigma=ipw.FloatSlider(value=0.1, min=0.02, max=0.5, step=0.02, description="σ"))
    view.update()
    return view
