"""Make D4RL-style offline data sets locally with an online SAC (d3rlpy).

The four qualities follow D4RL (Fu et al., 2020):

- random: uniform random actions;
- medium: a SAC snapshot from partway through training, whose score is a third to a
  half of the way from random to the trained SAC's (D4RL's medium HalfCheetah: about
  40 normalised), actions sampled from its policy;
- medium-replay: every transition SAC saw until that snapshot (its replay buffer);
- expert: the fully trained SAC, actions sampled from its policy.

d3rlpy and gymnasium are imported only when a function here runs, so importing this
module (for `data_commands`) costs nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtb_lab.domain import Command
from rtb_lab.domains.control.data import QUALITIES, OfflineDataset, asset_name
from rtb_lab.domains.control.envs import (
    SPECS,
    EnvSpec,
    get_spec,
    import_d3rlpy,
    make_env,
)

Policy = Callable[[np.ndarray], np.ndarray]
"""``policy(observation [S]) -> action [A]``."""


@dataclass(frozen=True)
class Recipe:
    """How much SAC and data one environment gets by default.

    Attributes:
        sac_steps: online SAC steps (one environment step and one update each).
        random_steps: SAC's first steps take uniform random actions (exploration).
        eval_interval: steps between the snapshots the medium policy is chosen from.
        eval_episodes: episodes that score each snapshot.
        transitions_per_set: transitions of the random, medium and expert sets.
    """

    sac_steps: int
    random_steps: int
    eval_interval: int
    eval_episodes: int
    transitions_per_set: int


RECIPES = {"pendulum": Recipe(sac_steps=20_000, random_steps=1_000, eval_interval=200,
                              eval_episodes=10, transitions_per_set=40_000),
           # D4RL: 1M transitions per set from an SAC trained for 1M-3M steps.
           "halfcheetah": Recipe(sac_steps=1_000_000, random_steps=10_000,
                                 eval_interval=10_000, eval_episodes=3,
                                 transitions_per_set=1_000_000)}
MEDIUM_PROGRESS = (1 / 3, 1 / 2)
EVAL_SEED = 10_000  # evaluation episodes start from other states than the data's


@dataclass(frozen=True)
class Snapshot:
    """The SAC policy after `step` steps, and its mean return over the eval episodes."""

    step: int
    mean_return: float
    policy_state: dict[str, torch.Tensor]


class TransitionRecorder:
    """An environment wrapper that records every transition stepped through it, with the
    exact s' of each step (d3rlpy's own buffer drops the final s' of a cut episode).

    Actions are clipped to the bound before the step, so the data holds what was done.
    """

    def __init__(self, env: Any, spec: EnvSpec, capacity: int):
        self.env, self.spec, self.size = env, spec, 0
        self.observation_space, self.action_space = env.observation_space, env.action_space
        s, a = spec.observation_dim, spec.action_dim
        self._rows = {"observations": np.zeros((capacity, s), np.float32),
                      "actions": np.zeros((capacity, a), np.float32),
                      "rewards": np.zeros(capacity, np.float32),
                      "next_observations": np.zeros((capacity, s), np.float32),
                      "terminals": np.zeros(capacity, bool), "timeouts": np.zeros(capacity, bool)}
        self._observation: np.ndarray | None = None

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        self._observation, info = self.env.reset(**kwargs)
        return self._observation, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.size == len(self._rows["rewards"]):
            raise RuntimeError(f"the recorder is full ({self.size} transitions)")
        action = np.clip(action, -self.spec.action_bound, self.spec.action_bound)
        next_observation, reward, terminated, truncated, info = self.env.step(action)
        row = (self._observation, action, reward, next_observation, terminated, truncated)
        for array, value in zip(self._rows.values(), row, strict=True):
            array[self.size] = value
        self.size += 1
        self._observation = next_observation
        return next_observation, reward, terminated, truncated, info

    def dataset(self, stop: int | None = None) -> OfflineDataset:
        """The first `stop` (default: all) recorded transitions."""
        stop = self.size if stop is None else stop
        return OfflineDataset(**{name: array[:stop] for name, array in self._rows.items()},
                              spec=self.spec)


def uniform_policy(spec: EnvSpec, seed: int) -> Policy:
    """Uniform random actions in [-bound, bound]^A."""
    rng = np.random.default_rng(seed)
    return lambda observation: rng.uniform(-spec.action_bound, spec.action_bound,
                                           spec.action_dim).astype(np.float32)


def sac_policy(algo: Any, deterministic: bool = False) -> Policy:
    """Actions sampled from an SAC's policy (its mean action when `deterministic`)."""
    act = algo.predict if deterministic else algo.sample_action
    return lambda observation: act(observation[None].astype(np.float32))[0]


def mean_return(env_name: str, policy: Policy, episodes: int, seed: int) -> float:
    """Mean undiscounted return of `policy` over `episodes` episodes (seeds seed, seed+1...)."""
    env, returns = make_env(env_name), []
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(policy(observation))
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def collect(env_name: str, policy: Policy, transitions: int, seed: int,
            progress: bool = True, desc: str = "collect") -> OfflineDataset:
    """`transitions` transitions of `policy`, episode after episode (the last may be cut)."""
    from tqdm.auto import trange

    recorder = TransitionRecorder(make_env(env_name), get_spec(env_name), transitions)
    observation, _ = recorder.reset(seed=seed)
    for _ in trange(transitions, desc=desc, disable=not progress, mininterval=2.0):
        observation, _, terminated, truncated, _ = recorder.step(policy(observation))
        if terminated or truncated:
            observation, _ = recorder.reset()
    recorder.env.close()
    return recorder.dataset()


def sac_config() -> Any:
    """d3rlpy's SAC with D4RL's settings (256x256 networks, lr 3e-4, batch 256), actions
    scaled from the policy's [-1, 1] to the environment's bounds."""
    d3rlpy = import_d3rlpy()
    return d3rlpy.algos.SACConfig(action_scaler=d3rlpy.preprocessing.MinMaxActionScaler(),
                                  batch_size=256, gamma=0.99, actor_learning_rate=3e-4,
                                  critic_learning_rate=3e-4, temp_learning_rate=3e-4)


def train_sac(env_name: str, steps: int, seed: int, recipe: Recipe,
              progress: bool = True) -> tuple[Any, list[Snapshot], TransitionRecorder, float]:
    """Online SAC for `steps` steps, scored and snapshotted every `recipe.eval_interval`.

    Returns:
        (the trained SAC, its snapshots, the recorder holding every training transition
        in order (the replay buffer), seconds per step: one update, one env step and
        d3rlpy's bookkeeping, the snapshots' evaluations left out).
    """
    d3rlpy = import_d3rlpy()
    d3rlpy.seed(seed)
    spec = get_spec(env_name)
    recorder = TransitionRecorder(make_env(env_name, seed), spec, steps)
    algo = sac_config().create(device="cpu")
    snapshots: list[Snapshot] = []
    eval_seconds = 0.0

    def snapshot(algo: Any, epoch: int, step: int) -> None:
        nonlocal eval_seconds
        if step % recipe.eval_interval == 0:
            started = time.perf_counter()
            score = mean_return(env_name, sac_policy(algo), recipe.eval_episodes, EVAL_SEED)
            snapshots.append(Snapshot(step, score, _policy_state(algo)))
            eval_seconds += time.perf_counter() - started

    started = time.perf_counter()
    buffer = d3rlpy.dataset.create_fifo_replay_buffer(steps, env=recorder)
    algo.fit_online(recorder, buffer=buffer, n_steps=steps,
                    n_steps_per_epoch=min(steps, 10_000), random_steps=recipe.random_steps,
                    logger_adapter=d3rlpy.logging.NoopAdapterFactory(),  # no d3rlpy_logs/
                    show_progress=progress, callback=snapshot)
    seconds_per_step = (time.perf_counter() - started - eval_seconds) / steps
    recorder.env.close()
    return algo, snapshots, recorder, seconds_per_step


def choose_medium(snapshots: list[Snapshot], random_score: float,
                  expert_return: float) -> Snapshot:
    """The snapshot nearest the middle of `MEDIUM_PROGRESS` (the share of the way from
    random to the expert), among those before the first that passes its top: training
    stopped early, as in D4RL."""
    def progress(snap: Snapshot) -> float:
        return (snap.mean_return - random_score) / (expert_return - random_score)

    low, high = MEDIUM_PROGRESS
    past = next((i for i, snap in enumerate(snapshots) if progress(snap) > high), None)
    candidates = snapshots[:past] or snapshots[:1]
    return min(candidates, key=lambda snap: abs(progress(snap) - (low + high) / 2))


@contextlib.contextmanager
def policy_weights(algo: Any, state: dict[str, torch.Tensor]) -> Iterator[Any]:
    """`algo` with its policy's weights set to `state`, restored afterwards."""
    saved = _policy_state(algo)
    algo.impl.modules.policy.load_state_dict(state)
    try:
        yield algo
    finally:
        algo.impl.modules.policy.load_state_dict(saved)


def _policy_state(algo: Any) -> dict[str, torch.Tensor]:
    """A copy of the SAC policy's weights (all that `sample_action` uses)."""
    return {k: v.detach().clone() for k, v in algo.impl.modules.policy.state_dict().items()}


def make_datasets(env_name: str, out_dir: str | Path, *, sac_steps: int | None = None,
                  transitions_per_set: int | None = None, seed: int = 0,
                  progress: bool = True) -> dict[str, Path]:
    """Train an SAC and write the four data sets as ``control_<env>_<quality>.npz``.

    A ``control_<env>_summary.json`` beside them records each set's size, mean episode
    return and normalised score, the snapshots' returns and the SAC's cost. Deterministic
    given `seed` on one CPU thread (d3rlpy and gymnasium seeded).

    Returns:
        {quality: path} for the four qualities, plus "summary".
    """
    spec, recipe = get_spec(env_name), RECIPES[env_name]
    steps = sac_steps or recipe.sac_steps
    n = transitions_per_set or recipe.transitions_per_set
    out_dir = Path(out_dir)
    algo, snapshots, replay, seconds_per_step = train_sac(env_name, steps, seed, recipe,
                                                          progress)
    if not snapshots:
        raise ValueError(f"sac_steps={steps} is shorter than one eval interval "
                         f"({recipe.eval_interval}); no medium snapshot to choose")
    expert_return = mean_return(env_name, sac_policy(algo), 20, EVAL_SEED)
    medium = choose_medium(snapshots, spec.random_score, expert_return)
    with policy_weights(algo, medium.policy_state):
        medium_set = collect(env_name, sac_policy(algo), n, seed + 2, progress, "medium")
    datasets = {"random": collect(env_name, uniform_policy(spec, seed), n, seed + 1,
                                  progress, "random"),
                "medium": medium_set, "medium-replay": replay.dataset(medium.step),
                "expert": collect(env_name, sac_policy(algo), n, seed + 3, progress, "expert")}
    paths = {quality: datasets[quality].save_npz(out_dir / asset_name(env_name, quality))
             for quality in QUALITIES}
    summary = {"env": env_name, "seed": seed, "sac_steps": steps,
               "seconds_per_sac_step": round(seconds_per_step, 5),
               "expert_return_20_episodes": round(expert_return, 2),
               "expert_mean_action_return_20_episodes": round(mean_return(
                   env_name, sac_policy(algo, deterministic=True), 20, EVAL_SEED), 2),
               "medium_step": medium.step, "medium_snapshot_return": round(medium.mean_return, 2),
               "snapshot_returns": {snap.step: round(snap.mean_return, 1) for snap in snapshots},
               "sets": {quality: describe(datasets[quality]) | {"file": paths[quality].name}
                        for quality in QUALITIES}}
    paths["summary"] = out_dir / f"control_{env_name}_summary.json"
    paths["summary"].write_text(json.dumps(summary, indent=2) + "\n")
    return paths


def describe(dataset: OfflineDataset) -> dict[str, float | int | None]:
    """Size, complete episodes, their mean return and normalised score (None without one)."""
    returns = dataset.episode_returns()
    mean = float(returns.mean()) if len(returns) else None
    return {"transitions": len(dataset), "episodes": len(returns),
            "mean_return": None if mean is None else round(mean, 2),
            "normalised_score": None if mean is None else round(dataset.normalised_score(), 2)}


def sac_update_seconds(env_name: str, updates: int = 300, seed: int = 0) -> float:
    """Seconds per SAC gradient update (batch 256, on the CPU threads torch has), timed on
    a buffer of 1,000 random transitions: what one step of `train_sac` costs, less the
    environment step."""
    d3rlpy = import_d3rlpy()
    d3rlpy.seed(seed)
    env = make_env(env_name, seed)
    buffer = d3rlpy.dataset.create_fifo_replay_buffer(2_000, env=env)
    algo = sac_config().create(device="cpu")
    algo.fit_online(env, buffer=buffer, n_steps=1_000, random_steps=1_000,
                    update_start_step=1_000, logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
                    show_progress=False)
    algo.update(buffer.sample_transition_batch(algo.config.batch_size))  # warm-up
    started = time.perf_counter()
    for _ in range(updates):
        algo.update(buffer.sample_transition_batch(algo.config.batch_size))
    env.close()
    return (time.perf_counter() - started) / updates


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", choices=sorted(SPECS), default="pendulum")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for the four control_<env>_<quality>.npz files")
    parser.add_argument("--sac-steps", type=int, default=None,
                        help="online SAC steps (default: the environment's recipe)")
    parser.add_argument("--transitions", type=int, default=None,
                        help="transitions of the random, medium and expert sets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _run(args: argparse.Namespace) -> dict:
    paths = make_datasets(args.env, args.out, sac_steps=args.sac_steps,
                          transitions_per_set=args.transitions, seed=args.seed,
                          progress=not args.quiet)
    return json.loads(paths["summary"].read_text())


def data_commands() -> dict[str, Command]:
    """make-data: regenerate the control data sets (`make_datasets`)."""
    return {"make-data": Command("make the random / medium / medium-replay / expert offline "
                                 "data sets of a control environment with an online SAC",
                                 _add_arguments, _run)}
