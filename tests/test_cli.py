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
