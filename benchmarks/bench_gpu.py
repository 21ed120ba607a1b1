"""GPU check: device selection, speed against the CPU, TF32 / bf16 precision, and
(optionally) the conditional MNIST posterior trained inside a wall-clock budget.

    python benchmarks/bench_gpu.py                       # speed and precision only
    python benchmarks/bench_gpu.py --train-until 540 --out DIR

Figures are printed (one JSON line per measurement); nothing is asserted. Speed
ratios are against the CPU of the same machine, measured in the same process.
`--train-until S` then trains `rtb-lab train-amortised mnist` on the GPU with as many
steps as fit before S seconds after the start (measured from the first steps), and
writes the adapter and its evaluations to DIR.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from rtb_lab.device import get_device
from rtb_lab.diffusion import trajectory_log_prob
from rtb_lab.domains import mnist
from rtb_lab.domains.mnist import conditional as mnist_conditional
from rtb_lab.domains.mnist import prior as mnist_prior
from rtb_lab.domains.mnist.reward import make_condition

STARTED = time.perf_counter()


def report(**figures) -> None:
    """Print one measurement as a JSON line."""
    figures["at_s"] = round(time.perf_counter() - STARTED, 1)
    print(json.dumps(figures), flush=True)


def seconds_per_step(trainer, steps: int = 3) -> float:
    """Mean wall time of `steps` RTB steps after one warm-up step (synchronised)."""
    trainer.train_step()
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    sync()
    return (time.perf_counter() - started) / steps


def bench_speed(device: torch.device) -> float:
    """Seconds per RTB step: single target (batch 32) on CPU and GPU, and the conditional
    batch (768) on the GPU. Returns the last figure."""
    base = replace(mnist.MNIST_CONFIG, eval_every=0, log_z_init_samples=64)
    cpu = seconds_per_step(mnist.make_trainer("even", 1.0, base), steps=2)
    report(part="speed", what="single target, batch 32, T=20", device="cpu",
           threads=torch.get_num_threads(), s_per_step=round(cpu, 3))
    prior = mnist_prior.load_prior(device=device)
    classifier = mnist.load_classifier(device=device)
    for tf32 in (False, True):
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
        gpu = seconds_per_step(mnist.make_trainer("even", 1.0, base, prior=prior,
                                                  classifier=classifier))
        report(part="speed", what="single target, batch 32, T=20", device=str(device),
               tf32=tf32, s_per_step=round(gpu, 3), speedup_vs_cpu=round(cpu / gpu, 1))
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    config = replace(mnist.CONDITIONAL_CONFIG, eval_every=0, log_z_init_samples=64)
    trainer = mnist.make_conditional_trainer(config, prior=prior, classifier=classifier)
    conditional = seconds_per_step(trainer)
    report(part="speed", what=f"conditional, batch {config.batch_size}, T=20",
           device=str(device), s_per_step=round(conditional, 3),
           trajectories_per_s=round(config.batch_size / conditional, 1))
    bench_precision(trainer)
    return conditional


@torch.no_grad()
def bench_precision(trainer) -> None:
    """How far TF32 and bf16 autocast move log q and the RTB log-ratio log q - log p."""
    cond = make_condition("even", 1.0, 256).to(trainer.device)
    traj = trainer.sample(256, cond=cond, explore=0.2, generator=torch.Generator().manual_seed(0))

    def log_ratio() -> tuple[torch.Tensor, torch.Tensor]:
        log_q = trajectory_log_prob(trainer.posterior, trainer.family, traj, 10)
        return log_q, log_q - trajectory_log_prob(trainer.prior, trainer.family, traj, 10)

    exact_q, exact_ratio = log_ratio()
    for name in ("tf32", "bf16 autocast"):
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
        with torch.autocast(trainer.device.type, torch.bfloat16, enabled=name != "tf32"):
            log_q, ratio = log_ratio()
        report(part="precision", what=name, log_q_abs_err=round(float((log_q - exact_q)
                                                                       .abs().mean()), 4),
               log_ratio_abs_err=round(float((ratio - exact_ratio).abs().mean()), 4),
               log_ratio_std=round(float(exact_ratio.std()), 4))
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False


def train(device: torch.device, seconds_per_iteration: float, until_s: float,
          out: Path, num_samples: int = 1024, resume: Path | None = None,
          extra: list[str] | None = None) -> None:
    """Train the conditional posterior with as many steps as fit before `until_s`
    (more steps after those of the `resume` checkpoint, if given)."""
    from rtb_lab import cli

    overhead = 1.15  # evaluations every 100 steps, checkpoints
    left = until_s - (time.perf_counter() - STARTED) - 30  # 30 s for the final evaluation
    steps = max(10, min(3000, int(left / (seconds_per_iteration * overhead))))
    out.mkdir(parents=True, exist_ok=True)
    if resume is not None:
        shutil.copy(resume, out / "checkpoint.pt")
        steps += torch.load(resume, map_location="cpu", weights_only=False)["step"]
    report(part="train", planned_steps=steps, budget_s=round(left))
    cli.main(["train-amortised", "mnist", "--steps", str(steps), "--device", str(device),
              "--out", str(out / "mnist_conditional_posterior.safetensors"), "--quiet",
              "--checkpoints", str(out), "--max-seconds", str(round(left / overhead)),
              *(extra or [])])
    evaluate_all(device, out / "mnist_conditional_posterior.safetensors", num_samples)


def evaluate_all(device: torch.device, path: Path, num_samples: int = 1024) -> None:
    """In-set share and E[log r] of every trained set at beta 0.5, 1 and 2."""
    prior = mnist_prior.load_prior(device=device)
    classifier = mnist.load_classifier(device=device)
    posterior = mnist.load_conditional_posterior(prior, path)
    sample = mnist.conditional_sampler(posterior, prior, seed=1)
    for classes in mnist.TRAIN_SETS:
        for beta in (0.5, 1.0, 2.0):
            found = mnist.evaluate_images(sample(classes, beta, num_samples), classes,
                                          classifier)
            report(part="final", classes=list(classes), beta=beta,
                   **{k: round(v, 4) for k, v in found.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-until", type=float, default=0,
                        help="train the conditional posterior until this many seconds")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu"))
    parser.add_argument("--seconds-per-step", type=float, default=None,
                        help="skip the speed part and plan training with this figure")
    parser.add_argument("--resume", type=Path, default=None,
                        help="continue from this trainer checkpoint")
    parser.add_argument("--train-args", default="",
                        help="more `rtb-lab train-amortised mnist` options, e.g. "
                             "'--per-set-batch 128 --value-guided'")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny batches (a dry run of this script on a CPU)")
    args = parser.parse_args()
    if args.smoke:  # the CLI's trainer reads the conditional module's config
        mnist.CONDITIONAL_CONFIG = mnist_conditional.CONDITIONAL_CONFIG = replace(
            mnist_conditional.CONDITIONAL_CONFIG, batch_size=24, eval_every=2,
            checkpoint_every=2)
    device = get_device()
    # Training is fp32: TF32 convolutions (PyTorch's default for cuDNN) are off.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    report(part="device", device=str(device), name=name, torch=torch.__version__)
    seconds = args.seconds_per_step or bench_speed(device)
    if args.train_until:
        train(device, seconds, args.train_until, args.out, 16 if args.smoke else 1024,
              args.resume, args.train_args.split())


if __name__ == "__main__":
    main()
