"""RL and importance-sampling baselines, the new metrics, and the comparison harness."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rtb_lab.baselines.importance import effective_sample_size, importance_from_trajectories
from rtb_lab.baselines.rl import RLTrainer, reinforce_loss, rl_config
from rtb_lab.cli import main
from rtb_lab.compare import compare
from rtb_lab.domains import toy2d
from rtb_lab.domains.toy2d.compare import METHODS, METRICS
from rtb_lab.metrics import diversity, elbo
from rtb_lab.train import TrainConfig


def test_reinforce_gradient_is_the_centred_score_times_grad_log_q():
    log_q = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    log_r, log_p = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([-1.5, -2.0, -2.0])
    reinforce_loss(log_q, log_r, 1.0, kl_weight=0.5, log_pf_prior=log_p).backward()
    score = log_r - 0.5 * (log_q.detach() - log_p)
    torch.testing.assert_close(log_q.grad, -(score - score.mean()) / 3)


def test_kl_penalty_needs_the_prior():
    with pytest.raises(ValueError, match="log_pf_prior"):
        reinforce_loss(torch.zeros(2), torch.zeros(2), 1.0, kl_weight=1.0)


def test_rl_trainer_is_on_policy_and_steps(tiny_prior, family):
    from rtb_lab.nets import posterior_from_prior

    log_r = lambda x: -x.square().sum(1)  # noqa: E731
    with pytest.raises(ValueError, match="on-policy"):
        RLTrainer(tiny_prior, posterior_from_prior(tiny_prior), family, log_r, (2,),
                  TrainConfig(batch_size=8), kl_weight=1.0)
    trainer = RLTrainer(tiny_prior, posterior_from_prior(tiny_prior), family, log_r, (2,),
                        rl_config(TrainConfig(batch_size=8, steps=2)), kl_weight=1.0)
    history = trainer.train(progress=False)
    assert len(history) == 2 and math.isfinite(trainer.current_log_z())


def test_effective_sample_size_of_equal_and_degenerate_weights():
    assert effective_sample_size(torch.zeros(10)) == pytest.approx(10)
    assert effective_sample_size(torch.tensor([0.0, -1e4, -1e4])) == pytest.approx(1)


def test_importance_weights_are_r_to_the_beta(traj):
    result = importance_from_trajectories(traj.with_log_reward(torch.arange(6.0)), beta=2.0)
    torch.testing.assert_close(result.log_weights, 2.0 * torch.arange(6.0))
    assert result.log_z == pytest.approx(math.log(torch.exp(2.0 * torch.arange(6.0)).mean()))


def test_diversity_and_elbo():
    assert diversity(torch.tensor([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)
    assert elbo(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([3.0]), 1.0) == 2.0


def test_every_method_is_charged_the_same_budget():
    budget = 600_000
    table = compare(seeds=1, budget=budget)
    charged = {m: table.values[m]["evals"][0] for m in METHODS}
    print("network evaluations charged:", charged)
    one_batch = 3 * 128 * toy2d.NUM_STEPS  # the costliest step: RTB's
    assert all(budget - one_batch <= c <= budget for c in charged.values())
    assert max(charged.values()) - min(charged.values()) <= one_batch
    assert set(table.summary()) == set(METHODS)
    for row in table.summary().values():
        assert set(METRICS) <= set(row)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"methods": ("rtb", "nope")}, KeyError, "unknown method"),
    ({"domain": "no-such-domain"}, KeyError, "unknown domain"),
    ({"budget": 0}, ValueError, "budget must be > 0"),
    ({"seeds": 0}, ValueError, "seeds must be > 0"),
    ({"budget": 10}, ValueError, "too small"),
])
def test_compare_rejects_bad_input(kwargs, error, message):
    with pytest.raises(error, match=message):
        compare(**kwargs)


def test_table_outputs(tmp_path):
    table = compare(methods=("importance", "guidance"), seeds=2, budget=30_000)
    markdown = table.to_markdown()
    assert markdown.count("\n") == 3 and "±" in markdown
    lines = table.to_csv(tmp_path / "t.csv").read_text().splitlines()
    assert lines[0].startswith("method,tv_mean,tv_std") and len(lines) == 3
    figure = table.plot()
    assert len(figure.axes) == 4
    json.dumps(table.to_dict())
    assert set(table.samples) == {"importance", "guidance"}
    assert table.samples["importance"].shape[1] == 2


def test_cli_compare_prints_json_last(capsys, tmp_path):
    code = main(["compare", "toy2d", "--methods", "importance", "dps", "--seeds", "1",
                 "--budget", "20000", "--quiet", "--out", str(tmp_path)])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["table"]) == {"importance", "dps"}
    assert (tmp_path / "compare.csv").is_file() and (tmp_path / "compare.png").is_file()


def test_cli_compare_bad_input_is_a_clear_error(capsys):
    assert main(["compare", "toy2d", "--methods", "nope"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["compare", "toy2d", "--seeds", "0"]) == 2
    assert main(["compare", "toy2d", "--budget", "-1"]) == 2
