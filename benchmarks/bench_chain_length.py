"""Does the chain length T cap RTB on MNIST? Single-target runs at several T, same budget.

    python benchmarks/bench_chain_length.py --num-steps 20 --seconds 300 --batch 128

Fine-tunes the shipped prior towards even digits (beta = 1) with the MNIST recipe at
T sampling steps (gradient through a quarter of them), for a wall-clock budget, and
prints one JSON line per evaluation (in-set share, E[log r], diversity of 256
samples) and the exact posterior's in-set share at that T (importance-weighted prior
samples). Start one process per T side by side on a GPU to compare them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import torch

from rtb_lab.device import get_device
from rtb_lab.domains import mnist
from rtb_lab.domains.mnist import bank as mnist_bank
from rtb_lab.train import time_budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-steps", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--bank", type=int, default=4096, help="prior samples for the exact figure")
    args = parser.parse_args()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    device = get_device()
    prior = mnist.load_prior(device=device)
    classifier = mnist.load_classifier(device=device)
    bank = mnist_bank.ImportanceBank(prior, classifier, args.bank, num_steps=args.num_steps)
    exact = bank.exact_metrics("even", 1.0)
    print(json.dumps({"T": args.num_steps, "exact_in_set": round(exact["in_set"], 4),
                      "bank_ess": round(exact["ess"], 1)}), flush=True)
    config = replace(mnist.MNIST_CONFIG, steps=1000, explore_hold=10, explore_end=60,
                     batch_size=args.batch,
                     grad_steps=max(1, args.num_steps // 4), eval_every=args.eval_every)
    trainer = mnist.make_trainer("even", 1.0, config, prior=prior, classifier=classifier,
                                 num_steps=args.num_steps,
                                 evaluator=mnist.make_evaluator("even", classifier))
    show = lambda trainer, m: print(json.dumps(  # noqa: E731
        {"T": args.num_steps, **{k: round(v, 4) for k, v in m.items()}}), flush=True)
    trainer.train(progress=False, eval_callbacks=[show], callbacks=[time_budget(args.seconds)])
    show(trainer, trainer.evaluate())


if __name__ == "__main__":
    main()
