"""Statistical regression: RTB from the shipped prior recovers the known 25 -> 9 posterior."""

from __future__ import annotations

import pytest
import torch

from rtb_lab.domains import toy2d
from rtb_lab.train import TrainConfig


@pytest.mark.slow
def test_fast_rtb_recovers_the_9_mode_posterior():
    torch.set_num_threads(2)
    trainer = toy2d.finetune("25to9", TrainConfig(seed=0).fast(), progress=False)
    final = trainer.evaluations[-1]
    print("25to9 fast:", {k: round(v, 4) for k, v in final.items()})
    assert trainer.step == TrainConfig().fast().steps
    assert final["tv"] <= 0.10
    assert final["mass_in_modes"] >= 0.97
    assert final["log_z_err"] <= 0.10
    assert final["modes_covered"] == 9
