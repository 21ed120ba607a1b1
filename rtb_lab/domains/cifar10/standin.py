"""The offline stand-in for CIFAR-10: ten classes of 32 x 32 colour images drawn from a seed.

CIFAR-10 itself cannot be shipped or downloaded here, so the tests, CI, Binder and the
tutorial use this generated set instead. Each class is a kind of visual structure
(five shapes, five textures) drawn with a random pose (position, rotation), scale,
colours and a shaded, noisy background, so that a classifier has to look at shape
and texture, not at one colour. Rendering is anti-aliased (each pixel's coverage of
the shape, through a 1-pixel ramp of the signed distance) and fully deterministic:
image i of a split depends only on (seed, split, i).

It is a stand-in, not CIFAR-10: the figures measured on it say how RTB behaves on a
32 x 32 colour prior we can train on a CPU, not how it does on natural images.
"""

from __future__ import annotations

import numpy as np

from rtb_lab.domains.images.data import ImageSet, Split

SIZE = 32
CLASS_NAMES = ("disc", "ring", "square", "triangle", "cross",
               "stripes", "checker", "dots", "bullseye", "waves")
SPLIT_SIZES = {"train": 20_000, "test": 2_000}
_SPLIT_SEEDS = {"train": 1, "test": 2}  # distinct streams: no test image is a train image


def _grid() -> tuple[np.ndarray, np.ndarray]:
    # Pixel centres in [-1, 1]^2, [32, 32] each.
    axis = (np.arange(SIZE) + 0.5) / SIZE * 2 - 1
    return np.meshgrid(axis, axis, indexing="xy")


_X, _Y = _grid()


def _coverage(signed_distance: np.ndarray) -> np.ndarray:
    """Anti-aliased mask in [0, 1] from a signed distance (negative inside) in grid units."""
    pixel = 2.0 / SIZE
    return np.clip(0.5 - signed_distance / pixel, 0.0, 1.0)


def _pose(rng: np.random.Generator, scale_range: tuple[float, float]
          ) -> tuple[np.ndarray, np.ndarray, float]:
    """Grid coordinates in the shape's frame (shifted, rotated) and its scale."""
    scale = rng.uniform(*scale_range)
    cx, cy = rng.uniform(-0.55 + scale, 0.55 - scale, 2) if scale < 0.55 else (0.0, 0.0)
    angle = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(angle), np.sin(angle)
    u, v = _X - cx, _Y - cy
    return c * u + s * v, -s * u + c * v, scale


def _shape_distance(label: int, u: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    """Signed distance to shape `label` (0..4) of size `scale` in its own frame."""
    radius = np.hypot(u, v)
    if label == 0:  # disc
        return radius - scale
    if label == 1:  # ring
        return np.abs(radius - 0.75 * scale) - 0.25 * scale
    if label == 2:  # square
        return np.maximum(np.abs(u), np.abs(v)) - 0.8 * scale
    if label == 3:  # equilateral triangle
        edges = [np.cos(a) * u + np.sin(a) * v for a in (np.pi / 2, 7 * np.pi / 6, 11 * np.pi / 6)]
        return np.max(edges, axis=0) - 0.5 * scale
    # cross: the union of two bars
    bar = 0.28 * scale
    return np.minimum(np.maximum(np.abs(u) - scale, np.abs(v) - bar),
                      np.maximum(np.abs(v) - scale, np.abs(u) - bar))


def _texture(label: int, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Foreground coverage of texture `label` (5..9) over the whole image."""
    period = rng.uniform(0.35, 0.6)
    if label == 5:  # stripes
        return _coverage(np.abs(np.mod(u / period, 1.0) - 0.5) * period - 0.25 * period)
    if label == 6:  # checker
        cell = np.floor(u / period) + np.floor(v / period)
        return np.mod(cell, 2.0)
    if label == 7:  # dots on a lattice
        du = np.mod(u / period, 1.0) - 0.5
        dv = np.mod(v / period, 1.0) - 0.5
        return _coverage((np.hypot(du, dv) - 0.25) * period)
    radius = np.hypot(u, v)
    if label == 8:  # bullseye: concentric rings about the pose centre
        return _coverage(np.abs(np.mod(radius / period, 1.0) - 0.5) * period - 0.25 * period)
    # waves: stripes bent by a sine
    bent = u + 0.25 * period * np.sin(v * 2 * np.pi / (1.5 * period))
    return _coverage(np.abs(np.mod(bent / period, 1.0) - 0.5) * period - 0.25 * period)


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A foreground and a background RGB colour in [0, 1] that differ in brightness."""
    while True:
        fg, bg = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        if abs(fg.mean() - bg.mean()) > 0.25 or np.abs(fg - bg).max() > 0.5:
            return fg, bg


def render(label: int, rng: np.random.Generator) -> np.ndarray:
    """One image of class `label` as uint8 [32, 32, 3]."""
    if not 0 <= label < len(CLASS_NAMES):
        raise ValueError(f"label must be in 0..{len(CLASS_NAMES) - 1}, got {label}")
    fg, bg = _colours(rng)
    if label < 5:
        u, v, scale = _pose(rng, (0.35, 0.75))
        mask = _coverage(_shape_distance(label, u, v, scale))
    else:
        u, v, _ = _pose(rng, (0.0, 0.0))  # textures fill the frame; only rotation matters
        mask = _texture(label, u, v, rng)
    # Background: its colour, a linear shading in a random direction, and pixel noise.
    shade_angle = rng.uniform(0, 2 * np.pi)
    shade = 0.15 * (np.cos(shade_angle) * _X + np.sin(shade_angle) * _Y)
    background = np.clip(bg + shade[..., None], 0, 1)
    image = mask[..., None] * fg + (1 - mask[..., None]) * background
    image = image + rng.normal(0, 0.03, image.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def make_standin(split: Split = "train", size: int | None = None, seed: int = 0) -> ImageSet:
    """The stand-in set: `size` images (default 20,000 train / 2,000 test), balanced classes.

    Args:
        split: "train" or "test" (independent random streams).
        size: number of images (classes cycle 0..9, so any size is balanced to within one).
        seed: the data set's seed; the shipped models were trained on seed 0.
    """
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    size = SPLIT_SIZES[split] if size is None else size
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    labels = np.arange(size) % len(CLASS_NAMES)
    streams = np.random.SeedSequence([seed, _SPLIT_SEEDS[split]]).spawn(size)
    images = np.stack([render(int(label), np.random.default_rng(stream))
                       for label, stream in zip(labels, streams, strict=True)])
    return ImageSet(images, labels.astype(np.int64),
                    f"generated CIFAR-10 stand-in ({size:,} {split} images, seed {seed})")
