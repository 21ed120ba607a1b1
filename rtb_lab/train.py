"""The off-policy RTB trainer: sample (with exploration and replay), score, step.

One iteration: draw trajectories from the posterior with inflated variance (and
optionally from a replay buffer), score them under the current posterior and the
frozen prior in batched passes, and take a gradient step on the RTB (or VarGrad)
loss. Log Z has its own, larger learning rate. Training can be interrupted
(KeyboardInterrupt) at any moment and resumed exactly.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from rtb_lab import distributed
from rtb_lab.checkpoint import load_checkpoint, save_checkpoint, trainable_state_dict
from rtb_lab.diffusion import Trajectory, TransitionFamily, sample_trajectories, trajectory_log_prob
from rtb_lab.replay import ReplayBuffer
from rtb_lab.rtb import (
    LogZ,
    backward_through_trajectories,
    check_beta,
    check_frozen,
    check_log_reward,
    check_separate,
    importance_log_z,
    rtb_residual,
    vargrad_residual,
)
from rtb_lab.train_config import TrainConfig

__all__ = ["Callback", "RTBTrainer", "RewardFn", "TrainConfig", "time_budget"]

RewardFn = Callable[..., Tensor]
Callback = Callable[["RTBTrainer", dict[str, float]], None]


def time_budget(seconds: float, measure_steps: int = 3) -> Callback:
    """A training callback that fits the run into `seconds` of training: after
    `measure_steps` steps it sets the planned step count (and so the lr schedule) from
    the measured speed (printed as a JSON line), and it interrupts cleanly (the trainer
    saves a checkpoint when it has an out_dir) at the limit."""
    first: dict[str, float] = {}

    def callback(trainer: RTBTrainer, record: dict[str, float]) -> None:
        first.setdefault("step", trainer.step)  # from the end of the first step (warm-up)
        first.setdefault("seconds", trainer.seconds)
        done = trainer.step - first["step"]
        if done == measure_steps:
            per_step = (trainer.seconds - first["seconds"]) / done
            left = int((seconds - (trainer.seconds - first["seconds"])) / per_step)
            # Ranks measure different speeds but must run the same number of steps.
            left = int(distributed.reduce_scalars([left], "min")[0])
            trainer.config = replace(trainer.config, steps=trainer.step + max(1, left))
            if distributed.is_main():
                print(json.dumps({"seconds_per_step": round(per_step, 3),
                                  "planned_steps": trainer.config.steps}), flush=True)
        over = float(trainer.seconds - first["seconds"] > seconds)
        if distributed.reduce_scalars([over], "max")[0]:  # all ranks stop at the same step
            raise KeyboardInterrupt
    return callback


@contextmanager
def _deferred_interrupt() -> Iterator[None]:
    """Hold a Ctrl-C / kernel interrupt until the block ends, so updates are atomic."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


class RTBTrainer:
    """Fine-tune `posterior` so that its samples follow prior(x) * r(x)^beta.

    Args:
        prior: the frozen prior policy (no parameter may require grad).
        posterior: the trainable policy, starting at the prior (a copy, an adapter...).
        family: the transition family shared by both.
        log_reward: ``log_reward(x [B, *event]) -> [B]``, or ``log_reward(x, cond)``
            when a `cond_sampler` is given.
        event_shape: shape of one sample, e.g. (2,).
        config: hyper-parameters.
        cond_sampler: ``cond_sampler(n, generator) -> [n, C]`` draws conditions for a
            conditional (amortised) posterior; None for a single posterior.
        beta_of_cond: ``beta_of_cond(cond [B, C]) -> [B]`` when beta is part of the condition.
        evaluator: ``evaluator(trainer) -> dict`` of metrics, run every eval_every steps.
        out_dir: where checkpoints go (None: no files are written).
    """

    def __init__(self, prior: nn.Module, posterior: nn.Module, family: TransitionFamily,
                 log_reward: RewardFn, event_shape: tuple[int, ...],
                 config: TrainConfig | None = None, *,
                 cond_sampler: Callable[[int, torch.Generator], Tensor] | None = None,
                 beta_of_cond: Callable[[Tensor], Tensor] | None = None,
                 evaluator: Callable[[RTBTrainer], dict[str, float]] | None = None,
                 out_dir: str | Path | None = None) -> None:
        self.config = config or TrainConfig()
        self.config.validate()
        if self.config.batch_size % distributed.world_size():
            raise ValueError(f"batch_size {self.config.batch_size} must be a multiple of the "
                             f"{distributed.world_size()} processes (each draws its share)")
        check_frozen(prior)
        check_separate(prior, posterior)
        self.prior, self.posterior, self.family = prior, posterior, family
        self.log_reward_fn, self.event_shape = log_reward, tuple(event_shape)
        self.cond_sampler, self.beta_of_cond, self.evaluator = cond_sampler, beta_of_cond, evaluator
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device = next(posterior.parameters()).device
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.view_generator = torch.Generator().manual_seed(self.config.seed + 2)
        cond_dim = 0 if cond_sampler is None else cond_sampler(1, self.generator).shape[1]
        self.log_z = LogZ(0.0, cond_dim if self.config.loss == "rtb" else 0).to(self.device)
        self.optimizer = torch.optim.Adam(self._param_groups(posterior), lr=self.config.lr)
        # SGD suits the scalar log Z (see TrainConfig.log_z_lr); a conditional head: Adam.
        log_z_opt = torch.optim.SGD if self.log_z.cond_dim == 0 else torch.optim.Adam
        self.log_z_optimizer = log_z_opt(self.log_z.parameters(), lr=self.config.log_z_lr)
        # Rank-prioritised: rare high-reward trajectories keep coming back into batches.
        self.replay = ReplayBuffer(self.config.replay_capacity, prioritised=True)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.evaluations: list[dict[str, float]] = []
        self.interrupted = False
        self.seconds = 0.0
        if self.config.log_z_init == "importance":
            self.log_z.reset(self.estimate_log_z_from_prior())
        else:
            self.log_z.reset(float(self.config.log_z_init))
        # Under torch.distributed all ranks start from rank 0's parameters (an adapter or a
        # log Z head may be randomly initialised) but draw their own trajectories.
        distributed.broadcast_parameters(self._trained_parameters())
        self.generator.manual_seed(distributed.rank_seed(self.config.seed + 1))

    def _param_groups(self, posterior: nn.Module) -> list[dict[str, Any]]:
        """The network's parameters, and a policy's per-step scalars (named ``guide*``)
        in their own group at ``scalar_lr / lr`` times the network's lr."""
        named = [(n, p) for n, p in posterior.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the posterior has no trainable parameters")
        is_scalar = [n.rsplit(".", 1)[-1].startswith("guide") for n, _ in named]
        groups = [{"params": [p for (_, p), s in zip(named, is_scalar, strict=True) if s == on],
                   "lr_scale": (self.config.scalar_lr or self.config.lr) / self.config.lr if on
                   else 1.0} for on in (False, True)]
        return [group for group in groups if group["params"]]

    def _trained_parameters(self) -> list[Tensor]:
        """Every parameter an optimiser steps: the posterior's and log Z's."""
        return [param for optimizer in (self.optimizer, self.log_z_optimizer)
                for group in optimizer.param_groups for param in group["params"]]

    # ----------------------------------------------------------------- sampling
    def sample_conditions(self, batch_size: int) -> Tensor | None:
        """[B, C] conditions: `cond_groups` distinct draws, each repeated; None if unconditional."""
        if self.cond_sampler is None:
            return None
        # Under torch.distributed each rank draws its share of the groups (at least one).
        groups = -(-self.config.cond_groups // distributed.world_size())
        cond = self.cond_sampler(groups, self.generator).to(self.device)
        return cond.repeat_interleave(-(-batch_size // groups), 0)[:batch_size]

    def log_reward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Validated [B] log r(x) (or log r(x | cond))."""
        with torch.no_grad():
            value = self.log_reward_fn(x) if cond is None else self.log_reward_fn(x, cond)
        return check_log_reward(value, x.shape[0])

    def beta(self, cond: Tensor | None) -> float | Tensor:
        """The reward exponent: config.beta, or beta_of_cond(cond) [B]."""
        if self.beta_of_cond is None or cond is None:
            return self.config.beta
        beta = self.beta_of_cond(cond)
        check_beta(beta)
        return beta

    def sample(self, batch_size: int, *, cond: Tensor | None = None, explore: float = 0.0,
               use_prior: bool = False, generator: torch.Generator | None = None) -> Trajectory:
        """Sample trajectories from the posterior (or the prior), with log r attached.

        Without `generator`, draws from a separate observation generator, so looking at
        samples (plots, dashboards) never shifts the training noise or breaks resume.
        """
        net = self.prior if use_prior else self.posterior
        traj = sample_trajectories(net, self.family, batch_size, self.event_shape, cond=cond,
                                   explore=explore, generator=generator or self.view_generator,
                                   device=self.device,
                                   keep_log_pf=not use_prior and self.scores_in_chunks)
        return traj.with_log_reward(self.log_reward(traj.x, cond))

    @property
    def rank_batch_size(self) -> int:
        """Trajectories this process draws per step: its equal share of config.batch_size
        under torch.distributed (so N processes run the same recipe), else all of them."""
        return self.config.batch_size // distributed.world_size()

    @property
    def scores_in_chunks(self) -> bool:
        """Whether the backward pass rescores log q without grad (chunked or subsampled):
        only then is the log q recorded while sampling worth keeping."""
        cfg = self.config
        return cfg.chunk_steps is not None or (cfg.grad_steps is not None
                                               and cfg.grad_steps < self.family.num_steps)

    def estimate_log_z_from_prior(self, num_samples: int | None = None,
                                  cond: Tensor | None = None) -> float:
        """Importance estimate log mean r^beta over prior samples (the starting log Z)."""
        n = self.config.log_z_init_samples if num_samples is None else num_samples
        if cond is None and self.cond_sampler is not None:
            cond = self.cond_sampler(1, self.generator).to(self.device).expand(n, -1)
        traj = self.sample(n, cond=cond, use_prior=True, generator=self.generator)
        beta = self.beta(cond)
        return float(importance_log_z(traj.log_reward, beta if isinstance(beta, float)
                                      else beta[0]))

    def collect(self) -> Trajectory:
        """A training batch: fresh exploratory trajectories plus replayed ones."""
        cfg = self.config
        n_replay = int(cfg.replay_fraction * self.rank_batch_size) if len(self.replay) else 0
        n_new = self.rank_batch_size - n_replay
        cond = self.sample_conditions(n_new)
        fresh = self.sample(n_new, cond=cond, explore=cfg.explore_at(self.step),
                            generator=self.generator)
        if n_replay == 0:
            return fresh
        return Trajectory.cat([fresh, self.replay.sample(n_replay, self.generator)
                               .to(self.device)])

    # ------------------------------------------------------------------ training
    def loss_fn(self, traj: Trajectory) -> tuple[Callable[[Tensor], Tensor], dict[str, Any]]:
        """The loss as a function of log q(tau) [B], plus what it used (for logging)."""
        with torch.no_grad():
            log_pf_prior = trajectory_log_prob(self.prior, self.family, traj,
                                               self.config.chunk_steps)
        beta = self.beta(traj.cond)
        groups = None if traj.cond is None else torch.unique(traj.cond, dim=0,
                                                             return_inverse=True)[1]
        info: dict[str, Any] = {}

        def loss_of_log_pf(log_pf_post: Tensor) -> Tensor:
            if self.config.loss == "vargrad":
                terms = log_pf_post - log_pf_prior - beta * traj.log_reward
                if distributed.is_distributed():
                    # The log Z estimate is the mean over the GLOBAL batch (the loss is then
                    # the combined batch's). Detaching it is exact: the residuals sum to zero
                    # per group, so the gradient through the mean vanishes.
                    residual = terms - distributed.global_group_mean(terms.detach(), traj.cond)
                else:
                    residual = vargrad_residual(log_pf_post, log_pf_prior, traj.log_reward,
                                                beta, groups)
                info["log_z"] = float((residual - terms).detach().mean())  # mean group log Z
            else:
                log_z = self.log_z(traj.cond)
                residual = rtb_residual(log_pf_post, log_pf_prior, traj.log_reward, log_z, beta)
                info["log_z"] = float(log_z.detach().mean())
            if self.config.residual_per_beta:
                residual = residual / beta
            info["residual_abs"] = float(residual.detach().abs().mean())
            return residual.square().mean()

        return loss_of_log_pf, info

    def train_step(self) -> dict[str, float]:
        """One optimisation step; atomic with respect to KeyboardInterrupt."""
        started = time.perf_counter()
        rng_state = self.generator.get_state()
        try:
            traj = self.collect()
            loss_of_log_pf, info = self.loss_fn(traj)
            self.optimizer.zero_grad(set_to_none=True)
            self.log_z_optimizer.zero_grad(set_to_none=True)
            loss = backward_through_trajectories(loss_of_log_pf, self.posterior, self.family,
                                                 traj, self.config.chunk_steps,
                                                 self.config.grad_steps, self.generator,
                                                 log_pf=traj.log_pf)
            # Each rank's loss is a mean over its equal-sized batch, so the mean of the
            # ranks' gradients is the gradient of the loss of the combined batch.
            distributed.average_gradients(self._trained_parameters())
            if self.config.grad_clip is not None:
                for group in self.optimizer.param_groups:  # scalars apart: their
                    nn.utils.clip_grad_norm_(group["params"],  # scale differs wildly
                                             self.config.grad_clip)
        except KeyboardInterrupt:
            # Nothing was committed: rewind the noise so a resumed run is identical.
            self.generator.set_state(rng_state)
            self.optimizer.zero_grad(set_to_none=True)
            self.log_z_optimizer.zero_grad(set_to_none=True)
            raise
        with _deferred_interrupt():
            for group in self.optimizer.param_groups:
                group["lr"] = self.config.lr_at(self.step) * group.get("lr_scale", 1.0)
            self.optimizer.step()
            self.log_z_optimizer.step()
            if self.config.replay_fraction > 0:
                self.replay.add(traj[: traj.batch_size - int(self.config.replay_fraction
                                                             * self.rank_batch_size)])
            self.seconds += time.perf_counter() - started
            # Record the global batch's figures, so every rank keeps the same history.
            loss_value, log_z, residual_abs, mean_log_reward = distributed.reduce_scalars(
                [float(loss), info["log_z"], info["residual_abs"], float(traj.log_reward.mean())])
            record = {"step": self.step, "loss": loss_value, "log_z": log_z,
                      "residual_abs": residual_abs,
                      "explore": self.config.explore_at(self.step),
                      "mean_log_reward": mean_log_reward, "seconds": self.seconds}
            self.history.append(record)
            self.step += 1
        return record

    def current_log_z(self) -> float:
        """The learned log Z (VarGrad: the last batch estimate; conditional: NaN)."""
        if self.config.loss == "vargrad":
            return self.history[-1]["log_z"] if self.history else float("nan")
        return float(self.log_z().detach()) if self.log_z.cond_dim == 0 else float("nan")

    def evaluate(self) -> dict[str, float]:
        """Run the evaluator now and record its metrics (with step and log Z)."""
        metrics = {"step": self.step, "seconds": self.seconds, "log_z": self.current_log_z()}
        # Under torch.distributed (every rank calls this) rank 0 evaluates and shares its
        # metrics, so every rank keeps the same record and takes the same decisions.
        if self.evaluator is not None and distributed.is_main():
            metrics.update(self.evaluator(self))
        metrics = distributed.broadcast_object(metrics)
        self.evaluations.append(metrics)
        return metrics

    def train(self, steps: int | None = None, *, callbacks: list[Callback] | None = None,
              eval_callbacks: list[Callback] | None = None,
              progress: bool = True) -> list[dict[str, float]]:
        """Train for `steps` more steps (default: up to config.steps in total).

        Callbacks are called as ``cb(trainer, record)`` after every step and
        ``cb(trainer, metrics)`` after every evaluation. A KeyboardInterrupt stops
        training cleanly: the trainer stays consistent, a checkpoint is written when
        `out_dir` is set, and calling `train()` again continues where it stopped.

        Returns:
            The per-step history (a list of dicts).
        """
        fixed_end = self.step + steps if steps is not None else None
        # Without `steps`, config.steps is re-read every step: a callback may re-plan it.
        end = lambda: fixed_end if fixed_end is not None else self.config.steps  # noqa: E731
        self.interrupted = False
        bar = tqdm(total=max(0, end() - self.step), desc="RTB", leave=False,
                   disable=not progress or not distributed.is_main())
        try:
            while self.step < end():
                record = self.train_step()
                bar.total = max(bar.total, end())
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3g}", log_z=f"{record['log_z']:.3f}")
                for callback in callbacks or []:
                    callback(self, record)
                every = self.config.eval_every
                if (every and self.step % every == 0) or self.step == end():
                    metrics = self.evaluate()
                    for callback in eval_callbacks or []:
                        callback(self, metrics)
                if self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
                    self.save_if_out_dir()
        except KeyboardInterrupt:
            self.interrupted = True
            saved = self.save_if_out_dir()
            where = f"; checkpoint saved to {saved}" if saved else ""
            print(f"Training interrupted at step {self.step}: the trainer is consistent{where}. "
                  "Call train() again to continue.")
        finally:
            bar.close()
        if not self.interrupted:
            self.save_if_out_dir()
        return self.history

    # --------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (the prior's weights excluded)."""
        return {"format": "rtb-lab-trainer/1", "step": self.step, "seconds": self.seconds,
                "config": asdict(self.config),
                "posterior": trainable_state_dict(self.posterior, self.prior),
                "log_z": self.log_z.state_dict(), "optimizer": self.optimizer.state_dict(),
                "log_z_optimizer": self.log_z_optimizer.state_dict(),
                "generator": self.generator.get_state(), "replay": self.replay.state_dict(),
                "history": self.history, "evaluations": self.evaluations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()` output."""
        own = state.get("ranks", [state])  # every rank's noise and replay (see `save`)
        if len(own) != distributed.world_size():
            raise ValueError(f"this checkpoint was written by {len(own)} process(es); resume it "
                             f"with as many (torchrun --nproc_per_node {len(own)})")
        missing, unexpected = self.posterior.load_state_dict(state["posterior"], strict=False)
        prior_keys = set(trainable_state_dict(self.posterior, self.prior, keep_prior=True)) - \
            set(trainable_state_dict(self.posterior, self.prior))
        if unexpected or set(missing) - prior_keys:
            raise ValueError(f"checkpoint does not match this posterior: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")
        self.log_z.load_state_dict(state["log_z"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.log_z_optimizer.load_state_dict(state["log_z_optimizer"])
        self.generator.set_state(own[distributed.rank()]["generator"])
        self.replay.load_state_dict(own[distributed.rank()]["replay"])
        self.step, self.seconds = state["step"], state["seconds"]
        self.history, self.evaluations = list(state["history"]), list(state["evaluations"])

    def save(self, path: str | Path) -> Path:
        """Write a resumable checkpoint to `path` and return it.

        Under torch.distributed every rank must call it: rank 0 writes one file that also
        holds every rank's noise and replay buffer, so `resume` restores each rank.
        """
        state = self.state_dict()
        if distributed.is_distributed():
            state["ranks"] = distributed.gather_on_main({"generator": state["generator"],
                                                         "replay": state["replay"]})
        return save_checkpoint(state, path) if distributed.is_main() else Path(path)

    def save_if_out_dir(self) -> Path | None:
        """Save to out_dir/checkpoint.pt when an output directory was given."""
        return None if self.out_dir is None else self.save(self.out_dir / "checkpoint.pt")

    def resume(self, path: str | Path) -> RTBTrainer:
        """Load a checkpoint written by `save` and return self (continue with `train()`)."""
        self.load_state_dict(load_checkpoint(path, expected_format="rtb-lab-trainer/1"))
        return self
