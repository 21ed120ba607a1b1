"""Run torchgfn's own RTB code on fixed per-step log-prob tensors.

Reference oracle for ``rtb_lab.rtb``. torchgfn (which pins ``numpy<2``) is imported
lazily, so this module can be imported anywhere; calling :func:`torchgfn_rtb` needs
torchgfn installed (see ``make_torchgfn_vectors.py`` for the side venv).

How the tensors are fed in, without patching torchgfn:

* a real ``Trajectories`` object is built on a ``HyperGrid`` env whose state tensors
  are synthetic ``(step, trajectory)`` labels ``[t, b]`` (row ``T`` is the sink
  state); they are only used as lookup keys, not as reachable grid states;
* posterior and prior are tiny ``Estimator``/``PolicyMixin`` policies whose module
  looks up the given ``[T, B]`` log-prob table at ``[t, b]`` and whose distribution's
  ``log_prob`` returns that value;
* ``RelativeTrajectoryBalanceGFlowNet.loss`` then runs unmodified: torchgfn's
  ``get_trajectory_pfs`` (vectorised path) builds the ``[T, B]`` tables,
  ``_compute_rtb_scores`` sums over steps and applies ``beta``, ``loss`` adds logZ,
  applies ``loss_fn`` and reduces.

Residuals are obtained from the same ``loss`` method with an identity ``loss_fn`` and
``reduction="none"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

LOSS_FNS = ("half_squared", "squared")


def _as_f64(x: Any) -> torch.Tensor:
    """Convert nested lists / arrays / tensors to a detached float64 CPU tensor."""
    return torch.as_tensor(x, dtype=torch.float64).detach().cpu().clone()


def _build(post: torch.Tensor, prior: torch.Tensor, log_reward: torch.Tensor):
    """Build (env, trajectories, pf, prior_pf) for step-major ``[T, B]`` tables."""
    from gfn.containers import Trajectories
    from gfn.estimators import Estimator, PolicyMixin
    from gfn.gym import HyperGrid
    from gfn.preprocessors import IdentityPreprocessor
    from torch.distributions import Distribution

    class _FixedLogProb(Distribution):
        """Distribution whose ``log_prob`` is a precomputed per-row value."""

        arg_constraints: dict = {}

        def __init__(self, lp: torch.Tensor) -> None:
            super().__init__(batch_shape=lp.shape, validate_args=False)
            self._lp = lp

        def log_prob(self, value: torch.Tensor) -> torch.Tensor:
            """Return the stored log-probs (one per active row)."""
            assert value.shape[0] == self._lp.shape[0]
            return self._lp

    class _TableModule(torch.nn.Module):
        """Map synthetic state labels ``[t, b]`` to ``table[t, b]``."""

        input_dim = 2

        def __init__(self, table: torch.Tensor) -> None:
            super().__init__()
            self.register_buffer("table", table)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """Look up one log-prob per state; shape ``[K, 1]``."""
            x = x.long()
            return self.table[x[..., 0], x[..., 1]].unsqueeze(-1)

    class _TablePolicy(PolicyMixin, Estimator):
        """Policy estimator returning fixed per-step log-probs."""

        @property
        def expected_output_dim(self) -> int:
            """One scalar (the log-prob) per state."""
            return 1

        def to_probability_distribution(self, states, module_output, **kwargs):
            """Wrap the looked-up log-probs in a distribution."""
            return _FixedLogProb(module_output.squeeze(-1))

    n_steps, batch = post.shape
    env = HyperGrid(ndim=2, height=max(n_steps, batch) + 1, validate_modes=False)

    states = torch.empty(n_steps + 1, batch, 2, dtype=torch.long)
    states[:n_steps, :, 0] = torch.arange(n_steps).unsqueeze(1)
    states[:n_steps, :, 1] = torch.arange(batch).unsqueeze(0)
    states[n_steps] = env.sf
    actions = torch.zeros(n_steps, batch, 1, dtype=torch.long)
    actions[-1] = env.n_actions - 1  # exit action on the last step

    trajectories = Trajectories(
        env=env,
        states=env.States(states),
        actions=env.Actions(actions),
        terminating_idx=torch.full((batch,), n_steps, dtype=torch.long),
        log_rewards=log_reward,
    )

    def policy(table: torch.Tensor) -> Any:
        """Build a frozen table policy."""
        return _TablePolicy(_TableModule(table), preprocessor=IdentityPreprocessor(2))

    return env, trajectories, policy(post), policy(prior)


def torchgfn_rtb(
    log_pf_post_steps: Sequence[Sequence[float]] | torch.Tensor,
    log_pf_prior_steps: Sequence[Sequence[float]] | torch.Tensor,
    log_reward: Sequence[float] | torch.Tensor,
    log_z: float | torch.Tensor,
    beta: float,
    loss_fn: str = "half_squared",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(residuals[B], loss[])`` (float64) computed by torchgfn's RTB code.

    ``log_pf_*_steps`` are step-major ``[T, B]`` per-step log-probs (torchgfn's layout).
    ``residuals = log_z + sum_t post - sum_t prior - beta * log_reward``.
    ``loss_fn="half_squared"`` is torchgfn's default RTB loss, ``mean(0.5 * r**2)``;
    ``loss_fn="squared"`` passes torchgfn's ``SquaredLoss``, giving ``mean(r**2)``.
    """
    if loss_fn not in LOSS_FNS:
        raise ValueError(f"loss_fn must be one of {LOSS_FNS}, got {loss_fn!r}")

    from gfn.gflownet import RelativeTrajectoryBalanceGFlowNet
    from gfn.gflownet.losses import HalfSquaredLoss, RegressionLoss, SquaredLoss

    class _Identity(RegressionLoss):
        """Identity "loss" so ``loss(reduction='none')`` returns the residuals."""

        def __call__(self, residuals: torch.Tensor) -> torch.Tensor:
            return residuals

    post = _as_f64(log_pf_post_steps)
    prior = _as_f64(log_pf_prior_steps)
    log_r = _as_f64(log_reward)
    if post.ndim != 2 or post.shape != prior.shape or log_r.shape != post.shape[1:]:
        raise ValueError(
            f"expected [T, B], [T, B], [B]; got {tuple(post.shape)}, "
            f"{tuple(prior.shape)}, {tuple(log_r.shape)}"
        )

    # torchgfn allocates its [T, B] log-prob tables (and logZ / beta) with the default
    # dtype, so float64 must be the default while it runs.
    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        env, trajectories, pf, prior_pf = _build(post, prior, log_r)

        def run(reg: RegressionLoss, reduction: str) -> torch.Tensor:
            """Call ``RelativeTrajectoryBalanceGFlowNet.loss`` with a fresh instance."""
            gfn = RelativeTrajectoryBalanceGFlowNet(
                pf=pf, prior_pf=prior_pf, init_logZ=float(log_z), beta=float(beta), loss_fn=reg
            )
            with torch.no_grad():
                return gfn.loss(
                    env, trajectories, recalculate_all_logprobs=True, reduction=reduction
                )

        residuals = run(_Identity(), "none")
        reg = HalfSquaredLoss() if loss_fn == "half_squared" else SquaredLoss()
        loss = run(reg, "mean")
    finally:
        torch.set_default_dtype(old_dtype)
    return residuals.detach().clone(), loss.detach().clone()
