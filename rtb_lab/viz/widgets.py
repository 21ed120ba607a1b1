"""Notebook widgets: a live training dashboard, a beta panel and a mode picker.

The trainer knows nothing about widgets: a `TrainingDashboard` attaches through the
trainer's callbacks. Figures are drawn with matplotlib into a `Figure` (no pyplot)
and shown as a PNG inside an `ipywidgets.Output`, which works the same in Jupyter,
Colab, a plain kernel and nbval, whatever matplotlib backend is active. Anything
slow sits behind `continuous_update=False` sliders or buttons.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import torch
from IPython.display import Image, clear_output, display
from matplotlib.figure import Figure
from torch import Tensor

from rtb_lab.domains.toy2d import GridTruth, custom_target, finetune, mode_reward
from rtb_lab.domains.toy2d.gmm import GaussianMixture
from rtb_lab.metrics import mode_weights, total_variation
from rtb_lab.train import TrainConfig
from rtb_lab.viz.plots import compare_panels, plot_density, plot_samples, plot_training


def figure_png(figure: Figure, dpi: int = 90) -> Image:
    """`figure` rendered by Agg as a displayable PNG (no pyplot backend involved)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return Image(buffer.getvalue())


def show_in(output: widgets.Output, figure: Figure) -> None:
    """Replace what `output` shows with `figure`; wait=True avoids a blank flicker."""
    with output:
        clear_output(wait=True)
        display(figure_png(figure))


def format_metrics(metrics: dict[str, Any]) -> str:
    """One line "name = value · ..." of the numbers (and "name: text" of the strings)
    in a metrics dict; other entries are left out."""
    return " · ".join(f"{name} = {value:.4g}" if isinstance(value, int | float)
                      else f"{name}: {value}" for name, value in metrics.items()
                      if isinstance(value, int | float | str))


def beta_slider(value: float, betas: tuple[float, float], name: str = "β"
                ) -> widgets.FloatLogSlider:
    """A log-scale slider (beta, or any positive scale) that fires only on release.

    Log scale because betas act multiplicatively: 1/4 and 4 sit symmetric around 1.
    """
    low, high = betas
    if not 0 < low < high:
        raise ValueError(f"betas must satisfy 0 < low < high, got {betas}")
    span = math.log2(high) - math.log2(low)
    return widgets.FloatLogSlider(value=min(max(value, low), high), base=2,
                                  min=math.log2(low), max=math.log2(high), step=span / 80,
                                  description=name, continuous_update=False,
                                  readout_format=".2f")


class TrainingDashboard:
    """Live loss, learned log Z vs the truth, and current samples over the exact posterior.

    Example:
        dashboard = TrainingDashboard(target.truth())
        display(dashboard.widget)
        trainer.train(callbacks=[dashboard.on_step], eval_callbacks=[dashboard.on_eval])

    Args:
        truth: the exact posterior (contours and the true log Z), or None.
        sample_fn: ``sample_fn(n) -> [n, 2]`` samples for the third panel. Default, when
            `truth` is given: the trainer's posterior, drawn with the dashboard's own
            generator so that watching never shifts the training noise.
        every: redraw every this many steps (drawing costs far more than a toy step).
        num_samples: samples per redraw.
        seed: seed of the dashboard's generator.
        plot_fn: ``plot_fn(ax, samples, title)`` draws the third panel (default: a 2D
            scatter over the exact posterior; `rtb_lab.viz.images.draw_grid` for images).

    Attributes:
        widget: what to display.
        figure: the matplotlib figure that is redrawn.
        n_draws: number of redraws so far.
        last_step: trainer step of the last redraw (None before the first).
        last_samples: [N, 2] samples of the last redraw, or None.
    """

    def __init__(self, truth: GridTruth | None,
                 sample_fn: Callable[[int], Tensor] | None = None, every: int = 25,
                 num_samples: int = 1000, seed: int = 0,
                 plot_fn: Callable[[Any, Tensor, str], None] | None = None) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.truth, self.sample_fn, self.plot_fn = truth, sample_fn, plot_fn
        self.every, self.num_samples = every, num_samples
        self.generator = torch.Generator().manual_seed(seed)
        self.status = widgets.HTML("waiting for the first step")
        self.output = widgets.Output()
        self.widget = widgets.VBox([self.status, self.output])
        self.figure = Figure(figsize=(11, 3.4), layout="constrained")
        self.n_draws = 0
        self.last_step: int | None = None
        self.last_samples: Tensor | None = None

    def on_step(self, trainer: Any, record: dict[str, float]) -> None:
        """Step callback: redraw every `every` steps."""
        if trainer.step % self.every == 0:
            self.draw(trainer)

    def on_eval(self, trainer: Any, metrics: dict[str, float]) -> None:
        """Evaluation callback: show the metrics, and redraw if the picture is stale.

        The last evaluation comes at the end of training, so the final state is always
        drawn even when the step count is not a multiple of `every`.
        """
        if self.last_step != trainer.step:
            self.draw(trainer)
        self.status.value = format_metrics(metrics)

    def samples(self, trainer: Any) -> Tensor | None:
        """[N, 2] samples for the third panel, or None when there is nothing to sample."""
        with torch.no_grad():
            if self.sample_fn is not None:
                return self.sample_fn(self.num_samples)
            if self.truth is not None:
                return trainer.sample(self.num_samples, generator=self.generator).x
        return None

    def draw(self, trainer: Any) -> None:
        """Redraw all panels from `trainer` (its step, history and evaluations)."""
        samples = self.samples(trainer)
        self.figure.clear()
        axes = self.figure.subplots(1, 2 if samples is None else 3)
        log_z_true = None if self.truth is None else self.truth.log_z
        plot_training(axes[:2], trainer.history, trainer.evaluations, log_z_true)
        if samples is not None:
            title = f"samples at step {trainer.step}"
            if self.plot_fn is not None:
                self.plot_fn(axes[2], samples, title)
            else:
                plot_samples(axes[2], samples, self.truth, title=title)
        show_in(self.output, self.figure)
        if trainer.history:
            self.status.value = format_metrics(trainer.history[-1])
        self.n_draws += 1
        self.last_step, self.last_samples = trainer.step, samples


class BetaPanel:
    """A beta slider that re-samples a trained (beta-conditioned) posterior instantly.

    Each change draws fresh samples at the new beta over the exact posterior, next to
    the exact density, and reports how far the samples are from it.

    Args:
        sample_fn: ``sample_fn(beta, n) -> [n, 2]`` samples at that beta.
        truth_fn: ``truth_fn(beta) -> GridTruth`` the exact posterior (cached per beta).
        betas: slider range (log scale).
        num_samples: samples per draw.
        evaluate_fn: ``evaluate_fn(beta, x) -> metrics``; default: the mode-weight TV
            against `truth_fn(beta)`.
        beta: initial value.
        name: the parameter's symbol (a guidance scale or a KL weight works too).

    Attributes:
        widget: what to display.
        slider: the beta slider.
        last_beta: beta of the last draw.
        last_metrics: metrics of the last draw.
    """

    def __init__(self, sample_fn: Callable[[float, int], Tensor],
                 truth_fn: Callable[[float], GridTruth],
                 betas: tuple[float, float] = (0.25, 4.0), num_samples: int = 2000,
                 evaluate_fn: Callable[[float, Tensor], dict[str, float]] | None = None,
                 beta: float = 1.0, name: str = "β") -> None:
        self.sample_fn, self.truth_fn, self.evaluate_fn = sample_fn, truth_fn, evaluate_fn
        self.num_samples, self.name = num_samples, name
        self.slider = beta_slider(beta, betas, name)
        self.label = widgets.HTML()
        self.output = widgets.Output()
        self.widget = widgets.VBox([self.slider, self.label, self.output])
        self.figure = Figure(figsize=(8, 4), layout="constrained")
        self.last_beta: float | None = None
        self.last_metrics: dict[str, float] = {}
        self._truths: dict[float, GridTruth] = {}
        self.slider.observe(lambda change: self.draw(change["new"]), names="value")
        self.draw(self.slider.value)

    def set_beta(self, beta: float) -> None:
        """Move the slider (clamped to its range), which redraws."""
        self.slider.value = beta

    def truth(self, beta: float) -> GridTruth:
        """The exact posterior at `beta`, integrated once per beta."""
        if beta not in self._truths:
            self._truths[beta] = self.truth_fn(beta)
        return self._truths[beta]

    def draw(self, beta: float) -> None:
        """Sample at `beta`, compare with the truth and redraw both panels."""
        truth = self.truth(beta)
        x = self.sample_fn(beta, self.num_samples)  # may train (an RL baseline): keep grad on
        if self.evaluate_fn is not None:
            metrics = self.evaluate_fn(beta, x)
        else:
            metrics = {"tv": total_variation(mode_weights(x, truth.centers), truth.mode_weights)}
        self.figure.clear()
        left, right = self.figure.subplots(1, 2)
        plot_samples(left, x, truth, title=f"samples at {self.name} = {beta:.2f}")
        plot_density(right, truth, filled=True)
        right.set_title(f"exact posterior, log Z = {truth.log_z:.3f}")
        self.label.value = f"{self.name} = {beta:.2f} · {format_metrics(metrics)}"
        show_in(self.output, self.figure)
        self.last_beta, self.last_metrics = beta, metrics


def exact_posterior_view(prior: GaussianMixture, grid_size: int = 150
                         ) -> Callable[[Tensor, float], None]:
    """An `on_change` for `ModePicker` that displays the exact posterior of the picked modes."""
    def show(weights: Tensor, beta: float) -> None:
        truth = custom_target(prior, mode_reward(prior, weights), beta).truth(grid_size)
        figure = Figure(figsize=(4, 4), layout="constrained")
        ax = plot_density(figure.subplots(), truth, filled=True)
        ax.set_title(f"exact posterior, β = {beta:.2f}, log Z = {truth.log_z:.3f}")
        display(figure_png(figure))

    return show


def rtb_vs_exact_view(prior: GaussianMixture, config: TrainConfig, num_samples: int = 2000,
                      grid_size: int = 200) -> Callable[[Tensor, float], None]:
    """An `on_change` for `ModePicker` that trains RTB on the picked modes and compares.

    Each click fine-tunes the shipped prior with `config` (a progress bar shows), then
    draws exact posterior samples beside RTB's, each titled with its mode-weight TV.
    """
    def train_and_show(weights: Tensor, beta: float) -> None:
        target = custom_target(prior, mode_reward(prior, weights), beta, name="picked")
        trainer = finetune(target, config)
        x = trainer.sample(num_samples).x
        truth = target.truth(grid_size)
        exact = truth.sample(num_samples, torch.Generator().manual_seed(0))
        metrics = {"RTB": target.evaluate(x, trainer.current_log_z())}
        figure = compare_panels({"exact posterior": exact, "RTB": x}, truth, metrics)
        display(figure_png(figure))
        print(format_metrics(metrics["RTB"]))

    return train_and_show


class ModePicker:
    """Pick prior modes and beta; a button hands the choice to `on_change`.

    Example:
        picker = ModePicker(prior.means, exact_posterior_view(prior))
        display(picker.widget)

    Args:
        prior_means: [K, 2] the prior's mode centres (labelled "(x, y)").
        on_change: ``on_change(weights [K], beta)`` run on a click, its output shown in
            the widget; `mode_reward(prior, weights)` turns the weights into a reward.
        beta: initial beta.
        betas: beta slider range.
        action: the button's label.

    Attributes:
        widget: what to display.
        modes: the mode selector (values are mode indices).
        beta_slider: the beta slider.
        button: the "show exact posterior" button.
    """

    def __init__(self, prior_means: Tensor,
                 on_change: Callable[[Tensor, float], None] | None = None,
                 beta: float = 1.0, betas: tuple[float, float] = (0.25, 4.0),
                 action: str = "show exact posterior") -> None:
        self.num_modes = prior_means.shape[0]
        labels = [f"({x:g}, {y:g})" for x, y in prior_means.tolist()]
        self.on_change = on_change
        self.modes = widgets.SelectMultiple(options=list(zip(labels, range(self.num_modes),
                                                             strict=True)),
                                            value=tuple(range(self.num_modes)),
                                            rows=min(self.num_modes, 12), description="modes")
        self.beta_slider = beta_slider(beta, betas)
        self.button = widgets.Button(description=action, button_style="primary",
                                     layout=widgets.Layout(width="auto"))
        self.output = widgets.Output()
        self.widget = widgets.VBox([widgets.HBox([self.modes,
                                                  widgets.VBox([self.beta_slider, self.button])]),
                                    self.output])
        self.button.on_click(lambda _: self.apply())

    def selected_weights(self) -> Tensor:
        """[K] float64 weights, uniform over the picked modes and 0 elsewhere."""
        picked = list(self.modes.value)
        if not picked:
            raise ValueError("pick at least one mode")
        weights = torch.zeros(self.num_modes, dtype=torch.float64)
        weights[picked] = 1.0 / len(picked)
        return weights

    def apply(self) -> None:
        """Call `on_change(weights, beta)` with its output shown in the widget."""
        with self.output:
            clear_output(wait=True)
            if not self.modes.value:
                print("Pick at least one mode.")
            elif self.on_change is not None:
                self.on_change(self.selected_weights(), self.beta_slider.value)
