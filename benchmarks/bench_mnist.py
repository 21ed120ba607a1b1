"""MNIST benchmark: RTB iteration speed, memory as T doubles, and time to quality.

    python benchmarks/bench_mnist.py                 # every part
    python benchmarks/bench_mnist.py --part speed    # or memory / quality / resample /
                                                     # ray / conditional
    python benchmarks/bench_mnist.py --part resample --posterior FILE   # another posterior

Figures are printed, with ratios against a baseline measured in the same process (or,
for memory, in sibling processes started the same way). Nothing here is asserted.

1. speed: seconds per RTB iteration (batch 32, T = 20) for the one-pass gradient, the
   chunked exact gradient (10 steps per chunk) and time-step subsampling (5 of 20 steps),
   each with the log q recorded while sampling (the default) and without it.
2. memory: peak resident memory of one RTB iteration for T = 10, 20, 40, 80 with and
   without chunking (each in a fresh subprocess; chunked memory should stay flat).
3. quality: time from the shipped prior until E[log r] >= -0.2 on even digits with
   diversity >= 0.9 x that of prior samples classified even (target: 15 minutes), for
   a LoRA posterior or (`--value ASSET`) a value-guided one, evaluated from step 0.
4. resample: the shipped conditional posterior (or `--posterior FILE`, a conditional
   one) at beta = 1, each image kept from K of its samples by exact importance weight
   (`rtb_lab.resample`), K = 1 (the posterior itself), 2, 4, 8, beside the exact
   posterior (an importance bank of prior samples).
5. ray: the shipped even-digit posterior's LoRA update (or that of `--posterior FILE`,
   specialised to even digits at beta = 1 if conditional) scaled by alpha = 0 (prior)
   ... 3: in-set share against KL(q || target), the divergence on-policy RTB minimises.
6. conditional: the shipped conditional posterior (and `--posterior FILE` beside it)
   at beta = 1 against the exact posterior, with KL(q || target).

Experiments with options rtb-lab no longer has (learned std, look-ahead and reward
guidance) are in benchmarks/experiments/. The LoRA-only conditional posterior that
docs/mnist.md compares against is no longer shipped; extract it from the git history
and pass it as `--posterior`:

    git show 4f4a499:rtb_lab/assets/mnist_conditional_lora_posterior.safetensors > lora.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from memory import print_memory_table, rss_growth_mb

from rtb_lab.diffusion import sample_trajectories
from rtb_lab.domains import mnist
from rtb_lab.domains.mnist import bank as mnist_bank
from rtb_lab.domains.mnist import prior as mnist_prior
from rtb_lab.domains.mnist import reward as mnist_reward
from rtb_lab.resample import (
    importance_log_weights,
    kl_to_target,
    mean_ess_fraction,
    pick,
    resample_posterior,
)

TARGET_LOG_R = -0.2
DIVERSITY_RATIO = 0.9
TIME_LIMIT_S = 15 * 60


def seconds_per_iteration(config, iterations: int = 5, cached_log_q: bool = True) -> float:
    """Mean wall time of `iterations` RTB steps after one warm-up step."""
    trainer = mnist.make_trainer("even", 1.0, config)
    if not cached_log_q:  # forget the log q recorded while sampling: one more scoring pass
        sample = trainer.sample
        trainer.sample = lambda *a, **k: replace(sample(*a, **k), log_pf=None)
    trainer.train_step()
    started = time.perf_counter()
    for _ in range(iterations):
        trainer.train_step()
    return (time.perf_counter() - started) / iterations


def bench_speed() -> None:
    base = replace(mnist.MNIST_CONFIG, eval_every=0, log_z_init_samples=64)
    variants = {"one pass (chunk_steps=None)": replace(base, chunk_steps=None, grad_steps=None),
                "chunked, 10 steps per chunk": replace(base, chunk_steps=10, grad_steps=None),
                "chunked + grad through 5 of 20 steps": replace(base, chunk_steps=10,
                                                                  grad_steps=5)}
    baseline = None
    print(f"## speed: batch {base.batch_size}, T = {mnist_prior.NUM_STEPS}, "
          f"{torch.get_num_threads()} threads")
    for name, config in variants.items():
        for cached in (False, True) if config.chunk_steps else (False,):  # one pass: no use
            seconds = seconds_per_iteration(config, cached_log_q=cached)
            baseline = baseline or seconds
            label = name if not config.chunk_steps else \
                f"{name}, {'log q from sampling' if cached else 'log q rescored'}"
            print(f"{label:62s} {seconds:6.2f} s/iteration  ({baseline / seconds:.2f}x baseline)")


def memory_probe(num_steps: int, chunk_steps: int | None) -> float:
    """Peak RSS (MB) growth of one RTB step at T = num_steps (run in a fresh process)."""
    config = replace(mnist.MNIST_CONFIG, eval_every=0, log_z_init_samples=16,
                     chunk_steps=chunk_steps, grad_steps=None)  # the exact gradient
    trainer = mnist.make_trainer("even", 1.0, config, num_steps=num_steps)
    return rss_growth_mb(trainer.train_step)


def bench_memory() -> None:
    print_memory_table(__file__, (10, 20, 40, 80), batch=32)


def bench_quality(steps: int = 600, save: str | None = None,
                  time_limit: float = TIME_LIMIT_S, eval_every: int = 10,
                  value: str | None = None) -> None:
    classifier = mnist_reward.load_classifier()
    prior = mnist_prior.load_prior()
    prior_x = mnist_prior.sample_images(prior, 512, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        even = mnist_reward.class_mask("even")[classifier(prior_x).argmax(1)] > 0.5
    prior_metrics = mnist.evaluate_images(prior_x, "even", classifier)
    reference = mnist.evaluate_images(prior_x[even], "even", classifier)["diversity"]
    print(f"## quality: prior E[log r] {prior_metrics['mean_log_reward']:.3f}, diversity of "
          f"prior samples classified even {reference:.3f} (target >= "
          f"{DIVERSITY_RATIO * reference:.3f}), E[log r] target >= {TARGET_LOG_R}")
    config = replace(mnist.MNIST_CONFIG, steps=steps, eval_every=eval_every)
    evaluator = mnist.make_evaluator("even", classifier, num_samples=256)
    trainer = mnist.make_trainer("even", 1.0, config, prior=prior, classifier=classifier,
                                 evaluator=evaluator,
                                 value=None if value is None else mnist.value_network(value))
    print(f"policy: {'LoRA' if value is None else f'LoRA + value guidance ({value}), scales 1'}")
    started = time.perf_counter()
    trainer.evaluations.append(evaluator(trainer))  # the start too: guidance may be there
    while True:
        m = trainer.evaluations[-1]
        print(f"step {trainer.step:4d}  {trainer.seconds:6.0f} s train  "
              f"E[log r] {m['mean_log_reward']:.3f}  in set {m['in_set']:.3f}  "
              f"diversity {m['diversity']:.3f}  fid {m['fid']:.2f}", flush=True)
        if save:  # keep the latest adapter (rtb-lab ships one made this way)
            mnist.save_posterior(trainer.posterior, save, "python benchmarks/bench_mnist.py "
                                 f"--part quality --save FILE (step {trainer.step})",
                                 {"classes": "even", "beta": 1.0, "steps": trainer.step})
        if m["mean_log_reward"] >= TARGET_LOG_R and m["diversity"] >= DIVERSITY_RATIO * reference:
            print(f"reached after {trainer.step} steps: {trainer.seconds:.0f} s of training, "
                  f"{time.perf_counter() - started:.0f} s wall with the evaluations")
            return
        if trainer.step >= steps or (time_limit and time.perf_counter() - started >= time_limit):
            break
        trainer.train(config.eval_every, progress=False)
    print(f"not reached within {trainer.step} steps / {time.perf_counter() - started:.0f} s")


@torch.no_grad()
def resample_table(proposal, prior, classifier, classes, num_samples: int,
                   max_candidates: int) -> None:
    """Print in-set share, E[log r], diversity and ESS / K for K = 1, 2, 4, ... candidates
    of `proposal` per image (the same candidates reused: K uses the first K)."""
    family = mnist_prior.make_family()
    reward = mnist_reward.class_set_reward(classifier, mnist_reward.parse_classes(classes))
    generator = torch.Generator().manual_seed(0)
    images, log_w, seconds = [], [], [0.0]
    for _ in range(max_candidates):  # one more candidate per image each round
        started = time.perf_counter()
        traj = sample_trajectories(proposal, family, num_samples, mnist_prior.IMAGE_SHAPE,
                                   generator=generator, keep_log_pf=proposal is not prior)
        x = mnist_prior.decode(prior, traj.x)
        traj = traj.with_log_reward(reward(x))
        log_w.append(traj.log_reward if proposal is prior else  # p / q = 1: w = r
                     importance_log_weights(proposal, prior, family, traj, 1.0, 10))
        images.append(x)
        seconds.append(seconds[-1] + time.perf_counter() - started)
    images, log_w = torch.stack(images, 1), torch.stack(log_w, 1)  # [N, K, ...], [N, K]
    name = "prior" if proposal is prior else "RTB posterior"
    k = 1
    while k <= max_candidates:
        picks = pick(log_w[:, :k], generator)
        m = mnist.evaluate_images(images[torch.arange(num_samples), picks], classes, classifier)
        ess = mean_ess_fraction(log_w[:, :k])
        print(f"| {classes} | {name} | {k} | {m['in_set']:.3f} | {m['mean_log_reward']:.3f} | "
              f"{m['diversity']:.3f} | {ess:.2f} | {seconds[k]:.0f} |", flush=True)
        k *= 2


def bench_resample(num_samples: int = 256, targets: tuple = ("even", 1, 3),
                   max_candidates: int = 8, path: str | None = None) -> None:
    """`path`: a conditional posterior file (default: the shipped one)."""
    prior, classifier = mnist_prior.load_prior(), mnist_reward.load_classifier()
    posterior = mnist.load_conditional_posterior(prior, path)
    bank = mnist_bank.ImportanceBank(prior, classifier, size=4096, seed=123)
    print(f"## resample: {num_samples} images per row, beta = 1, each kept from K candidates "
          "by importance weight (seconds: sampling and scoring all N * K candidates)")
    print("| set | proposal | K | in set | E[log r] | diversity | ESS / K | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for classes in targets:
        for proposal in (posterior.specialise(prior, classes, 1.0), prior):
            resample_table(proposal, prior, classifier, classes, num_samples, max_candidates)
        exact = bank.exact_metrics(classes, 1.0)
        print(f"| {classes} | exact (bank of 4,096) | | {exact['in_set']:.3f} | "
              f"{exact['mean_log_reward']:.3f} | | | |", flush=True)


def bench_ray(num_samples: int = 512, classes: str | int = "even",
              alphas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
              num_steps: int = mnist_prior.NUM_STEPS, path: str | None = None) -> None:
    """Where does RTB stop? A trained posterior's LoRA update scaled by alpha (0: the
    prior, 1: the posterior): in-set share against KL(q || target). On-policy RTB
    minimises that KL, so its alpha = 1 should be near the smallest KL on the line.
    `path`: a posterior file (default: the shipped even-digit one; a conditional one is
    specialised to `classes` at beta = 1; a value-guided one keeps its guidance at every
    alpha). `num_steps` samples the same networks on a finer (or coarser) chain."""
    prior, classifier = mnist_prior.load_prior(), mnist_reward.load_classifier()
    posterior = mnist.load_posterior(prior, path)
    if posterior.cond_dim:
        posterior = posterior.specialise(prior, classes, 1.0)
    name = "the shipped even-digit posterior" if path is None else Path(path).name
    bank = mnist_bank.ImportanceBank(prior, classifier, size=4096, seed=123,
                                     num_steps=num_steps)
    log_z = bank.log_z(classes, 1.0)
    reward = mnist_reward.class_set_reward(classifier, mnist_reward.parse_classes(classes))
    exact = bank.exact_metrics(classes, 1.0)["in_set"]
    print(f"## ray: {name}, {classes}, beta = 1, T = {num_steps}, {num_samples} samples per row; "
          f"log Z = {log_z:.3f} (bank of 4,096); exact posterior in set {exact:.3f}")
    print("| alpha | in set | E[log r] | KL(q ‖ prior) | KL(q ‖ target) | Var(log w) |")
    print("|---|---|---|---|---|---|")
    for alpha in alphas:
        found = resample_posterior(mnist.scale_adapter(posterior, alpha), prior,
                                   mnist_prior.make_family(num_steps),
                                   lambda x: reward(mnist_prior.decode(prior, x)), num_samples,
                                   mnist_prior.IMAGE_SHAPE, candidates=1,
                                   generator=torch.Generator().manual_seed(7))
        x = mnist_prior.decode(prior, found.x)
        m = mnist.evaluate_images(x, classes, classifier)
        log_w = found.log_weights.flatten()  # K = 1: the kept trajectory is the only one
        kl_prior = float((found.traj.log_reward - log_w).mean())  # log q - log p = log r - log w
        print(f"| {alpha} | {m['in_set']:.3f} | {m['mean_log_reward']:.3f} | {kl_prior:.3f} | "
              f"{kl_to_target(log_w, log_z):.3f} | {float(log_w.var()):.2f} |", flush=True)


def bench_conditional(num_samples: int = 512, targets: tuple = ("even", 1, 3),
                      path: str | None = None) -> None:
    """The shipped conditional posterior at beta = 1 (and the one in `path` beside it, on
    the same noise) against the exact posterior. KL(q || target) uses log Z from a bank
    of 4,096 prior samples."""
    prior, classifier = mnist_prior.load_prior(), mnist_reward.load_classifier()
    posteriors = {"value-guided (shipped)": None, **({Path(path).name: path} if path else {})}
    bank = mnist_bank.ImportanceBank(prior, classifier, size=4096, seed=123)
    family = mnist_prior.make_family()
    print(f"## conditional: {num_samples} samples per row, beta = 1")
    print("| set | posterior | in set | E[log r] | diversity | KL(q ‖ target) | seconds |")
    print("|---|---|---|---|---|---|---|")
    for classes in targets:
        reward = mnist_reward.class_set_reward(classifier, mnist_reward.parse_classes(classes))
        log_z = bank.log_z(classes, 1.0)
        for name, file in posteriors.items():
            net = mnist.load_conditional_posterior(prior, file).specialise(prior, classes, 1.0)
            started = time.perf_counter()
            found = resample_posterior(net, prior, family,
                                       lambda x, r=reward: r(mnist_prior.decode(prior, x)),
                                       num_samples, mnist_prior.IMAGE_SHAPE, candidates=1,
                                       generator=torch.Generator().manual_seed(7))
            seconds = time.perf_counter() - started
            m = mnist.evaluate_images(mnist_prior.decode(prior, found.x), classes, classifier)
            kl = kl_to_target(found.log_weights, log_z)
            print(f"| {classes} | {name} | {m['in_set']:.3f} | {m['mean_log_reward']:.3f} | "
                  f"{m['diversity']:.3f} | {kl:.2f} | {seconds:.0f} |", flush=True)
        exact = bank.exact_metrics(classes, 1.0)
        print(f"| {classes} | exact (bank) | {exact['in_set']:.3f} | "
              f"{exact['mean_log_reward']:.3f} | | 0 | |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="all",
                        choices=("speed", "memory", "quality", "resample", "ray", "conditional",
                                 "all"))
    parser.add_argument("--posterior", default=None,
                        help="resample, ray, conditional: a posterior file instead of (for "
                             "conditional: beside) the shipped one")
    parser.add_argument("--save", default=None, help="write the trained adapter here")
    parser.add_argument("--steps", type=int, default=600, help="quality: RTB steps at most "
                        "(the cosine learning-rate schedule spans them)")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT_S,
                        help="quality: stop after this many seconds (0: no limit)")
    parser.add_argument("--eval-every", type=int, default=10,
                        help="quality: evaluate (256 samples) every this many steps")
    parser.add_argument("--value", default=None,
                        help="quality: train a value-guided posterior with this value network "
                             f"(a file or a shipped asset, e.g. {mnist.CHAIN_VALUE_ASSET})")
    parser.add_argument("--num-steps", type=int, default=mnist_prior.NUM_STEPS,
                        help="ray: chain length T to sample the shipped networks at")
    parser.add_argument("--probe", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        steps, chunk = int(args.probe[0]), None if args.probe[1] == "none" else int(args.probe[1])
        print(json.dumps({"mb": memory_probe(steps, chunk)}))
        sys.exit(0)
    for part, run in (("speed", bench_speed), ("memory", bench_memory),
                      ("quality", lambda: bench_quality(args.steps, args.save, args.time_limit,
                                                            args.eval_every, args.value)),
                      ("resample", lambda: bench_resample(path=args.posterior)),
                      ("conditional", lambda: bench_conditional(path=args.posterior)),
                      ("ray", lambda: bench_ray(num_steps=args.num_steps, path=args.posterior))):
        if args.part in (part, "all"):
            run()
