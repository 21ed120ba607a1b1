"""Data-parallel RTB on torch.distributed: 2 gloo processes on the CPU.

The gradient after one 2-rank step must equal the single-process gradient on the two
ranks' trajectories concatenated (TB and VarGrad, one-pass and chunked, conditional
groups shared across ranks); a 2-rank `finetune toy2d --fast` must reach the quality of
one process; the helpers must be no-ops without a process group.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from rtb_lab import distributed
from rtb_lab.diffusion import Trajectory
from rtb_lab.domains import toy2d
from rtb_lab.domains.toy2d.amortised import conditional_posterior
from rtb_lab.domains.toy2d.prior import load_prior, make_family
from rtb_lab.domains.toy2d.targets import resolve_target
from rtb_lab.train import RTBTrainer, TrainConfig

TIMEOUT_S = 120  # the gradient run takes about 15 s
FINETUNE_TIMEOUT_S = 300  # a hang guard: the 2-rank fast run takes about 95 s on 2 free cores
WORLD = 2
BASE = TrainConfig(steps=4, batch_size=16, log_z_init_samples=64, eval_every=0, seed=4)
CASES = {
    "rtb": BASE,
    "vargrad": TrainConfig(**{**BASE.__dict__, "loss": "vargrad"}),
    "vargrad-chunked": TrainConfig(**{**BASE.__dict__, "loss": "vargrad", "chunk_steps": 30}),
    "rtb-cond": TrainConfig(**{**BASE.__dict__, "cond_groups": 4}),
    "vargrad-cond": TrainConfig(**{**BASE.__dict__, "loss": "vargrad", "cond_groups": 4}),
}
RESUME = TrainConfig(**{**BASE.__dict__, "replay_fraction": 0.25})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shared_and_own_condition(n: int, generator: torch.Generator) -> torch.Tensor:
    """[n, 1] log beta: the first group is log 1 on every rank (a group spanning ranks),
    the others are drawn (groups of one rank)."""
    cond = torch.rand(n, 1, generator=generator) * math.log(2.0)
    cond[0] = 0.0
    return cond


def make_case(name: str, out_dir: Path | None = None) -> RTBTrainer:
    """A toy2d trainer (shipped prior) for one test case."""
    config = RESUME if name == "resume" else CASES[name]
    if not name.endswith("-cond"):
        return toy2d.make_trainer("25to9", config, out_dir=out_dir, eval_samples=256)
    torch.manual_seed(0)
    target, prior = resolve_target("25to9"), load_prior()
    return RTBTrainer(prior, conditional_posterior(prior, hidden=16), make_family(),
                      lambda x, cond: target.checked_log_reward(x), (2,), config,
                      cond_sampler=shared_and_own_condition,
                      beta_of_cond=lambda cond: torch.exp(cond[:, 0]), out_dir=out_dir)


def one_step(trainer: RTBTrainer, traj: Trajectory | None = None
             ) -> tuple[Trajectory, dict[str, float]]:
    """Run one train_step (on `traj` when given); return its batch and record. The
    gradients stay in ``param.grad``."""
    batches = []

    def collect() -> Trajectory:
        batches.append(traj if traj is not None else RTBTrainer.collect(trainer))
        return batches[-1]

    trainer.collect = collect
    record = trainer.train_step()
    return batches[0], record


def grads(trainer: RTBTrainer) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in trainer._trained_parameters() if p.grad is not None]


def _worker(rank: int, port: int, out: str) -> None:
    """One rank: every gradient case, then an interrupted-and-resumed run."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed.init_from_env(backend="gloo", timeout_s=TIMEOUT_S)
    for name in CASES:
        trainer = make_case(name)
        initial = [p.detach().clone() for p in trainer._trained_parameters()]
        traj, record = one_step(trainer)
        torch.save({"initial": initial, "traj": traj, "record": record, "grads": grads(trainer)},
                   Path(out) / f"{name}.rank{rank}.pt")
    # Resume: 2 steps (checkpointed), then 2 more, beside a trainer resumed at step 2.
    first = make_case("resume", Path(out) / "resume")
    first.train(2, progress=False)
    resumed = make_case("resume").resume(Path(out) / "resume" / "checkpoint.pt")
    at_save = {"generator": first.generator.get_state(), "replay": first.replay.data.states,
               "resumed_generator": resumed.generator.get_state(),
               "resumed_replay": resumed.replay.data.states}
    first.train(progress=False)
    resumed.train(progress=False)
    torch.save({**at_save, "final": [p.detach().clone() for p in first._trained_parameters()],
                "resumed_final": [p.detach().clone() for p in resumed._trained_parameters()]},
               Path(out) / f"resume.rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory) -> tuple[Path, float]:
    """Run `_worker` on 2 gloo ranks (bounded in time); return its output folder and the
    seconds it took."""
    out = tmp_path_factory.mktemp("ranks")
    started = time.perf_counter()
    context = mp.start_processes(_worker, (free_port(), str(out)), nprocs=WORLD, join=False,
                                 start_method="spawn")
    try:
        while not context.join(timeout=max(1.0, TIMEOUT_S - (time.perf_counter() - started))):
            if time.perf_counter() - started > TIMEOUT_S:
                pytest.fail(f"the 2-rank run took over {TIMEOUT_S} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return out, time.perf_counter() - started


@pytest.mark.parametrize("name", list(CASES))
def test_two_rank_gradient_equals_single_process_gradient_on_both_batches(two_rank_results,
                                                                          name):
    out, seconds = two_rank_results
    ranks = [torch.load(out / f"{name}.rank{r}.pt", weights_only=False) for r in range(WORLD)]
    assert not torch.equal(ranks[0]["traj"].states, ranks[1]["traj"].states)  # own noise
    for a, b in zip(ranks[0]["initial"], ranks[1]["initial"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the same starting point
    for a, b in zip(ranks[0]["grads"], ranks[1]["grads"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # all-reduced: one update

    single = make_case(name)
    with torch.no_grad():
        for param, value in zip(single._trained_parameters(), ranks[0]["initial"], strict=True):
            param.copy_(value)
    both = Trajectory.cat([ranks[0]["traj"], ranks[1]["traj"]])
    _, record = one_step(single, both)
    expected = grads(single)
    assert len(expected) == len(ranks[0]["grads"])
    if name.startswith("rtb"):
        assert expected[-1].abs().sum() > 0  # log Z's gradient is compared too
    worst = max(float((a - b).abs().max()) for a, b in zip(ranks[0]["grads"], expected,
                                                           strict=True))
    scale = max(float(g.abs().max()) for g in expected)
    print(f"{name}: max |grad diff| {worst:.2e} = {worst / scale:.1e} of max |grad| "
          f"{scale:.2e}; 2-rank run {seconds:.1f} s")
    for got, want in zip(ranks[0]["grads"], expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * scale)
    assert ranks[0]["record"]["loss"] == pytest.approx(record["loss"], rel=1e-5)
    assert ranks[0]["record"]["log_z"] == pytest.approx(record["log_z"], rel=1e-5, abs=1e-5)


def test_two_rank_checkpoint_restores_every_rank(two_rank_results):
    out, _ = two_rank_results
    ranks = [torch.load(out / f"resume.rank{r}.pt", weights_only=False) for r in range(WORLD)]
    saved = torch.load(out / "resume" / "checkpoint.pt", weights_only=True)
    assert len(saved["ranks"]) == WORLD
    for found in ranks:  # each rank gets its own noise and replay buffer back
        assert torch.equal(found["resumed_generator"], found["generator"])
        torch.testing.assert_close(found["resumed_replay"], found["replay"], rtol=0, atol=0)
        for a, b in zip(found["resumed_final"], found["final"], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)  # then trains identically
    assert not torch.equal(ranks[0]["replay"], ranks[1]["replay"])  # a buffer per rank
    for a, b in zip(ranks[0]["final"], ranks[1]["final"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # one model on every rank
    with pytest.raises(ValueError, match="written by 2 process"):
        make_case("rtb").resume(out / "resume" / "checkpoint.pt")


@pytest.mark.slow
def test_two_rank_fast_finetune_reaches_the_single_process_quality(tmp_path):
    """`torchrun --nproc_per_node 2 -m rtb_lab.cli finetune toy2d --fast`: the thresholds of
    tests/test_stat_toy2d.py (one process), the checkpoint holding both ranks."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               "-m", "rtb_lab.cli", "finetune", "toy2d", "--fast", "--quiet",
               "--out", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=FINETUNE_TIMEOUT_S,
                          env=env, cwd=Path(__file__).parents[1])
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 alone prints the result
    final = json.loads(lines[0])
    print(f"2 ranks, fast: {seconds:.1f} s wall,", {k: final[k] for k in
                                                   ("tv", "mass_in_modes", "log_z_err",
                                                    "modes_covered", "seconds")})
    assert final["steps"] == TrainConfig().fast().steps
    assert final["tv"] <= 0.10
    assert final["mass_in_modes"] >= 0.97
    assert final["log_z_err"] <= 0.10
    assert final["modes_covered"] == 9
    assert len(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["ranks"]) == WORLD


def test_helpers_without_a_process_group_are_single_process(monkeypatch):
    assert not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.rank_seed(7) == 7
    assert distributed.reduce_scalars([1.5, 2.0], "max") == [1.5, 2.0]
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.gather_on_main("x") == ["x"]
    param = torch.nn.Parameter(torch.ones(3))
    param.grad = torch.full((3,), 2.0)
    distributed.average_gradients([param])
    distributed.broadcast_parameters([param])
    assert torch.equal(param.grad, torch.full((3,), 2.0)) and torch.equal(param, torch.ones(3))
    terms = torch.tensor([1.0, 2.0, 3.0, 6.0])
    cond = torch.tensor([[0.0], [1.0], [0.0], [1.0]])
    torch.testing.assert_close(distributed.global_group_mean(terms), torch.full((4,), 3.0))
    torch.testing.assert_close(distributed.global_group_mean(terms, cond),
                               torch.tensor([2.0, 4.0, 2.0, 4.0]))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.launched()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.launched()
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(RuntimeError, match="MASTER_PORT not set; launch with `torchrun"):
        distributed.init_from_env()
