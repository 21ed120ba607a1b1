"""Plain supervised fitting of the networks a domain ships (priors, reward models):
minibatch AdamW with a progress bar, a cosine learning rate, and Ctrl-C that keeps the
network trained so far. No RTB here."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from rtb_lab.rtb import freeze


def fit_minibatches(model: nn.Module, loss_fn: Callable[[Tensor, torch.Generator], Tensor],
                    n: int, steps: int, batch_size: int, lr: float, seed: int, what: str,
                    progress: bool = True) -> nn.Module:
    """Fit `model` by AdamW with a cosine learning rate (to 5% of `lr`) over `steps`
    minibatches of `batch_size` indices into `n` examples; returned frozen, in eval mode.

    ``loss_fn(index [batch_size], generator) -> scalar loss``. Ctrl-C stops early and
    keeps what was trained (``model.trained_steps`` says how far it got).
    """
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1))))
    model.train()
    model.trained_steps = 0
    bar = tqdm(range(steps), desc=what, disable=not progress)
    try:
        for step in bar:
            index = torch.randint(n, (batch_size,), generator=generator)
            loss = loss_fn(index, generator)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            model.trained_steps = step + 1
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
    except KeyboardInterrupt:
        print(f"{what}: interrupted after {model.trained_steps} steps; keeping what was trained")
    finally:
        bar.close()
    return freeze(model.eval())
