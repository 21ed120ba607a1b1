"""Checkpoints: resumable trainer state and shipped network weights (safetensors).

Trainer checkpoints (optimiser moments, RNG state, history) are torch files read
back with ``weights_only=True`` (no arbitrary unpickling). Network weights that we
ship or export are safetensors files with a sha256 recorded beside them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or belongs to something else."""


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically write a trainer state dict (write to a temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path, expected_format: str) -> dict[str, Any]:
    """Read a trainer checkpoint, with a clear error if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file: {error}") \
            from error
    if not isinstance(state, dict) or state.get("format") != expected_format:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not an {expected_format} checkpoint (found {found!r})")
    return state


def trainable_state_dict(posterior: nn.Module, prior: nn.Module,
                         keep_prior: bool = False) -> dict[str, Tensor]:
    """The posterior's state dict without tensors it shares with the frozen prior."""
    prior_ptrs = {t.data_ptr() for t in list(prior.parameters()) + list(prior.buffers())}
    return {name: tensor for name, tensor in posterior.state_dict().items()
            if keep_prior or tensor.data_ptr() not in prior_ptrs}


def save_weights(module: nn.Module, path: str | Path, metadata: dict[str, Any]) -> str:
    """Save a module's weights as safetensors with JSON metadata; return the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(tensors, path, metadata={"rtb_lab": json.dumps(metadata)})
    return sha256_of(path)


def load_weights(path: str | Path, sha256: str | None = None) -> tuple[dict[str, Tensor],
                                                                       dict[str, Any]]:
    """Load safetensors weights and their metadata, verifying the sha256 when given.

    Raises:
        CheckpointError: missing file, checksum mismatch or unreadable content.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights not found: {path}")
    if sha256 is not None and (found := sha256_of(path)) != sha256:
        raise CheckpointError(f"{path} is corrupt: sha256 {found[:12]}... does not match the "
                              f"recorded {sha256[:12]}...; reinstall rtb-lab or retrain it")
    try:
        tensors = load_file(path)
        with safe_open(path, framework="pt") as handle:
            metadata = json.loads((handle.metadata() or {}).get("rtb_lab", "{}"))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from error
    return tensors, metadata


MANIFEST = "manifest.json"


def assets_dir() -> Path:
    """The package's shipped assets folder (weights, data subsets, manifest.json)."""
    return Path(str(resources.files("rtb_lab") / "assets"))


def shipped_asset(name: str) -> tuple[Path, str]:
    """(path, recorded sha256) of a shipped asset listed in the assets manifest.

    Raises:
        CheckpointError: the asset is not in the manifest.
    """
    manifest = json.loads((assets_dir() / MANIFEST).read_text())
    if name not in manifest:
        raise CheckpointError(f"{name} is not a shipped asset (known: {sorted(manifest)})")
    return assets_dir() / name, manifest[name]["sha256"]


def record_asset(name: str, sha256: str, command: str, description: str) -> None:
    """Record a shipped file's sha256 and the command that made it in the assets manifest."""
    manifest_path = assets_dir() / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[name] = {"sha256": sha256, "command": command, "description": description}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


def load_module(path: str | Path | None, asset: str, arch: str, what: str,
                build: Callable[[dict[str, Any]], nn.Module]) -> nn.Module:
    """A network saved by `save_weights`: the shipped `asset` (sha256-checked) when `path`
    is None, else your file. `build(metadata)` makes the empty module.

    Raises:
        CheckpointError: missing or corrupt file, or metadata arch other than `arch`.
    """
    sha256 = None
    if path is None:
        path, sha256 = shipped_asset(asset)
    tensors, meta = load_weights(path, sha256)
    if meta.get("arch") != arch:
        raise CheckpointError(f"{path} is not {what} (arch={meta.get('arch')!r})")
    model = build(meta)
    model.load_state_dict(tensors)
    return model
