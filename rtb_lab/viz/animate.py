"""Interactive plotly figures of whole trajectories: particles over time, log-ratios per step.

Plotly figures animate in the browser without a running kernel, so they survive in
exported notebooks and on static pages.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots
from torch import Tensor

from rtb_lab.diffusion.trajectory import Trajectory
from rtb_lab.metrics import nearest_mode

# 26 distinct colours: enough for the 25-mode toy prior without repeats.
PALETTE = qualitative.Alphabet


def frame_steps(num_steps: int, every: int) -> list[int]:
    """State indices shown by the animation: every `every`-th, always ending at T."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    shown = list(range(0, num_steps + 1, every))
    return shown if shown[-1] == num_steps else [*shown, num_steps]


def particle_colours(final: Tensor, centers: Tensor) -> list[str]:
    """[B] colour of each particle: the palette entry of the centre nearest its final state."""
    return [PALETTE[i % len(PALETTE)] for i in nearest_mode(final, centers).tolist()]


def _play_controls(names: list[str], labels: list[str]) -> dict:
    """Layout entries for a play/pause button and a time slider over frames `names`."""
    def go_to(frames: list[str] | list[None], duration: int) -> list:
        return [frames, {"frame": {"duration": duration, "redraw": False},
                         "transition": {"duration": 0}, "mode": "immediate"}]

    return {
        "updatemenus": [{"type": "buttons", "showactive": False, "x": 0.0, "y": -0.08,
                         "xanchor": "left", "yanchor": "top", "direction": "left",
                         "buttons": [{"label": "play", "method": "animate",
                                      "args": go_to(None, 60)},
                                     {"label": "pause", "method": "animate",
                                      "args": go_to([None], 0)}]}],
        "sliders": [{"x": 0.2, "len": 0.8, "y": -0.05, "currentvalue": {"prefix": "t = "},
                     "steps": [{"label": label, "method": "animate", "args": go_to([name], 0)}
                               for name, label in zip(names, labels, strict=True)]}],
    }


def trajectory_animation(traj: Trajectory, centers: Tensor, max_particles: int = 300,
                         every: int = 2, axis_range: tuple[float, float] = (-14.0, 14.0)
                         ) -> go.Figure:
    """Animate 2D particles along their trajectories, coloured by where they end.

    Args:
        traj: trajectories with states [B, T+1, 2].
        centers: [K, 2] mode centres; a particle's colour is the index of the centre
            nearest its FINAL state, so one can watch where each mode's mass comes from.
        max_particles: only the first this many trajectories are drawn.
        every: show every `every`-th state (the final state is always shown).
        axis_range: limits of both axes.

    Returns:
        A figure with one frame per shown time step, a play button and a time slider.
    """
    # Rounded: the figure stores every frame as text, and 3 decimals are invisible at this scale.
    states = traj.states[:max_particles].detach().cpu().double().round(decimals=3)  # [B, T+1, 2]
    if states.shape[2:] != (2,):
        raise ValueError(f"trajectory_animation needs 2D states, got {tuple(states.shape)}")
    colours = particle_colours(states[:, -1], centers.cpu())
    steps = frame_steps(traj.num_steps, every)

    def particles(k: int) -> go.Scatter:
        return go.Scatter(x=states[:, k, 0].tolist(), y=states[:, k, 1].tolist(),
                          mode="markers", marker={"color": colours, "size": 5},
                          name="particles")

    names = [str(k) for k in steps]
    frames = [go.Frame(data=[particles(k)], traces=[0], name=name)
              for k, name in zip(steps, names, strict=True)]
    modes = go.Scatter(x=centers[:, 0].tolist(), y=centers[:, 1].tolist(), mode="markers",
                       marker={"symbol": "x", "color": "black", "size": 7}, name="modes")
    figure = go.Figure(data=[particles(steps[0]), modes], frames=frames)
    figure.update_layout(
        width=560, height=600, showlegend=False, title="particles from t = 0 to t = 1",
        xaxis={"range": list(axis_range)},
        yaxis={"range": list(axis_range), "scaleanchor": "x"},
        **_play_controls(names, [f"{k / traj.num_steps:.2f}" for k in steps]))
    return figure


def log_ratio_figure(log_q_steps: Tensor, log_p_steps: Tensor, n_show: int = 20) -> go.Figure:
    """Per-step log q - log p along trajectories, and its running sum.

    Args:
        log_q_steps: [B, T] per-step log-probs under the posterior (see `step_log_probs`).
        log_p_steps: [B, T] per-step log-probs under the prior, same trajectories.
        n_show: trajectories drawn as thin lines (the mean uses all B).

    Returns:
        A two-row figure: per-step differences (top) and their cumulative sum (bottom),
        whose last value is log q(tau) / p(tau) of each trajectory.
    """
    diff = (log_q_steps.detach() - log_p_steps.detach()).cpu().double()  # [B, T]
    cumulative = diff.cumsum(1)  # [B, T]
    steps = list(range(diff.shape[1]))
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    for row, (values, what) in enumerate([(diff, "per step"), (cumulative, "cumulative")], 1):
        for i, line in enumerate(values[:n_show].tolist()):
            figure.add_trace(go.Scatter(x=steps, y=line, mode="lines", name=f"τ {i} {what}",
                                        line={"width": 0.7, "color": "rgba(31,119,180,0.35)"},
                                        showlegend=False), row=row, col=1)
        figure.add_trace(go.Scatter(x=steps, y=values.mean(0).tolist(), mode="lines",
                                    name=f"mean {what}", line={"width": 2.5, "color": "black"}),
                         row=row, col=1)
    figure.update_yaxes(title_text="log q_k − log p_k", row=1, col=1)
    figure.update_yaxes(title_text="running sum", row=2, col=1)
    figure.update_xaxes(title_text="step k", row=2, col=1)
    figure.update_layout(
        height=560, title="Σ_k (log q_k − log p_k) = log q(τ)/p(τ): what RTB matches to "
                          "β log r(x) − log Z")
    return figure

