"""The trainer: interrupts, resume, determinism, replay, bad input."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from rtb_lab import rtb
from rtb_lab.checkpoint import CheckpointError
from rtb_lab.diffusion import EulerMaruyama, Trajectory, trajectory_log_prob
from rtb_lab.nets import DriftMLP, ResidualPosterior, posterior_from_prior
from rtb_lab.train import RTBTrainer, TrainConfig

CONFIG = TrainConfig(steps=6, batch_size=16, explore_hold=2, explore_end=5, eval_every=3,
                     log_z_init_samples=64, replay_fraction=0.25, seed=3)


def quadratic_log_reward(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * (x - 1.0).square().sum(1)


def make(tiny_prior, config=CONFIG, out_dir=None, **kwargs) -> RTBTrainer:
    torch.manual_seed(5)
    return RTBTrainer(tiny_prior, posterior_from_prior(tiny_prior), EulerMaruyama(8),
                      quadratic_log_reward, (2,), config, out_dir=out_dir, **kwargs)


def params(trainer: RTBTrainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.posterior.parameters()] + \
        [trainer.log_z.value.detach().clone()]


def test_training_reduces_the_loss_and_moves_toward_reward(tiny_prior):
    config = TrainConfig(steps=60, batch_size=64, lr=1e-2, explore=0.0, eval_every=0,
                         log_z_init_samples=256)
    trainer = make(tiny_prior, config)
    trainer.train(progress=False)
    losses = [h["loss"] for h in trainer.history]
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    assert trainer.history[-1]["mean_log_reward"] > trainer.history[0]["mean_log_reward"]


def test_log_z_starts_at_the_importance_estimate(tiny_prior):
    trainer = make(tiny_prior)
    assert float(trainer.log_z().detach()) < 0  # E_p[r] < 1 for r = exp(-|x-1|^2/2)
    fixed = make(tiny_prior, TrainConfig(**{**CONFIG.__dict__, "log_z_init": 1.5}))
    assert float(fixed.log_z().detach()) == pytest.approx(1.5)


def test_same_seed_gives_identical_runs(tiny_prior):
    a, b = make(tiny_prior), make(tiny_prior)
    a.train(progress=False)
    b.train(progress=False)
    without_time = lambda h: {k: v for k, v in h.items() if k != "seconds"}  # noqa: E731
    assert [without_time(h) for h in a.history] == [without_time(h) for h in b.history]
    assert [without_time(m) for m in a.evaluations] == [without_time(m) for m in b.evaluations]
    for pa, pb in zip(params(a), params(b), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


@pytest.mark.parametrize("where", ["callback", "reward"])
def test_interrupt_then_resume_equals_uninterrupted_run(tiny_prior, tmp_path, where):
    reference = make(tiny_prior)
    reference.train(progress=False)

    calls = {"n": 0}

    def reward_that_interrupts(x):
        calls["n"] += 1
        if calls["n"] == 5:  # inside a step, before anything is committed
            raise KeyboardInterrupt
        return quadratic_log_reward(x)

    def stop_after_step_3(trainer, record):
        if trainer.step == 3:
            raise KeyboardInterrupt

    if where == "reward":
        first = make(tiny_prior, out_dir=tmp_path)
        first.log_reward_fn = reward_that_interrupts
        first.train(progress=False)
    else:
        first = make(tiny_prior, out_dir=tmp_path)
        first.train(progress=False, callbacks=[stop_after_step_3])
    assert first.interrupted
    stopped_at = first.step
    assert 0 < stopped_at < CONFIG.steps
    assert len(first.history) == stopped_at  # no half-recorded step
    assert (tmp_path / "checkpoint.pt").is_file()

    resumed = make(tiny_prior).resume(tmp_path / "checkpoint.pt")
    assert resumed.step == stopped_at
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert resumed.optimizer.state_dict()["state"][0]["step"] == \
        saved["optimizer"]["state"][0]["step"]
    torch.testing.assert_close(resumed.optimizer.state_dict()["state"][0]["exp_avg"],
                               first.optimizer.state_dict()["state"][0]["exp_avg"])
    resumed.train(progress=False)
    assert resumed.step == CONFIG.steps
    for p_ref, p_res in zip(params(reference), params(resumed), strict=True):
        torch.testing.assert_close(p_res, p_ref, rtol=0, atol=1e-6)


def test_missing_and_corrupt_checkpoints_are_refused(tiny_prior, tmp_path):
    trainer = make(tiny_prior)
    with pytest.raises(CheckpointError, match="not found"):
        trainer.resume(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        trainer.resume(bad)
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an rtb-lab-trainer/1 checkpoint"):
        trainer.resume(tmp_path / "other.pt")


def test_trainer_refuses_bad_setups(tiny_prior):
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        make(tiny_prior, TrainConfig(beta=0.0))
    with pytest.raises(ValueError, match="must be frozen"):
        unfrozen = DriftMLP(hidden=8)
        RTBTrainer(unfrozen, posterior_from_prior(unfrozen), EulerMaruyama(8),
                   quadratic_log_reward, (2,), CONFIG)
    with pytest.raises(ValueError, match="same device"):
        RTBTrainer(tiny_prior, posterior_from_prior(tiny_prior).to("meta"), EulerMaruyama(8),
                   quadratic_log_reward, (2,), CONFIG)
    with pytest.raises(ValueError, match="non-finite"):
        RTBTrainer(tiny_prior, posterior_from_prior(tiny_prior), EulerMaruyama(8),
                   lambda x: torch.full((x.shape[0],), float("nan")), (2,), CONFIG)
    with pytest.raises(ValueError, match=r"shape \[B\]"):
        RTBTrainer(tiny_prior, posterior_from_prior(tiny_prior), EulerMaruyama(8),
                   lambda x: x, (2,), CONFIG)


def test_replay_buffer_is_used_and_checkpointed(tiny_prior, tmp_path):
    trainer = make(tiny_prior, out_dir=tmp_path)
    trainer.train(progress=False)
    fresh_per_step = CONFIG.batch_size - int(CONFIG.replay_fraction * CONFIG.batch_size)
    assert len(trainer.replay) == CONFIG.steps * fresh_per_step
    resumed = make(tiny_prior).resume(tmp_path / "checkpoint.pt")
    torch.testing.assert_close(resumed.replay.data.states, trainer.replay.data.states)


def test_conditional_posterior_with_vargrad_groups(tiny_prior):
    """A posterior conditioned on beta: VarGrad per condition group, beta read from cond."""
    config = TrainConfig(steps=3, batch_size=16, cond_groups=4, loss="vargrad", eval_every=0,
                         log_z_init_samples=32)
    trainer = RTBTrainer(tiny_prior, ResidualPosterior(tiny_prior, cond_dim=1, hidden=8),
                         EulerMaruyama(8), lambda x, c: quadratic_log_reward(x), (2,), config,
                         cond_sampler=lambda n, g: torch.rand(n, 1, generator=g) + 0.5,
                         beta_of_cond=lambda c: c[:, 0])
    trainer.train(progress=False)
    assert trainer.step == 3
    assert len(trainer.history) == 3


def test_with_steps_scales_the_exploration_schedule():
    config = TrainConfig(steps=600, explore_hold=50, explore_end=300).with_steps(120)
    assert (config.steps, config.explore_hold, config.explore_end) == (120, 10, 60)
    assert config.explore_at(9) == 0.5 and config.explore_at(60) == 0.0


def test_cosine_lr_schedule_reaches_lr_end_and_is_applied_each_step(tiny_prior):
    config = TrainConfig(steps=4, lr=1e-2, lr_end=1e-3)
    assert config.lr_at(0) == pytest.approx(1e-2) and config.lr_at(2) == pytest.approx(5.5e-3)
    assert config.lr_at(4) == pytest.approx(1e-3) and config.lr_at(40) == pytest.approx(1e-3)
    assert TrainConfig(lr=1e-2).lr_at(99) == 1e-2
    with pytest.raises(ValueError, match="lr_end"):
        TrainConfig(lr=1e-3, lr_end=1e-2).validate()
    trainer = make(tiny_prior, TrainConfig(steps=4, batch_size=8, lr=1e-2, lr_end=1e-3,
                                           eval_every=0, log_z_init_samples=8))
    trainer.train(3, progress=False)  # the step-2 update used lr_at(2)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(5.5e-3)


def test_log_z_init_samples_zero_is_refused_unless_log_z_is_given(tiny_prior):
    with pytest.raises(ValueError, match="log_z_init_samples must be >= 1"):
        TrainConfig(log_z_init_samples=0).validate()
    trainer = make(tiny_prior, TrainConfig(steps=1, batch_size=8, eval_every=0,
                                           log_z_init=-0.5, log_z_init_samples=0))
    assert trainer.log_z().item() == pytest.approx(-0.5)  # no prior samples were needed


def test_residual_per_beta_divides_the_loss_by_beta_squared(tiny_prior):
    # Same batch, beta = 2: the per-beta residual is delta / 2, so the loss is a quarter.
    losses = []
    for per_beta in (False, True):
        config = TrainConfig(steps=1, batch_size=16, beta=2.0, explore=0.0, eval_every=0,
                             log_z_init_samples=32, residual_per_beta=per_beta, seed=1)
        trainer = make(tiny_prior, config)
        traj = trainer.collect()
        loss_of_log_pf, _ = trainer.loss_fn(traj)
        with torch.no_grad():
            losses.append(float(loss_of_log_pf(trajectory_log_prob(
                trainer.posterior, trainer.family, traj))))
    assert losses[0] > 1e-3
    assert losses[1] == pytest.approx(losses[0] / 4, rel=1e-5)


def test_log_q_recorded_while_sampling_gives_the_same_gradient_and_replay_drops_it(tiny_prior):
    config = TrainConfig(steps=2, batch_size=16, explore=0.3, chunk_steps=3, eval_every=0,
                         log_z_init_samples=16, replay_fraction=0.25, seed=4)
    trainer = make(tiny_prior, config)
    with torch.no_grad():  # a posterior away from the prior, so log q != log p
        for p in trainer.posterior.parameters():
            p.add_(0.05 * torch.randn_like(p))
    traj = trainer.sample(16, explore=0.3, generator=torch.Generator().manual_seed(0))
    assert traj.log_pf is not None  # recorded at the un-inflated std, despite exploration
    with torch.no_grad():
        scored = trajectory_log_prob(trainer.posterior, trainer.family, traj)
    torch.testing.assert_close(traj.log_pf, scored, rtol=1e-5, atol=1e-4)
    assert trainer.sample(4, use_prior=True).log_pf is None  # never the prior's as q's
    grads = []
    for cached in (traj.log_pf, None):
        loss_of_log_pf, _ = trainer.loss_fn(traj)
        trainer.optimizer.zero_grad()
        rtb.backward_through_trajectories(loss_of_log_pf, trainer.posterior, trainer.family,
                                          traj, 3, log_pf=cached)
        grads.append([p.grad.clone() for p in trainer.posterior.parameters()])
    for with_cache, without in zip(*grads, strict=True):
        torch.testing.assert_close(with_cache, without, rtol=1e-4, atol=1e-6)
    trainer.replay.add(traj)
    assert trainer.replay.sample(4).log_pf is None
    assert Trajectory.cat([traj[:2], trainer.replay.sample(2)]).log_pf is None


class _ScaledDrift(torch.nn.Module):
    """A posterior with a learned scalar (named guide*, like a guidance scale) on a fixed
    extra drift toward (1, 1)."""

    def __init__(self, prior) -> None:
        super().__init__()
        self.net = posterior_from_prior(prior)
        self.guide = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, cond=None):
        return self.net(x, t, cond) + self.guide * torch.ones_like(x)


def test_policy_scalars_get_their_own_learning_rate_and_learn(tiny_prior):
    config = TrainConfig(steps=4, batch_size=16, lr=1e-3, lr_end=1e-4, scalar_lr=2e-2,
                         eval_every=0, log_z_init_samples=8, grad_clip=1.0)
    trainer = RTBTrainer(tiny_prior, _ScaledDrift(tiny_prior), EulerMaruyama(8),
                         quadratic_log_reward, (2,), config)
    groups = trainer.optimizer.param_groups
    assert [len(g["params"]) for g in groups][1] == 1 and groups[1]["params"][0] is \
        trainer.posterior.guide
    trainer.train(3, progress=False)  # the step-2 update used lr_at(2) and 20 x lr_at(2)
    assert groups[0]["lr"] == pytest.approx(config.lr_at(2))
    assert groups[1]["lr"] == pytest.approx(20 * config.lr_at(2))
    assert float(trainer.posterior.guide.detach().abs()) > 0


def test_a_callback_can_replan_the_run_length(tiny_prior):
    trainer = make(tiny_prior, TrainConfig(steps=3, batch_size=8, eval_every=0,
                                           log_z_init_samples=8))

    def replan(trainer, record):
        if trainer.step == 1:
            trainer.config = replace(trainer.config, steps=5)

    trainer.train(progress=False, callbacks=[replan])
    assert trainer.step == 5 and trainer.evaluations[-1]["step"] == 5
    trainer.train(2, progress=False, callbacks=[replan])  # an explicit count is kept
    assert trainer.step == 7
