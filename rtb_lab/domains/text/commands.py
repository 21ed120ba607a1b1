"""The text domain's CLI commands: train the prior, the reward LM and the supervised
infiller on the generated corpus, each saved as safetensors with its command line."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rtb_lab.checkpoint import record_asset, sha256_of
from rtb_lab.domain import Command
from rtb_lab.domains.text import io
from rtb_lab.domains.text.training import held_out_losses, train_denoiser, train_lm

# name: (asset, what it is, steps)
MODELS = {"prior": (io.PRIOR_ASSET, "masked-diffusion prior p(middle | beginning)", 3000),
          "reward": (io.LM_ASSET, "reward LM p(story), scores p(ending | beginning, middle)",
                     3000),
          "infiller": (io.INFILLER_ASSET,
                       "supervised infiller p(middle | beginning, ending) (upper bound)", 3000)}
SIZE = {"d_model": 64, "layers": 2}


def _arguments(kind: str):
    asset, _, steps = MODELS[kind]

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--steps", type=int, default=steps)
        parser.add_argument("--d-model", type=int, default=SIZE["d_model"])
        parser.add_argument("--layers", type=int, default=SIZE["layers"])
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--out", type=Path, default=Path(asset))
        parser.add_argument("--update-manifest", action="store_true",
                            help="record the file's sha256 in rtb_lab/assets/manifest.json")
        parser.add_argument("--quiet", action="store_true")

    return add_arguments


def _run(kind: str):
    asset, description, _ = MODELS[kind]

    def run(args: argparse.Namespace) -> dict:
        started = time.perf_counter()
        train, test = io.corpus()
        tok = io.grammar_tokenizer()
        size = {"d_model": args.d_model, "layers": args.layers, "seed": args.seed,
                "steps": args.steps, "progress": not args.quiet}
        if kind == "reward":
            model = train_lm(train, tok, **size)
        else:
            model = train_denoiser(train, tok, context="both" if kind == "infiller"
                                   else "beginning", **size)
        done = getattr(model, "trained_steps", args.steps)
        command = (f"rtb-lab train-{kind} text --steps {args.steps} --d-model {args.d_model} "
                   f"--layers {args.layers} --seed {args.seed}"
                   + (f" (interrupted after {done} steps)" if done < args.steps else ""))
        if kind == "reward":
            sha256 = io.save_lm(model, args.out, command)
            losses = {"lm_nll": held_out_losses(None, model, test, tok)["lm_nll"]}
        else:
            context = "both" if kind == "infiller" else "beginning"
            sha256 = io.save_denoiser(model, args.out, command, context)
            losses = {"denoiser_nll": held_out_losses(model, None, test, tok,
                                                      context)["denoiser_nll"]}
        result = {"out": str(args.out), "sha256": sha256, "trained_steps": done,
                  **{k: round(v, 4) for k, v in losses.items()},
                  "seconds": round(time.perf_counter() - started, 2)}
        if kind == "prior":  # the prior's tokenizer travels with it
            tok_path = args.out.parent / io.TOKENIZER_ASSET
            tok.save(tok_path)
            result["tokenizer"] = str(tok_path)
        if args.update_manifest:
            held = ", ".join(f"held-out {k} {v:.3f} nats/token" for k, v in losses.items())
            record_asset(args.out.name, sha256, command, f"text {description}; {held}")
            if kind == "prior":
                record_asset(io.TOKENIZER_ASSET, sha256_of(tok_path), command,
                             "text word-level tokenizer over StoryGrammar.default()")
        return result

    return run


def commands() -> dict[str, Command]:
    """train-prior, train-reward and train-infiller for the text domain."""
    return {f"train-{kind}": Command(f"train the text {MODELS[kind][1]}", _arguments(kind),
                                     _run(kind)) for kind in MODELS}
