"""Linear degradations y = A x for inverse problems, each with its adjoint.

Every operator maps a batch x [B, *in_shape] to [B, *out_shape] and back: `forward`
is A, `adjoint` is A^T (the dot-product test <A x, y> = <x, A^T y> holds to float
precision, tests/test_inverse.py), `show` turns an observation into an image a person
can look at (the blurred image, the masked image with holes at zero, the small image
enlarged). Plain torch; no library needed for three convolutions and a mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

Shape = tuple[int, ...]


class LinearOperator:
    """A linear map A from [B, *in_shape] to [B, *out_shape].

    Subclasses implement `_forward` and `_adjoint`; the public methods check shapes.

    Attributes:
        in_shape: shape of one signal x, e.g. (1, 28, 28) or (2,).
        out_shape: shape of one observation y.
        name: a short label for tables and plots.
    """

    name = "linear"

    def __init__(self, in_shape: Shape, out_shape: Shape) -> None:
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)

    @property
    def out_size(self) -> int:
        """m, the number of measured values per signal."""
        return math.prod(self.out_shape)

    def forward(self, x: Tensor) -> Tensor:
        """A x: [B, *in_shape] -> [B, *out_shape]."""
        _check_batch(x, self.in_shape, f"{self.name} input x")
        return self._forward(x)

    def adjoint(self, y: Tensor) -> Tensor:
        """A^T y: [B, *out_shape] -> [B, *in_shape]."""
        _check_batch(y, self.out_shape, f"{self.name} observation y")
        return self._adjoint(y)

    def show(self, y: Tensor) -> Tensor:
        """[B, *out_shape] -> [B, *in_shape]: the observation drawn as a signal."""
        return self.adjoint(y)

    __call__ = forward

    def _forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _adjoint(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.in_shape)} -> {list(self.out_shape)})"


def _check_batch(x: Tensor, shape: Shape, what: str) -> None:
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise ValueError(f"{what}: expected shape [B, {', '.join(map(str, shape))}], "
                         f"got {list(x.shape)}")


class MatrixOperator(LinearOperator):
    """y = M x for vectors x [B, d] and a matrix M [m, d], e.g. observe x_1 of a 2D point.

    Args:
        matrix: [m, d].
    """

    name = "matrix"

    def __init__(self, matrix: Tensor) -> None:
        matrix = torch.as_tensor(matrix, dtype=torch.float32)
        if matrix.dim() != 2:
            raise ValueError(f"expected a matrix [m, d], got shape {list(matrix.shape)}")
        super().__init__((matrix.shape[1],), (matrix.shape[0],))
        self.matrix = matrix

    def _forward(self, x: Tensor) -> Tensor:
        return x @ self.matrix.to(x).T

    def _adjoint(self, y: Tensor) -> Tensor:
        return y @ self.matrix.to(y)


def _check_image_shape(image_shape: Shape) -> tuple[int, int, int]:
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(f"expected an image shape (C, H, W), got {tuple(image_shape)}")
    return tuple(int(s) for s in image_shape)  # type: ignore[return-value]


def gaussian_kernel(size: int, width: float) -> Tensor:
    """[size, size] normalised Gaussian kernel of standard deviation `width` pixels."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"the blur kernel size must be odd and positive, got {size}")
    if not width > 0:
        raise ValueError(f"the blur width must be > 0 pixels, got {width}")
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    line = torch.exp(-0.5 * (offsets / width) ** 2)
    kernel = torch.outer(line, line)
    return (kernel / kernel.sum()).float()


class GaussianBlur(LinearOperator):
    """Depthwise Gaussian blur with zero padding ('same' size): y = k * x per channel.

    Args:
        image_shape: (C, H, W).
        width: the kernel's standard deviation in pixels.
        size: the kernel's side (odd); default about 3 widths each side.
    """

    name = "blur"

    def __init__(self, image_shape: Shape, width: float = 1.5, size: int | None = None) -> None:
        image_shape = _check_image_shape(image_shape)
        super().__init__(image_shape, image_shape)
        size = size if size is not None else 2 * math.ceil(3 * width) + 1
        self.width, self.size = float(width), size
        channels = image_shape[0]
        self.weight = gaussian_kernel(size, width).expand(channels, 1, size, size).contiguous()

    def _forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight.to(x), padding=self.size // 2, groups=x.shape[1])

    def _adjoint(self, y: Tensor) -> Tensor:
        # The transpose of a zero-padded convolution is the transposed convolution with
        # the same weights and padding; it equals the blur itself only away from edges.
        return F.conv_transpose2d(y, self.weight.to(y), padding=self.size // 2,
                                  groups=y.shape[1])

    def show(self, y: Tensor) -> Tensor:
        return y


class Inpaint(LinearOperator):
    """Keep the pixels where `mask` is True: y = x[:, :, mask], flattened to [B, C, n].

    Only observed pixels are measured, so the likelihood counts exactly those.

    Args:
        image_shape: (C, H, W).
        mask: [H, W] bool, True where the pixel is observed.
    """

    name = "inpaint"

    def __init__(self, image_shape: Shape, mask: Tensor) -> None:
        channels, height, width = _check_image_shape(image_shape)
        mask = torch.as_tensor(mask)
        if mask.shape != (height, width):
            raise ValueError(f"the inpainting mask must have shape [{height}, {width}] "
                             f"(the image's H, W), got {list(mask.shape)}")
        if mask.dtype != torch.bool:
            raise ValueError(f"the inpainting mask must be bool (True = observed), got "
                             f"{mask.dtype}")
        if not mask.any():
            raise ValueError("the inpainting mask observes no pixel")
        super().__init__((channels, height, width), (channels, int(mask.sum())))
        self.mask = mask
        self.index = mask.flatten().nonzero().squeeze(1)

    def _forward(self, x: Tensor) -> Tensor:
        return x.flatten(2)[:, :, self.index.to(x.device)]

    def _adjoint(self, y: Tensor) -> Tensor:
        image = y.new_zeros(y.shape[0], y.shape[1], math.prod(self.in_shape[1:]))
        image[:, :, self.index.to(y.device)] = y
        return image.view(y.shape[0], *self.in_shape)


def box_mask(image_shape: Shape, top: int, left: int, height: int, width: int) -> Tensor:
    """[H, W] mask observing everything except the box [top:top+height, left:left+width]."""
    _, rows, cols = _check_image_shape(image_shape)
    if not (0 <= top < rows and 0 <= left < cols and height > 0 and width > 0):
        raise ValueError(f"the box (top {top}, left {left}, {height} x {width}) is not "
                         f"inside a {rows} x {cols} image")
    mask = torch.ones(rows, cols, dtype=torch.bool)
    mask[top:top + height, left:left + width] = False
    return mask


def random_pixel_mask(image_shape: Shape, keep: float, seed: int = 0) -> Tensor:
    """[H, W] mask observing a random share `keep` of the pixels (seeded)."""
    _, rows, cols = _check_image_shape(image_shape)
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(rows, cols, generator=generator) < keep


class Downsample(LinearOperator):
    """k x k average pooling (super-resolution's degradation): [C, H, W] -> [C, H/k, W/k].

    Args:
        image_shape: (C, H, W) with H and W divisible by k.
        factor: k.
    """

    name = "downsample"

    def __init__(self, image_shape: Shape, factor: int = 2) -> None:
        channels, height, width = _check_image_shape(image_shape)
        if factor < 1 or height % factor or width % factor:
            raise ValueError(f"the downsampling factor must divide the image size "
                             f"{height} x {width}, got {factor}")
        super().__init__((channels, height, width),
                         (channels, height // factor, width // factor))
        self.factor = factor

    def _forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.factor)

    def _adjoint(self, y: Tensor) -> Tensor:
        k = self.factor
        return y.repeat_interleave(k, 2).repeat_interleave(k, 3) / (k * k)

    def show(self, y: Tensor) -> Tensor:
        k = self.factor
        return y.repeat_interleave(k, 2).repeat_interleave(k, 3)
