"""The MNIST DDPM prior: a small diffusers UNet2DModel, trained and shipped by us.

Sized for CPUs: channels (16, 32, 32), one ResNet block per level, no attention
(0.27M parameters, about 1.2 ms per image per network call on 2 cores, versus 5 ms
for a (32, 64, 64) UNet), 1000 training noise levels and T = 20 strided ancestral
sampling steps that stop at training time END_TIME = 50; the image is then the frozen
prior's deterministic x0 estimate from that state (`decode`; see `DDPM` for why RTB
needs this). The paper's prior is larger and samples in 100 steps; on a GPU,
`load_hub_prior` loads a pretrained hub DDPM instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from rtb_lab.checkpoint import CheckpointError, load_weights, save_weights, sha256_of, shipped_asset
from rtb_lab.diffusion import DDPM
from rtb_lab.domains.mnist.data import ImageSet, load_mnist
from rtb_lab.rtb import freeze

IMAGE_SHAPE = (1, 28, 28)
PRIOR_CHANNELS = (16, 32, 32)
NUM_TRAIN_TIMES = 1000
NUM_STEPS = 20
END_TIME = 50
PRIOR_ASSET = "mnist_prior.safetensors"
HUB_PRIOR = "1aurent/ddpm-mnist"


def make_unet(channels: tuple[int, ...] = PRIOR_CHANNELS) -> UNet2DModel:
    """An untrained UNet2DModel for 1 x 28 x 28 images (28 -> 14 -> 7)."""
    levels = len(channels)
    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1,
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
        """[B, 1, 28, 28] noisy images at training times t [B] -> [B, 1, 28, 28] noise."""
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"expected images [B, {', '.join(map(str, self.image_shape))}], "
                             f"got {list(x.shape)}")
        return self.unet(x, t).sample

    @property
    def image_shape(self) -> tuple[int, int, int]:
        size = self.unet.config.sample_size
        return (self.unet.config.in_channels, size, size)


def make_scheduler() -> DDPMScheduler:
    """The training noise schedule: linear betas 1e-4 -> 0.02 over 1000 times (Ho et al.)."""
    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMES, beta_schedule="linear")


def make_family(num_steps: int = NUM_STEPS, end_time: int = END_TIME) -> DDPM:
    """The strided DDPM transitions used for sampling and for RTB (999 -> end_time)."""
    return DDPM(make_scheduler().alphas_cumprod, num_steps=num_steps, end_time=end_time)


@torch.no_grad()
def decode(prior: nn.Module, x: Tensor, end_time: int = END_TIME) -> Tensor:
    """Images [B, 1, 28, 28] from final states x_T at `end_time`: the prior's x0 estimate.

    Deterministic and frozen, so it is part of the reward, r(decode(x_T)), not of the
    trajectory: RTB stays exact for the target over x_T.
    """
    t = torch.full((x.shape[0],), float(end_time), device=x.device)
    return make_family(1, end_time).predict_x0_at_end(prior(x, t), x)


def train_prior(steps: int = 4000, *, batch_size: int = 64, lr: float = 2e-3,
                channels: tuple[int, ...] = PRIOR_CHANNELS, ema_decay: float = 0.999,
                data: ImageSet | None = None, seed: int = 0,
                progress: bool = True) -> EpsNet:
    """Train the prior by denoising score matching (epsilon prediction) with EMA weights.

    Args:
        steps: optimisation steps.
        batch_size: images per step.
        lr: Adam learning rate (cosine-decayed to 0).
        channels: UNet widths per level.
        ema_decay: decay of the exponential moving average that is returned.
        data: training images (default: `load_mnist("train")`).
        seed: seed for initialisation, batches and noise.

    Returns:
        The frozen EMA network.
    """
    data = data or load_mnist("train")
    images, _ = data.tensors()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    scheduler = make_scheduler()
    model = EpsNet(make_unet(channels))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps,
                                                   pct_start=0.05)
    bar = tqdm(range(steps), desc="MNIST prior", disable=not progress)
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
    return freeze(ema.module)


def save_prior(model: EpsNet, path: str | Path, command: str) -> str:
    """Save prior weights as safetensors with architecture and provenance; return sha256."""
    meta = {"arch": "EpsNet(UNet2DModel)", "unet_config": dict(model.unet.config),
            "num_train_times": NUM_TRAIN_TIMES, "command": command}
    return save_weights(model, path, json.loads(json.dumps(meta, default=list)))


def load_prior(path: str | Path | None = None, device: torch.device | str = "cpu") -> EpsNet:
    """Load a frozen MNIST prior: the shipped one (sha256-checked) or your own file.

    Raises:
        CheckpointError: the file is missing, corrupt, or not an MNIST prior.
    """
    sha256 = None
    if path is None:
        path, sha256 = shipped_asset(PRIOR_ASSET)
    tensors, meta = load_weights(path, sha256)
    if meta.get("arch") != "EpsNet(UNet2DModel)":
        raise CheckpointError(f"{path} is not an MNIST prior (metadata arch={meta.get('arch')!r})")
    config = {k: v for k, v in meta["unet_config"].items() if not k.startswith("_")}
    model = EpsNet(UNet2DModel.from_config(config))
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not match its recorded architecture: {error}") \
            from error
    model.sha256 = sha256 or sha256_of(path)  # identifies the prior an adapter belongs to
    return freeze(model.to(device))


def load_hub_prior(repo_id: str = HUB_PRIOR, device: torch.device | str = "cpu") -> EpsNet:
    """A pretrained DDPM MNIST UNet from the Hugging Face hub (needs a network).

    Raises:
        RuntimeError: offline or the download failed, with what to use instead.
    """
    errors = []
    for subfolder in ("unet", None):  # pipeline repos keep the UNet in unet/
        try:
            unet = UNet2DModel.from_pretrained(repo_id, subfolder=subfolder)
            return freeze(EpsNet(unet).to(device))
        except Exception as error:  # hub errors come in many types; all mean "not here"
            errors.append(f"{subfolder or '.'}: {error}")
    raise RuntimeError(f"could not load a UNet2DModel from {repo_id!r} on the Hugging Face "
                       f"hub ({'; '.join(errors)}). Offline, use load_prior() (the prior "
                       "shipped with rtb-lab).")


@torch.no_grad()
def sample_images(net: nn.Module, num: int, *, prior: nn.Module | None = None,
                  num_steps: int = NUM_STEPS, generator: torch.Generator | None = None,
                  cond: Tensor | None = None) -> Tensor:
    """[num, 1, 28, 28] images: T strided ancestral steps of `net`, decoded by the prior.

    Args:
        net: the process to sample (the prior, or a posterior).
        prior: the decoder of the final state (default: `net` itself, i.e. the prior).
    """
    from rtb_lab.diffusion import sample_trajectories

    device = next(net.parameters()).device
    x_end = sample_trajectories(net, make_family(num_steps), num, IMAGE_SHAPE, cond=cond,
                                generator=generator, device=device).x
    return decode(prior if prior is not None else net, x_end)
