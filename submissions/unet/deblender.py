"""Deep-learning baseline: a compact U-Net that isolates one target galaxy per pass.

One forward pass per (blend, target galaxy) pair. The pair is cut to a square
window of ``canvas_size`` pixels centred on the target's (rounded) center, so the
network always finds its target in the middle; it sees, per pixel of the window,

* the blend in all ``C`` bands in units of the background noise,
  ``arcsinh(x / (a * sigma))`` (``a`` = ``arcsinh_scale``): this copes with the
  dynamic range (sigma ~ 200-600 ADU, peaks up to ~1e5 ADU) and tells the network
  the noise level;
* the blend in units of the target's brightness, ``arcsinh(x / A)``, where ``A`` is
  the blend near the target's center (:func:`target_amplitude`);
* a map of the target's center (a Gaussian blob of ``center_sigma`` pixels, so the
  sub-pixel position is kept) and a map of the other galaxies' centers;
* the PSF width of each band, as constant channels (:func:`psf_width`).

It predicts the target's isolated image in all bands, by default linearly in units
of ``A`` (``output="scaled"``; the alternative ``"arcsinh"`` inverts the input
normalisation, ``a * sigma * sinh(z)``, and trains much more slowly). The result is
put back in the stamp (zero outside the window), negative pixels set to zero.

The loss is the challenge's primary score without its cap: the mean over galaxies
of the normalised residual ``||y_hat - y||_2 / ||y||_2`` over all bands and pixels, in
ADU, plus a small L1 term on the arcsinh-normalised images. Training data are
augmented with the 8 flips/rotations of the stamp (images and centers alike); Adam
with a cosine learning-rate decay; the kept weights are an exponential moving
average over the steps. ``predict`` averages over 4 flips/rotations (``tta``).

Time: training is bounded by ``epochs`` and by a wall-clock budget,
``max_train_seconds``; the environment variable ``DEBLEND_UNET_MAX_TRAIN_SECONDS``
replaces it, ``ramp-test --quick-test`` (``RAMP_TEST_MODE``) caps it at
``quick_test_seconds``, and the workflow's ``DEBLEND_TIME_BUDGET_S`` at 80% of that.
The number of epochs is planned from their measured duration, so the learning-rate
schedule (cosine) ends within the budget; a hard stop on the budget remains, with a
log message. With a fixed seed, training on CPU is deterministic whenever the epoch
limit, not the clock, ends it.

Uses CUDA when available (``device="auto"``). This module imports numpy and torch
only (and the standard library).
"""
# No ``from __future__ import annotations``: rampwf loads this file without putting it
# in sys.modules, and dataclasses then fail on string annotations.


import contextlib
import dataclasses
import importlib
import logging
import math
import os
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Deblender",
    "UNetOptions",
    "UNet",
    "to_network_space",
    "from_network_space",
    "dihedral_images",
    "dihedral_images_inverse",
    "dihedral_centers",
    "center_maps",
    "relative_l2",
    "target_amplitude",
    "psf_width",
    "shift_crop",
    "TIME_BUDGET_ENV",
]

logger = logging.getLogger("submissions.unet")

#: Environment variable that, when set, replaces ``max_train_seconds`` (seconds).
TIME_BUDGET_ENV = "DEBLEND_UNET_MAX_TRAIN_SECONDS"
#: The workflow's per-step time budget (seconds), see deblendkit/workflow.py.
WORKFLOW_BUDGET_ENV = "DEBLEND_TIME_BUDGET_S"
#: Environment variable set by ``ramp-test --quick-test``.
QUICK_TEST_ENV = "RAMP_TEST_MODE"
#: Number of distinct flips/rotations of a square image (the dihedral group D4).
N_DIHEDRAL = 8


# ----------------------------------------------------------------------------- options
@dataclasses.dataclass(frozen=True, kw_only=True)
class UNetOptions:
    """Options of :class:`Deblender` (all keyword-only).

    Parameters
    ----------
    epochs : int
        Maximum number of passes over the (blend, galaxy) pairs.
    max_train_seconds : float
        Wall-clock budget of ``fit`` in seconds (``DEBLEND_UNET_MAX_TRAIN_SECONDS``
        overrides it). The default fits ~1600 blends x 3 CV folds in 45 min on 2 cores.
    quick_test_seconds : float
        Cap on the budget when ``RAMP_TEST_MODE`` is set (``ramp-test --quick-test``).
    batch_size : int
        Training pairs per optimiser step.
    predict_batch_size : int
        Pairs per forward pass in ``predict`` (bounds memory).
    lr : float
        Peak learning rate of Adam (cosine decay to ``lr * final_lr_fraction``).
    final_lr_fraction : float
        Learning rate at the end of the schedule, as a fraction of ``lr``.
    weight_decay : float
        Adam's L2 weight decay.
    ema_decay : float
        When > 0, the trained model's weights are an exponential moving average of
        the weights over the optimiser steps, with this decay per step (in [0, 1);
        0: the last weights). The default gained ~0.004 in score in a 10-minute training.
    channels : tuple of int
        Feature channels per U-Net level, finest first (3 levels by default).
    canvas_size : int or None
        Side (pixels) of the square window, centred on the target galaxy, that the
        network sees and predicts; it must be a multiple of ``2 ** (levels - 1)``.
        The prediction is zero outside the window. ``None``, or a value above the
        stamp size: the stamp size rounded up to such a multiple. The default, 32
        pixels (6.4" at 0.2"/pixel), holds all but ~0.05% of the squared flux of the
        default simulation's galaxies and costs 2.25 times less than 48.
    output : str
        How the network's output becomes ADU: ``"scaled"``, linear in units of the
        target's brightness (the blend near its center, see :func:`target_amplitude`);
        ``"arcsinh"``, through the inverse of the input normalisation.
    arcsinh_scale : float
        ``a`` in ``arcsinh(x / (a * sigma))``, in units of the noise sigma.
    center_sigma : float
        Width (pixels) of the Gaussian blobs that mark the centers.
    use_other_centers : bool
        Whether to give the network a map of the other galaxies' centers.
    use_psf_size : bool
        Whether to give the network the PSF width of each band (see :func:`psf_width`)
        as constant input channels.
    l1_weight : float
        Weight of the L1 loss in the normalised space, added to the relative L2 loss.
    loss_floor : float
        Floor (ADU, per pixel-equivalent: it is multiplied by the mean noise sigma of
        the blend) added in quadrature to ``||y||`` in the relative loss, so faint or
        truncated galaxies do not dominate.
    augment : bool
        Random flips/rotations (the 8 of a square) of each training pair.
    clip_negative : bool
        Set negative predicted pixels to zero (the labels are non-negative).
    tta : int
        Test-time augmentation: ``predict`` averages the predictions made on the first
        ``tta`` (1 to 8) flips/rotations of each blend (1: one pass). The default, 4,
        gained ~0.008 in score for 4x the (small) predict time.
    seed : int
        Seed of the weight initialisation, data order and augmentation.
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
    num_threads : int or None
        CPU threads for torch during fit/predict (restored afterwards); ``None`` uses
        the CPUs available to the process, at most 8.
    deterministic : bool
        Ask torch for deterministic algorithms during fit/predict.
    """

    epochs: int = 200
    max_train_seconds: float = 660.0
    quick_test_seconds: float = 6.0
    batch_size: int = 32
    predict_batch_size: int = 256
    lr: float = 2e-3
    final_lr_fraction: float = 0.03
    weight_decay: float = 0.0
    ema_decay: float = 0.998
    channels: tuple = (16, 32, 64)
    canvas_size: int | None = 32
    output: str = "scaled"
    arcsinh_scale: float = 1.0
    center_sigma: float = 1.0
    use_other_centers: bool = True
    use_psf_size: bool = True
    l1_weight: float = 0.05
    loss_floor: float = 1.0
    augment: bool = True
    clip_negative: bool = True
    tta: int = 4
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    deterministic: bool = True

    def __post_init__(self):
        def _positive_int(name):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        def _positive_float(name, allow_zero=False):
            value = getattr(self, name)
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            ok = ok and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
            if not ok:
                bound = ">= 0" if allow_zero else "> 0"
                raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")

        if isinstance(self.tta, bool) or not isinstance(self.tta, (int, np.integer)) or not 1 <= self.tta <= N_DIHEDRAL:
            raise ValueError(f"tta must be an integer from 1 to {N_DIHEDRAL}, got {self.tta!r}")
        for name in ("epochs", "batch_size", "predict_batch_size"):
            _positive_int(name)
        for name in ("max_train_seconds", "quick_test_seconds", "lr", "arcsinh_scale", "center_sigma"):
            _positive_float(name)
        for name in ("weight_decay", "l1_weight", "loss_floor"):
            _positive_float(name, allow_zero=True)
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if not 0 < self.final_lr_fraction <= 1:
            raise ValueError(f"final_lr_fraction must be in (0, 1], got {self.final_lr_fraction!r}")
        channels = tuple(self.channels)
        if len(channels) < 1 or any(
            isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1 for c in channels
        ):
            raise ValueError(f"channels must be a non-empty tuple of positive integers, got {self.channels!r}")
        object.__setattr__(self, "channels", tuple(int(c) for c in channels))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.output not in ("scaled", "arcsinh"):
            raise ValueError(f"output must be 'scaled' or 'arcsinh', got {self.output!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be one of 'auto', 'cpu', 'cuda', got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' was asked for but torch.cuda.is_available() is False")
        if self.num_threads is not None:
            _positive_int("num_threads")
        if self.canvas_size is not None:
            _positive_int("canvas_size")
            mult = 2 ** (len(self.channels) - 1)
            if self.canvas_size % mult:
                raise ValueError(
                    f"canvas_size must be a multiple of {mult} (2 ** (levels - 1) for "
                    f"{len(self.channels)} levels), got {self.canvas_size!r}")

    def canvas_for(self, height: int, width: int) -> int:
        """The window side (pixels) used for stamps of ``height`` x ``width`` pixels."""
        mult = 2 ** (len(self.channels) - 1)
        whole = int(math.ceil(max(height, width) / mult) * mult)
        return whole if self.canvas_size is None else min(int(self.canvas_size), whole)

    def resolved_device(self) -> torch.device:
        """The torch device to use: CUDA when asked for or available (``"auto"``)."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def time_budget(self) -> float:
        """Training budget in seconds, after the environment overrides.

        ``DEBLEND_UNET_MAX_TRAIN_SECONDS`` (a positive number) replaces
        ``max_train_seconds``; otherwise, under ``RAMP_TEST_MODE``, the budget is
        ``min(max_train_seconds, quick_test_seconds)``. Either way, when the
        workflow's step budget ``DEBLEND_TIME_BUDGET_S`` is set, the result is at most
        80% of it (the rest is for reading the data and predicting).
        """
        value = _env_seconds(TIME_BUDGET_ENV)
        if value is None:
            value = float(self.max_train_seconds)
            if os.environ.get(QUICK_TEST_ENV):
                value = min(value, float(self.quick_test_seconds))
        step_budget = _env_seconds(WORKFLOW_BUDGET_ENV)
        if step_budget is not None:
            value = min(value, 0.8 * step_budget)
        return value


def _env_seconds(name: str) -> float | None:
    """A positive number of seconds from environment variable ``name``; None if unset/empty."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


# ------------------------------------------------------------------- transforms / maps
def _sigma_view(sigma: torch.Tensor) -> torch.Tensor:
    """Noise sigma (..., C) as (..., C, 1, 1) to broadcast over pixels."""
    return sigma[..., None, None]


def to_network_space(x_adu: torch.Tensor, sigma: torch.Tensor, scale: float) -> torch.Tensor:
    """ADU images to the network's space: ``arcsinh(x / (scale * sigma))`` per band.

    Parameters
    ----------
    x_adu : torch.Tensor
        Images (..., C, H, W) in ADU.
    sigma : torch.Tensor
        Background noise sigma (..., C) in ADU per pixel (strictly positive).
    scale : float
        ``a``, the linear-to-logarithmic transition in units of sigma.

    Returns
    -------
    torch.Tensor
        Same shape as ``x_adu``, dimensionless.
    """
    return torch.asinh(x_adu / (scale * _sigma_view(sigma)))


def from_network_space(z: torch.Tensor, sigma: torch.Tensor, scale: float) -> torch.Tensor:
    """Inverse of :func:`to_network_space`: ``scale * sigma * sinh(z)`` in ADU."""
    return scale * _sigma_view(sigma) * torch.sinh(z)


def dihedral_images(images: torch.Tensor, t: int) -> torch.Tensor:
    """Apply transform ``t`` (0..7) of the square's symmetry group to images (..., H, W).

    ``t >= 4`` first mirrors along x (the last axis), then the image is rotated
    ``t % 4`` times by :func:`torch.rot90` on the last two axes. Odd rotations swap
    H and W. ``t = 0`` is the identity.
    """
    if not 0 <= int(t) < N_DIHEDRAL:
        raise ValueError(f"transform index must be in 0..7, got {t!r}")
    if t >= 4:
        images = torch.flip(images, dims=(-1,))
    return torch.rot90(images, int(t) % 4, dims=(-2, -1))


def dihedral_images_inverse(images: torch.Tensor, t: int) -> torch.Tensor:
    """Undo :func:`dihedral_images` with the same ``t``."""
    if not 0 <= int(t) < N_DIHEDRAL:
        raise ValueError(f"transform index must be in 0..7, got {t!r}")
    images = torch.rot90(images, -(int(t) % 4), dims=(-2, -1))
    return torch.flip(images, dims=(-1,)) if t >= 4 else images


def dihedral_centers(centers: np.ndarray | torch.Tensor, t: int, height: int, width: int):
    """The (x, y) pixel positions after :func:`dihedral_images` with the same ``t``.

    Parameters
    ----------
    centers : ndarray or torch.Tensor
        (..., 2) positions (x = column, y = row), 0-based, pixel i spanning
        [i - 0.5, i + 0.5]; NaN stays NaN.
    t : int
        Transform index, 0..7.
    height, width : int
        Image size (pixels) before the transform.

    Returns
    -------
    Same type and shape as ``centers``.
    """
    if not 0 <= int(t) < N_DIHEDRAL:
        raise ValueError(f"transform index must be in 0..7, got {t!r}")
    x, y = centers[..., 0], centers[..., 1]
    if t >= 4:
        x = (width - 1) - x
    for _ in range(int(t) % 4):
        # torch.rot90 (k=1): new[i, j] = old[j, W - 1 - i]  ->  x' = y, y' = W - 1 - x
        x, y = y, (width - 1) - x
        height, width = width, height
    if isinstance(centers, torch.Tensor):
        return torch.stack([x, y], dim=-1)
    return np.stack([x, y], axis=-1)


def center_maps(
    centers: torch.Tensor, valid: torch.Tensor, target: torch.Tensor,
    height: int, width: int, sigma_px: float,
) -> torch.Tensor:
    """Maps of the target's center and of the other galaxies' centers.

    Parameters
    ----------
    centers : torch.Tensor
        (B, K, 2) pixel positions (x, y); entries of invalid slots are ignored.
    valid : torch.Tensor
        (B, K) bool, the filled slots.
    target : torch.Tensor
        (B,) int, the slot of the target galaxy in each blend.
    height, width : int
        Map size in pixels.
    sigma_px : float
        Width of the Gaussian blobs, pixels; each blob peaks at 1 (at a pixel center).

    Returns
    -------
    torch.Tensor
        (B, 2, H, W) float32: channel 0 the target's blob, channel 1 the sum of the
        others' blobs.
    """
    dtype = torch.float32
    c = torch.where(valid[..., None], centers, torch.zeros((), dtype=centers.dtype, device=centers.device))
    c = c.to(dtype)
    yy = torch.arange(height, dtype=dtype, device=centers.device)
    xx = torch.arange(width, dtype=dtype, device=centers.device)
    gx = torch.exp(-((xx[None, None, :] - c[..., 0:1]) ** 2) / (2 * sigma_px**2))  # (B, K, W)
    gy = torch.exp(-((yy[None, None, :] - c[..., 1:2]) ** 2) / (2 * sigma_px**2))  # (B, K, H)
    blobs = gy[..., :, None] * gx[..., None, :]  # (B, K, H, W)
    blobs = blobs * valid[..., None, None].to(dtype)
    is_target = torch.nn.functional.one_hot(target.long(), centers.shape[1]).to(torch.bool)
    target_map = (blobs * is_target[..., None, None].to(dtype)).sum(dim=1)
    other_map = (blobs * (~is_target)[..., None, None].to(dtype)).sum(dim=1)
    return torch.stack([target_map, other_map], dim=1)


def shift_crop(images: torch.Tensor, row0: torch.Tensor, col0: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Per-image integer shift and crop: ``out[b, ..., i, j] = images[b, ..., row0[b] + i, col0[b] + j]``.

    Pixels that fall outside the input are zero. With ``row0`` = (target row) -
    ``out_h // 2`` this puts the target pixel at the centre of the output;
    ``shift_crop(out, -row0, -col0, H, W)`` puts it back.

    Parameters
    ----------
    images : torch.Tensor
        (B, C, H, W).
    row0, col0 : torch.Tensor
        (B,) int, the input pixel that lands at output pixel (0, 0).
    out_h, out_w : int
        Output size in pixels.

    Returns
    -------
    torch.Tensor
        (B, C, out_h, out_w).
    """
    n, c, height, width = images.shape
    dev = images.device
    rows = row0.to(dev).long()[:, None] + torch.arange(out_h, device=dev)  # (B, out_h)
    cols = col0.to(dev).long()[:, None] + torch.arange(out_w, device=dev)  # (B, out_w)
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    lin = rows.clamp(0, height - 1)[:, :, None] * width + cols.clamp(0, width - 1)[:, None, :]
    flat = images.reshape(n, c, height * width)
    out = torch.gather(flat, 2, lin.reshape(n, 1, -1).expand(n, c, -1)).reshape(n, c, out_h, out_w)
    return out * inside[:, None].to(out.dtype)


def target_amplitude(window: torch.Tensor, sigma: torch.Tensor, floor: float = 1.0) -> torch.Tensor:
    """Brightness of each target: the blend's mean over bands and the central 3x3 pixels.

    Parameters
    ----------
    window : torch.Tensor
        (B, C, S, S) blends in ADU, the target at pixel (S // 2, S // 2).
    sigma : torch.Tensor
        (B, C) noise sigma, ADU per pixel.
    floor : float
        Lower bound, in units of the mean noise sigma (faint targets, noise).

    Returns
    -------
    torch.Tensor
        (B,) ADU, > 0.
    """
    c = window.shape[-1] // 2
    r = window.shape[-2] // 2
    centre = window[..., max(0, r - 1):r + 2, max(0, c - 1):c + 2].mean(dim=(1, 2, 3))
    return torch.maximum(centre, floor * sigma.mean(dim=1))


def psf_width(psf: np.ndarray) -> np.ndarray:
    """PSF width from its noise-equivalent area: ``sqrt(1 / (4 pi sum p^2))`` for unit sum.

    For a Gaussian PSF this is its sigma.

    Parameters
    ----------
    psf : ndarray
        (..., P, P) PSF images (any normalisation).

    Returns
    -------
    ndarray
        (...,) float32, pixels.
    """
    p = np.asarray(psf, dtype=np.float64)
    p = p / p.sum(axis=(-2, -1), keepdims=True)
    return np.sqrt(1.0 / (4 * np.pi * np.square(p).sum(axis=(-2, -1)))).astype(np.float32)


def _tensor(arr: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy`` that accepts read-only arrays (BlendSet hands those out).

    The tensors made here are only read: every batch is an indexed copy.
    """
    if not arr.flags.writeable:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(arr)
    return torch.from_numpy(arr)


def relative_l2(pred: torch.Tensor, truth: torch.Tensor, floor: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Per-sample ``||pred - truth|| / sqrt(||truth||^2 + floor^2)`` over all but dim 0."""
    diff = (pred - truth).flatten(1)
    norm = truth.flatten(1).pow(2).sum(dim=1)
    floor2 = torch.as_tensor(floor, dtype=norm.dtype, device=norm.device) ** 2
    return diff.pow(2).sum(dim=1).sqrt() / (norm + floor2).sqrt()


# ---------------------------------------------------------------------------- network
class _DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by SiLU.

    (No normalisation layer: GroupNorm made a 10-minute CPU training slightly worse.)
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
            nn.SiLU(),
        )


class UNet(nn.Module):
    """A small U-Net: ``len(channels)`` levels, max-pool down, transposed-conv up.

    Input (B, in_channels, H, W) with H and W multiples of ``2 ** (levels - 1)``;
    output (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, channels: tuple = (16, 32, 64)):
        super().__init__()
        self.channels = tuple(channels)
        self.down = nn.ModuleList()
        c_prev = in_channels
        for c in self.channels:
            self.down.append(_DoubleConv(c_prev, c))
            c_prev = c
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for c in reversed(self.channels[:-1]):
            self.up.append(nn.ConvTranspose2d(c_prev, c, 2, stride=2))
            self.merge.append(_DoubleConv(2 * c, c))
            c_prev = c
        self.head = nn.Conv2d(c_prev, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = up(x)
            x = merge(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)


# ------------------------------------------------------------------------- the model
@contextlib.contextmanager
def _torch_settings(num_threads: int, deterministic: bool):
    """Set torch's thread count and determinism for a block, then restore them."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    # modules imported by name: a function that names torch.backends.cudnn or
    # torch.utils.deterministic as attributes makes cloudpickle (used by rampwf) try to
    # pickle these module objects by value, which fails
    cudnn = importlib.import_module("torch.backends.cudnn")
    det_flags = importlib.import_module("torch.utils.deterministic")
    old_cudnn = cudnn.deterministic, cudnn.benchmark
    old_fill = det_flags.fill_uninitialized_memory
    try:
        torch.set_num_threads(num_threads)
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            # filling every new tensor with NaN costs ~10% of a CPU step and changes no result
            det_flags.fill_uninitialized_memory = False
            cudnn.deterministic = True
            cudnn.benchmark = False
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        cudnn.deterministic, cudnn.benchmark = old_cudnn
        det_flags.fill_uninitialized_memory = old_fill


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Deblender:
    """U-Net deblender (see the module docstring); options as in :class:`UNetOptions`.

    Examples
    --------
    >>> model = Deblender(epochs=2, max_train_seconds=30)   # doctest: +SKIP
    >>> model.fit(X_train, y_train).predict(X_test).shape    # doctest: +SKIP
    (n, K, C, H, W)
    """

    def __init__(self, **options):
        self.options = UNetOptions(**options)
        self._state = None  # dict name -> ndarray, the trained weights
        self._meta = None  # dict: n_bands, bands
        self._net = None  # cached nn.Module, rebuilt from _state (not pickled)
        self.history_ = []  # mean training loss per epoch

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_net"] = None
        return state

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def _read_inputs(X):
        """Arrays of ``X``: blend (n, C, H, W), sigma (n, C), centers (n, K, 2), valid (n, K)."""
        blend = np.asarray(X.blend, dtype=np.float32)
        sigma = np.asarray(X.noise_sigma, dtype=np.float32)
        centers = np.asarray(X.centers, dtype=np.float32)
        n_gal = np.asarray(X.n_galaxies).astype(np.int64)
        if blend.ndim != 4:
            raise ValueError(f"X.blend must have shape (n, C, H, W), got {blend.shape}")
        n, n_bands = blend.shape[:2]
        if sigma.shape != (n, n_bands):
            raise ValueError(f"X.noise_sigma must have shape {(n, n_bands)}, got {sigma.shape}")
        if not np.all(np.isfinite(sigma) & (sigma > 0)):
            raise ValueError("X.noise_sigma must be finite and > 0 (ADU per pixel)")
        if centers.ndim != 3 or centers.shape[0] != n or centers.shape[2] != 2:
            raise ValueError(f"X.centers must have shape ({n}, K, 2), got {centers.shape}")
        if n_gal.shape != (n,):
            raise ValueError(f"X.n_galaxies must have shape ({n},), got {n_gal.shape}")
        k_slots = centers.shape[1]
        valid = (np.arange(k_slots)[None, :] < n_gal[:, None]) & np.isfinite(centers).all(axis=-1)
        return blend, sigma, np.nan_to_num(centers), valid

    def _psf_widths(self, X, n, n_bands):
        """(n, C) PSF widths in pixels, or an (n, 0) array when not used."""
        if not self.options.use_psf_size:
            return np.zeros((n, 0), np.float32)
        psf = np.asarray(X.psf, dtype=np.float32)
        if psf.ndim != 4 or psf.shape[:2] != (n, n_bands):
            raise ValueError(f"X.psf must have shape ({n}, {n_bands}, P, P), got {psf.shape}")
        return psf_width(psf)

    def _build_net(self, n_bands):
        n_in = (3 if self.options.use_psf_size else 2) * n_bands + (2 if self.options.use_other_centers else 1)
        return UNet(n_in, n_bands, self.options.channels)

    def _forward(self, net, blend, sigma, psf_w, centers, valid, target, canvas):
        """Predicted images of the targets in windows centred on them.

        Parameters
        ----------
        blend : (B, C, H, W) ADU; sigma : (B, C) ADU; psf_w : (B, C) or (B, 0) PSF
        widths, pixels; centers : (B, K, 2) pixels;
        valid : (B, K) bool; target : (B,) slot of the target; canvas : window side, pixels.

        Returns
        -------
        pred : (B, C, canvas, canvas) ADU; z : the raw network output (same shape);
        row0, col0 : (B,) the stamp pixel at the window's (0, 0), for :func:`shift_crop`.
        """
        opt = self.options
        rows = torch.arange(len(target), device=centers.device)
        center = torch.round(centers[rows, target.long()])  # (B, 2): x, y of the target's pixel
        col0 = center[:, 0].long() - canvas // 2
        row0 = center[:, 1].long() - canvas // 2
        window = shift_crop(blend, row0, col0, canvas, canvas)
        amp = target_amplitude(window, sigma)
        local = centers - torch.stack([col0, row0], dim=-1)[:, None, :].to(centers.dtype)
        maps = center_maps(local, valid, target, canvas, canvas, opt.center_sigma)
        if not opt.use_other_centers:
            maps = maps[:, :1]
        x = torch.cat([
            to_network_space(window, sigma, opt.arcsinh_scale),  # in units of the noise
            torch.asinh(window / amp[:, None, None, None]),  # in units of the target's brightness
            maps,
            psf_w[:, :, None, None].expand(-1, -1, canvas, canvas),
        ], dim=1)
        z = net(x.contiguous(memory_format=torch.channels_last))
        if opt.output == "scaled":
            pred = amp[:, None, None, None] * z
        else:
            z = torch.clamp(z, -12.0, 12.0)
            pred = from_network_space(z, sigma, opt.arcsinh_scale)
        return pred, z, row0, col0

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Train on blends ``X`` and isolated images ``y`` (n, K, C, H, W) in ADU.

        Returns
        -------
        self
        """
        opt = self.options
        blend, sigma, centers, valid = self._read_inputs(X)
        y = np.asarray(y, dtype=np.float32)
        n, n_bands, height, width = blend.shape
        k_slots = centers.shape[1]
        if y.shape != (n, k_slots, n_bands, height, width):
            raise ValueError(f"y must have shape {(n, k_slots, n_bands, height, width)}, got {y.shape}")
        psf_w = self._psf_widths(X, n, n_bands)
        pairs = np.argwhere(valid)  # (P, 2): blend index, slot
        if len(pairs) == 0:
            raise ValueError("fit needs at least one galaxy (all slots are empty)")
        budget = opt.time_budget()
        device = opt.resolved_device()
        n_threads = opt.num_threads or min(8, _available_cpus())
        n_transforms = N_DIHEDRAL if height == width else 1
        canvas = opt.canvas_for(height, width)
        t_start = time.perf_counter()

        with _torch_settings(n_threads, opt.deterministic):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(opt.seed)
                net = self._build_net(n_bands)
            net.to(device=device, memory_format=torch.channels_last)
            gen = torch.Generator().manual_seed(opt.seed + 1)
            data = {
                "sigma": _tensor(sigma).to(device),
                "psf_w": _tensor(psf_w).to(device),
                "centers": _tensor(centers).to(device),
                "valid": _tensor(valid).to(device),
                "y": _tensor(y),  # stays on the host; batches are moved
            }
            data["blend"] = _tensor(blend).to(device)
            pairs_t = _tensor(pairs)
            optimiser = torch.optim.Adam(net.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
            ema = [p.detach().clone() for p in net.parameters()] if opt.ema_decay > 0 else None
            steps_per_epoch = math.ceil(len(pairs) / opt.batch_size)
            planned_epochs = opt.epochs
            step = 0
            self.history_ = []
            logger.info(
                "U-Net fit: %d blends, %d galaxies, %d bands, %dx%d px (window %d), device %s, "
                "%d threads, budget %.0f s, up to %d epochs", n, len(pairs), n_bands, height, width,
                canvas, device, n_threads, budget, opt.epochs,
            )
            net.train()
            for epoch in range(opt.epochs):
                if epoch >= planned_epochs:
                    break
                order = torch.randperm(len(pairs), generator=gen)
                losses = []
                stopped_on_time = False
                for b in range(steps_per_epoch):
                    idx = pairs_t[order[b * opt.batch_size:(b + 1) * opt.batch_size]]
                    transforms = torch.randint(0, n_transforms, (len(idx),), generator=gen)
                    if not opt.augment:
                        transforms.zero_()
                    frac = min(1.0, step / max(1, planned_epochs * steps_per_epoch))
                    lr = opt.lr * (opt.final_lr_fraction
                                   + (1 - opt.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * frac)))
                    for group in optimiser.param_groups:
                        group["lr"] = lr
                    losses.append(self._train_step(net, optimiser, idx, transforms, data, canvas, device))
                    step += 1
                    if ema is not None:
                        with torch.no_grad():
                            # warm-up: plain average over the first steps, then exponential
                            decay = min(opt.ema_decay, step / (step + 10.0))
                            for avg, p in zip(ema, net.parameters()):
                                avg.lerp_(p, 1.0 - decay)
                    if time.perf_counter() - t_start > budget:
                        stopped_on_time = True
                        break
                self.history_.append(float(np.mean(losses)))
                elapsed = time.perf_counter() - t_start
                logger.info("epoch %d: loss %.4f, lr %.2e, %.1f s", epoch + 1, self.history_[-1], lr, elapsed)
                if stopped_on_time:
                    logger.warning(
                        "U-Net fit stopped on its time budget (%.0f s) after %d steps, in epoch %d of "
                        "%d planned", budget, step, epoch + 1, planned_epochs)
                    break
                # (re)plan the number of epochs from their mean duration so far, so that the
                # learning-rate schedule ends within the budget (5% margin); when the budget
                # allows all of them, this is opt.epochs and training is deterministic
                per_epoch = max(elapsed / (epoch + 1), 1e-9)
                fit_in = epoch + 1 + int(max(0.0, 0.95 * budget - elapsed) // per_epoch)
                new_plan = int(min(opt.epochs, fit_in))
                if new_plan != planned_epochs:
                    logger.info("time budget %.0f s: planning %d epochs of ~%.1f s (asked for %d)",
                                budget, new_plan, per_epoch, opt.epochs)
                    planned_epochs = new_plan
            net.eval()
            if ema is not None:
                with torch.no_grad():
                    for p, avg in zip(net.parameters(), ema):
                        p.copy_(avg)
            self._state = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
        self._meta = {"n_bands": n_bands, "bands": tuple(getattr(X, "bands", ()) or ())}
        self._net = None
        self.train_seconds_ = time.perf_counter() - t_start
        self.epochs_run_ = len(self.history_)
        return self

    def _train_step(self, net, optimiser, idx, transforms, data, canvas, device):
        """One optimiser step on the pairs ``idx`` (B, 2); returns the loss."""
        opt = self.options
        bi, ki = idx[:, 0].to(device), idx[:, 1].to(device)
        blend = data["blend"][bi]  # indexing copies: the in-place transforms below are safe
        target = data["y"][idx[:, 0], idx[:, 1]].to(device)  # (B, C, H, W) ADU
        centers, valid, sig = data["centers"][bi], data["valid"][bi], data["sigma"][bi]
        height, width = blend.shape[-2:]
        for t in transforms.unique().tolist():
            if t != 0:
                sel = (transforms == t).to(device)
                blend[sel] = dihedral_images(blend[sel], t)
                target[sel] = dihedral_images(target[sel], t)
                centers[sel] = dihedral_centers(centers[sel], t, height, width)
        pred, _, row0, col0 = self._forward(net, blend, sig, data["psf_w"][bi], centers, valid, ki, canvas)
        target = shift_crop(target, row0, col0, canvas, canvas)
        scale = sig.mean(dim=1)[:, None, None, None]  # ADU: a per-blend unit for the relative loss
        loss = relative_l2(pred / scale, target / scale, opt.loss_floor).mean()
        if opt.l1_weight > 0:
            loss = loss + opt.l1_weight * (to_network_space(pred, sig, opt.arcsinh_scale)
                                           - to_network_space(target, sig, opt.arcsinh_scale)).abs().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return float(loss.detach())

    # ------------------------------------------------------------------ predict
    def _network(self, device):
        if self._net is None:
            net = self._build_net(self._meta["n_bands"])
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self._state.items()})
            net.eval()
            self._net = net
        return self._net.to(device=device, memory_format=torch.channels_last)

    def predict(self, X):
        """Isolated images (n, K, C, H, W) float32 in ADU; empty slots are zeros."""
        opt = self.options
        if self._state is None:
            raise RuntimeError("Deblender.predict called before fit")
        blend, sigma, centers, valid = self._read_inputs(X)
        n, n_bands, height, width = blend.shape
        if n_bands != self._meta["n_bands"]:
            raise ValueError(f"X has {n_bands} bands, the model was trained on {self._meta['n_bands']}")
        psf_w = self._psf_widths(X, n, n_bands)
        k_slots = centers.shape[1]
        out = np.zeros((n, k_slots, n_bands, height, width), dtype=np.float32)
        pairs = np.argwhere(valid)
        if len(pairs) == 0:
            return out
        device = opt.resolved_device()
        n_threads = opt.num_threads or min(8, _available_cpus())
        canvas = opt.canvas_for(height, width)
        transforms = range(opt.tta if height == width else 1)
        with _torch_settings(n_threads, opt.deterministic), torch.no_grad():
            net = self._network(device)
            for start in range(0, len(pairs), opt.predict_batch_size):
                bi, ki = pairs[start:start + opt.predict_batch_size].T
                stamps = _tensor(blend[bi]).to(device)
                cen = _tensor(centers[bi]).to(device)
                args = (_tensor(sigma[bi]).to(device), _tensor(psf_w[bi]).to(device))
                rest = (_tensor(valid[bi]).to(device), _tensor(ki).to(device), canvas)
                total = 0.0
                for t in transforms:  # test-time augmentation: mean over flips/rotations
                    pred, _, row0, col0 = self._forward(
                        net, dihedral_images(stamps, t), *args, dihedral_centers(cen, t, height, width), *rest)
                    pred = shift_crop(pred.contiguous(), -row0, -col0, height, width)
                    total = total + dihedral_images_inverse(pred, t)
                pred = total / len(transforms)
                if opt.clip_negative:
                    pred = torch.clamp(pred, min=0.0)
                out[bi, ki] = pred.cpu().numpy()
        return out
