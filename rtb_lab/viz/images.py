"""Pictures and widgets for image domains: grids, denoising strips, a class-set panel.

    draw_grid(ax, x)                                  # [N, 1, H, W] in [-1, 1]
    denoising_strip(prior_traj, post_traj, ...)       # x_t over t, same noise, two rows
    panel = ClassSetPanel(sample_fn, evaluate_fn); display(panel.widget)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from rtb_lab.diffusion import Trajectory
from rtb_lab.domains.images.data import to_pixels
from rtb_lab.viz.widgets import beta_slider, format_metrics, show_in

DIGITS = tuple(range(10))


def tile(x: Tensor, ncol: int | None = None, pad: int = 1) -> np.ndarray:
    """[N, C, H, W] images in [-1, 1] -> one uint8 mosaic [rows*(H+pad), ncol*(W+pad)]
    (grey), or [..., 3] for colour images."""
    pixels = to_pixels(x)
    n, h, w = pixels.shape[:3]
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    mosaic = np.full((nrow * (h + pad) - pad, ncol * (w + pad) - pad, *pixels.shape[3:]), 255,
                     np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        mosaic[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = pixels[i]
    return mosaic


def draw_grid(ax: Axes, x: Tensor, title: str | None = None, ncol: int | None = None) -> None:
    """Show images x [N, C, H, W] (grey or colour) as a grid on `ax`."""
    ax.imshow(tile(x, ncol), cmap="gray" if x.shape[1] == 1 else None, vmin=0, vmax=255)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)


def grid_figure(panels: dict[str, Tensor], ncol: int = 8) -> Figure:
    """One image grid per named panel, side by side."""
    figure = Figure(figsize=(3.3 * len(panels), 3.5), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, x) in zip(axes, panels.items(), strict=True):
        draw_grid(ax, x, name, ncol)
    return figure


def denoising_strip(trajectories: dict[str, Trajectory], num_frames: int = 8,
                    num_images: int = 4,
                    decode: Callable[[Tensor], Tensor] | None = None) -> Figure:
    """x_t over t for each named trajectory set (rows), at `num_frames` evenly spaced steps.

    Sample the trajectories with the same generator seed to see prior and posterior
    diverge from the same noise. With `decode`, a last column shows the decoded images.
    """
    first = next(iter(trajectories.values()))
    steps = np.linspace(0, first.num_steps, num_frames).round().astype(int).tolist()
    columns = num_frames + (decode is not None)
    figure = Figure(figsize=(1.3 * columns, 1.5 * num_images * len(trajectories) / 2 + 0.6),
                    layout="constrained")
    axes = figure.subplots(len(trajectories), columns, squeeze=False)
    for row, (name, traj) in zip(axes, trajectories.items(), strict=True):
        for ax, k in zip(row[:num_frames], steps, strict=True):
            draw_grid(ax, traj.states[:num_images, k], ncol=1)
            ax.set_title(f"{name}\nstep {k}" if k == steps[0] else f"step {k}", fontsize=8)
        if decode is not None:
            draw_grid(row[-1], decode(traj.x[:num_images]), ncol=1)
            row[-1].set_title("decoded", fontsize=8)
    return figure


class ClassSetPanel:
    """Toggle target classes and move beta; posterior samples redraw at once.

    Args:
        sample_fn: ``sample_fn(classes, beta, n) -> [n, 1, H, W]`` posterior samples
            (an amortised posterior, or `mnist_bank.ImportanceBank.sample`).
        evaluate_fn: ``evaluate_fn(classes, x) -> metrics`` shown under the slider.
        classes: the digits toggled on at first.
        beta: the first beta.
        betas: the slider's range.
        num_samples: images per draw.
        title: what the samples are (the grid's title starts with it).
        names: one toggle label per class (default: the digits).
        presets: buttons that toggle a named set (default: "even" and "odd").

    Attributes:
        widget: what to display.
        toggles: one ToggleButton per class; `presets`: the named-set buttons.
        slider: the beta slider.
        last_classes, last_beta, last_metrics: what the last draw used and measured.
    """

    def __init__(self, sample_fn: Callable[[tuple[int, ...], float, int], Tensor],
                 evaluate_fn: Callable[[tuple[int, ...], Tensor], dict[str, Any]],
                 classes: Sequence[int] = (0, 2, 4, 6, 8), beta: float = 1.0,
                 betas: tuple[float, float] = (0.25, 4.0), num_samples: int = 32,
                 title: str = "posterior", names: Sequence[str] = tuple(map(str, DIGITS)),
                 presets: dict[str, Sequence[int]] | None = None) -> None:
        self.sample_fn, self.evaluate_fn = sample_fn, evaluate_fn
        self.num_samples, self.title, self.names = num_samples, title, tuple(names)
        self.indices = range(len(self.names))
        width = f"{max(38, 9 * max(map(len, self.names)) + 14)}px"
        self.toggles = [widgets.ToggleButton(value=c in classes, description=name,
                                             layout=widgets.Layout(width=width))
                        for c, name in zip(self.indices, self.names, strict=True)]
        presets = {"even": (0, 2, 4, 6, 8), "odd": (1, 3, 5, 7, 9)} if presets is None \
            else presets
        self.presets = {}
        for name, members in presets.items():
            button = widgets.Button(description=name, layout=widgets.Layout(width="72px"))
            button.on_click(lambda button, members=tuple(members): self.set_classes(members))
            self.presets[name] = button
        self.slider = beta_slider(beta, betas)
        self.label = widgets.HTML()
        self.output = widgets.Output()
        self.widget = widgets.VBox([widgets.HBox([*self.toggles, *self.presets.values()]),
                                    self.slider, self.label, self.output])
        self.figure = Figure(figsize=(4.2, 4.4), layout="constrained")
        self.last_classes: tuple[int, ...] = ()
        self.last_beta = float("nan")
        self.last_metrics: dict[str, Any] = {}
        self._holding = False  # set_classes flips many toggles: redraw once, at the end
        for toggle in self.toggles:
            toggle.observe(lambda change: self._changed(), names="value")
        self.slider.observe(lambda change: self._changed(), names="value")
        self.draw()

    @property
    def classes(self) -> tuple[int, ...]:
        """The classes currently toggled on."""
        return tuple(c for c, toggle in zip(self.indices, self.toggles, strict=True)
                     if toggle.value)

    def set_classes(self, classes: Sequence[int]) -> None:
        """Toggle exactly `classes` on, then redraw once."""
        self._holding = True
        try:
            for index, toggle in zip(self.indices, self.toggles, strict=True):
                toggle.value = index in classes
        finally:
            self._holding = False
        self.draw()

    def _changed(self) -> None:
        if not self._holding:
            self.draw()

    def draw(self) -> None:
        """Sample for the current classes and beta, measure, and redraw."""
        classes, beta = self.classes, float(self.slider.value)
        if not classes:
            self.label.value = "Toggle at least one class."
            return
        x = self.sample_fn(classes, beta, self.num_samples)
        metrics = self.evaluate_fn(classes, x)
        self.figure.clear()
        if all(len(name) == 1 for name in self.names):  # digits: "024", as before
            chosen = "digits " + "".join(self.names[c] for c in classes)
        else:
            chosen = "+".join(self.names[c] for c in classes)
        draw_grid(self.figure.subplots(), x, f"{self.title}: {chosen}, β = {beta:.2f}")
        self.label.value = format_metrics(metrics)
        show_in(self.output, self.figure)
        self.last_classes, self.last_beta, self.last_metrics = classes, beta, metrics
