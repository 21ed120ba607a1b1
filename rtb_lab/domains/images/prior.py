"""DDPM image priors: a diffusers UNet2DModel behind the policy signature, for any C x H x W.

Every vision domain uses the same recipe: epsilon prediction with 1000 linear-beta
training noise levels (Ho et al.), T strided ancestral sampling steps that stop at
training time `end_time`, and the frozen prior's deterministic x0 estimate from that
state as the image (`decode`: part of the reward, so RTB stays exact over x_T). A
domain fixes the shape, the widths and its shipped asset; the functions here take them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from rtb_lab.checkpoint import CheckpointError, load_weights, save_weights, sha256_of, shipped_asset
from rtb_lab.diffusion import DDPM, sample_trajectories
from rtb_lab.rtb import freeze

ImageShape = tuple[int, int, int]
NUM_TRAIN_TIMES = 1000
NUM_STEPS = 20
END_TIME = 50
PRIOR_ARCH = "EpsNet(UNet2DModel)"


def make_unet(image_shape: ImageShape, channels: tuple[int, ...]) -> UNet2DModel:
    """An untrained UNet2DModel for C x H x W images: one ResNet block per level, no
    attention (sized for CPUs), halving the resolution at each of `len(channels)` levels."""
    levels = len(channels)
    in_channels, size, _ = image_shape
    return UNet2DModel(sample_size=size, in_channels=in_channels, out_channels=in_channels,
                       block_out_channels=tuple(channels), layers_per_block=1,
                       down_block_types=("DownBlock2D",) * levels,
                       up_block_types=("UpBlock2D",) * levels,
                       norm_num_groups=min(8, channels[0]))


class EpsNet(nn.Module):
    """A diffusers UNet behind the policy signature ``net(x, t, cond) -> eps``.

    Args:
        unet: a UNet2DModel predicting the noise at training time t.
    """

    def __init__(self, unet: UNet2DModel) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """[B, C, H, W] noisy images at training times t [B] -> [B, C, H, W] noise."""
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"expected images [B, {', '.join(map(str, self.image_shape))}], "
                             f"got {list(x.shape)}")
        return self.unet(x, t).sample

    @property
    def image_shape(self) -> ImageShape:
        size = self.unet.config.sample_size
        size = size if isinstance(size, int) else size[0]
        return (self.unet.config.in_channels, size, size)


def make_scheduler() -> DDPMScheduler:
    """The training noise schedule: linear betas 1e-4 -> 0.02 over 1000 times (Ho et al.)."""
    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMES, beta_schedule="linear")


def make_family(num_steps: int = NUM_STEPS, end_time: int = END_TIME) -> DDPM:
    """The strided DDPM transitions used for sampling and for RTB (999 -> end_time)."""
    return DDPM(make_scheduler().alphas_cumprod, num_steps=num_steps, end_time=end_time)


@torch.no_grad()
def decode(prior: nn.Module, x: Tensor, end_time: int = END_TIME) -> Tensor:
    """Images [B, C, H, W] from final states x_T at `end_time`: the prior's x0 estimate.

    Deterministic and frozen, so it is part of the reward, r(decode(x_T)), not of the
    trajectory: RTB stays exact for the target over x_T.
    """
    t = torch.full((x.shape[0],), float(end_time), device=x.device)
    return make_family(1, end_time).predict_x0_at_end(prior(x, t), x)


def train_prior(images: Tensor, channels: tuple[int, ...], steps: int = 4000, *,
                batch_size: int = 64, lr: float = 2e-3, ema_decay: float = 0.999,
                seed: int = 0, progress: bool = True, desc: str = "prior",
                init: EpsNet | None = None) -> EpsNet:
    """Train a prior on `images` [N, C, H, W] in [-1, 1] by denoising score matching
    (epsilon prediction), one-cycle learning rate, EMA weights.

    Args:
        images: the training set in model space.
        channels: UNet widths per level.
        steps: optimisation steps.
        batch_size: images per step.
        lr: peak Adam learning rate.
        ema_decay: decay of the exponential moving average that is returned.
        seed: seed for initialisation, batches and noise.
        desc: the progress bar's label.
        init: continue from this prior's weights (its widths, not `channels`).

    Returns:
        The frozen EMA network; its `trained_steps` says how many steps ran (fewer than
        `steps` after a KeyboardInterrupt, which stops training and keeps the EMA).
    """
    if images.dim() != 4:
        raise ValueError(f"expected training images [N, C, H, W], got {list(images.shape)}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    scheduler = make_scheduler()
    if init is None:
        model = EpsNet(make_unet(tuple(images.shape[1:]), channels))
    else:
        if tuple(init.image_shape) != tuple(images.shape[1:]):
            raise ValueError(f"the prior to continue is for images {list(init.image_shape)}, "
                             f"the training images are {list(images.shape[1:])}")
        model = EpsNet(UNet2DModel.from_config(init.unet.config))
        model.load_state_dict(init.state_dict())
        model.requires_grad_(True)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps,
                                                   pct_start=0.05)
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    done = 0
    try:
        for _ in bar:
            index = torch.randint(len(images), (batch_size,), generator=generator)
            x0 = images[index]
            t = torch.randint(NUM_TRAIN_TIMES, (batch_size,), generator=generator)
            noise = torch.randn(x0.shape, generator=generator)
            loss = (model(scheduler.add_noise(x0, noise, t), t) - noise).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            ema.update_parameters(model)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            done += 1
    except KeyboardInterrupt:
        # Hours of CPU training are not thrown away: the EMA so far is a usable prior.
        warnings.warn(f"{desc}: interrupted after {done} of {steps} steps; returning the "
                      "EMA weights so far", stacklevel=2)
    prior = freeze(ema.module)
    prior.trained_steps = done
    return prior


def save_prior(model: EpsNet, path: str | Path, command: str) -> str:
    """Save prior weights as safetensors with architecture and provenance; return sha256."""
    meta = {"arch": PRIOR_ARCH, "unet_config": dict(model.unet.config),
            "num_train_times": NUM_TRAIN_TIMES, "command": command}
    return save_weights(model, path, json.loads(json.dumps(meta, default=list)))


def load_prior(path: str | Path | None, asset: str, image_shape: ImageShape,
               device: torch.device | str = "cpu") -> EpsNet:
    """Load a frozen image prior: the shipped `asset` (sha256-checked) or your own file.

    Raises:
        CheckpointError: the file is missing, corrupt, not a prior, or for other images.
    """
    sha256 = None
    if path is None:
        path, sha256 = shipped_asset(asset)
    tensors, meta = load_weights(path, sha256)
    if meta.get("arch") != PRIOR_ARCH:
        raise CheckpointError(f"{path} is not an image prior (metadata arch={meta.get('arch')!r})")
    config = {k: v for k, v in meta["unet_config"].items() if not k.startswith("_")}
    model = EpsNet(UNet2DModel.from_config(config))
    if model.image_shape != tuple(image_shape):
        raise CheckpointError(f"{path} is a prior for images {list(model.image_shape)}, "
                              f"expected {list(image_shape)}")
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not match its recorded architecture: {error}") \
            from error
    model.sha256 = sha256 or sha256_of(path)  # identifies the prior an adapter belongs to
    return freeze(model.to(device))


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers within `timeout` seconds (and is not switched
    off with HF_HUB_OFFLINE): checked once, so an offline machine fails fast."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        with urllib.request.urlopen(constants.ENDPOINT, timeout=timeout):
            return True
    except (urllib.error.URLError, OSError, TimeoutError):
        return False


def load_hub_prior(repo_id: str, offline_alternative: str,
                   device: torch.device | str = "cpu") -> EpsNet:
    """A pretrained DDPM UNet2DModel from a local folder, the Hugging Face cache, or the hub.

    Raises:
        RuntimeError: not cached and the hub is unreachable (within seconds), or the
            download failed; the message names `offline_alternative`.
    """
    errors = []
    for local_only in (True, False):  # the cache first: no network needed, no waiting
        if not local_only and not Path(repo_id).is_dir() and not _hub_reachable():
            errors.append("the hub is unreachable (offline, or HF_HUB_OFFLINE is set)")
            break
        for subfolder in ("unet", None):  # pipeline repos keep the UNet in unet/
            try:
                unet = UNet2DModel.from_pretrained(repo_id, subfolder=subfolder,
                                                   local_files_only=local_only)
                return freeze(EpsNet(unet).to(device))
            except Exception as error:  # hub errors come in many types; all mean "not here"
                if not local_only:
                    errors.append(f"{subfolder or '.'}: {error}")
    raise RuntimeError(f"could not load a UNet2DModel from {repo_id!r} on the Hugging Face "
                       f"hub ({'; '.join(errors)}). Offline, use {offline_alternative}.")


@torch.no_grad()
def sample_images(net: nn.Module, num: int, image_shape: ImageShape, *,
                  prior: nn.Module | None = None, num_steps: int = NUM_STEPS,
                  generator: torch.Generator | None = None,
                  cond: Tensor | None = None) -> Tensor:
    """[num, C, H, W] images: T strided ancestral steps of `net`, decoded by the prior.

    Args:
        net: the process to sample (the prior, or a posterior).
        prior: the decoder of the final state (default: `net` itself, i.e. the prior).
    """
    device = next(net.parameters()).device
    x_end = sample_trajectories(net, make_family(num_steps), num, image_shape, cond=cond,
                                generator=generator, device=device).x
    return decode(prior if prior is not None else net, x_end)
