"""CIFAR-10 benchmark: RTB step speed on the stand-in prior, memory as T doubles, and the
paper's configuration on the hub architecture.

    python benchmarks/bench_cifar10.py                  # speed and memory (CPU)
    python benchmarks/bench_cifar10.py --part paper --device cuda   # on a GPU

Figures are printed, with ratios against a baseline measured in the same process (or,
for memory, in sibling processes started the same way). Nothing here is asserted.

1. speed: seconds per RTB step of the shipped configuration (batch 16, T = 20) for the
   one-pass gradient, the chunked exact gradient, and time-step subsampling.
2. memory: peak resident memory growth of one RTB step for T = 10, 20, 40 with and
   without chunking (each in a fresh process; chunked memory should stay flat).
3. paper: seconds per RTB step of the paper's setting on the `google/ddpm-cifar10-32`
   architecture with random weights (35.7M parameters; no download): LoRA rank 32 on
   the attention projections, T = 100 strided steps, batch 16, chunked exact gradient.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import replace

import torch
from diffusers import UNet2DModel
from memory import print_memory_table, rss_growth_mb
from peft import LoraConfig, inject_adapter_in_model

from rtb_lab.device import get_device
from rtb_lab.domains import cifar10
from rtb_lab.domains.images.prior import EpsNet
from rtb_lab.domains.images.trainer import class_set_trainer
from rtb_lab.rtb import freeze
from rtb_lab.train import RTBTrainer

# The hub prior's architecture (its config.json): 35.7M parameters.
HUB_CONFIG = dict(sample_size=32, in_channels=3, out_channels=3, layers_per_block=2,
                  block_out_channels=(128, 256, 256, 256),
                  down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D",
                                    "DownBlock2D"),
                  up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))


def seconds_per_step(trainer: RTBTrainer, steps: int = 3) -> float:
    """Mean wall time of `steps` RTB steps after one warm-up step."""
    trainer.train_step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps


def stand_in_trainer(config, num_steps: int = 20) -> RTBTrainer:
    target = cifar10.class_set_target("disc")
    return class_set_trainer(cifar10.load_prior(), cifar10.load_classifier(), target, config,
                             space=cifar10.STANDIN, num_steps=num_steps)


def bench_speed() -> None:
    base = replace(cifar10.CIFAR10_CONFIG, eval_every=0, log_z_init_samples=16)
    variants = {"one pass (chunk_steps=None)": replace(base, chunk_steps=None, grad_steps=None),
                "chunked, 10 steps per chunk": replace(base, chunk_steps=10, grad_steps=None),
                "chunked + grad through 5 of 20 steps (default)": base}
    print(f"## speed: batch {base.batch_size}, T = 20, {torch.get_num_threads()} threads")
    baseline = None
    for name, config in variants.items():
        seconds = seconds_per_step(stand_in_trainer(config))
        baseline = baseline or seconds
        print(f"{name:50s} {seconds:6.2f} s/step  ({baseline / seconds:.2f}x baseline)")


def memory_probe(num_steps: int, chunk_steps: int | None) -> float:
    """Peak RSS (MB) growth of one RTB step at T = num_steps (run in a fresh process)."""
    config = replace(cifar10.CIFAR10_CONFIG, eval_every=0, log_z_init_samples=4,
                     chunk_steps=chunk_steps, grad_steps=None)  # the exact gradient
    trainer = stand_in_trainer(config, num_steps)
    return rss_growth_mb(trainer.train_step)


def bench_memory() -> None:
    print_memory_table(__file__, (10, 20, 40), batch=16)


class _HubShapedLoRA(torch.nn.Module):
    """A rank-32 LoRA on the attention projections of a copy of the prior's UNet."""

    def __init__(self, prior: EpsNet, rank: int = 32) -> None:
        super().__init__()
        config = LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v",
                                                                     "to_out.0"])
        self.unet = inject_adapter_in_model(config, copy.deepcopy(prior.unet))
        for name, param in self.unet.named_parameters():
            param.requires_grad_("lora_" in name)

    def forward(self, x, t, cond=None):
        return self.unet(x, t).sample


def bench_paper(device: str | None, batch_size: int = 16, num_steps: int = 100) -> None:
    device = get_device(device)
    torch.manual_seed(0)
    prior = freeze(EpsNet(UNet2DModel(**HUB_CONFIG)).to(device))
    posterior = _HubShapedLoRA(prior).to(device)
    classifier = cifar10.load_classifier(device=device)
    config = replace(cifar10.CIFAR10_CONFIG, batch_size=batch_size, eval_every=0,
                     log_z_init=0.0, chunk_steps=10, grad_steps=None)
    trainer = class_set_trainer(prior, classifier, cifar10.class_set_target("disc"), config,
                                space=cifar10.STANDIN, posterior=posterior, num_steps=num_steps)
    params = sum(p.numel() for p in prior.parameters())
    lora = sum(p.numel() for p in posterior.parameters() if p.requires_grad)
    seconds = seconds_per_step(trainer, steps=2)
    print(f"## paper configuration on {device}: {params / 1e6:.1f}M-parameter prior, LoRA rank "
          f"32 ({lora / 1e6:.2f}M trainable), T = {num_steps}, batch {batch_size}: "
          f"{seconds:.2f} s/step")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="all", choices=("speed", "memory", "paper", "all"))
    parser.add_argument("--device", default=None, help="paper: cpu, cuda... (default: best)")
    parser.add_argument("--probe", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        steps, chunk = int(args.probe[0]), None if args.probe[1] == "none" else int(args.probe[1])
        print(json.dumps({"mb": memory_probe(steps, chunk)}))
        sys.exit(0)
    for part, run in (("speed", bench_speed), ("memory", bench_memory),
                      ("paper", lambda: bench_paper(args.device))):
        if args.part == part or (args.part == "all" and part != "paper"):  # paper: a GPU job
            run()
