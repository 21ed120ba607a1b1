"""Inverse problems: operators and adjoints, the measurement reward, metrics, DPS, and the
exact 2D posterior that RTB recovers and DPS does not."""

from __future__ import annotations

import math

import pytest
import torch

from rtb_lab.domains.toy2d import prior as toy_prior
from rtb_lab.domains.toy2d.trainer import make_trainer
from rtb_lab.inverse import (
    Downsample,
    GaussianBlur,
    Inpaint,
    MatrixOperator,
    MeasurementReward,
    box_mask,
    denoiser,
    dps_sample,
    gaussian_kernel,
    measure,
    random_pixel_mask,
    tune_zeta,
)
from rtb_lab.inverse.metrics import calibration, psnr, summarise
from rtb_lab.inverse.toy import column_summary, exact_column_summary, measurement_target
from rtb_lab.train import TrainConfig

OPERATORS = {
    "blur gray": lambda: GaussianBlur((1, 28, 28), width=1.5),
    "blur colour": lambda: GaussianBlur((3, 16, 16), width=2.0, size=7),
    "box inpaint": lambda: Inpaint((1, 28, 28), box_mask((1, 28, 28), 8, 6, 10, 12)),
    "pixel inpaint": lambda: Inpaint((3, 16, 16), random_pixel_mask((3, 16, 16), 0.3, seed=4)),
    "downsample": lambda: Downsample((3, 32, 32), 2),
    "matrix": lambda: MatrixOperator(torch.tensor([[1.0, 0.0], [0.5, -2.0], [0.0, 3.0]])),
}


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_adjoint_passes_the_dot_product_test(name):
    operator = OPERATORS[name]()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, *operator.in_shape, generator=generator, dtype=torch.float64)
    y = torch.randn(3, *operator.out_shape, generator=generator, dtype=torch.float64)
    if hasattr(operator, "weight"):
        operator.weight = operator.weight.double()
    left = (operator.forward(x) * y).sum()
    right = (x * operator.adjoint(y)).sum()
    assert torch.allclose(left, right, rtol=1e-10), (float(left), float(right))


def test_operators_against_hand_values():
    kernel = gaussian_kernel(5, 1.0)
    assert torch.isclose(kernel.sum(), torch.tensor(1.0))
    assert kernel[2, 2] == kernel.max() and torch.allclose(kernel, kernel.T)
    # A blur keeps a constant image constant away from the (zero-padded) border.
    blur = GaussianBlur((1, 28, 28), width=1.0, size=5)
    out = blur(torch.full((1, 1, 28, 28), 0.7))
    assert torch.allclose(out[..., 2:-2, 2:-2], torch.tensor(0.7), atol=1e-6)
    assert out[0, 0, 0, 0] < 0.7
    # 2x average pooling of [[0, 1], [2, 3]] is 1.5; the enlarged view repeats it.
    down = Downsample((1, 2, 2), 2)
    y = down(torch.arange(4.0).view(1, 1, 2, 2))
    assert y.item() == 1.5 and torch.equal(down.show(y), torch.full((1, 1, 2, 2), 1.5))
    mask = box_mask((1, 4, 4), 1, 1, 2, 2)
    inpaint = Inpaint((1, 4, 4), mask)
    assert inpaint.out_shape == (1, 12) and inpaint.out_size == 12
    image = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(inpaint.show(inpaint(image)), image * mask)
    keep = random_pixel_mask((1, 100, 100), 0.3, seed=1)
    assert abs(keep.float().mean().item() - 0.3) < 0.02
    assert torch.equal(keep, random_pixel_mask((1, 100, 100), 0.3, seed=1))


def test_reward_is_the_gaussian_log_density():
    operator = MatrixOperator(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
    x = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    y = torch.tensor([1.0, 0.25])
    sigma = 0.7
    reward = MeasurementReward(operator, y, sigma)
    # By hand: A x = (-1.5, 1.0) and (2.0, 0.0).
    expected = torch.stack([
        torch.distributions.Normal(torch.tensor([-1.5, 1.0]), sigma).log_prob(y).sum(),
        torch.distributions.Normal(torch.tensor([2.0, 0.0]), sigma).log_prob(y).sum()])
    assert torch.allclose(reward(x), expected, atol=1e-6)
    hand = -((1.0 + 1.5) ** 2 + (0.25 - 1.0) ** 2) / (2 * sigma**2) - math.log(2 * math.pi
                                                                              * sigma**2)
    assert math.isclose(reward(x)[0].item(), hand, rel_tol=1e-6)
    # One observation per sample (amortised training).
    per_sample = MeasurementReward(operator, torch.stack([y, y + 1]), sigma)
    assert torch.allclose(per_sample(x)[0], expected[0])
    assert not torch.allclose(per_sample(x)[1], expected[1])
    # Residual relative to sigma: exact samples of the noise model give about 1.
    blur = GaussianBlur((1, 28, 28), 1.5)
    images = torch.rand(64, 1, 28, 28) * 2 - 1
    observed = measure(blur, images, 0.1, torch.Generator().manual_seed(0))
    ratio = MeasurementReward(blur, observed, 0.1).relative_residual(images)
    assert abs(ratio.mean().item() - 1.0) < 0.01
    assert torch.equal(observed, measure(blur, images, 0.1, torch.Generator().manual_seed(0)))


def test_bad_input_gets_clear_errors():
    blur = GaussianBlur((1, 28, 28), 1.5)
    with pytest.raises(ValueError, match=r"observation y must have shape \[1, 28, 28\]"):
        MeasurementReward(blur, torch.zeros(1, 14, 14), 0.1)
    for sigma in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
            MeasurementReward(blur, torch.zeros(1, 28, 28), sigma)
    with pytest.raises(ValueError, match="NaN or inf"):
        MeasurementReward(blur, torch.full((1, 28, 28), float("nan")), 0.1)
    with pytest.raises(ValueError, match=r"blur input x: expected shape \[B, 1, 28, 28\]"):
        blur(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"mask must have shape \[28, 28\]"):
        Inpaint((1, 28, 28), torch.ones(32, 32, dtype=torch.bool))
    with pytest.raises(ValueError, match="must be bool"):
        Inpaint((1, 28, 28), torch.ones(28, 28))
    with pytest.raises(ValueError, match="observes no pixel"):
        Inpaint((1, 28, 28), torch.zeros(28, 28, dtype=torch.bool))
    with pytest.raises(ValueError, match="not inside"):
        box_mask((1, 28, 28), 30, 0, 4, 4)
    with pytest.raises(ValueError, match="must divide"):
        Downsample((3, 32, 32), 3)
    with pytest.raises(ValueError, match="odd and positive"):
        gaussian_kernel(4, 1.0)
    with pytest.raises(ValueError, match="3 observations for a batch of 2"):
        MeasurementReward(blur, torch.zeros(3, 1, 28, 28), 0.1)(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="zeta must be >= 0"):
        dps_sample(None, toy_prior.make_family(), None, -1.0, 4, (2,))


def test_metrics_against_hand_values():
    truth = torch.zeros(2, 1, 4, 4)
    # MSE 0.01 on a range of 2: PSNR = 10 log10(4 / 0.01) = 26.02 dB.
    assert torch.allclose(psnr(truth + 0.1, truth), torch.tensor(10 * math.log10(400.0)))
    # Truth drawn from the same distribution as the samples: calibrated at about 0.9.
    generator = torch.Generator().manual_seed(0)
    samples = torch.randn(400, 8, 1, 8, 8, generator=generator)
    drawn = torch.randn(8, 1, 8, 8, generator=generator)
    assert abs(calibration(samples, drawn) - 0.9) < 0.03
    assert calibration(0.3 * samples, drawn) < 0.5  # overconfident
    with pytest.raises(ValueError, match="expected samples"):
        calibration(samples[:, :4], drawn)
    blur = GaussianBlur((1, 8, 8), 1.0, size=3)
    reward = MeasurementReward(blur, measure(blur, drawn.clamp(-1, 1), 0.1), 0.1)
    metrics = summarise(samples[:16].clamp(-1, 1), drawn.clamp(-1, 1), reward)
    assert set(metrics) == {"psnr_mean", "ssim_mean", "psnr_sample", "calibration_90",
                            "residual", "pixel_std"}
    assert metrics["psnr_mean"] > metrics["psnr_sample"]  # averaging removes noise


def test_toy_truth_matches_the_closed_form_evidence():
    """Observing x_1 of a Gaussian mixture: p(y) = sum_k w_k N(y; m_k1, sigma^2 + v)."""
    target = measurement_target(3.0, 1.0)
    truth = target.truth()
    prior = target.prior
    variance = float(prior.stds[0]) ** 2 + 1.0
    per_mode = torch.distributions.Normal(prior.means[:, 0], math.sqrt(variance)).log_prob(
        torch.tensor(3.0, dtype=torch.float64)) + torch.log(prior.weights / prior.weights.sum())
    assert math.isclose(truth.log_z, float(torch.logsumexp(per_mode, 0)), abs_tol=1e-4)
    assert torch.allclose(truth.mode_weights, torch.softmax(per_mode, 0), atol=1e-3)
    columns = {c: float(truth.mode_weights[prior.means[:, 0] == c].sum()) for c in (0.0, 5.0)}
    assert math.isclose(columns[0.0], 0.127, abs_tol=0.002)
    assert math.isclose(columns[5.0], 0.873, abs_tol=0.002)
    # The marginal TV of exact samples is small and shrinks with more of them.
    generator = torch.Generator().manual_seed(0)
    few, many = (truth.marginal_tv(truth.sample(n, generator)) for n in (1000, 16000))
    assert many < few and many < 0.02


def test_dps_without_guidance_is_the_prior_and_denoiser_is_exact():
    prior, family = toy_prior.load_prior(), toy_prior.make_family()
    target = measurement_target()
    from rtb_lab.diffusion import sample_trajectories
    plain = sample_trajectories(prior, family, 16, (2,),
                                generator=torch.Generator().manual_seed(3)).x
    unguided = dps_sample(prior, family, target.log_reward, 0.0, 16, (2,),
                          generator=torch.Generator().manual_seed(3))
    assert torch.allclose(plain, unguided, atol=1e-5)
    # For a straight-line drift towards a point e, x + f (1 - t) recovers e exactly.
    end = torch.tensor([[2.0, -1.0]])
    x, k = torch.tensor([[0.5, 0.5]]), torch.tensor([30])
    drift = (end - x) / (1 - family.time(k))[:, None]
    assert torch.allclose(denoiser(family)(drift, x, k), end)
    best, scores = tune_zeta(lambda z: -abs(z - 0.2), [0.1, 0.2, 0.4])
    assert best == 0.2 and len(scores) == 3


@pytest.mark.slow
def test_rtb_recovers_the_exact_2d_posterior_and_dps_does_not():
    """RTB: mode weights, log p(y) and the width of the modes match the exact posterior.
    DPS, at every step size: its modes are too wide (the guess x_hat is not the average
    over x_t's futures), whether or not ζ gets the column weights right."""
    torch.set_num_threads(2)
    target = measurement_target(3.0, 1.0)
    exact = exact_column_summary(3.0, 1.0)[5.0]  # weight 0.873, mean 4.54, std 0.48
    trainer = make_trainer(target, TrainConfig(steps=2000, batch_size=128, eval_every=0,
                                               seed=0))
    trainer.train(progress=False)
    rtb = trainer.sample(4000, generator=torch.Generator().manual_seed(0)).x
    rtb_metrics = target.evaluate(rtb, trainer.current_log_z())
    rtb_column = column_summary(rtb)[5.0]
    dps = {zeta: column_summary(dps_sample(trainer.prior, trainer.family, target.log_reward,
                                           zeta, 4000, (2,),
                                           generator=torch.Generator().manual_seed(0)))[5.0]
           for zeta in (0.02, 0.04, 0.07)}
    print("exact (weight, mean, std) of the x1 = 5 column:", exact, "RTB:", rtb_column,
          rtb_metrics, "DPS:", dps)
    assert rtb_metrics["tv"] <= 0.05
    assert rtb_metrics["log_z_err"] <= 0.15
    assert abs(rtb_column[0] - exact[0]) <= 0.03
    assert abs(rtb_column[1] - exact[1]) <= 0.25
    assert abs(rtb_column[2] - exact[2]) <= 0.05
    # Measured: DPS's std is 0.65-0.68 for zeta in 0.03-0.05, against 0.48.
    assert all(column[2] - exact[2] >= 0.12 for column in dps.values())

def test_image_problem_checks_and_samplers(unet_prior):
    """The image helpers on a tiny random prior: shapes, the bank's ESS, DPS at zeta 0
    is the prior, the RTB trainer's posterior starts at the prior."""
    from rtb_lab.inverse import images as inverse_images

    blur = GaussianBlur((1, 28, 28), 1.0)
    y = torch.zeros(1, 1, 28, 28)
    with pytest.raises(ValueError, match=r"operator takes images \[3, 32, 32\]"):
        inverse_images.ImageProblem(unet_prior, GaussianBlur((3, 32, 32), 1.0), 0.1,
                                    torch.zeros(1, 3, 32, 32))
    problem = inverse_images.ImageProblem(unet_prior, blur, 0.5, y, num_steps=4)
    plain = inverse_images.dps_images(problem, 0.0, 3, torch.Generator().manual_seed(0))
    from rtb_lab.diffusion import sample_trajectories
    from rtb_lab.domains.images.prior import decode
    same = decode(unet_prior, sample_trajectories(unet_prior, problem.family, 3, (1, 28, 28),
                                                  generator=torch.Generator().manual_seed(0)).x)
    assert plain.shape == (3, 1, 28, 28) and torch.allclose(plain, same, atol=1e-5)
    images, ess = inverse_images.bank_images(problem, 5, 16, torch.Generator().manual_seed(0))
    assert images.shape == (5, 1, 28, 28) and 1.0 <= ess <= 16.0
    trainer = inverse_images.observation_trainer(
        problem, inverse_images.OBSERVATION_CONFIG.with_steps(1), rank=2)
    traj = trainer.sample(4, generator=torch.Generator().manual_seed(1))
    from rtb_lab.diffusion import trajectory_log_prob
    assert torch.allclose(trajectory_log_prob(trainer.posterior, problem.family, traj),
                          trajectory_log_prob(unet_prior, problem.family, traj), atol=1e-4)
    assert trainer.config.beta == 1.0
    assert set(inverse_images.DPS_ZETA) == {"blur", "inpaint", "downsample"}
