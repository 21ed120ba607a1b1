"""Guidance forms rtb-lab no longer has, on the shipped MNIST prior (even digits, beta = 1).

Written for rtb-lab at commit 4f6fb91, the last one whose sampler used look-ahead's
mean shift (see README.md here); it does not run on the current tree.

    python benchmarks/experiments/guidance.py --part constant --form lookahead \
        --scales 0.75 0.9 1 1.1 1.25 1.5 --seeds 7 3
    python benchmarks/experiments/guidance.py --part constant --form value --scales 1
    python benchmarks/experiments/guidance.py --part constant --form reward --scales 0.25 0.5 1
    python benchmarks/experiments/guidance.py --part train --form lookahead --eval-every 20
    python benchmarks/experiments/guidance.py --part train --form reward --init-scale 0 \
        --scalar-lr 3e-2 --steps 40 --eval-every 10

Forms: `value` (the shipped one: the value's gradient in the noise prediction),
`lookahead` (the value's gradient at the prior's step mean and the next step's time,
added to the step mean) and `reward` (the classifier's gradient at the prior's clean-
image estimate, DPS-like). The value network is the shipped chain value.

* constant: a fresh (zero) rank-8 LoRA plus guidance at a constant scale c, no
  training: in-set share, E[log r], KL(q || prior), KL(q || target) (log Z from a bank
  of prior samples) and Var(log w), the variance of RTB's residual over q's samples.
* train: RTB from the shipped prior with that policy (scales start at --init-scale),
  evaluated on 256 samples every --eval-every steps until --steps or --time-limit, as
  `bench_mnist.py --part quality` does for the shipped form.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from rtb_lab.domains import mnist, mnist_bank, mnist_guided, mnist_prior, mnist_reward
from rtb_lab.resample import kl_to_target, resample_posterior
from rtb_lab.train import RTBTrainer

CLASSES = "even"


def make_policy(form: str, prior, classifier, value, scale: float):
    """A zero LoRA (the prior) plus guidance of `form` at scales `scale`."""
    base = mnist.make_posterior(prior)
    if form == "reward":
        return mnist_guided.GuidedPosterior(base, prior, classifier, CLASSES, 1.0,
                                            init_scale=scale)
    return mnist_guided.GuidedPosterior(base, prior, None, CLASSES, 1.0, value=value,
                                        init_scale=scale, lookahead=form == "lookahead")


def constant(args, prior, classifier, value) -> None:
    bank = mnist_bank.ImportanceBank(prior, classifier, size=args.bank, seed=123)
    log_z = bank.log_z(CLASSES, 1.0)
    reward = mnist_reward.class_set_reward(classifier, mnist_reward.parse_classes(CLASSES))
    family = mnist_prior.make_family()
    print(f"## constant {args.form} guidance, {CLASSES}, beta = 1, {args.samples} samples per "
          f"row; log Z = {log_z:.3f} (bank of {args.bank}), exact posterior in set "
          f"{bank.exact_metrics(CLASSES, 1.0)['in_set']:.3f}")
    print("| c | seed | in set | E[log r] | KL(q ‖ prior) | KL(q ‖ target) | Var(log w) |")
    print("|---|---|---|---|---|---|---|")
    for scale in args.scales:
        for seed in args.seeds:
            found = resample_posterior(make_policy(args.form, prior, classifier, value, scale),
                                       prior, family,
                                       lambda x: reward(mnist_prior.decode(prior, x)),
                                       args.samples, mnist_prior.IMAGE_SHAPE, candidates=1,
                                       generator=torch.Generator().manual_seed(seed))
            m = mnist.evaluate_images(mnist_prior.decode(prior, found.x), CLASSES, classifier)
            log_w = found.log_weights.flatten()  # K = 1: the kept trajectory is the only one
            kl_prior = float((found.traj.log_reward - log_w).mean())  # log q - log p
            print(f"| {scale} | {seed} | {m['in_set']:.3f} | {m['mean_log_reward']:.3f} | "
                  f"{kl_prior:.3f} | {kl_to_target(log_w, log_z):.3f} | "
                  f"{float(log_w.var()):.2f} |", flush=True)


def train(args, prior, classifier, value) -> None:
    config = replace(mnist.MNIST_CONFIG, steps=args.steps, eval_every=args.eval_every,
                     **({} if args.scalar_lr is None else {"scalar_lr": args.scalar_lr}))
    reward = mnist_reward.class_set_reward(classifier, mnist_reward.parse_classes(CLASSES))
    evaluator = mnist.make_evaluator(CLASSES, classifier, num_samples=256)
    policy = make_policy(args.form, prior, classifier, value, args.init_scale)
    trainer = RTBTrainer(prior, policy, mnist_prior.make_family(),
                         lambda x: reward(mnist_prior.decode(prior, x)),
                         mnist_prior.IMAGE_SHAPE, config, evaluator=evaluator)
    print(f"## train: LoRA + {args.form} guidance from scales {args.init_scale}, {CLASSES}")
    started = time.perf_counter()
    trainer.evaluations.append(evaluator(trainer))  # step 0: the guidance alone
    while True:
        m = trainer.evaluations[-1]
        scales = policy.guide.detach()
        print(f"step {trainer.step:4d}  {trainer.seconds:6.0f} s train  "
              f"E[log r] {m['mean_log_reward']:.3f}  in set {m['in_set']:.3f}  "
              f"diversity {m['diversity']:.3f}  fid {m['fid']:.2f}  "
              f"scales {float(scales.min()):.2f}..{float(scales.max()):.2f}", flush=True)
        if trainer.step >= args.steps or (args.time_limit and
                                          time.perf_counter() - started >= args.time_limit):
            break
        trainer.train(config.eval_every, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("constant", "train"), default="constant")
    parser.add_argument("--form", choices=("value", "lookahead", "reward"), default="lookahead")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0],
                        help="constant: the scales c")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7], help="constant: noise seeds")
    parser.add_argument("--samples", type=int, default=512, help="constant: samples per row")
    parser.add_argument("--bank", type=int, default=4096,
                        help="constant: prior samples behind log Z")
    parser.add_argument("--init-scale", type=float, default=1.0, help="train: scales' start")
    parser.add_argument("--scalar-lr", type=float, default=None,
                        help="train: learning rate of the scales (default: the config's)")
    parser.add_argument("--steps", type=int, default=600, help="train: RTB steps at most")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--time-limit", type=float, default=15 * 60,
                        help="train: stop after this many seconds (0: no limit)")
    args = parser.parse_args()
    prior, classifier = mnist_prior.load_prior(), mnist_reward.load_classifier()
    value = None if args.form == "reward" else mnist.value_network(mnist.CHAIN_VALUE_ASSET)
    (constant if args.part == "constant" else train)(args, prior, classifier, value)


if __name__ == "__main__":
    main()
