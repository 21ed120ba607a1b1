"""Views of the text-infilling tutorial: a story picker, the unmasking trajectory token by
token, distributions over the candidate middles, and the exact posterior under a β slider.

The figures come from plain functions; the widgets only redraw them.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
import torch
from IPython.display import HTML, display
from matplotlib.figure import Figure
from torch import Tensor

from rtb_lab.domains.text.grammar import Story
from rtb_lab.domains.text.infilling import InfillingProblem
from rtb_lab.domains.text.tokenizer import StoryTokenizer
from rtb_lab.viz.widgets import beta_slider, show_in


def unmasking_html(states: Tensor, tok: StoryTokenizer) -> str:
    """An HTML table of one trajectory's states [T+1, L]: one row per step, masks as "_",
    the token revealed at that step in bold."""
    rows = []
    for k in range(states.shape[0]):
        cells = []
        for j, token in enumerate(states[k].tolist()):
            word = "_" if token == tok.mask_id else tok.decode([token]) or "·"
            new = k > 0 and states[k - 1, j] == tok.mask_id and token != tok.mask_id
            cells.append(f"<td style='padding:2px 6px'>{'<b>' if new else ''}"
                         f"{html.escape(word)}{'</b>' if new else ''}</td>")
        rows.append(f"<tr><td style='color:gray'>step {k}</td>{''.join(cells)}</tr>")
    return "<table style='font-family:monospace'>" + "".join(rows) + "</table>"


def trajectory_widget(states: Tensor, tok: StoryTokenizer) -> widgets.VBox:
    """A slider over the B trajectories [B, T+1, L]: shows one unmasking at a time
    (· is the padding token that ends a short sentence)."""
    picker = widgets.IntSlider(0, 0, states.shape[0] - 1, description="sample")
    view = widgets.HTML(unmasking_html(states[0], tok))
    picker.observe(lambda change: setattr(view, "value", unmasking_html(states[change["new"]],
                                                                       tok)), "value")
    return widgets.VBox([picker, view])


def distribution_figure(texts: Sequence[str], bins: Mapping[str, Tensor],
                        title: str = "") -> Figure:
    """Horizontal bars: each distribution's mass [M + 1] on the candidate middles and on
    everything else ("other")."""
    labels = [*texts, "(any other middle)"]
    figure = Figure(figsize=(8, 0.32 * len(labels) + 1.2), layout="constrained")
    ax = figure.subplots()
    height = 0.8 / len(bins)
    for i, (name, mass) in enumerate(bins.items()):
        ax.barh(torch.arange(len(labels)) + i * height, mass.detach().cpu(), height,
                label=name)
    ax.set_yticks(torch.arange(len(labels)) + 0.4 - height / 2, labels)
    ax.invert_yaxis()
    ax.set_xlabel("probability")
    ax.legend(loc="lower right")
    ax.set_title(title)
    return figure


def exact_beta_widget(texts: Sequence[str], log_prior: Tensor, log_reward: Tensor,
                      betas: tuple[float, float] = (0.125, 8.0)) -> widgets.VBox:
    """A β slider over the exact posterior p(m) r(m)^β / Z on the candidate middles
    (log_prior, log_reward: [M]); no training involved, so it follows the slider live."""
    slider = beta_slider(1.0, betas)
    out = widgets.Output()

    def draw(beta: float) -> None:
        posterior = torch.softmax(log_prior + beta * log_reward, 0)
        prior = torch.softmax(log_prior, 0)
        pad = torch.zeros(1)
        show_in(out, distribution_figure(texts, {"prior (renormalised)": torch.cat([prior, pad]),
                                                 f"posterior, β = {beta:.2f}":
                                                     torch.cat([posterior, pad])}))

    slider.observe(lambda change: draw(change["new"]), "value")
    draw(slider.value)
    return widgets.VBox([slider, out])


class StoryPicker(widgets.VBox):
    """Pick a held-out story, or type a beginning and an ending, then "use this story":
    ``picker.problem`` becomes ``make_problem(beginning, ending, true_middle)`` (true_middle
    None when typed). It starts on the first story."""

    def __init__(self, stories: Sequence[Story],
                 make_problem: Callable[[str, str, str | None], InfillingProblem]) -> None:
        self.stories, self.make_problem = stories, make_problem
        self.choice = widgets.Dropdown(options=[(f"{i}: {s.beginning[0]}", i)
                                                for i, s in enumerate(stories[:50])],
                                       description="story", layout=widgets.Layout(width="70%"))
        self.beginning = widgets.Textarea(" ".join(stories[0].beginning),
                                          description="beginning",
                                          layout=widgets.Layout(width="90%"))
        self.ending = widgets.Text(stories[0].ending, description="ending",
                                   layout=widgets.Layout(width="90%"))
        button = widgets.Button(description="use this story", button_style="primary")
        self.message = widgets.HTML()
        self.problem = make_problem(self.beginning.value, self.ending.value, stories[0].middle)
        self.choice.observe(self._fill, "value")
        button.on_click(self._use)
        super().__init__([self.choice, self.beginning, self.ending, button, self.message])

    def _fill(self, change: dict) -> None:
        story = self.stories[change["new"]]
        self.beginning.value, self.ending.value = " ".join(story.beginning), story.ending

    def _use(self, _: object) -> None:
        story = self.stories[self.choice.value]
        typed = (self.beginning.value != " ".join(story.beginning)
                 or self.ending.value != story.ending)
        try:
            self.problem = self.make_problem(self.beginning.value, self.ending.value,
                                             None if typed else story.middle)
            self.message.value = "✓ story set: run the cells below"
        except ValueError as error:  # out-of-vocabulary words, a missing sentence, ...
            self.message.value = f"<span style='color:#b00'>{html.escape(str(error))}</span>"


def show_middles(columns: Mapping[str, Sequence[str]], rewards: Mapping[str, Tensor]) -> None:
    """Side-by-side lists of sampled middles with each one's log-reward."""
    parts = []
    for name, texts in columns.items():
        items = "".join(f"<li>{html.escape(t)} <span style='color:gray'>({float(r):.2f})</span>"
                        "</li>" for t, r in zip(texts, rewards[name], strict=True))
        parts.append(f"<div style='flex:1'><b>{html.escape(name)}</b><ol>{items}</ol></div>")
    display(HTML("<div style='display:flex;gap:24px'>" + "".join(parts) + "</div>"))
