"""The control domain's CLI commands: make the data sets, train the behaviour prior, the
Q-function and baselines (IQL, TD3+BC via d3rlpy), and the α-amortised RTB policy.

Each saves safetensors with its command line; ``--update-manifest`` records them as the
shipped assets (sha256 and command) in rtb_lab/assets/manifest.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rtb_lab.checkpoint import record_asset
from rtb_lab.domain import Command
from rtb_lab.domains.control import critic, io, policy, prior
from rtb_lab.domains.control.data import load_dataset, load_npz
from rtb_lab.domains.control.datagen import data_commands
from rtb_lab.domains.control.rollout import rollout

STEPS = {"prior": 20_000, "reward": 20_000, "policy": policy.POLICY_CONFIG.steps}


def _common(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument("--task", default="pendulum-medium",
                        help="ENV-QUALITY, e.g. pendulum-medium (its data set: shipped, or "
                             "--data)")
    parser.add_argument("--data", type=Path, default=None,
                        help="an .npz data set of `make-data` instead of the shipped one")
    parser.add_argument("--steps", type=int, default=STEPS[kind])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path("."),
                        help="where the .safetensors files go (named as the shipped ones)")
    parser.add_argument("--update-manifest", action="store_true",
                        help="record the files' sha256 in rtb_lab/assets/manifest.json")
    parser.add_argument("--quiet", action="store_true")


def _dataset(args: argparse.Namespace):
    env, quality = io.parse_task(args.task)
    return env, quality, (load_npz(args.data) if args.data else load_dataset(env, quality))


def _command(kind: str, args: argparse.Namespace, done: int | None = None) -> str:
    data = f" --data {args.data}" if args.data else ""
    line = (f"rtb-lab train-{kind} control --task {args.task}{data} --steps {args.steps} "
            f"--seed {args.seed}")
    if done is not None and done < args.steps:
        line += f" (interrupted after {done} steps)"
    return line


def _save(args, env: str, quality: str, kind: str, module, command: str,
          description: str) -> dict:
    """Save `module` as the task's `kind` file in --out-dir (and in the manifest)."""
    path = args.out_dir / io.model_asset(env, quality, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    save = {"prior": prior.save_prior, "policy": policy.save_policy}.get(kind, critic.save_critic)
    sha256 = save(module, path, env, quality, command)
    if args.update_manifest:
        record_asset(path.name, sha256, command, description)
    return {f"{kind}_path": str(path), f"{kind}_sha256": sha256}


def _trained(args, env: str, quality: str, kind: str) -> Path | None:
    """A file of `kind` that an earlier command wrote to --out-dir (else: the shipped one)."""
    path = args.out_dir / io.model_asset(env, quality, kind)
    return path if path.is_file() else None


def _evaluate(act, env: str, seed: int) -> dict[str, float]:
    summary = rollout(act, env, episodes=5, seed=seed).summary()
    return {"return": round(summary["return"], 1), "normalised": round(summary["normalised"], 1)}


def _train_prior(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    env, quality, data = _dataset(args)
    net = prior.train_behaviour_prior(data.states, data.normalised_actions, steps=args.steps,
                                      seed=args.seed, progress=not args.quiet)
    done = getattr(net, "trained_steps", args.steps)
    scores = _evaluate(lambda s, g: policy.sample_actions(net, net, s, generator=g), env,
                       args.seed)
    result = _save(args, env, quality, "prior", net, _command("prior", args, done),
                   f"control {env}-{quality} behaviour prior (DDPM, 20 steps): BC return "
                   f"{scores['return']} (normalised {scores['normalised']}, 5 episodes)")
    return {**result, **scores, "trained_steps": done,
            "seconds": round(time.perf_counter() - started, 1)}


def _train_reward(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    env, quality, data = _dataset(args)
    q, iql_actor = critic.train_iql(data, args.steps, args.seed, progress=not args.quiet)
    td3bc_actor = critic.train_td3bc(data, args.steps, args.seed, progress=not args.quiet)
    result: dict = {}
    for kind, module, name in (("q", q, "IQL Q-function (expectile 0.7)"),
                               ("iql_actor", iql_actor, "IQL mean policy"),
                               ("td3bc_actor", td3bc_actor, "TD3+BC actor")):
        extra = ""
        if kind != "q":
            scores = _evaluate(lambda s, g, m=module: m(s), env, args.seed)
            result[f"{kind}_return"] = scores["return"]
            extra = f": return {scores['return']} (normalised {scores['normalised']}, 5 episodes)"
        result.update(_save(args, env, quality, kind, module, _command("reward", args),
                            f"control {env}-{quality} {name}, d3rlpy, {args.steps} steps{extra}"))
    return {**result, "seconds": round(time.perf_counter() - started, 1)}


def _train_policy(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    env, quality, data = _dataset(args)
    base = io.task_prior(env, quality, _trained(args, env, quality, "prior"))
    q = io.task_q(env, quality, _trained(args, env, quality, "q"))
    config = policy.POLICY_CONFIG.with_steps(args.steps)
    config.seed = args.seed
    trainer = policy.make_policy_trainer(base, q, data.states, config)
    trainer.train(progress=not args.quiet)
    net = trainer.posterior.eval()
    scores = {a: _evaluate(lambda s, g, a=a: policy.sample_actions(net, base, s, a,
                                                                    generator=g),
                           env, args.seed) for a in (0.3, 1.0, 3.0)}
    shown = ", ".join(f"alpha {a}: {v['return']}" for a, v in scores.items())
    result = _save(args, env, quality, "policy", net,
                   _command("amortised", args, trainer.step),
                   f"control {env}-{quality} RTB policy amortised over alpha in "
                   f"{policy.ALPHA_RANGE}, {trainer.step} steps; returns (5 episodes) {shown}")
    return {**result, "returns": {str(a): v for a, v in scores.items()},
            "trained_steps": trainer.step, "seconds": round(time.perf_counter() - started, 1)}


def _arguments(kind: str):
    return lambda parser: _common(parser, kind)


def commands() -> dict[str, Command]:
    """``make-data``, ``train-prior``, ``train-reward`` and ``train-amortised`` for control."""
    return {**data_commands(),
            "train-prior": Command("train the diffusion behaviour prior mu(a | s) and save it",
                                   _arguments("prior"), _train_prior),
            "train-reward": Command("train IQL (the Q-function and its policy) and TD3+BC "
                                    "with d3rlpy, and save them", _arguments("reward"),
                                    _train_reward),
            "train-amortised": Command("train the RTB policy pi ~ mu exp(Q / alpha), "
                                       "amortised over alpha, and save it",
                                       _arguments("policy"), _train_policy)}
