"""The rtb-lab command line: JSON last line, clear errors."""

from __future__ import annotations

import json

from rtb_lab.cli import main


def test_finetune_prints_json_metrics_last(capsys, tmp_path):
    code = main(["finetune", "toy2d", "--steps", "20", "--fast", "--quiet", "--seed", "1",
                 "--out", str(tmp_path)])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    metrics = json.loads(last)
    for key in ("tv", "mass_in_modes", "log_z", "log_z_true", "log_z_err", "steps", "seconds"):
        assert key in metrics
    assert metrics["steps"] == 20
    assert 0 <= metrics["tv"] <= 1
    assert (tmp_path / "checkpoint.pt").is_file()


def test_unknown_target_is_a_clear_error(capsys):
    assert main(["finetune", "toy2d", "--target", "nope", "--steps", "1", "--quiet"]) == 2
    assert "unknown toy2d target 'nope'" in capsys.readouterr().err


def test_bad_beta_is_a_clear_error(capsys):
    assert main(["finetune", "toy2d", "--beta", "0", "--steps", "1", "--quiet"]) == 2
    assert "beta must be a finite number > 0" in capsys.readouterr().err


def test_finetune_mnist_runs_from_the_shipped_prior(capsys, tmp_path):
    code = main(["finetune", "mnist", "--target", "3", "--steps", "2", "--quiet",
                 "--out", str(tmp_path)])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["steps"] == 2 and metrics["target"] == "3"
    for key in ("mean_log_reward", "in_set", "diversity", "fid"):
        assert key in metrics
    assert (tmp_path / "checkpoint.pt").is_file()


def test_mnist_errors_are_clear(capsys):
    assert main(["finetune", "mnist", "--target", "primes", "--steps", "1", "--quiet"]) == 2
    assert "unknown class set 'primes'" in capsys.readouterr().err
    assert main(["compare", "mnist", "--methods", "guidance", "--quiet"]) == 2
    assert "unknown method(s) ['guidance']" in capsys.readouterr().err


def test_conditional_config_options():
    from rtb_lab.domains import mnist

    config = mnist.conditional_config(40, per_set_batch=3, lr=1e-3, warm=True, seed=7)
    assert (config.steps, config.batch_size, config.cond_groups) == (40, 36, 12)
    assert (config.lr, config.lr_end, config.scalar_lr) == (1e-3, 1e-4, 1e-2)
    assert config.explore == 0.0 and config.seed == 7
    assert mnist.conditional_config().explore == mnist.CONDITIONAL_CONFIG.explore > 0


def test_time_budget_plans_the_steps_from_the_measured_speed_then_stops():
    from types import SimpleNamespace

    import pytest

    from rtb_lab.train import TrainConfig, time_budget

    trainer = SimpleNamespace(step=0, seconds=0.0, config=TrainConfig(steps=1000))
    callback = time_budget(10.0, measure_steps=3)
    for _ in range(9):  # 1 s per step, the first step (warm-up) 5 s
        trainer.seconds += 5.0 if trainer.step == 0 else 1.0
        trainer.step += 1
        callback(trainer, {})
    # Measured after steps 2-4 (1 s each): 7 s left of 10 -> 7 more steps after step 4.
    assert trainer.config.steps == 11
    trainer.seconds += 2.5  # 10.5 s since the warm-up step: over the budget
    trainer.step += 1
    with pytest.raises(KeyboardInterrupt):
        callback(trainer, {})
