"""Visualisation: each plot, animation and widget built from tiny inputs and driven from Python."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from rtb_lab.diffusion import Trajectory
from rtb_lab.domains.toy2d import NINE_WEIGHTS, custom_target, get_target, mode_reward
from rtb_lab.domains.toy2d.gmm import GaussianMixture, grid_mixture
from rtb_lab.metrics import mode_weights, total_variation
from rtb_lab.viz import widgets
from rtb_lab.viz.animate import PALETTE, frame_steps, log_ratio_figure, trajectory_animation
from rtb_lab.viz.plots import (
    compare_panels,
    plot_density,
    plot_mode_weights,
    plot_samples,
    plot_training,
)
from rtb_lab.viz.widgets import (
    BetaPanel,
    ModePicker,
    TrainingDashboard,
    exact_posterior_view,
)

matplotlib.use("Agg")  # the library never uses pyplot; this only guards stray imports

GRID = 40


@pytest.fixture(scope="module")
def truth():
    return get_target("25to9").truth(grid_size=GRID)


@pytest.fixture(scope="module")
def nine_samples():
    return nine_mixture().sample(500, torch.Generator().manual_seed(0))


def nine_mixture() -> GaussianMixture:
    """The paper's 9-mode posterior built by hand: 9 components on {-5, 0, 5}^2."""
    means = torch.cartesian_prod(torch.tensor([-5.0, 0.0, 5.0]), torch.tensor([-5.0, 0.0, 5.0]))
    return GaussianMixture(means, 0.3**0.5, torch.tensor(NINE_WEIGHTS))


def axes():
    return Figure().subplots()


# ------------------------------------------------------------------------ plots
def test_density_and_samples_use_fixed_square_limits(truth, nine_samples):
    ax = plot_samples(axes(), nine_samples, truth, title="nine", max_points=100)
    lo, hi = float(truth.axis[0]), float(truth.axis[-1])
    assert ax.get_xlim() == pytest.approx((lo, hi)) and ax.get_ylim() == pytest.approx((lo, hi))
    assert ax.get_title() == "nine"
    assert len(ax.collections[-1].get_offsets()) == 100  # the scatter, capped at max_points
    assert len(plot_density(axes(), truth, filled=True).collections) > 0


def test_mode_weights_show_only_weighted_modes_with_tv(truth, nine_samples):
    sample_weights = mode_weights(nine_samples, truth.centers)
    ax = plot_mode_weights(axes(), sample_weights, truth.mode_weights, truth.centers)
    assert len(ax.patches) == 2 * 9  # the 9 posterior modes, two bars each
    tv = total_variation(sample_weights, truth.mode_weights)
    assert ax.get_title() == f"TV = {tv:.3f}"


def test_training_curves_with_truth_line():
    history = [{"step": s, "loss": 1.0 / (s + 1), "log_z": -1 + s / 10} for s in range(10)]
    evaluations = [{"step": 10, "log_z": -0.1, "log_z_true": 0.0}]
    loss_ax, log_z_ax = plot_training(Figure().subplots(1, 2), history, evaluations)
    assert loss_ax.get_yscale() == "log"
    assert list(loss_ax.lines[0].get_ydata()) == [r["loss"] for r in history]
    truth_line = log_z_ax.lines[-1]  # falls back to the evaluation's log_z_true
    assert list(truth_line.get_ydata()) == [0.0, 0.0]
    _, log_z_ax = plot_training(Figure().subplots(1, 2), history, [], log_z_true=1.5)
    assert list(log_z_ax.lines[-1].get_ydata()) == [1.5, 1.5]


def test_compare_panels_titles_carry_tv(truth, nine_samples):
    prior_samples = grid_mixture().sample(500, torch.Generator().manual_seed(1))
    figure = compare_panels({"prior": prior_samples, "rtb": nine_samples}, truth,
                            {"rtb": {"tv": 0.0123}})
    first, second = figure.axes
    assert second.get_title() == "rtb\nTV = 0.012"
    tv = total_variation(mode_weights(prior_samples, truth.centers), truth.mode_weights)
    assert first.get_title() == f"prior\nTV = {tv:.3f}"


# -------------------------------------------------------------------- animation
def test_frame_steps_always_end_at_the_last_state():
    assert frame_steps(8, 3) == [0, 3, 6, 8]
    assert frame_steps(8, 2) == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError):
        frame_steps(8, 0)


def test_animation_frames_and_colours_follow_final_mode(traj):
    centers = torch.tensor([[-5.0, 0.0], [5.0, 0.0]])
    states = traj.states.clone()  # [6, 9, 2]
    states[:, -1] = torch.tensor([[-5.0, 0.1], [4.0, 0.0], [-6.0, 1.0],
                                  [5.0, 5.0], [-1.0, 0.0], [0.5, 0.0]])
    figure = trajectory_animation(Trajectory(states), centers, max_particles=5, every=3)
    assert len(figure.frames) == len(frame_steps(traj.num_steps, 3)) == 4
    assert len(figure.layout.sliders[0].steps) == 4
    colours = figure.frames[0].data[0].marker.color
    left, right = PALETTE[0], PALETTE[1]
    # Colours come from the final states, so they are the same in every frame.
    assert list(colours) == [left, right, left, right, left]
    assert list(figure.frames[-1].data[0].marker.color) == list(colours)
    assert list(figure.frames[-1].data[0].x) == pytest.approx(states[:5, -1, 0].tolist(), abs=1e-3)


def test_log_ratio_cumulative_ends_at_trajectory_log_ratio():
    log_q, log_p = torch.randn(7, 5), torch.randn(7, 5)
    figure = log_ratio_figure(log_q, log_p, n_show=3)
    traces = {trace.name: trace for trace in figure.data}
    assert len(figure.data) == 2 * (3 + 1)
    sums = (log_q - log_p).double().sum(1)
    assert traces["τ 2 cumulative"].y[-1] == pytest.approx(float(sums[2]))
    assert traces["mean cumulative"].y[-1] == pytest.approx(float(sums.mean()))
    assert "log q(τ)/p(τ)" in figure.layout.title.text


# ---------------------------------------------------------------------- widgets
def fake_trainer(step, samples):
    history = [{"step": s, "loss": 1.0 / (s + 1), "log_z": 0.1 * s} for s in range(step)]
    calls = []

    def sample(n, generator=None):
        calls.append(generator)
        return SimpleNamespace(x=samples[:n])

    return SimpleNamespace(step=step, history=history, evaluations=[], sample=sample,
                           sample_calls=calls)


def test_dashboard_redraws_every_n_steps_and_at_the_final_eval(truth, nine_samples):
    sampled = []
    dashboard = TrainingDashboard(truth, sample_fn=lambda n: sampled.append(n) or nine_samples,
                                  every=4, num_samples=50)
    for step in range(1, 11):
        dashboard.on_step(fake_trainer(step, nine_samples), {"step": step - 1})
    assert dashboard.n_draws == 2 and dashboard.last_step == 8 and sampled == [50, 50]
    trainer = fake_trainer(10, nine_samples)
    dashboard.on_eval(trainer, {"step": 10, "tv": 0.25})
    assert dashboard.n_draws == 3 and dashboard.last_step == 10
    assert "tv = 0.25" in dashboard.status.value
    dashboard.on_eval(trainer, {"step": 10, "tv": 0.2})  # already drawn at this step
    assert dashboard.n_draws == 3
    assert len(dashboard.figure.axes) == 3


def test_dashboard_samples_trainer_with_its_own_generator(truth, nine_samples):
    dashboard = TrainingDashboard(truth, every=1, num_samples=30)
    trainer = fake_trainer(1, nine_samples)
    dashboard.on_step(trainer, {"step": 0})
    assert trainer.sample_calls == [dashboard.generator]
    assert dashboard.last_samples.shape == (30, 2)
    no_samples = TrainingDashboard(None, every=1)
    no_samples.on_step(trainer, {"step": 0})
    assert no_samples.last_samples is None and len(no_samples.figure.axes) == 2


def test_beta_panel_resamples_at_the_new_beta(nine_samples):
    prior_samples = grid_mixture().sample(400, torch.Generator().manual_seed(2))
    sample_calls, truth_calls = [], []

    def sample_fn(beta, n):
        sample_calls.append((beta, n))
        return nine_samples[:n] if beta >= 1 else prior_samples[:n]

    def truth_fn(beta):
        truth_calls.append(beta)
        return get_target("25to9", beta).truth(grid_size=GRID)

    panel = BetaPanel(sample_fn, truth_fn, num_samples=300)
    assert sample_calls == [(1.0, 300)] and panel.last_beta == 1.0
    tv_at_one = panel.last_metrics["tv"]
    panel.set_beta(0.5)
    assert sample_calls[-1] == (0.5, 300) and panel.last_beta == 0.5
    assert panel.last_metrics["tv"] != tv_at_one
    assert "β = 0.50" in panel.label.value
    panel.set_beta(1.0)
    assert truth_calls == [1.0, 0.5]  # the exact posterior is cached per beta
    panel.set_beta(100.0)
    assert panel.last_beta == 4.0  # clamped to the slider's range


def test_panel_for_another_parameter_is_labelled_with_it(nine_samples, truth):
    panel = BetaPanel(lambda zeta, n: nine_samples[:n], lambda zeta: truth, num_samples=50,
                      name="ζ")
    panel.set_beta(2.0)
    assert panel.slider.description == "ζ"
    assert panel.label.value.startswith("ζ = 2.00")


def test_beta_panel_uses_evaluate_fn(nine_samples, truth):
    panel = BetaPanel(lambda beta, n: nine_samples[:n], lambda beta: truth, num_samples=10,
                      evaluate_fn=lambda beta, x: {"tv": beta, "n": x.shape[0]})
    assert panel.last_metrics == {"tv": 1.0, "n": 10}
    panel.set_beta(2.0)
    assert panel.last_metrics == {"tv": 2.0, "n": 10}


def test_mode_reward_is_zero_for_prior_weights_and_gives_the_reweighted_posterior():
    prior = grid_mixture()
    x = prior.sample(200, torch.Generator().manual_seed(3))
    assert mode_reward(prior, prior.weights)(x).abs().max() < 1e-5
    nine = nine_mixture()
    paper = get_target("25to9")
    weights = torch.zeros(25, dtype=torch.float64)
    weights[(prior.means.abs() <= 5).all(1)] = nine.weights
    by_hand = nine.log_prob(x.double()) - prior.log_prob(x.double())
    assert torch.allclose(mode_reward(prior, weights)(x).double(), by_hand, atol=1e-4)
    assert torch.allclose(paper.log_reward(x).double(), by_hand, atol=1e-4)
    picked = torch.zeros(25)
    picked[[0, 24]] = 1.0
    truth = custom_target(prior, mode_reward(prior, picked)).truth(grid_size=GRID)
    assert float(truth.mode_weights[[0, 24]].sum()) > 0.99
    assert truth.log_z == pytest.approx(0.0, abs=0.05)  # p_w is normalised


def test_mode_picker_normalises_and_calls_back():
    prior = grid_mixture()
    received = []
    picker = ModePicker(prior.means, lambda weights, beta: received.append((weights, beta)))
    assert picker.modes.options[0][0] == "(-10, -10)"
    assert torch.allclose(picker.selected_weights(), torch.full((25,), 1 / 25).double())
    picker.modes.value = (0, 3)
    picker.beta_slider.value = 2.0
    picker.button.click()
    weights, beta = received[-1]
    assert beta == 2.0 and weights.sum() == pytest.approx(1.0)
    assert weights[0] == weights[3] == 0.5 and weights.count_nonzero() == 2
    picker.modes.value = ()
    picker.button.click()  # nothing picked: a message, no callback
    assert len(received) == 1
    with pytest.raises(ValueError):
        picker.selected_weights()


def test_exact_posterior_view_displays_a_png_from_the_picker(monkeypatch):
    shown = []
    monkeypatch.setattr(widgets, "display", shown.append)
    prior = grid_mixture()
    picker = ModePicker(prior.means, exact_posterior_view(prior, grid_size=30))
    picker.modes.value = (12,)
    picker.button.click()
    assert len(shown) == 1 and shown[0].data.startswith(b"\x89PNG")


def test_training_and_plots_never_import_widgets():
    code = ("import sys, rtb_lab.train, rtb_lab.viz.plots, rtb_lab.viz.animate; "
            "assert 'ipywidgets' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_class_set_panel_redraws_once_per_change():
    from rtb_lab.viz.images import ClassSetPanel

    calls = []

    def sample_fn(classes, beta, n):
        calls.append((classes, beta, n))
        return torch.zeros(n, 1, 28, 28)

    panel = ClassSetPanel(sample_fn, lambda classes, x: {"in_set": len(classes) / 10},
                          num_samples=8)
    assert calls == [((0, 2, 4, 6, 8), 1.0, 8)] and panel.last_metrics == {"in_set": 0.5}
    panel.presets["odd"].click()  # five toggles flip, one redraw
    assert calls[-1] == ((1, 3, 5, 7, 9), 1.0, 8) and len(calls) == 2
    panel.toggles[3].value = False
    assert calls[-1][0] == (1, 5, 7, 9) and "in_set = 0.4" in panel.label.value
    panel.slider.value = 2.0
    assert calls[-1] == ((1, 5, 7, 9), 2.0, 8) and panel.last_beta == 2.0
    panel.set_classes(())
    assert len(calls) == 4 and "at least one class" in panel.label.value
    assert "digits 1579, β = 2.00" in panel.figure.axes[0].get_title()


def test_class_set_panel_with_named_classes_and_colour_images():
    from rtb_lab.viz.images import ClassSetPanel, tile

    names = ("disc", "ring", "square")
    panel = ClassSetPanel(lambda classes, beta, n: torch.rand(n, 3, 8, 8) * 2 - 1,
                          lambda classes, x: {}, classes=(0,), names=names,
                          presets={"round": (0, 1)}, num_samples=4)
    assert [t.description for t in panel.toggles] == list(names)
    panel.presets["round"].click()
    assert panel.classes == (0, 1) and "disc+ring, β = 1.00" in panel.figure.axes[0].get_title()
    mosaic = tile(torch.zeros(4, 3, 8, 8), ncol=2)
    assert mosaic.shape == (17, 17, 3) and mosaic[8, 0, 0] == 255 and mosaic[0, 0, 0] == 128


def test_format_metrics_shows_numbers_and_text_and_skips_the_rest():
    from rtb_lab.viz.widgets import format_metrics

    line = format_metrics({"in_set": 0.83125, "drawn by": "RTB posterior", "steps": 476,
                           "curve": [1, 2]})
    assert line == "in_set = 0.8313 · drawn by: RTB posterior · steps = 476"


def test_inverse_views_draw_and_report(unet_prior):
    from rtb_lab.domains import toy2d
    from rtb_lab.inverse import GaussianBlur
    from rtb_lab.viz import inverse as inverse_views

    figure, metrics = inverse_views.observation_figure(toy2d.load_prior(), toy2d.make_family(),
                                                       3.0, 1.0, num=200)
    assert len(figure.axes) >= 2 and set(metrics) == {"tv", "marginal_tv", "log_p_y"}
    assert metrics["log_p_y"] == pytest.approx(-4.06, abs=0.01)  # closed form, docs/inverse.md
    truth = torch.rand(1, 1, 28, 28) * 2 - 1
    figure, metrics = inverse_views.restore_figure(unet_prior, truth, GaussianBlur((1, 28, 28)),
                                                   0.1, num_samples=2)
    assert len(figure.axes) >= 5 and 0 <= metrics["calibration_90"] <= 1
    view = inverse_views.restore_widget(unet_prior, truth.repeat(3, 1, 1, 1),
                                        {"blur": GaussianBlur((1, 28, 28))}, num_samples=2)
    assert [child.description for child in view.children[:3]] == ["image", "degradation", "σ"]
