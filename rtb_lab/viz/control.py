"""Views of the control domain: actions at one state (μ, Q, the exact π*, RTB) under an α
slider, and a plotly animation of pendulum rollouts side by side."""

from __future__ import annotations

import math
from collections.abc import Mapping

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import clear_output, display
from plotly.subplots import make_subplots
from torch import Tensor, nn

from rtb_lab.domains.control.policy import bank_posterior, binned, sample_actions
from rtb_lab.viz.animate import _play_controls
from rtb_lab.viz.widgets import beta_slider

COLOURS = {"behaviour prior μ": "#7f7f7f", "exact π*": "#d62728", "RTB": "#1f77b4"}


def pendulum_state(theta: float, velocity: float) -> Tensor:
    """Pendulum-v1's observation [3] (cos θ, sin θ, θ') for angle θ (0 = upright)."""
    return torch.tensor([math.cos(theta), math.sin(theta), velocity])


def action_figure(edges: Tensor, masses: Mapping[str, Tensor], q_values: Tensor,
                  grid: Tensor, bound: float, title: str) -> go.Figure:
    """Binned action distributions (densities over env actions) and Q(s, a) on a grid."""
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    centres = ((edges[1:] + edges[:-1]) / 2 * bound).numpy()
    width = float(edges[1] - edges[0]) * bound
    for name, mass in masses.items():
        figure.add_trace(go.Scatter(x=centres, y=(mass / width).numpy(), name=name,
                                    mode="lines", line={"shape": "hvh", "width": 2,
                                                        "color": COLOURS.get(name)}))
    figure.add_trace(go.Scatter(x=(grid * bound).numpy(), y=q_values.numpy(), name="Q(s, a)",
                                mode="lines", line={"dash": "dot", "color": "#2ca02c"}),
                     secondary_y=True)
    figure.update_layout(title=title, height=340, margin={"t": 50, "b": 40},
                         legend={"orientation": "h", "y": -0.2})
    figure.update_xaxes(title_text="action (torque)")
    figure.update_yaxes(title_text="density", secondary_y=False)
    figure.update_yaxes(title_text="Q(s, a)", secondary_y=True)
    return figure


def posterior_at(prior: nn.Module, q: nn.Module, policy: nn.Module | None, state: Tensor,
                 alpha: float, bound: float, bins: int = 30, n: int = 20_000,
                 seed: int = 0) -> tuple[go.Figure, dict[str, float]]:
    """The figure of μ, the exact π* (a reweighted bank of n prior actions) and the RTB
    policy at `state` and `alpha`; with the TVs to π* and the bank's ESS."""
    edges = torch.linspace(-1, 1, bins + 1)
    bank = bank_posterior(prior, q, state, alpha, n=n, seed=seed)
    masses = {"behaviour prior μ": binned(bank.actions[:, 0], edges),
              "exact π*": bank.bins(edges)}
    if policy is not None:
        x = sample_actions(policy, prior, state.expand(n // 4, -1), alpha,
                           generator=torch.Generator().manual_seed(seed + 1))
        masses["RTB"] = binned(x[:, 0], edges)
    grid = torch.linspace(-1, 1, 101)
    with torch.no_grad():
        q_values = q(state.expand(grid.numel(), -1), grid[:, None])
    truth = masses["exact π*"]
    gaps = {f"TV({name}, π*)": 0.5 * float((mass - truth).abs().sum())
            for name, mass in masses.items() if name != "exact π*"}
    stats = {**gaps, "bank ESS": bank.ess_fraction}
    title = f"α = {alpha:.2f} · " + " · ".join(f"{k} {v:.3f}" for k, v in stats.items())
    return action_figure(edges, masses, q_values, grid, bound, title), stats


def alpha_widget(prior: nn.Module, q: nn.Module, policy: nn.Module | None, bound: float,
                 alpha: float = 1.0, alphas: tuple[float, float] = (0.1, 10.0),
                 n: int = 20_000) -> widgets.VBox:
    """Sliders for the pendulum's angle, velocity and α; the figure follows on release."""
    theta = widgets.FloatSlider(value=math.pi / 2, min=-math.pi, max=math.pi, step=0.05,
                                description="θ", continuous_update=False)
    velocity = widgets.FloatSlider(value=2.0, min=-8.0, max=8.0, step=0.25,
                                   description="θ'", continuous_update=False)
    temperature = beta_slider(alpha, alphas, "α")
    output = widgets.Output()

    def redraw(_=None) -> None:
        figure, _ = posterior_at(prior, q, policy, pendulum_state(theta.value, velocity.value),
                                 temperature.value, bound, n=n)
        with output:
            clear_output(wait=True)
            display(figure)

    for slider in (theta, velocity, temperature):
        slider.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([theta, velocity, temperature]), output])


def pendulum_animation(observations: Mapping[str, np.ndarray], every: int = 4) -> go.Figure:
    """Pendulums side by side, one per policy: ``observations[name]`` is [T + 1, 3]."""
    names = list(observations)
    length = min(len(v) for v in observations.values())
    shown = list(range(0, length, every))

    def arms(t: int) -> list[go.Scatter]:
        traces = []
        for i, name in enumerate(names):
            cos, sin = observations[name][t, 0], observations[name][t, 1]
            x0 = 2.5 * i
            traces.append(go.Scatter(x=[x0, x0 + sin], y=[0, cos], mode="lines+markers",
                                     line={"width": 6}, marker={"size": [6, 16]},
                                     name=name, showlegend=False))
        return traces

    frames = [go.Frame(data=arms(t), name=str(t)) for t in shown]
    figure = go.Figure(data=arms(0), frames=frames)
    figure.update_layout(
        height=330, title="rollouts from the same start (upright: the top of each circle)",
        xaxis={"range": [-1.3, 2.5 * len(names) - 1.2], "showgrid": False,
               "tickvals": [2.5 * i for i in range(len(names))], "ticktext": names},
        yaxis={"range": [-1.3, 1.3], "scaleanchor": "x", "showgrid": False,
               "showticklabels": False},
        **_play_controls([str(t) for t in shown], [str(t) for t in shown]))
    return figure
