"""Field mode: blended scenes cut from a simulated patch of sky.

Blend mode (:mod:`deblendkit.sim.blend_mode`) imposes its configurations: a chosen number
of galaxies placed near the stamp centre. In field mode (``mode="field"``) each
scene is a patch of simulated sky, so how often and how badly galaxies overlap
comes out of the number counts and sizes, and can be checked against published
surveys (:mod:`deblendkit.report.realism`).

One scene (blend ``index`` of a split)
--------------------------------------
1. **Catalogue.** Galaxies are drawn over the stamp plus a band of
   ``field_margin`` arcsec (4" = 20 LSST pixels) around it, so that neighbours
   just outside the stamp spill their light into it. Their number is Poisson
   with mean ``area x [N(<faint) - N(<bright)]``, where
   ``N(<m) = field_count_density x 10^(count_slope (m - 25))`` per arcmin^2
   (46 x 10^(0.31 (i - 25)): LSST Science Book, arXiv:0912.0201, eq. 3.7);
   magnitudes follow the same law between ``field_bright_limit`` (18) and
   ``field_faint_limit`` (27); positions are uniform. Sizes (Miller et al.
   2013 with log-normal scatter), ellipticities, bulge fractions, redshifts and
   SED colours come from :func:`deblendkit.sim.population.sample_population`, as in
   blend mode.
2. **Labels.** A galaxy is labelled when it is brighter than ``label_limit``
   (i < 25.3, the LSST gold sample) and its centre lies in the stamp
   (``-0.5 <= x, y < W - 0.5``, pixel ``i`` spanning ``[i - 0.5, i + 0.5]``);
   at most ``max_galaxies`` of them, brightest first, and slot order is
   brightness. Every other galaxy (fainter, centred outside the stamp, or
   beyond ``max_galaxies``) is unlabelled light: it is in ``blend`` and in the
   truth table (``labelled = 0``, ``slot = -1``), never in ``centers`` nor in
   ``isolated``, so ``X`` never reveals it and the score ignores it.
3. **Selection.** A draw with fewer than ``field_min_labelled`` (2) labelled
   galaxies is rejected and the scene is redrawn from the next child of the
   blend's seed sequence: try ``t`` uses
   ``SeedSequence(seed, spawn_key=(split_code, index, t))``, ``t = 0, 1, ...``,
   so a blend is still a pure function of ``(config, seed, split, index)``
   (same bytes for any ``n_jobs`` and chunking). At the defaults (48 x 48
   pixels = 0.0256 arcmin^2) a stamp holds on average 1.45 galaxies with
   i < 25.3 and about 57% of the draws are rejected: the data set is the sky
   *conditioned on at least two labelled galaxies in the stamp*. Within a kept
   scene the magnitudes, sizes, positions and unlabelled neighbours are the
   sky's (a Poisson process restricted to disjoint magnitude ranges or areas
   is independent, so the condition only raises the number of labelled
   galaxies). The rejected fraction is not stored in the file:
   :func:`draws_needed` recomputes it from ``(config, seed, split, index)``
   without rendering, and ``python -m deblendkit.cli.validate`` reports it. After
   ``field_max_tries`` rejected draws a :class:`~deblendkit.errors.ConfigError`
   names the blend and the options to change.
4. **Rendering.** Galaxies brighter than ``label_limit`` centred in the stamp
   (the labelled ones, and any beyond ``max_galaxies``) are rendered one by
   one with :func:`deblendkit.sim.render.render_galaxies`; every other galaxy (the
   fainter ones, about 2.4 times more numerous, and those of the margin) only
   adds light to the blend, so they are drawn together in one batch
   (:func:`deblendkit.sim.render.render_sum`: their k-space profiles are evaluated with numpy,
   summed, and transformed once per band; same model and PSF, agreement with
   ``render_galaxies`` checked in ``tests/sim/test_render.py``; 1.7x faster than
   rendering all ~18 galaxies of a scene one by one). Noise as in blend mode,
   from the summed image.
5. **Truth.** Per-image columns (``stamp_flux_*``, ``blendedness``, ``snr``,
   ``contamination``) are computed for the galaxies rendered one by one and are
   NaN for the batch-drawn ones. ``blendedness`` and ``contamination`` count
   the light of *all* other galaxies, labelled or not.

The blend fraction (``contamination``) is defined in :mod:`deblendkit.sim.sample`;
the big field it is compared on is :mod:`deblendkit.sim.sky`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError
from deblendkit.sim.population import Galaxies, sample_magnitudes, sample_population
from deblendkit.sim.psf import scene_psfs
from deblendkit.sim.render import render_galaxies, render_psf_images, render_sum, source_profiles
from deblendkit.sim.sample import (
    BlendSample,
    add_noise,
    band_fluxes,
    blendedness,
    contamination,
    contamination_band,
    split_code,
    truth_table,
)

__all__ = [
    "COUNT_PIVOT", "cumulative_density", "mean_count", "margin_px", "field_rng", "draws_needed",
    "FieldScene", "field_scene", "field_fft_size", "simulate_field_mode",
]

#: Magnitude at which ``field_count_density`` is given (LSST Science Book eq. 3.7).
COUNT_PIVOT = 25.0


# --------------------------------------------------------------------------
# Number counts
# --------------------------------------------------------------------------
def cumulative_density(config: SimConfig, mag) -> np.ndarray:
    """``N(<mag)``: galaxies per arcmin^2 brighter than ``mag`` (reference band).

    ``field_count_density x 10^(count_slope (mag - 25))`` (LSST Science Book eq. 3.7).
    """
    return config.field_count_density * 10.0 ** (config.count_slope * (np.asarray(mag, float) - COUNT_PIVOT))


def mean_count(config: SimConfig, area_arcmin2: float, *, faint: float | None = None) -> float:
    """Mean number of galaxies between ``field_bright_limit`` and ``faint`` (default the
    faint limit) over ``area_arcmin2`` arcmin^2.
    """
    faint = config.field_faint_limit if faint is None else faint
    lo = cumulative_density(config, config.field_bright_limit)
    return float(area_arcmin2 * (cumulative_density(config, faint) - lo))


def margin_px(config: SimConfig) -> int:
    """Width (pixels) of the band around the stamp where field galaxies are also drawn."""
    return int(math.ceil(config.field_margin / config.pixel_scale))


def _stamp_area(config: SimConfig) -> float:
    """Area (arcmin^2) of the stamp plus margin where galaxies are drawn."""
    side = config.stamp_size + 2 * margin_px(config)
    return (side * config.pixel_scale) ** 2 / 3600.0


# --------------------------------------------------------------------------
# One scene
# --------------------------------------------------------------------------
def field_rng(seed: int, split: str, index: int, attempt: int) -> np.random.Generator:
    """Generator of draw ``attempt`` of blend ``index``: child ``attempt`` of the blend's
    seed sequence, ``SeedSequence(seed, spawn_key=(split_code, index, attempt))``.
    """
    ss = np.random.SeedSequence(int(seed), spawn_key=(split_code(split), int(index), int(attempt)))
    return np.random.default_rng(ss)


def _draw_layout(config: SimConfig, rng: np.random.Generator):
    """Number, magnitudes and positions (pixels) of the galaxies of one draw."""
    m = margin_px(config)
    size = config.stamp_size
    n = int(rng.poisson(mean_count(config, _stamp_area(config))))
    mag = sample_magnitudes(rng, n, (config.field_bright_limit, config.field_faint_limit),
                            config.count_slope)
    pos = rng.uniform(-0.5 - m, size - 0.5 + m, size=(n, 2))
    return mag, pos


def _labelled_order(config: SimConfig, mag: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Indices of the labelled galaxies, brightest first (at most max_galaxies)."""
    size = config.stamp_size
    inside = np.all((pos >= -0.5) & (pos < size - 0.5), axis=1)
    cand = np.flatnonzero(inside & (mag < config.label_limit))
    cand = cand[np.argsort(mag[cand], kind="stable")]
    return cand[: config.max_galaxies]


def draws_needed(config: SimConfig, *, seed: int, split: str, index: int) -> int:
    """Number of draws blend ``index`` takes (1 = the first draw was kept).

    Replays the catalogue draws only (no rendering), so it is cheap; the rejected
    fraction of a data set is ``1 - n_blends / sum(draws_needed)``.
    """
    for attempt in range(config.field_max_tries):
        mag, pos = _draw_layout(config, field_rng(seed, split, index, attempt))
        if len(_labelled_order(config, mag, pos)) >= config.field_min_labelled:
            return attempt + 1
    raise ConfigError(
        f"blend {index} of split {split!r} (seed {seed}) had fewer than field_min_labelled="
        f"{config.field_min_labelled} galaxies brighter than label_limit={config.label_limit} in "
        f"its {config.stamp_size}-pixel stamp in all field_max_tries={config.field_max_tries} "
        "draws; raise stamp_size, label_limit or field_max_tries, or lower field_min_labelled"
    )


@dataclass(frozen=True)
class FieldScene:
    """Everything drawn at random for one field-mode scene, before rendering.

    Attributes
    ----------
    galaxies : Galaxies
        All n galaxies: the labelled ones first, in slot order (brightest first),
        then the unlabelled ones by brightness.
    positions : (n, 2) float, pixels (may lie outside the stamp, in the margin)
    n_labelled : int
    psfs : list of C galsim PSF profiles
    flux_bulge, flux_disk, flux_knots : (n, C) float, ADU
    rng : the kept draw's generator, positioned after these draws (noise comes next)
    attempts : int, draws made (1 = the first was kept)
    """

    galaxies: Galaxies
    positions: np.ndarray
    n_labelled: int
    psfs: list
    flux_bulge: np.ndarray
    flux_disk: np.ndarray
    flux_knots: np.ndarray
    rng: np.random.Generator
    attempts: int

    @property
    def flux(self) -> np.ndarray:
        """Total flux of each source in each band, (n, C) ADU."""
        return self.flux_bulge + self.flux_disk + self.flux_knots


def field_scene(config: SimConfig, *, seed: int, split: str, index: int) -> FieldScene:
    """Draw the galaxies, positions, PSFs and band fluxes of field-mode blend ``index``."""
    attempts = draws_needed(config, seed=seed, split=split, index=index)
    rng = field_rng(seed, split, index, attempts - 1)
    mag, pos = _draw_layout(config, rng)
    gals = sample_population(config, rng, len(mag), mag=mag)
    labelled = _labelled_order(config, mag, pos)
    rest = np.setdiff1d(np.arange(len(mag)), labelled)
    rest = rest[np.argsort(mag[rest], kind="stable")]
    order = np.concatenate([labelled, rest]).astype(int)
    gals, pos = gals.take(order), pos[order]
    psfs, _ = scene_psfs(config, rng)
    fb, fd, fk = band_fluxes(config, gals, config.simulated_bands)
    return FieldScene(gals, pos, len(labelled), psfs, fb, fd, fk, rng, attempts)


def _fast_size(n: int) -> int:
    """Smallest 5-smooth integer (2^a 3^b 5^c) >= n: a fast FFT length."""
    m = max(int(n), 1)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def field_fft_size(config: SimConfig, hlr_bulge_max: float, hlr_disk_max: float) -> int:
    """FFT grid (pixels) of a field scene whose galaxies may lie ``field_margin`` outside.

    As :func:`deblendkit.sim.render.fft_size_for` (80 pixels of clearance beyond the
    stamp, 40 bulge / 12 disk half-light radii), widened by the margin so the
    periodic copy of a margin galaxy stays as far from the stamp.
    """
    size, m, s = config.stamp_size, margin_px(config), config.pixel_scale
    need = max(2 * size + 32 + m,
               size + m + int(np.ceil(40 * hlr_bulge_max / s)),
               size + m + int(np.ceil(12 * hlr_disk_max / s)))
    return _fast_size(need)


# --------------------------------------------------------------------------
# Field-mode blend
# --------------------------------------------------------------------------
def _render_field(config: SimConfig, p: FieldScene) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Render a field scene: the bright galaxies one by one, every other one in one batch.

    Rendered one by one: brighter than label_limit and centred in the stamp (the
    labelled galaxies come first, so they are rows ``0..n_labelled-1`` of ``iso``).

    Returns
    -------
    iso : (B, C, H, W) float64, ADU, the B galaxies rendered one by one
    scene : (C, H, W) float64, ADU, noiseless image of every galaxy
    bright : (B,) int, their rows in ``p.galaxies``
    fft_size : int, pixels
    """
    gals, pos = p.galaxies, p.positions
    n_band, size, scale = len(config.simulated_bands), config.stamp_size, config.pixel_scale
    inside = np.all((pos >= -0.5) & (pos < size - 0.5), axis=1)
    one_by_one = inside & (gals.mag < config.label_limit)
    bright = np.flatnonzero(one_by_one)
    faint = np.flatnonzero(~one_by_one)
    fft_size = config.fft_size or field_fft_size(
        config, float(gals.hlr_bulge.max(initial=0.0)), float(gals.hlr_disk.max(initial=0.0)))
    b_gals = gals.take(bright)
    bulges, disks, knots = source_profiles(b_gals)
    iso = render_galaxies(
        bulges=bulges, disks=disks, knots=knots, flux_bulge=p.flux_bulge[bright], flux_disk=p.flux_disk[bright],
        flux_knots=p.flux_knots[bright], positions=pos[bright], psfs=p.psfs, stamp_size=size, pixel_scale=scale,
        fft_size=fft_size,
    ) if len(bright) else np.zeros((0, n_band, size, size))
    # Faint and margin sources in one batch: their knots' light drawn smooth, as part of the disk.
    faint_light = render_sum(
        galaxies=gals.take(faint), flux_bulge=p.flux_bulge[faint],
        flux_disk=p.flux_disk[faint] + p.flux_knots[faint],
        positions=pos[faint], psfs=p.psfs, stamp_size=size, pixel_scale=scale, fft_size=fft_size,
    )
    return iso, iso.sum(axis=0) + faint_light, bright, fft_size


def _per_image_truth(config: SimConfig, *, n: int, n_labelled: int, iso: np.ndarray, scene: np.ndarray,
                     bright: np.ndarray, sigma_sky: np.ndarray, variance: np.ndarray):
    """Per-image truth of the galaxies rendered one by one, NaN for the batch-drawn ones.

    Returns ``stamp_flux`` (n, C) and the dict of the ``blendedness``, ``snr``,
    ``labelled`` and ``contamination`` columns.
    """
    stamp_flux = np.full((n, len(config.simulated_bands)), np.nan)
    columns = {name: np.full(n, np.nan) for name in ("blendedness", "snr", "contamination")}
    if len(bright):
        stamp_flux[bright] = iso.sum(axis=(-2, -1))
        columns["blendedness"][bright] = blendedness(iso, scene)
        columns["snr"][bright] = np.sqrt(np.einsum("kchw,kchw->k", iso, iso / variance[None]))
        cb = config.simulated_bands.index(contamination_band(config))
        columns["contamination"][bright] = contamination(iso[:, cb], scene[cb], float(sigma_sky[cb]))
    labelled = np.zeros(n, dtype=np.int8)
    labelled[:n_labelled] = 1
    per_image = {"blendedness": columns["blendedness"], "snr": columns["snr"], "labelled": labelled,
                 "contamination": columns["contamination"]}
    return stamp_flux, per_image


def simulate_field_mode(config: SimConfig, *, seed: int, split: str, index: int) -> BlendSample:
    """Simulate field-mode blend ``index`` of ``split``: deterministic in its arguments.

    Returns a :class:`~deblendkit.sim.sample.BlendSample` with one truth row per
    galaxy drawn (labelled ones first, in slot order, then the unlabelled ones).
    """
    p = field_scene(config, seed=seed, split=split, index=index)
    gals, pos = p.galaxies, p.positions
    n_band, size, k_max = len(config.simulated_bands), config.stamp_size, config.max_galaxies
    n, n_lab = len(gals), p.n_labelled

    iso, scene, bright, fft_size = _render_field(config, p)
    noisy, sigma_sky, variance = add_noise(config, scene, p.rng)

    # Labelled galaxies are the first n_lab of `gals` (rows 0..n_lab-1 of iso).
    isolated = np.zeros((k_max, n_band, size, size), dtype=np.float32)
    isolated[:n_lab] = iso[:n_lab]
    centers = np.full((k_max, 2), np.nan, dtype=np.float32)
    centers[:n_lab] = pos[:n_lab]

    stamp_flux, per_image = _per_image_truth(config, n=n, n_labelled=n_lab, iso=iso, scene=scene, bright=bright,
                                             sigma_sky=sigma_sky, variance=variance)
    slot = np.full(n, -1, dtype=np.int16)
    slot[:n_lab] = np.arange(n_lab)
    truth = truth_table(config, index=index, slot=slot, positions=pos, galaxies=gals,
                        flux=p.flux, stamp_flux=stamp_flux, per_image=per_image)
    return BlendSample(
        blend=noisy.astype(np.float32),
        isolated=isolated,
        psf=render_psf_images(p.psfs, size=config.psf_size, pixel_scale=config.pixel_scale, fft_size=fft_size),
        noise_sigma=sigma_sky.astype(np.float32),
        centers=centers,
        n_galaxies=n_lab,
        truth=truth,
    )
