"""Measurement operators y = A(x) for inverse problems, picked by name.

Each operator is a batched, differentiable, *linear* torch module acting on
images (B, C, H, W): ``forward`` is A, ``transpose`` is its adjoint A^T (the
solvers' data-consistency steps need it). ``transpose`` defaults to the exact
vector-Jacobian product of ``forward``, which is A^T for any linear A whatever
its padding or interpolation; operators with a simple closed form override it.
``naive`` is the reconstruction a solver must beat (the masked image, the
upsampled low-resolution image, the blurred image).

Random parts of an operator (an inpainting mask, a motion-blur path) are drawn
from ``seed`` at construction, so a measurement is fixed once per image.

>>> op = get_operator("super_resolution", (1, 8, 8), factor=2, mode="avgpool")
>>> x, y = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 4, 4)
>>> op(x).shape, bool(torch.isclose((op(x) * y).sum(), (x * op.transpose(y)).sum(), atol=1e-5))
(torch.Size([3, 1, 4, 4]), True)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from uqdiff.designs.seeds import SeedLike, entropy

ImageShape = tuple[int, int, int]


class MeasurementOperator(torch.nn.Module):
    """A linear measurement A on images of ``image_shape`` (C, H, W)."""

    name: str = "operator"

    def __init__(self, image_shape: ImageShape) -> None:
        super().__init__()
        if len(image_shape) != 3 or any(int(s) < 1 for s in image_shape):
            raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {image_shape!r}")
        self.image_shape: ImageShape = tuple(int(s) for s in image_shape)  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        """A^T y, as the vector-Jacobian product of the linear map ``forward``."""
        x = torch.zeros((len(y), *self.image_shape), device=y.device, dtype=y.dtype, requires_grad=True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.forward(x), x, grad_outputs=y)
        return grad

    def naive(self, y: torch.Tensor) -> torch.Tensor:
        """The reconstruction that needs no prior: here y itself (same shape as the image)."""
        return y

    def extra_repr(self) -> str:
        return f"image_shape={self.image_shape}"


class Inpainting(MeasurementOperator):
    """Keep the pixels where ``mask`` is 1: A x = mask * x (A is its own adjoint).

    The missing pixels read 0, the middle of the [-1, 1] scale, in y and in
    the naive reconstruction.
    """

    name = "inpainting"

    def __init__(self, image_shape: ImageShape, mask: torch.Tensor | np.ndarray) -> None:
        super().__init__(image_shape)
        mask = torch.as_tensor(np.asarray(mask, dtype=np.float32))
        _, h, w = self.image_shape
        if mask.shape[-2:] != (h, w) or mask.ndim not in (2, 3):
            raise ValueError(f"mask must have shape ({h}, {w}) or (C, {h}, {w}), got {tuple(mask.shape)}")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must contain only 0 and 1")
        self.register_buffer("mask", mask.reshape(-1, h, w))

    @property
    def missing_ratio(self) -> float:
        return float(1 - self.mask.mean())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask.to(x)

    transpose = forward

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, missing_ratio={self.missing_ratio:.3f}"


class RandomInpainting(Inpainting):
    """Inpainting with a random pixel mask; the missing ratio is uniform in ``missing`` (DPS's 0.3-0.7)."""

    name = "inpainting"

    def __init__(
        self, image_shape: ImageShape, *, missing: tuple[float, float] = (0.3, 0.7), seed: SeedLike = 0
    ) -> None:
        lo, hi = (float(v) for v in missing)
        if not 0 <= lo <= hi < 1:
            raise ValueError(f"missing must be a range (lo, hi) with 0 <= lo <= hi < 1, got {missing!r}")
        _, h, w = image_shape
        rng = np.random.default_rng(entropy(seed))
        ratio = rng.uniform(lo, hi)
        mask = (rng.random((h, w)) >= ratio).astype(np.float32)
        super().__init__(image_shape, mask)


class BoxInpainting(Inpainting):
    """Inpainting of one missing box of ``size`` (h, w) pixels (default half of each side).

    The box sits at the centre, or at a position drawn from ``seed`` when
    ``center=False`` (DPS's random box).
    """

    name = "box_inpainting"

    def __init__(
        self, image_shape: ImageShape, *, size: tuple[int, int] | None = None, center: bool = True, seed: SeedLike = 0
    ) -> None:
        _, h, w = image_shape
        bh, bw = size if size is not None else (h // 2, w // 2)
        if not (0 < bh <= h and 0 < bw <= w):
            raise ValueError(f"box size must fit in the image ({h}, {w}), got {size!r}")
        if center:
            top, left = (h - bh) // 2, (w - bw) // 2
        else:
            rng = np.random.default_rng(entropy(seed))
            top, left = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        mask = np.ones((h, w), dtype=np.float32)
        mask[top : top + bh, left : left + bw] = 0
        super().__init__(image_shape, mask)


class SuperResolution(MeasurementOperator):
    """Down-sampling by an integer ``factor``: bicubic (DPS's operator) or average pooling."""

    name = "super_resolution"
    MODES = ("bicubic", "avgpool")

    def __init__(self, image_shape: ImageShape, *, factor: int = 2, mode: str = "bicubic") -> None:
        super().__init__(image_shape)
        _, h, w = self.image_shape
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1 or h % factor or w % factor:
            raise ValueError(f"factor must be a positive int dividing the image size ({h}, {w}), got {factor!r}")
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {', '.join(self.MODES)}, got {mode!r}")
        self.factor, self.mode = factor, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "avgpool":
            return F.avg_pool2d(x, self.factor)
        _, h, w = self.image_shape
        return F.interpolate(
            x, size=(h // self.factor, w // self.factor), mode="bicubic", align_corners=False, antialias=True
        )

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        if self.mode == "avgpool":  # each low-res pixel spreads evenly over its factor x factor block
            return F.interpolate(y, scale_factor=self.factor, mode="nearest") / self.factor**2
        return super().transpose(y)

    def naive(self, y: torch.Tensor) -> torch.Tensor:
        _, h, w = self.image_shape
        return F.interpolate(y, size=(h, w), mode="bicubic", align_corners=False)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, factor={self.factor}, mode={self.mode!r}"


class _Convolution(MeasurementOperator):
    """Per-channel 2-D convolution with a fixed kernel and reflect padding (as DPS's blur operators)."""

    def __init__(self, image_shape: ImageShape, kernel: np.ndarray) -> None:
        super().__init__(image_shape)
        size = kernel.shape[0]
        _, h, w = self.image_shape
        if size // 2 >= min(h, w):
            raise ValueError(
                f"kernel size {size} is too large for a ({h}, {w}) image (reflect padding needs < {2 * min(h, w) - 1})"
            )
        self.register_buffer("kernel", torch.as_tensor(kernel / kernel.sum(), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        pad = self.kernel.shape[0] // 2
        weight = self.kernel.to(x).expand(c, 1, *self.kernel.shape)
        return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), weight, groups=c)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel_size={self.kernel.shape[0]}"


class GaussianBlur(_Convolution):
    """Gaussian blur with ``std`` pixels; ``kernel_size`` defaults to 2 ceil(3 std) + 1.

    DPS blurs 256 x 256 images with a 61-pixel kernel and std 3.0 (paper 001
    uses std 1.0); for small images scale both with the image size.
    """

    name = "gaussian_blur"

    def __init__(self, image_shape: ImageShape, *, std: float = 1.0, kernel_size: int | None = None) -> None:
        if not (isinstance(std, (int, float)) and math.isfinite(std) and std > 0):
            raise ValueError(f"std must be a positive number of pixels, got {std!r}")
        size = _odd_size(kernel_size, default=2 * math.ceil(3 * std) + 1)
        r = np.arange(size) - size // 2
        g = np.exp(-(r**2) / (2 * std**2))
        super().__init__(image_shape, np.outer(g, g))
        self.std = float(std)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, std={self.std}"


class MotionBlur(_Convolution):
    """Linear motion blur: a line of ``length`` pixels at an angle drawn from ``seed`` (or given in degrees)."""

    name = "motion_blur"

    def __init__(
        self, image_shape: ImageShape, *, length: int = 7, angle: float | None = None, seed: SeedLike = 0
    ) -> None:
        size = _odd_size(length, default=7)
        if angle is None:
            angle = float(np.random.default_rng(entropy(seed)).uniform(0, 180))
        theta = math.radians(angle)
        # sample the segment densely and splat bilinearly onto the kernel grid
        kernel = np.zeros((size, size))
        c = size // 2
        for s in np.linspace(-c, c, 8 * size):
            px, py = c + s * math.cos(theta), c - s * math.sin(theta)
            x0, y0 = math.floor(px), math.floor(py)
            for dx in (0, 1):
                for dy in (0, 1):
                    xi, yi = x0 + dx, y0 + dy
                    if 0 <= xi < size and 0 <= yi < size:
                        kernel[yi, xi] += (1 - abs(px - xi)) * (1 - abs(py - yi))
        super().__init__(image_shape, kernel)
        self.angle = float(angle)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, angle={self.angle:.1f}"


def _odd_size(size: int | None, *, default: int) -> int:
    size = default if size is None else size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd int, got {size!r}")
    return size


#: Registry: operator name -> class (configs and the command line pick operators by name).
OPERATORS: dict[str, Callable[..., MeasurementOperator]] = {
    cls.name: cls for cls in (RandomInpainting, BoxInpainting, SuperResolution, GaussianBlur, MotionBlur)
}

#: Operators whose construction draws randomness (they take ``seed``).
RANDOM_OPERATORS = ("inpainting", "box_inpainting", "motion_blur")


def get_operator(name: str, image_shape: ImageShape, *, seed: SeedLike = 0, **params) -> MeasurementOperator:
    """The operator registered as ``name`` for images of ``image_shape``; ``seed`` fixes its random parts."""
    try:
        cls = OPERATORS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown operator {name!r}; allowed names: {', '.join(sorted(OPERATORS))}") from None
    if name in RANDOM_OPERATORS:
        params["seed"] = seed
    try:
        return cls(image_shape, **params)
    except TypeError as err:
        raise TypeError(f"operator {name!r}: {err}") from None
