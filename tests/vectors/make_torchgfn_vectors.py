"""Generate ``torchgfn_rtb.json``: RTB reference vectors computed by torchgfn.

torchgfn pins ``numpy<2``, so it lives in a side venv, never in the project venv.
Regenerate with (``torch==2.13.0`` first, so pip reuses that CPU wheel)::

    python3 -m venv /tmp/tgfn-venv
    /tmp/tgfn-venv/bin/pip install torch==2.13.0
    /tmp/tgfn-venv/bin/pip install torchgfn==2.4.1
    /tmp/tgfn-venv/bin/python tests/vectors/make_torchgfn_vectors.py

Inputs come from ``random.Random(SEED)`` (not torch RNG) so they do not depend on the
torch version. Outputs are float64; JSON floats round-trip exactly. Per-step log-probs
are stored step-major ``[T][B]`` (torchgfn's layout). Each case stores torchgfn's
residuals ``log_z + sum_t post - sum_t prior - beta * log_reward`` and two losses:
``loss_half_squared`` (torchgfn's default RTB loss, ``mean(0.5 * r**2)``) and
``loss_squared`` (torchgfn with ``SquaredLoss``, ``mean(r**2)``, which is what
``rtb_lab.rtb.rtb_loss`` computes).
"""

from __future__ import annotations

import importlib
import json
import math
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "torchgfn_rtb.json"
SEED = 20240607
N_STEPS, BATCH = 5, 6
LOG_Z = 0.7
BETAS = (0.5, 1.0, 2.0)
TOL = 1e-12


def make_inputs() -> dict:
    """Seeded per-step log-probs ``[T][B]``, log-rewards ``[B]`` and ``log_z``."""
    rng = random.Random(SEED)

    def steps() -> list[list[float]]:
        return [[-rng.uniform(0.05, 3.0) for _ in range(BATCH)] for _ in range(N_STEPS)]

    post, prior = steps(), steps()
    log_reward = [rng.gauss(0.0, 2.0) for _ in range(BATCH)]
    return {
        "log_pf_post_steps": post,
        "log_pf_prior_steps": prior,
        "log_reward": log_reward,
        "log_z": LOG_Z,
    }


def main() -> int:
    """Run torchgfn on every case, check against the closed form, write JSON."""
    sys.path.insert(0, str(HERE))
    adapter = importlib.import_module("torchgfn_adapter")
    import gfn
    import torch

    inputs = make_inputs()
    post = torch.tensor(inputs["log_pf_post_steps"], dtype=torch.float64)
    prior = torch.tensor(inputs["log_pf_prior_steps"], dtype=torch.float64)
    log_r = torch.tensor(inputs["log_reward"], dtype=torch.float64)
    sum_post, sum_prior = post.sum(0), prior.sum(0)

    cases = []
    for beta in BETAS:
        args = (post, prior, log_r, LOG_Z, beta)
        res, loss_half = adapter.torchgfn_rtb(*args, loss_fn="half_squared")
        res_sq, loss_sq = adapter.torchgfn_rtb(*args, loss_fn="squared")
        expected = LOG_Z + sum_post - sum_prior - beta * log_r
        err = (res - expected).abs().max().item()
        if err > TOL or not torch.equal(res, res_sq):
            raise AssertionError(f"beta={beta}: residual mismatch vs closed form ({err:.3g})")
        if not math.isclose(loss_half.item(), 0.5 * (res**2).mean().item(), rel_tol=TOL):
            raise AssertionError(f"beta={beta}: half-squared loss mismatch")
        if not math.isclose(loss_sq.item(), (res**2).mean().item(), rel_tol=TOL):
            raise AssertionError(f"beta={beta}: squared loss mismatch")
        cases.append(
            {
                "name": f"T{N_STEPS}_B{BATCH}_beta{beta:g}",
                "beta": beta,
                **inputs,
                "log_pf_post": sum_post.tolist(),
                "log_pf_prior": sum_prior.tolist(),
                "residuals": res.tolist(),
                "loss_half_squared": loss_half.item(),
                "loss_squared": loss_sq.item(),
                "max_abs_err_vs_closed_form": err,
            }
        )
        print(
            f"beta={beta:g}: loss_squared={loss_sq.item():.12g} "
            f"loss_half_squared={loss_half.item():.12g} max|res-closed|={err:.2g}"
        )

    doc = {
        "source": "torchgfn RelativeTrajectoryBalanceGFlowNet.loss (via torchgfn_adapter.py)",
        "torchgfn_version": gfn.__version__,
        "torch_version": torch.__version__,
        "generator": "tests/vectors/make_torchgfn_vectors.py",
        "seed": SEED,
        "dtype": "float64",
        "layout": {"log_pf_*_steps": "[T][B] step-major", "log_pf_*": "[B] sum over steps"},
        "residual": "log_z + log_pf_post - log_pf_prior - beta * log_reward",
        "loss_half_squared": "mean(0.5 * residual**2)  (torchgfn default HalfSquaredLoss)",
        "loss_squared": "mean(residual**2)  (torchgfn SquaredLoss; matches rtb_lab rtb_loss)",
        "cases": cases,
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
