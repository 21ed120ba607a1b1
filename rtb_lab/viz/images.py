"""Pictures and widgets for image domains: grids, denoising strips, a class-set panel.

    draw_grid(ax, x)                                  # [N, 1, H, W] in [-1, 1]
    denoising_strip(prior_traj, post_traj, ...)       # x_t over t, same noise, two rows
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from rtb_lab.diffusion import Trajectory
from rtb_lab.domains.images import to_pixels

DIGITS = tuple(range(10))


def tile(x: Tensor, ncol: int | None = None, pad: int = 1) -> np.ndarray:
    """[N, 1, H, W] images in [-1, 1] -> one uint8 mosaic [rows*(H+pad), ncol*(W+pad)]."""
    pixels = to_pixels(x)
    n, h, w = pixels.shape[:3]
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    mosaic = np.full((nrow * (h + pad) - pad, ncol * (w + pad) - pad), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        mosaic[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = pixels[i]
    return mosaic


def draw_grid(ax: Axes, x: Tensor, title: str | None = None, ncol: int | None = None) -> None:
    """Show images x [N, 1, H, W] as a grid on `ax`."""
    ax.imshow(tile(x, ncol), cmap="gray", vmin=0, vmax=255)
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
