"""Speed of RTB on the 2D toy: batched vs naive per-step scoring, and time to quality.

Prints figures and ratios measured in this process; never asserts on time.

    python benchmarks/bench_toy2d.py [--iters 20] [--max-steps 1200] [--skip-quality]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rtb_lab.diffusion import sample_trajectories, sequential_log_prob
from rtb_lab.domains import toy2d
from rtb_lab.nets import posterior_from_prior
from rtb_lab.rtb import LogZ, rtb_loss
from rtb_lab.train import TrainConfig

PAPER = TrainConfig()  # batch 500, T = 100 (toy2d.NUM_STEPS), width 64 prior
GOAL = {"tv": 0.05, "mass_in_modes": 0.99, "log_z_err": 0.05}


def naive_iteration(prior, posterior, log_z, optimizer, target, family, generator) -> float:
    """The textbook loop peers use: one network call per step for q and for p."""
    traj = sample_trajectories(posterior, family, PAPER.batch_size, (2,), explore=0.5,
                               generator=generator)
    log_q = sequential_log_prob(posterior, family, traj)
    with torch.no_grad():
        log_p = sequential_log_prob(prior, family, traj)
    loss = rtb_loss(log_q, log_p, target.checked_log_reward(traj.x), log_z(), 1.0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def seconds_per_iteration(iters: int) -> dict[str, float]:
    """Mean seconds per RTB iteration, rtb_lab's trainer vs the naive loop."""
    prior, target, family = toy2d.load_prior(), toy2d.get_target("25to9"), toy2d.make_family()
    trainer = toy2d.make_trainer(target, PAPER, prior=prior)
    trainer.train(2, progress=False)  # warm-up
    started = time.perf_counter()
    trainer.train(iters, progress=False)
    ours = (time.perf_counter() - started) / iters

    posterior, log_z = posterior_from_prior(prior), LogZ()
    optimizer = torch.optim.Adam(list(posterior.parameters()) + list(log_z.parameters()), 1e-3)
    generator = torch.Generator().manual_seed(0)
    naive_iteration(prior, posterior, log_z, optimizer, target, family, generator)
    started = time.perf_counter()
    for _ in range(iters):
        naive_iteration(prior, posterior, log_z, optimizer, target, family, generator)
    naive = (time.perf_counter() - started) / iters
    return {"rtb_lab_s_per_iter": round(ours, 4), "naive_s_per_iter": round(naive, 4),
            "speedup": round(naive / ours, 2)}


def time_to_quality(config: TrainConfig, max_steps: int, check_every: int) -> dict[str, float]:
    """Train from the shipped prior until every GOAL is met (checked every few steps)."""
    trainer = toy2d.make_trainer("25to9", config, prior=toy2d.load_prior(), eval_samples=10_000)
    wall = time.perf_counter()
    while trainer.step < max_steps:
        trainer.train(check_every, progress=False)
        metrics = trainer.evaluations[-1]
        if trainer.config.explore_at(trainer.step) == 0 and all(
                metrics[k] <= v if k != "mass_in_modes" else metrics[k] >= v
                for k, v in GOAL.items()):
            break
    return {"reached": bool(trainer.step < max_steps), "steps": trainer.step,
            "train_seconds": round(trainer.seconds, 1),
            "wall_seconds_with_evals": round(time.perf_counter() - wall, 1),
            **{k: round(metrics[k], 4) for k in ("tv", "mass_in_modes", "log_z", "log_z_err")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--check-every", type=int, default=25)
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    speed = seconds_per_iteration(args.iters)
    print("paper config (B=500, T=100, width 64):", json.dumps(speed))
    if not args.skip_quality:
        config = toy2d.BENCH_CONFIG
        print("time to TV <= 0.05, mass >= 0.99, |log Z err| <= 0.05 with", config)
        print(json.dumps(time_to_quality(config, args.max_steps, args.check_every)))


if __name__ == "__main__":
    main()
