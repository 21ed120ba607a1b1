"""Static matplotlib plots: exact densities, samples, mode weights, training curves.

Every function draws onto axes it is given (so notebooks and widgets can compose
panels freely) except `compare_panels`, which builds a whole figure. Figures are
made with `matplotlib.figure.Figure`, not pyplot, so nothing is kept open behind
the caller's back; a notebook shows one by leaving it as the cell's last value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from rtb_lab.domains.toy2d import GridTruth
from rtb_lab.metrics import mode_weights, total_variation

ACTIVE_WEIGHT = 1e-3  # same threshold as GridTruth.active_modes


def _numpy(values: Tensor) -> np.ndarray:
    return values.detach().cpu().double().numpy()


def _square_limits(ax: Axes, truth: GridTruth) -> None:
    lo, hi = float(truth.axis[0]), float(truth.axis[-1])
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")


def plot_density(ax: Axes, truth: GridTruth, levels: int = 4, cmap: str | None = None,
                 filled: bool = False) -> Axes:
    """The exact posterior density: contour lines, or a filled colour image.

    Args:
        ax: where to draw.
        truth: the exact posterior on a grid (density [G, G] indexed [ix, iy]).
        levels: number of contour levels (lines only).
        cmap: matplotlib colour map (default: "viridis" filled, "Blues_r" for lines).
        filled: draw the density as a colour image instead of contour lines.

    Returns:
        The axes, with square limits covering the grid.
    """
    axis, density = _numpy(truth.axis), _numpy(truth.density).T  # matplotlib wants [iy, ix]
    if filled:
        ax.pcolormesh(axis, axis, density, cmap=cmap or "viridis", shading="auto")
    else:
        top = density.max()
        # Geometric levels: peaks differ by orders of magnitude across betas, and linear
        # levels would hide every mode holding only a few percent of the mass.
        heights = np.geomspace(top * 1e-2, top, levels + 1)[:-1]
        # Above the samples (zorder), so that dense clouds do not hide the truth.
        ax.contour(axis, axis, density, levels=heights, cmap=cmap or "Blues_r", linewidths=0.6,
                   alpha=0.6, zorder=3)
    _square_limits(ax, truth)
    return ax


def plot_samples(ax: Axes, x: Tensor, truth: GridTruth | None = None, title: str | None = None,
                 max_points: int = 2000) -> Axes:
    """Scatter 2D samples, over the exact posterior's contours when `truth` is given.

    Args:
        ax: where to draw.
        x: [N, 2] samples; only the first `max_points` are drawn (they are i.i.d., so
            the first ones are as good as a random subset, and cheaper).
        truth: exact posterior for contours and fixed square limits, or None.
        title: axes title.
        max_points: cap on the number of points drawn.

    Returns:
        The axes.
    """
    if truth is not None:
        plot_density(ax, truth)
    points = _numpy(x[:max_points])
    ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.35, color="tab:red", linewidths=0)
    if truth is None:
        ax.set_aspect("equal")
    if title is not None:
        ax.set_title(title)
    return ax


def plot_mode_weights(ax: Axes, sample_weights: Tensor, true_weights: Tensor,
                      centers: Tensor | None = None) -> Axes:
    """Grouped bars of sample vs true mode weights, for modes that hold any weight.

    Args:
        ax: where to draw.
        sample_weights: [K] share of samples nearest to each mode.
        true_weights: [K] exact posterior weight of each mode.
        centers: [K, 2] mode centres for "(x, y)" tick labels (default: mode indices).

    Returns:
        The axes, titled with the total variation between the two weightings.
    """
    shown = ((sample_weights >= ACTIVE_WEIGHT) | (true_weights >= ACTIVE_WEIGHT)).nonzero()[:, 0]
    where = np.arange(len(shown))
    ax.bar(where - 0.2, _numpy(sample_weights[shown]), 0.4, label="samples")
    ax.bar(where + 0.2, _numpy(true_weights[shown]), 0.4, label="exact")
    labels = ([f"({x:g}, {y:g})" for x, y in centers[shown].tolist()] if centers is not None
              else [str(i) for i in shown.tolist()])
    ax.set_xticks(where, labels, rotation=90 if centers is not None else 0, fontsize=8)
    ax.set_ylabel("mode weight")
    ax.set_title(f"TV = {total_variation(sample_weights, true_weights):.3f}")
    ax.legend(fontsize=8)
    return ax


def plot_training(axes: Sequence[Axes], history: list[dict[str, float]],
                  evaluations: list[dict[str, float]], log_z_true: float | None = None
                  ) -> Sequence[Axes]:
    """Training curves: the loss (log scale) and the learned log Z against the truth.

    Args:
        axes: two axes, for the loss and for log Z.
        history: per-step records with "step", "loss" and "log_z" (RTBTrainer.history).
        evaluations: evaluation records with "step" and "log_z" (RTBTrainer.evaluations).
        log_z_true: exact log Z for a reference line; default: "log_z_true" of the last
            evaluation, when there is one.

    Returns:
        The axes.
    """
    loss_ax, log_z_ax = axes
    steps = [r["step"] for r in history]
    loss_ax.semilogy(steps, [r["loss"] for r in history], lw=0.8)
    loss_ax.set(xlabel="step", ylabel="loss", title="RTB loss")
    log_z_ax.plot(steps, [r["log_z"] for r in history], lw=0.8, label="learned")
    if evaluations:
        log_z_ax.plot([r["step"] for r in evaluations], [r["log_z"] for r in evaluations],
                      "o", ms=4, color="tab:blue")
        log_z_true = log_z_true if log_z_true is not None else evaluations[-1].get("log_z_true")
    if log_z_true is not None:
        log_z_ax.axhline(log_z_true, color="black", ls="--", lw=1, label="exact")
    log_z_ax.set(xlabel="step", ylabel="log Z", title="learned log Z")
    log_z_ax.legend(fontsize=8)
    return axes


def compare_panels(xs: dict[str, Tensor], truth: GridTruth,
                   metrics: dict[str, dict[str, float]] | None = None) -> Figure:
    """One sample panel per method, side by side, over the exact posterior.

    Args:
        xs: method name -> [N, 2] samples.
        truth: the exact posterior (contours, limits and the mode-weight TV).
        metrics: method name -> metrics; a "tv" entry is shown in the title. Methods
            without one get the TV of their samples' mode weights.

    Returns:
        A new figure.
    """
    figure = Figure(figsize=(3.2 * len(xs), 3.4), layout="constrained")
    axes = figure.subplots(1, len(xs), squeeze=False)[0]
    for ax, (name, x) in zip(axes, xs.items(), strict=True):
        tv = (metrics or {}).get(name, {}).get("tv")
        if tv is None:
            tv = total_variation(mode_weights(x, truth.centers), truth.mode_weights)
        plot_samples(ax, x, truth, title=f"{name}\nTV = {tv:.3f}")
    return figure
