"""Learned per-step std factors (rtb-lab no longer has them), on the shipped MNIST prior.

Written for rtb-lab at commit 4f6fb91, the last one whose sampler used a policy's
`std_scale` (see README.md here); it does not run on the current tree.

    python benchmarks/experiments/learned_std.py --steps 50 --lr 1e-3 --std-lr 2e-2

Continues the shipped even-digit posterior (beta = 1) with RTB twice from the same
start and seed: once with a learned log-factor on the fixed std of each of the 20
sampling steps (zero at the start), once without. Exploration is off (training
continues from a trained posterior). Prints the in-set share and E[log r] of 256
samples every --eval-every steps, and the factors' range.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from rtb_lab.domains import mnist, mnist_prior, mnist_reward
from rtb_lab.train import RTBTrainer

CLASSES = "even"


def run(learn_std: bool, args, prior, classifier) -> None:
    config = replace(mnist.MNIST_CONFIG, steps=args.steps, batch_size=args.batch, lr=args.lr,
                     lr_end=args.lr, scalar_lr=args.std_lr, explore=0.0,
                     eval_every=args.eval_every)
    posterior = mnist.warm_start(mnist.make_posterior(prior, learn_std=learn_std),
                                 mnist.load_posterior(prior))
    reward = mnist_reward.class_set_reward(classifier, mnist_reward.parse_classes(CLASSES))
    evaluator = mnist.make_evaluator(CLASSES, classifier, num_samples=256)
    trainer = RTBTrainer(prior, posterior, mnist_prior.make_family(),
                         lambda x: reward(mnist_prior.decode(prior, x)),
                         mnist_prior.IMAGE_SHAPE, config, evaluator=evaluator)
    trainer.evaluations.append(evaluator(trainer))
    while True:
        m = trainer.evaluations[-1]
        factors = (f"  log-std factors {float(posterior.log_std.min()):+.3f}.."
                   f"{float(posterior.log_std.max()):+.3f}" if learn_std else "")
        print(f"learn_std={learn_std}  step {trainer.step:3d}  in set {m['in_set']:.3f}  "
              f"E[log r] {m['mean_log_reward']:.3f}{factors}", flush=True)
        if trainer.step >= args.steps:
            break
        trainer.train(config.eval_every, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--std-lr", type=float, default=2e-2,
                        help="learning rate of the log-std factors")
    parser.add_argument("--eval-every", type=int, default=10)
    args = parser.parse_args()
    prior, classifier = mnist_prior.load_prior(), mnist_reward.load_classifier()
    for learn_std in (True, False):
        run(learn_std, args, prior, classifier)


if __name__ == "__main__":
    main()
