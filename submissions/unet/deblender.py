"""Deep-learning baseline: a compact U-Net that isolates one target galaxy per pass.

One forward pass per (blend, target galaxy) pair. The pair is cut to a square
window of ``canvas_size`` pixels centred on the target's (rounded) center, so the
network always finds its target in the middle; it sees, per pixel of the window,

* the blend in all ``C`` bands in units of the target's brightness,
  ``arcsinh(x / A)``, where ``A`` is the blend near the target's center
  (:func:`target_amplitude`);
* the target's signal-to-noise ratio ``log(A / sigma)`` per band, as constant
  channels (``noise_input="level"``; ``"arcsinh"``, the former input, is the blend
  in units of the noise, ``arcsinh(x / (a * sigma))``, ``a`` = ``arcsinh_scale``);
* the target's share of the blend split in proportion to symmetric, monotonic
  templates of all galaxies (:func:`template_shares`, the starting kit's method on
  one detection image), in units of ``A`` (``template=True``);
* a map of the target's center (a Gaussian blob of ``center_sigma`` pixels, so the
  sub-pixel position is kept) and a map of the other galaxies' centers;
* the PSF width of each band, as constant channels (:func:`psf_width`).

It predicts, by default, a correction in units of ``A`` on top of the forward
model's fit of the target (see "On the forward model" below): the target's image
is ``prior + A * z`` inside the window and the prior outside it (``prior=None``:
on top of the template share, or alone; ``output="arcsinh"`` inverts the input
normalisation instead). Negative pixels are set to zero, then the fluxes are refitted.

Units and transfer: every input is a ratio of ADU to ADU and the output is in units
of ``A``, so a blend scaled by ``s`` with its noise sigma scaled by ``s`` gets ``s``
times the prediction (tested). What is not a change of units is the signal-to-noise
ratio: the kit's training galaxies are mostly faint (median r 25.3, 9% brighter than
r 23), and the former network returned 10% of the flux of r < 21 galaxies and 28%
at r 21-23 on the default test set itself (240 s of training; benchmarks/README.md,
"Transfer"): it extrapolates what it learned on faint galaxies, among others through
``arcsinh(x / sigma)``, close to linear for them and logarithmic for bright ones. Now every image
input is in units of ``A`` (the SNR is a separate constant channel), the flux
augmentation (``flux_augment``) brightens the galaxies of training blends by up to
100x while keeping their noise, the noise augmentation (``noise_augment``) adds
noise, so the network sees the brightness and depth range the test sets have.

The loss is the challenge's primary score without its cap: the mean over galaxies
of the normalised residual ``||y_hat - y||_2 / ||y||_2`` over all bands and pixels of
the stamp, in ADU, plus a small L1 term on the arcsinh-normalised images. Training
data are augmented with the 8 flips/rotations of the stamp (images and centers
alike); Adam with a cosine learning-rate decay; the kept weights are an exponential
moving average over the steps. ``predict`` averages over 4 flips/rotations (``tta``).

On the forward model (``prior="forward_model"``, the default): the forward-model
baseline (:mod:`deblendkit.deblend.forward_model`) fits every galaxy first (inside
the training budget: ~90-120 s of the 660 for 1,600 blends), the network gets the
target's fitted model and the blend minus all models as inputs and predicts a
correction, ``prior + A * z`` in the window and the prior outside it, starting at
~0: an untrained network returns the forward model's fit, and what it learns is
what symmetric, monotonic, single-SED profiles miss (knots, asymmetry, colour
gradients). Then each galaxy's flux per band is refitted to the blend with the
network's shapes fixed, when the blends ``fit`` held out say it helps
(``flux_refit="validate"``). Figures: benchmarks/README.md, "U-Net on the forward model".

Pretrained weights (``pretrained``, for the network without the prior):
``pretrained.npz`` beside this file was made by ``submissions/unet/pretrain.py``
from a stated seed; ``Deblender(prior=None, pretrained="pretrained.npz")`` starts
from it and trains on the data it is given; ``DEBLEND_UNET_PRETRAINED`` replaces the
option ("none": from scratch).

Time: training is bounded by ``epochs`` and by a wall-clock budget,
``max_train_seconds``; the environment variable ``DEBLEND_UNET_MAX_TRAIN_SECONDS``
replaces it, ``ramp-test --quick-test`` (``RAMP_TEST_MODE``) caps it at
``quick_test_seconds``, and the workflow's ``DEBLEND_TIME_BUDGET_S`` at 80% of that.
The number of steps is planned from their measured duration, so the learning-rate
schedule (cosine) ends within the budget; a hard stop on the budget remains, with a
log message. With a fixed seed, training on CPU is deterministic whenever the epoch
limit, not the clock, ends it.

Uses CUDA when available (``device="auto"``). This module imports numpy, torch,
the standard library and, from the kit's package, the forward model and
:func:`deblendkit.deblend.amplitudes.refit_amplitudes`.
"""
# No ``from __future__ import annotations``: rampwf loads this file without putting it
# in sys.modules, and dataclasses then fail on string annotations.


import contextlib
import dataclasses
import importlib
import io
import json
import logging
import math
import os
import pathlib
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deblendkit.deblend.amplitudes import refit_amplitudes
from deblendkit.deblend.forward_model import Deblender as ForwardModel
from deblendkit.scoring.metrics import deblend_scores
from deblendkit.scoring.table import robust_scatter

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
    "symmetric_templates",
    "template_shares",
    "estimate_gain",
    "TIME_BUDGET_ENV",
]

logger = logging.getLogger("submissions.unet")

#: Environment variable that, when set, replaces ``max_train_seconds`` (seconds).
TIME_BUDGET_ENV = "DEBLEND_UNET_MAX_TRAIN_SECONDS"
#: Environment variable that, when set, replaces the ``pretrained`` option ("none": train from scratch).
PRETRAINED_ENV = "DEBLEND_UNET_PRETRAINED"
#: The workflow's per-step time budget (seconds), see deblendkit/workflow.py.
WORKFLOW_BUDGET_ENV = "DEBLEND_TIME_BUDGET_S"
#: Environment variable set by ``ramp-test --quick-test``.
QUICK_TEST_ENV = "RAMP_TEST_MODE"
#: Format of the weights files (``save_weights``, ``pretrained``).
WEIGHTS_VERSION = 1
#: The training plan (steps that fit in the time budget) is remade every so many steps.
REPLAN_STEPS = 20
#: Blends per call of the flux refit in ``predict`` (``flux_refit``).
REFIT_BATCH = 256
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
    template : bool
        Give the network the target's share of the blend split in proportion to
        symmetric templates (:func:`template_shares`) and predict a residual on top of
        it: inside the window the prediction is ``share + A * z``, outside it the
        share (the starting kit's idea as the initialisation).
    template_residual : bool
        With ``template``: predict ``share + A * z`` in the window and the share outside
        it (otherwise ``A * z`` in the window, zero outside).
    prior : str or None
        ``"forward_model"``: every galaxy's model fitted by the forward-model
        baseline (:mod:`deblendkit.deblend.forward_model`, its default options; ~0.1 s per
        blend) is given to the network (the target's model and the blend minus all
        models, in units of ``A``) and is the base of the prediction: ``prior + A *
        z`` in the window, the prior outside it. The network starts at the forward
        model's solution (its last layer starts at ~0) and learns what the
        symmetric, monotonic profiles miss (knots, asymmetry). ``None``: no prior.
    flux_refit : float, "validate" or None
        After the network, each galaxy's amplitude per band is refitted to the blend
        (:func:`deblendkit.deblend.amplitudes.refit_amplitudes`: least squares in units
        of the noise, the morphologies kept) with the network's own amplitude as a
        prior of this fractional width: a bright galaxy gets the flux the data say, a
        faint one keeps the network's. ``None``: no refit. ``"validate"`` (the
        default): ``fit`` keeps ``validation_fraction`` of its blends out of training
        and chooses None or a width of ``refit_widths`` on them (the one-standard-error
        rule: the least r flux scatter among the candidates whose primary score is
        within one standard error of the best; ``validation_scores_`` holds the
        figures, ``flux_refit_`` the choice). One fixed width did not hold for every
        training set: 0.03 lowered one network's r flux scatter from 0.192 to 0.167
        and another's score from 0.7656 to 0.7547.
    refit_widths : tuple of float
        The widths ``flux_refit="validate"`` chooses from (besides no refit).
    validation_fraction : float
        Fraction of the training blends held out by ``flux_refit="validate"``, in (0, 1).
    flux_weight : float
        Weight of a flux term added to the loss, ``|F_pred - F| / (F + flux_floor
        sigma)`` per band (F: the sum over the stamp, ADU); 0: none. On one fold
        (420 s, 200 validation blends) 0.1 and 0.3 gave 0.7611 / 0.163 and
        0.7587 / 0.139 (score / r flux scatter) against 0.7656 / 0.177 without: the
        flux it fixes costs the score.
    flux_floor : float
        Floor of the flux term's denominator, in units of the band's noise sigma.
    noise_input : str
        How the network sees the noise: ``"arcsinh"``, the blend in units of the noise
        (``arcsinh(x / (a sigma))`` per band); ``"level"``, one constant channel per band,
        ``log(A / sigma)`` (the target's signal-to-noise ratio), so that every image
        input is in units of the target's brightness.
    flux_augment : (float, float)
        Range of ``log10 f`` of the flux augmentation: a training blend becomes
        ``blend + sum_k (f_k - 1) y_k`` (plus the Poisson noise of the added light,
        from the gain measured in ``fit``) and its labels ``f_k y_k``, with ``log10 f``
        uniform in this range per blend. With the prior, the added light
        ``(f_k - 1) y_k`` is added to the galaxy's prior too (the forward model fits
        added light well); scaling the prior by ``f_k`` instead, as before 2026-12-03,
        scaled its errors with it and taught the network to take flux off bright
        galaxies (0.84 of the flux at r < 23 on one fold, the forward model's 0.96).
        The kit's training galaxies are mostly faint (median r 25.3); this shows the
        network brighter ones at the same noise.
    flux_jitter : float
        Standard deviation (dex) of a per-galaxy factor on top of ``f`` (flux ratios).
    flux_augment_prob : float
        Fraction of training pairs that get the flux augmentation (in [0, 1]).
    noise_augment : float
        Largest factor of the noise augmentation: Gaussian noise is added so that the
        background sigma becomes ``g * sigma``, ``log g`` uniform in ``[0, log noise_augment]``
        (1: none).
    noise_augment_prob : float
        Fraction of training pairs that get the noise augmentation (in [0, 1]).
    clip_negative : bool
        Set negative predicted pixels to zero (the labels are non-negative).
    pretrained : str or None
        Weights to start ``fit`` from: a ``.npz`` file written by
        ``submissions/unet/pretrain.py`` (a relative path is taken from this module's
        folder). ``fit`` then trains them on the data it is given, at peak learning
        rate ``finetune_lr``. Weights made for another architecture, number of bands
        or input set are not used (a warning is logged); a missing file, or ``None``
        (the default): training from scratch. The shipped ``pretrained.npz`` is for
        ``prior=None``.
    finetune_lr : float
        Peak learning rate when starting from ``pretrained`` weights.
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
    flux_weight: float = 0.0
    flux_floor: float = 10.0
    augment: bool = True
    template: bool = True
    template_residual: bool = False
    prior: str | None = "forward_model"
    flux_refit: float | str | None = "validate"
    refit_widths: tuple = (0.1, 0.03, 0.01)
    validation_fraction: float = 0.1
    noise_input: str = "level"
    flux_augment: tuple = (0.0, 2.0)
    flux_jitter: float = 0.3
    flux_augment_prob: float = 0.5
    noise_augment: float = 4.0
    noise_augment_prob: float = 0.3
    clip_negative: bool = True
    pretrained: str | None = None
    finetune_lr: float = 5e-4
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
        for name in ("max_train_seconds", "quick_test_seconds", "lr", "arcsinh_scale", "center_sigma",
                     "finetune_lr"):
            _positive_float(name)
        for name in ("weight_decay", "l1_weight", "loss_floor", "flux_jitter", "flux_weight", "flux_floor"):
            _positive_float(name, allow_zero=True)
        for name in ("flux_augment_prob", "noise_augment_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not (len(self.flux_augment) == 2 and self.flux_augment[0] <= self.flux_augment[1]):
            raise ValueError(f"flux_augment must be (low, high) with low <= high, got {self.flux_augment!r}")
        object.__setattr__(self, "flux_augment", tuple(float(v) for v in self.flux_augment))
        if not self.noise_augment >= 1:
            raise ValueError(f"noise_augment must be >= 1, got {self.noise_augment!r}")
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
        if self.noise_input not in ("arcsinh", "level"):
            raise ValueError(f"noise_input must be 'arcsinh' or 'level', got {self.noise_input!r}")
        if self.prior not in (None, "forward_model"):
            raise ValueError(f"prior must be None or 'forward_model', got {self.prior!r}")
        if not (self.flux_refit is None or self.flux_refit == "validate" or _finite_positive(self.flux_refit)):
            raise ValueError(f"flux_refit must be None, 'validate' or a finite number > 0, got {self.flux_refit!r}")
        if not (isinstance(self.refit_widths, (tuple, list)) and all(map(_finite_positive, self.refit_widths))):
            raise ValueError(f"refit_widths must be finite numbers > 0, got {self.refit_widths!r}")
        object.__setattr__(self, "refit_widths", tuple(float(w) for w in self.refit_widths))
        if not (_finite_positive(self.validation_fraction) and self.validation_fraction < 1):
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
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


def _finite_positive(value) -> bool:
    """Whether ``value`` is a real number (not a bool), finite and > 0."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return ok and math.isfinite(value) and value > 0


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


# ------------------------------------------------------------- template apportioning
def _gaussian_blur(images: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur (zero outside) of (B, N, H, W) images; ``sigma_px`` pixels."""
    half = max(1, int(math.ceil(3 * sigma_px)))
    taps = torch.exp(-0.5 * (torch.arange(-half, half + 1, dtype=images.dtype, device=images.device)
                             / sigma_px) ** 2)
    taps = taps / taps.sum()
    b, n, h, w = images.shape
    flat = images.reshape(b * n, 1, h, w)
    flat = F.conv2d(flat, taps.view(1, 1, 1, -1), padding=(0, half))
    flat = F.conv2d(flat, taps.view(1, 1, -1, 1), padding=(half, 0))
    return flat.reshape(b, n, h, w)


def symmetric_templates(detect: torch.Tensor, centers: torch.Tensor, valid: torch.Tensor,
                        threshold: float, jumps: int = 6) -> torch.Tensor:
    """Symmetric, monotonic templates of every galaxy on a detection image.

    The template of galaxy k is ``min(D, D mirrored through its centre)`` (the centre
    rounded to the nearest half pixel, so the mirror of a pixel is a pixel; 0 where the
    mirror is off the stamp), capped so that it never rises outwards: each pixel takes
    the minimum over its chain of parents, the 8-neighbour one step towards the centre
    (pointer jumping: ``jumps`` doublings cover chains of ``2 ** jumps`` pixels). Values
    at or below ``threshold`` are set to 0 (as in the starting kit, after Lupton et al.).

    Parameters
    ----------
    detect : torch.Tensor
        (B, H, W) detection image (any unit; the threshold is in the same unit).
    centers : torch.Tensor
        (B, K, 2) (x, y) pixel positions; entries of invalid slots are ignored.
    valid : torch.Tensor
        (B, K) bool, the filled slots.
    threshold : float
        Template floor, units of ``detect``.
    jumps : int
        Pointer-jumping rounds of the monotonic cap.

    Returns
    -------
    torch.Tensor
        (B, K, H, W), >= 0; zero for invalid slots.
    """
    b, h, w = detect.shape
    k = centers.shape[1]
    dev, dtype = detect.device, detect.dtype
    c = torch.where(valid[..., None], centers, torch.zeros((), dtype=centers.dtype, device=dev)).to(dtype)
    two_c = torch.round(2.0 * c)  # (B, K, 2): twice the half-pixel centre, integer valued
    xx = torch.arange(w, device=dev, dtype=dtype)
    yy = torch.arange(h, device=dev, dtype=dtype)
    mx = two_c[..., 0:1] - xx  # (B, K, W)
    my = two_c[..., 1:2] - yy  # (B, K, H)
    inside = ((my >= 0) & (my < h))[..., :, None] & ((mx >= 0) & (mx < w))[..., None, :]
    lin = (my.clamp(0, h - 1)[..., :, None] * w + mx.clamp(0, w - 1)[..., None, :]).long()
    flat = detect.reshape(b, 1, h * w).expand(b, k, h * w)
    mirrored = torch.gather(flat, 2, lin.reshape(b, k, -1)).reshape(b, k, h, w)
    tmpl = torch.where(inside, torch.minimum(detect[:, None], mirrored), torch.zeros((), dtype=dtype, device=dev))
    # parent: one 8-neighbour step towards the (half-pixel) centre; pixels within 1 px are roots
    dx = xx[None, None, None, :] - two_c[..., 0, None, None] / 2  # (B, K, 1, W)
    dy = yy[None, None, :, None] - two_c[..., 1, None, None] / 2  # (B, K, H, 1)
    dx, dy = torch.broadcast_tensors(dx, dy)
    reach = torch.maximum(dx.abs(), dy.abs()).clamp(min=1e-6)
    step_x = torch.where(reach >= 1, torch.round(dx / reach), torch.zeros_like(dx))
    step_y = torch.where(reach >= 1, torch.round(dy / reach), torch.zeros_like(dy))
    px = (xx[None, None, None, :] - step_x).clamp(0, w - 1)
    py = (yy[None, None, :, None] - step_y).clamp(0, h - 1)
    parent = (py * w + px).long().reshape(b, k, -1)
    t = tmpl.reshape(b, k, -1)
    for _ in range(jumps):
        t = torch.minimum(t, torch.gather(t, 2, parent))
        parent = torch.gather(parent, 2, parent)
    t = t.reshape(b, k, h, w)
    t = torch.where(t > threshold, t, torch.zeros((), dtype=dtype, device=dev))
    return t * valid[..., None, None].to(dtype)


def template_shares(blend: torch.Tensor, sigma: torch.Tensor, centers: torch.Tensor, valid: torch.Tensor,
                    smoothing: float = 1.0, threshold: float = 2.0) -> torch.Tensor:
    """Every galaxy's share of the blend, split in proportion to symmetric templates.

    The templates (:func:`symmetric_templates`) are built on one detection image, the
    blend in units of the noise summed over bands and smoothed by a Gaussian of
    ``smoothing`` pixels, thresholded at ``threshold`` times its own noise. Each pixel
    of the blend, in every band, is split among the galaxies in proportion to their
    templates there (0 where no template covers it). Scaling ``blend`` and ``sigma``
    by the same factor scales the shares by it.

    Parameters
    ----------
    blend : torch.Tensor
        (B, C, H, W) ADU.
    sigma : torch.Tensor
        (B, C) background noise, ADU per pixel.
    centers, valid : torch.Tensor
        (B, K, 2) pixel positions (x, y) and (B, K) bool filled slots.

    Returns
    -------
    torch.Tensor
        (B, K, C, H, W) ADU; zeros in empty slots.
    """
    snr = (blend / _sigma_view(sigma)).sum(dim=1, keepdim=True)
    detect = _gaussian_blur(snr, smoothing)[:, 0]
    half = max(1, int(math.ceil(3 * smoothing)))
    taps = torch.exp(-0.5 * (torch.arange(-half, half + 1, dtype=torch.float64) / smoothing) ** 2)
    noise = math.sqrt(blend.shape[1]) * float((taps / taps.sum()).pow(2).sum())  # of the smoothed sum
    tmpl = symmetric_templates(detect, centers, valid, threshold * noise)
    total = tmpl.sum(dim=1, keepdim=True)
    weights = tmpl / torch.where(total > 0, total, torch.ones((), dtype=total.dtype, device=total.device))
    return weights[:, :, None] * blend[:, None]


def estimate_gain(blend: np.ndarray, y: np.ndarray, sigma: np.ndarray, max_blends: int = 200) -> np.ndarray:
    """Electrons per ADU of each band, from the noise of training blends.

    The noise ``r = blend - sum_k y_k`` has variance ``sigma^2 + S / gain`` per pixel,
    ``S = sum_k y_k`` (Poisson noise of the sources); ``1 / gain`` is the least-squares
    slope of ``r^2 - sigma^2`` against ``S`` over the first ``max_blends`` blends.

    Parameters
    ----------
    blend : (n, C, H, W) ADU; y : (n, K, C, H, W) ADU; sigma : (n, C) ADU per pixel.

    Returns
    -------
    ndarray
        (C,) float32, electrons per ADU; ``inf`` where no source noise is measured.
    """
    m = min(len(blend), max_blends)
    signal = np.asarray(y[:m], dtype=np.float64).sum(axis=1)  # (m, C, H, W)
    noise = np.asarray(blend[:m], dtype=np.float64) - signal
    excess = noise**2 - np.asarray(sigma[:m], np.float64)[..., None, None] ** 2
    num = (excess * signal).sum(axis=(0, 2, 3))
    den = (signal * signal).sum(axis=(0, 2, 3))
    inv = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    with np.errstate(divide="ignore"):
        return np.where(inv > 0, 1.0 / inv, np.inf).astype(np.float32)


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
        self.gain_ = None  # (C,) electrons per ADU, measured by fit (for the flux augmentation)
        self.prior_gain_ = None  # (C,) the forward-model prior's gain (``prior``), measured by fit
        self.flux_refit_ = None  # the refit width predict applies (None: none), set by fit
        self.validation_scores_ = {}  # flux_refit="validate": held-out primary score per refit width
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
        opt = self.options
        per_band = 2 + int(opt.use_psf_size) + int(opt.template) + 2 * int(opt.prior is not None)
        net = UNet(per_band * n_bands + (2 if opt.use_other_centers else 1), n_bands, opt.channels)
        if (opt.template and opt.template_residual) or opt.prior:  # the residual starts at ~0
            with torch.no_grad():
                net.head.weight.mul_(0.01)
                net.head.bias.zero_()
        return net

    def architecture(self, n_bands: int) -> dict:
        """What pretrained weights must match: the options that shape the network's inputs and layers."""
        opt = self.options
        return {"version": WEIGHTS_VERSION, "n_bands": int(n_bands), "channels": list(opt.channels),
                "template": opt.template, "template_residual": opt.template_residual,
                **({"prior": opt.prior} if opt.prior else {}),  # weights made before it stay usable
                "noise_input": opt.noise_input, "use_psf_size": opt.use_psf_size,
                "use_other_centers": opt.use_other_centers, "output": opt.output,
                "arcsinh_scale": opt.arcsinh_scale, "center_sigma": opt.center_sigma}

    def _pretrained_path(self) -> str | None:
        """The weights file to start from: ``DEBLEND_UNET_PRETRAINED`` ("none": none), else ``pretrained``."""
        name = os.environ.get(PRETRAINED_ENV, "").strip() or self.options.pretrained
        if not name or name.lower() == "none":
            return None
        return name if os.path.isabs(name) else os.path.join(os.path.dirname(os.path.abspath(__file__)), name)

    def _load_pretrained(self, net, n_bands) -> bool:
        """Copy the ``pretrained`` weights into ``net`` when they fit; whether they were used."""
        path = self._pretrained_path()
        if path is None or not os.path.exists(path):
            return False
        with np.load(path, allow_pickle=False) as saved:
            meta = json.loads(str(saved["architecture"]))
            weights = {k[2:]: saved[k] for k in saved.files if k.startswith("w/")}
        if meta != self.architecture(n_bands):
            logger.warning("pretrained weights %s are for another network (%s, this one %s): training from "
                           "scratch", path, meta, self.architecture(n_bands))
            return False
        net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
        logger.info("U-Net fit starts from the pretrained weights %s", path)
        return True

    def save_weights(self, path: str) -> None:
        """Write the trained weights and their architecture to ``path`` (``.npz``), for ``pretrained``."""
        if self._state is None:
            raise RuntimeError("Deblender.save_weights called before fit")
        arrays = {f"w/{k}": v for k, v in self._state.items()}
        arrays["architecture"] = np.array(json.dumps(self.architecture(self._meta["n_bands"])))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        tmp = pathlib.Path(f"{path}.{os.getpid()}.tmp")
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)  # atomic: readers see the old file or the new one

    def _forward(self, net, blend, sigma, psf_w, centers, valid, target, canvas, prior=None):
        """Predicted images of the targets, in the whole stamp.

        Parameters
        ----------
        blend : (B, C, H, W) ADU; sigma : (B, C) ADU; psf_w : (B, C) or (B, 0) PSF
        widths, pixels; centers : (B, K, 2) pixels;
        valid : (B, K) bool; target : (B,) slot of the target; canvas : window side, pixels;
        prior : (B, K, C, H, W) ADU, every galaxy's forward-model fit (``prior`` option), or None.

        Returns
        -------
        pred : (B, C, H, W) ADU, the network's window (``canvas`` pixels, centred on
        the target) put back in the stamp, on top of the template share when
        ``template`` is set (which alone fills the stamp outside the window).
        """
        opt = self.options
        height, width = blend.shape[-2:]
        rows = torch.arange(len(target), device=centers.device)
        center = torch.round(centers[rows, target.long()])  # (B, 2): x, y of the target's pixel
        col0 = center[:, 0].long() - canvas // 2
        row0 = center[:, 1].long() - canvas // 2
        window = shift_crop(blend, row0, col0, canvas, canvas)
        amp = target_amplitude(window, sigma)[:, None, None, None]
        local = centers - torch.stack([col0, row0], dim=-1)[:, None, :].to(centers.dtype)
        maps = center_maps(local, valid, target, canvas, canvas, opt.center_sigma)
        if not opt.use_other_centers:
            maps = maps[:, :1]
        if opt.noise_input == "arcsinh":
            noise = to_network_space(window, sigma, opt.arcsinh_scale)  # in units of the noise
        else:  # the target's signal-to-noise ratio per band, as constant channels
            noise = torch.log(amp / _sigma_view(sigma)).expand(-1, -1, canvas, canvas)
        parts = [
            noise,
            torch.asinh(window / amp),  # in units of the target's brightness
            maps,
            psf_w[:, :, None, None].expand(-1, -1, canvas, canvas),
        ]
        share = None
        if opt.template:
            share = template_shares(blend, sigma, centers, valid)[rows, target.long()]  # (B, C, H, W)
            parts.append(torch.asinh(shift_crop(share, row0, col0, canvas, canvas) / amp))
        base = None
        if prior is not None:
            base = prior[rows, target.long()]  # (B, C, H, W): the target's fitted model
            rest = blend - prior.sum(dim=1)  # what the models leave of the blend (noise, knots, ...)
            parts.append(torch.asinh(shift_crop(base, row0, col0, canvas, canvas) / amp))
            parts.append(torch.asinh(shift_crop(rest, row0, col0, canvas, canvas) / amp))
        z = net(torch.cat(parts, dim=1).contiguous(memory_format=torch.channels_last))
        if opt.output == "scaled":
            pred = amp * z
        else:
            pred = from_network_space(torch.clamp(z, -12.0, 12.0), sigma, opt.arcsinh_scale)
        pred = shift_crop(pred.contiguous(), -row0, -col0, height, width)
        if base is not None:
            return pred + base
        return pred + share if opt.template_residual and share is not None else pred

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
        self.gain_ = estimate_gain(blend, y, sigma)
        held = self._validation_blends(n)  # (n,) bool: kept out of training, to choose the flux refit
        pairs = np.argwhere(valid & ~held[:, None])  # (P, 2): blend index, slot
        if len(pairs) == 0:
            raise ValueError("fit needs at least one galaxy (all slots are empty)")
        budget = opt.time_budget()
        device = opt.resolved_device()
        n_threads = opt.num_threads or min(8, _available_cpus())
        n_transforms = N_DIHEDRAL if height == width else 1
        canvas = opt.canvas_for(height, width)
        t_start = time.perf_counter()
        prior = None
        if opt.prior:  # inside the budget: the forward model's fits of the training blends
            self.prior_gain_ = ForwardModel().fit(X, y).gain_
            prior = self._prior(X)
            logger.info("U-Net fit: forward-model prior of %d blends in %.0f s", n, time.perf_counter() - t_start)

        with _torch_settings(n_threads, opt.deterministic):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(opt.seed)
                net = self._build_net(n_bands)
            self.pretrained_ = self._load_pretrained(net, n_bands)
            net.to(device=device, memory_format=torch.channels_last)
            gen = torch.Generator().manual_seed(opt.seed + 1)
            data = {
                "sigma": _tensor(sigma).to(device),
                "psf_w": _tensor(psf_w).to(device),
                "centers": _tensor(centers).to(device),
                "valid": _tensor(valid).to(device),
                "y": _tensor(y),  # stays on the host; batches are moved
                "gain": torch.from_numpy(self.gain_).to(device),
                "prior": None if prior is None else _tensor(prior),  # stays on the host
            }
            data["blend"] = _tensor(blend).to(device)
            logger.info(
                "U-Net fit: %d blends, %d galaxies, %d bands, %dx%d px (window %d), device %s, "
                "%d threads, budget %.0f s, up to %d epochs", n, len(pairs), n_bands, height, width,
                canvas, device, n_threads, budget, opt.epochs,
            )
            ema = self._train_loop(net, _tensor(pairs), data, canvas, gen, n_transforms, budget, t_start)
            net.eval()
            if ema is not None:
                with torch.no_grad():
                    for p, avg in zip(net.parameters(), ema):
                        p.copy_(avg)
            self._state = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
        self._meta = {"n_bands": n_bands, "bands": tuple(getattr(X, "bands", ()) or ())}
        self._net = None
        self.flux_refit_ = opt.flux_refit
        if opt.flux_refit == "validate":
            self.flux_refit_ = self._choose_refit(
                blend[held], sigma[held], centers[held], valid[held], psf_w[held],
                None if prior is None else prior[held], y[held], self._meta["bands"])
        self.train_seconds_ = time.perf_counter() - t_start
        self.epochs_run_ = len(self.history_)
        return self

    def _validation_blends(self, n: int) -> np.ndarray:
        """(n,) bool: the blends ``fit`` keeps out of training to choose the refit (``flux_refit="validate"``).

        A seeded ``validation_fraction`` of them (at least one, and at least one left to
        train on); none when ``flux_refit`` is not ``"validate"`` or ``n < 2``.
        """
        held = np.zeros(n, dtype=bool)
        if self.options.flux_refit != "validate" or n < 2:
            return held
        k = min(n - 1, max(1, round(self.options.validation_fraction * n)))
        held[np.random.default_rng(self.options.seed).permutation(n)[:k]] = True
        return held

    def _choose_refit(self, blend, sigma, centers, valid, psf_w, prior, y, bands=()):
        """The flux refit (None or a width of ``refit_widths``) chosen on the held-out blends.

        The one-standard-error rule with the flux scatter as the tie-breaker: of the
        candidates whose mean primary score is within one standard error (of its
        paired per-galaxy difference) of the best one's, the one of smallest robust
        flux scatter in r (every band when there is no r). None wins exact ties.
        Sets ``validation_scores_``: ``{width or None: {"score", "score_se",
        "flux_scatter"}}`` of the held-out galaxies.
        """
        self.validation_scores_ = {}
        if not (valid.any() and np.any(y)):
            return None
        pred = self._predict_arrays(blend, sigma, centers, valid, psf_w, prior)
        band = list(bands).index("r") if "r" in bands else slice(None)
        per_galaxy, flux = {}, {}
        for width in (None, *self.options.refit_widths):
            cand = pred if width is None else self._refit(blend, pred, sigma, width)
            real, per_galaxy[width] = deblend_scores(y, cand)
            f_true = y[real][:, band].sum(axis=(-2, -1), dtype=np.float64).ravel()
            f_pred = cand[real][:, band].sum(axis=(-2, -1), dtype=np.float64).ravel()
            ok = f_true > 0
            flux[width] = robust_scatter((f_pred[ok] - f_true[ok]) / f_true[ok]) if ok.any() else 0.0
        top = max(per_galaxy, key=lambda w: per_galaxy[w].mean())
        for width, scores in per_galaxy.items():
            diff = scores - per_galaxy[top]
            se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
            self.validation_scores_[width] = {"score": float(scores.mean()), "score_se": se,
                                              "flux_scatter": float(flux[width])}
        near = [w for w, v in self.validation_scores_.items()
                if v["score"] >= self.validation_scores_[top]["score"] - v["score_se"]]
        best = min(near, key=lambda w: self.validation_scores_[w]["flux_scatter"])  # first of equals
        logger.info("U-Net fit: %d held-out blends, per flux refit (score, se, r flux scatter) %s: refit %s",
                    len(blend), {w: tuple(round(x, 4) for x in v.values())
                                 for w, v in self.validation_scores_.items()}, best)
        return best

    @staticmethod
    def _refit(blend, pred, sigma, width):
        """``pred`` with every galaxy's amplitude per band refitted to ``blend`` (prior width ``width``)."""
        out = np.empty_like(pred)
        for start in range(0, len(blend), REFIT_BATCH):  # float64 copies of a batch only
            rows = slice(start, start + REFIT_BATCH)
            out[rows] = refit_amplitudes(blend[rows], pred[rows], noise_sigma=sigma[rows], amplitude_sigma=width)
        return out

    def _train_loop(self, net, pairs_t, data, canvas, gen, n_transforms, budget, t_start):
        """Adam with a cosine learning rate over the planned steps; returns the EMA weights (or None).

        The plan is ``epochs`` passes over the pairs, cut to the steps that fit in the
        time budget (5% margin) from their measured duration, re-planned every
        :data:`REPLAN_STEPS` steps, so the schedule ends within the budget. When the
        budget allows all of them the plan never changes and training is deterministic.
        """
        opt = self.options
        peak_lr = opt.finetune_lr if self.pretrained_ else opt.lr
        optimiser = torch.optim.Adam(net.parameters(), lr=peak_lr, weight_decay=opt.weight_decay)
        ema = [p.detach().clone() for p in net.parameters()] if opt.ema_decay > 0 else None
        steps_per_epoch = math.ceil(len(pairs_t) / opt.batch_size)
        max_steps = planned = opt.epochs * steps_per_epoch
        step, lr, self.history_ = 0, peak_lr, []
        net.train()
        for epoch in range(opt.epochs):
            order = torch.randperm(len(pairs_t), generator=gen)
            losses = []
            for b in range(steps_per_epoch):
                if step >= planned:
                    break
                idx = pairs_t[order[b * opt.batch_size:(b + 1) * opt.batch_size]]
                transforms = torch.randint(0, n_transforms, (len(idx),), generator=gen)
                if not opt.augment:
                    transforms.zero_()
                frac = min(1.0, step / max(1, planned))
                lr = peak_lr * (opt.final_lr_fraction
                               + (1 - opt.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * frac)))
                for group in optimiser.param_groups:
                    group["lr"] = lr
                losses.append(self._train_step(net, optimiser, idx, transforms, data, canvas, gen))
                step += 1
                if ema is not None:
                    with torch.no_grad():  # warm-up: plain average over the first steps, then exponential
                        decay = min(opt.ema_decay, step / (step + 10.0))
                        for avg, p in zip(ema, net.parameters()):
                            avg.lerp_(p, 1.0 - decay)
                if time.perf_counter() - t_start > budget:
                    break
                if step % REPLAN_STEPS == 0:
                    elapsed = time.perf_counter() - t_start
                    fit_in = step + int(max(0.0, 0.95 * budget - elapsed) // max(elapsed / step, 1e-9))
                    if min(max_steps, fit_in) != planned:
                        planned = min(max_steps, fit_in)
                        logger.info("time budget %.0f s: planning %d steps (%.1f epochs; asked for %d)",
                                    budget, planned, planned / steps_per_epoch, opt.epochs)
            if losses:
                self.history_.append(float(np.mean(losses)))
                logger.info("epoch %d: loss %.4f, lr %.2e, %.1f s", epoch + 1, self.history_[-1], lr,
                            time.perf_counter() - t_start)
            if step >= planned or time.perf_counter() - t_start > budget:
                break
        if step < planned:
            logger.warning("U-Net fit stopped on its time budget (%.0f s) after %d steps, in epoch %d of "
                           "%.1f planned", budget, step, epoch + 1, planned / steps_per_epoch)
        self.steps_run_ = step
        return ema

    def _augment(self, blend, labels, sigma, gain, gen, prior=None):
        """Flux and noise augmentation of a batch (see ``flux_augment``, ``noise_augment``).

        Parameters
        ----------
        blend : (B, C, H, W) ADU; labels : (B, K, C, H, W) ADU, every galaxy of each
        blend; sigma : (B, C) ADU; gain : (C,) electrons per ADU (inf: no Poisson
        term); gen : the torch generator of the training run (CPU).

        Returns
        -------
        blend, labels, sigma : the augmented batch (new tensors); and ``prior``
        (B, K, C, H, W) scaled by the same factors as the labels, when given.
        """
        opt = self.options
        n, k = labels.shape[:2]
        dev = blend.device
        lo, hi = opt.flux_augment
        on = (torch.rand(n, generator=gen) < opt.flux_augment_prob).to(blend.dtype)
        log_f = lo + (hi - lo) * torch.rand(n, generator=gen)
        log_f = (log_f[:, None] + opt.flux_jitter * torch.randn(n, k, generator=gen)) * on[:, None]
        factor = (10.0 ** log_f).to(dev)[..., None, None, None]  # (B, K, 1, 1, 1); 1 when off
        added = (factor - 1) * labels
        poisson = (added.clamp(min=0).sum(dim=1) / gain[None, :, None, None]).clamp(min=0).sqrt()
        blend = blend + added.sum(dim=1) + poisson * torch.randn(blend.shape, generator=gen).to(dev)
        if prior is not None:  # the fits of the brightened galaxies: the added light is fitted
            prior = prior + added
        labels = labels * factor
        on = (torch.rand(n, generator=gen) < opt.noise_augment_prob).to(blend.dtype)
        g = torch.exp(math.log(opt.noise_augment) * torch.rand(n, generator=gen) * on).to(dev)  # (B,)
        extra = sigma * (g * g - 1).clamp(min=0).sqrt()[:, None]
        blend = blend + extra[..., None, None] * torch.randn(blend.shape, generator=gen).to(dev)
        if prior is not None:
            return blend, labels, sigma * g[:, None], prior
        return blend, labels, sigma * g[:, None]

    def _train_step(self, net, optimiser, idx, transforms, data, canvas, gen):
        """One optimiser step on the pairs ``idx`` (B, 2); returns the loss."""
        opt = self.options
        device = data["blend"].device
        bi, ki = idx[:, 0].to(device), idx[:, 1].to(device)
        blend = data["blend"][bi]  # indexing copies: the in-place transforms below are safe
        centers, valid, sig = data["centers"][bi], data["valid"][bi], data["sigma"][bi]
        rows = torch.arange(len(idx), device=device)
        prior = None if data["prior"] is None else data["prior"][idx[:, 0]].to(device)  # (B, K, C, H, W)
        if opt.augment:
            labels = data["y"][idx[:, 0]].to(device)  # (B, K, C, H, W) ADU
            if prior is None:
                blend, labels, sig = self._augment(blend, labels, sig, data["gain"], gen)
            else:
                blend, labels, sig, prior = self._augment(blend, labels, sig, data["gain"], gen, prior)
            target = labels[rows, ki]
        else:
            target = data["y"][idx[:, 0], idx[:, 1]].to(device)  # (B, C, H, W) ADU
        height, width = blend.shape[-2:]
        for t in transforms.unique().tolist():
            if t != 0:
                sel = (transforms == t).to(device)
                blend[sel] = dihedral_images(blend[sel], t)
                target[sel] = dihedral_images(target[sel], t)
                centers[sel] = dihedral_centers(centers[sel], t, height, width)
                if prior is not None:
                    prior[sel] = dihedral_images(prior[sel], t)
        pred = self._forward(net, blend, sig, data["psf_w"][bi], centers, valid, ki, canvas, prior)
        scale = sig.mean(dim=1)[:, None, None, None]  # ADU: a per-blend unit for the relative loss
        loss = relative_l2(pred / scale, target / scale, opt.loss_floor).mean()
        if opt.l1_weight > 0:
            loss = loss + opt.l1_weight * (to_network_space(pred, sig, opt.arcsinh_scale)
                                           - to_network_space(target, sig, opt.arcsinh_scale)).abs().mean()
        if opt.flux_weight > 0:  # |dF| / (F + floor sigma) per band: the flux, apart from the shape
            f_pred, f_true = pred.sum(dim=(-2, -1)), target.sum(dim=(-2, -1))
            denom = f_true.clamp(min=0) + opt.flux_floor * sig
            loss = loss + opt.flux_weight * ((f_pred - f_true).abs() / denom).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return float(loss.detach())

    def _prior(self, X) -> np.ndarray:
        """(n, K, C, H, W) float32 ADU: the forward model's fit of every galaxy of ``X``."""
        model = ForwardModel()
        model.gain_ = self.prior_gain_
        return np.asarray(model.predict(X), dtype=np.float32)

    # ------------------------------------------------------------------ predict
    def _network(self, device):
        if self._net is None:
            net = self._build_net(self._meta["n_bands"])
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self._state.items()})
            net.eval()
            self._net = net
        return self._net.to(device=device, memory_format=torch.channels_last)

    def _predict_arrays(self, blend, sigma, centers, valid, psf_w, prior):
        """The network's images (n, K, C, H, W) float32 ADU of the arrays of ``_read_inputs``, before the refit.

        ``psf_w``: (n, C) PSF widths (``_psf_widths``); ``prior``: (n, K, C, H, W) ADU or None.
        """
        opt = self.options
        n, n_bands, height, width = blend.shape
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
                base = None if prior is None else _tensor(prior[bi]).to(device)
                total = 0.0
                for t in transforms:  # test-time augmentation: mean over flips/rotations
                    pred = self._forward(
                        net, dihedral_images(stamps, t), *args, dihedral_centers(cen, t, height, width), *rest,
                        None if base is None else dihedral_images(base, t))
                    total = total + dihedral_images_inverse(pred, t)
                pred = total / len(transforms)
                if opt.clip_negative:
                    pred = torch.clamp(pred, min=0.0)
                out[bi, ki] = pred.cpu().numpy()
        return out

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
        prior = self._prior(X) if opt.prior and valid.any() else None
        out = self._predict_arrays(blend, sigma, centers, valid, psf_w, prior)
        width = getattr(self, "flux_refit_", opt.flux_refit)
        if width is not None and width != "validate":
            out = self._refit(blend, out, sigma, width)
        return out
