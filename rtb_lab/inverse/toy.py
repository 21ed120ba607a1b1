"""A linear-Gaussian inverse problem on the 2D toy, where the posterior is exact.

Observe one coordinate of a point of the 25-mode prior through noise,
y = x_1 + sigma eps: the posterior p(x | y) is p(x) N(y; x_1, sigma^2) integrated on the
grid (`Toy2DTarget.truth`), so RTB's and DPS's samples are scored against the truth.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rtb_lab.domains.toy2d.gmm import grid_mixture
from rtb_lab.domains.toy2d.targets import Toy2DTarget
from rtb_lab.inverse.measurement import MeasurementReward
from rtb_lab.inverse.operators import MatrixOperator

OBSERVE_FIRST = ((1.0, 0.0),)


def measurement_target(y: float | Tensor = 3.0, sigma: float = 1.0,
                       matrix: Tensor | tuple = OBSERVE_FIRST) -> Toy2DTarget:
    """p(x) N(y; M x, sigma^2 I) on the 25-mode grid prior (default: observe x_1 = 3 +- 1,
    which splits the posterior between the columns x_1 = 0 and x_1 = 5, 13% / 87%)."""
    operator = MatrixOperator(torch.as_tensor(matrix, dtype=torch.float32))
    y = torch.as_tensor(y, dtype=torch.float32).reshape(operator.out_shape)
    reward = MeasurementReward(operator, y, sigma)
    return Toy2DTarget(f"observe {y.tolist()} +- {sigma:g}", grid_mixture(), reward, 1.0)


def column_summary(x: Tensor, columns: tuple[float, ...] = (0.0, 5.0), half_width: float = 2.5
                   ) -> dict[float, tuple[float, float, float]]:
    """Per column of modes (x_1 within `half_width` of c): (share of samples, mean of x_1,
    std of x_1), from samples x [N, 2]. Where DPS's bias shows: see `exact_column_summary`."""
    summary = {}
    for c in columns:
        inside = (x[:, 0] - c).abs() < half_width
        values = x[inside, 0].double()
        summary[c] = (float(inside.double().mean()), float(values.mean()), float(values.std()))
    return summary


def exact_column_summary(y: float = 3.0, sigma: float = 1.0,
                         columns: tuple[float, ...] = (0.0, 5.0)
                         ) -> dict[float, tuple[float, float, float]]:
    """The same figures in closed form for `measurement_target(y, sigma)` (observing x_1):
    a column at c has weight ~ N(y; c, v + sigma^2) over the prior's columns, and inside it
    x_1 ~ N(c + v (y - c) / (v + sigma^2), v sigma^2 / (v + sigma^2)), v the mode variance."""
    prior = grid_mixture()
    variance = float(prior.stds[0]) ** 2
    centres = prior.means[:, 0].unique()
    log_weight = torch.distributions.Normal(centres, (variance + sigma**2) ** 0.5).log_prob(
        torch.tensor(float(y), dtype=torch.float64))
    weight = dict(zip(centres.tolist(), torch.softmax(log_weight, 0).tolist(), strict=True))
    gain = variance / (variance + sigma**2)
    return {c: (weight[c], c + gain * (y - c), (gain * sigma**2) ** 0.5) for c in columns}
