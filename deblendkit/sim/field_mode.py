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
   (:func:`render_sum`: their k-space profiles are evaluated with numpy,
   summed, and transformed once per band; same model and PSF, agreement with
   ``render_galaxies`` checked in ``tests/test_field.py``; 1.7x faster than
   rendering all ~18 galaxies of a scene one by one). Noise as in blend mode,
   from the summed image.
5. **Truth.** Per-image columns (``stamp_flux_*``, ``blendedness``, ``snr``,
   ``contamination``) are computed for the galaxies rendered one by one and are
   NaN for the batch-drawn ones. ``blendedness`` and ``contamination`` count
   the light of *all* other galaxies, labelled or not.

Blend fraction (Sanchez et al. 2021, arXiv:2103.02078)
------------------------------------------------------
A galaxy is *blended* when at least 1% of the flux in its own pixels comes from
other galaxies. Its own pixels (its footprint) are those where its noiseless,
PSF-convolved image in the r band (see :func:`contamination_band` when r is not
simulated) exceeds one background-noise sigma of that band (``noise_sigma``); a
galaxy with no such pixel uses its brightest pixel. ``contamination`` is
``sum_fp(total - own) / sum_fp(total)`` over the footprint, with ``total`` the
noiseless image of every galaxy; blended means ``contamination >= 0.01``. In a
scene the footprint is cut by the stamp edge; :func:`simulate_sky` measures it
on a large field, where it is not.

The big field
-------------
:func:`simulate_sky` draws the same population over a square field (0.05 deg^2
= 180 arcmin^2 in the validation) plus a margin, renders every galaxy in one
band into one image (each in its own postage stamp, added in place: the "tiles"
are the galaxies' stamps), and measures the contamination of every galaxy
brighter than ``label_limit`` in the inner area: this is the field figure the
published 62% is compared with.
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import galsim
import numpy as np

from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError
from deblendkit.sim.population import Galaxies, sample_magnitudes, sample_population
from deblendkit.sim.psf import scene_psfs
from deblendkit.sim.render import component_profiles, psf_transfer, render_galaxies, render_psf_images, wrap_factor
from deblendkit.sim.blend_mode import BlendSample, add_noise, split_code
from deblendkit.sim.seds import band_flux_ratios, colour_table

__all__ = [
    "COUNT_PIVOT", "BLENDED_CONTAMINATION", "FOOTPRINT_NSIGMA", "SKY_STREAM",
    "cumulative_density", "mean_count", "field_rng", "draws_needed", "FieldScene",
    "field_scene", "simulate_field_blend", "render_sum", "contamination",
    "contamination_band", "Sky", "simulate_sky", "field_fft_size",
]

log = logging.getLogger(__name__)

#: Magnitude at which ``field_count_density`` is given (LSST Science Book eq. 3.7).
COUNT_PIVOT = 25.0
#: Sanchez et al. 2021: blended when >= 1% of the footprint flux is from others.
BLENDED_CONTAMINATION = 0.01
#: Footprint: pixels where the galaxy's own noiseless image exceeds this many sky sigmas.
FOOTPRINT_NSIGMA = 1.0
#: Seed-sequence stream of :func:`simulate_sky` (the splits use 0..3).
SKY_STREAM = 100
#: Exponential profile: scale radius / half-light radius (GalSim's value).
_EXP_SCALE_PER_HLR = 0.5958243473776976
#: Rows of the de Vaucouleurs k-profile table (log-spaced in k^2).
_DEV_TABLE_SIZE = 2001


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
    faint limit) over ``area_arcmin2`` arcmin^2."""
    faint = config.field_faint_limit if faint is None else faint
    lo = cumulative_density(config, config.field_bright_limit)
    return float(area_arcmin2 * (cumulative_density(config, faint) - lo))


def _margin_px(config: SimConfig) -> int:
    return int(math.ceil(config.field_margin / config.pixel_scale))


def _stamp_area(config: SimConfig) -> float:
    """Area (arcmin^2) of the stamp plus margin where galaxies are drawn."""
    side = config.stamp_size + 2 * _margin_px(config)
    return (side * config.pixel_scale) ** 2 / 3600.0


# --------------------------------------------------------------------------
# One scene
# --------------------------------------------------------------------------
def field_rng(seed: int, split: str, index: int, attempt: int) -> np.random.Generator:
    """Generator of draw ``attempt`` of blend ``index``: child ``attempt`` of the blend's
    seed sequence, ``SeedSequence(seed, spawn_key=(split_code, index, attempt))``."""
    ss = np.random.SeedSequence(int(seed), spawn_key=(split_code(split), int(index), int(attempt)))
    return np.random.default_rng(ss)


def _draw_layout(config: SimConfig, rng: np.random.Generator):
    """Number, magnitudes and positions (pixels) of the galaxies of one draw."""
    m = _margin_px(config)
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
    flux_bulge, flux_disk : (n, C) float, ADU
    rng : the kept draw's generator, positioned after these draws (noise comes next)
    attempts : int, draws made (1 = the first was kept)
    """

    galaxies: Galaxies
    positions: np.ndarray
    n_labelled: int
    psfs: list
    flux_bulge: np.ndarray
    flux_disk: np.ndarray
    rng: np.random.Generator
    attempts: int


def _band_fluxes(config: SimConfig, gals: Galaxies, bands) -> tuple[np.ndarray, np.ndarray]:
    """Bulge and disk fluxes (n, C), ADU, from reference magnitudes and SED colours."""
    table = colour_table(config.survey, tuple(bands), config.ref_band)
    f_ref = config.survey_obj.mag_to_adu(gals.mag, config.ref_band, exposure_fraction=config.exposure_fraction)
    fb = (gals.bulge_fraction * f_ref)[:, None] * band_flux_ratios(table, gals.sed_bulge, gals.redshift)
    fd = ((1 - gals.bulge_fraction) * f_ref)[:, None] * band_flux_ratios(table, gals.sed_disk, gals.redshift)
    return fb, fd


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
    fb, fd = _band_fluxes(config, gals, config.band_names)
    return FieldScene(gals, pos, len(labelled), psfs, fb, fd, rng, attempts)


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
    size, m, s = config.stamp_size, _margin_px(config), config.pixel_scale
    need = max(2 * size + 32 + m,
               size + m + int(np.ceil(40 * hlr_bulge_max / s)),
               size + m + int(np.ceil(12 * hlr_disk_max / s)))
    return _fast_size(need)


def contamination_band(config: SimConfig) -> str:
    """Band of the contamination measure: r (Sanchez et al. 2021) if simulated, else the
    reference band if simulated, else the last band simulated."""
    bands = config.band_names
    if "r" in bands:
        return "r"
    return config.ref_band if config.ref_band in bands else bands[-1]


def contamination(own: np.ndarray, total: np.ndarray, sigma: float) -> np.ndarray:
    """Fraction of the flux in each galaxy's footprint that comes from other galaxies.

    Parameters
    ----------
    own : (n, H, W) float
        Noiseless image of each galaxy alone, one band, ADU.
    total : (H, W) float
        Noiseless image of every galaxy together (at least the sum of ``own``), ADU.
    sigma : float
        Background noise sigma of the band, ADU / pixel; the footprint is
        ``own > FOOTPRINT_NSIGMA x sigma`` (the brightest pixel if empty).

    Returns
    -------
    (n,) float: ``sum_fp(total - own) / sum_fp(total)``; NaN for a galaxy with no
    positive pixel.
    """
    own = np.asarray(own, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    n = len(own)
    flat = own.reshape(n, -1)
    fp = flat > FOOTPRINT_NSIGMA * sigma
    peak = np.argmax(flat, axis=1)
    empty = ~fp.any(axis=1)
    fp[np.flatnonzero(empty), peak[empty]] = True
    t = total.reshape(-1)
    own_sum = np.where(fp, flat, 0.0).sum(axis=1)
    tot_sum = fp.astype(np.float64) @ t
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (tot_sum - own_sum) / tot_sum
    c = np.clip(c, 0.0, 1.0)
    return np.where(flat.max(axis=1) > 0, c, np.nan)


# --------------------------------------------------------------------------
# Batched k-space rendering of the faint galaxies
# --------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _devaucouleurs_table() -> tuple[np.ndarray, np.ndarray]:
    """``ln((k hlr)^2)`` grid and GalSim's unit-flux de Vaucouleurs k-profile on it."""
    lk2 = np.linspace(np.log(1e-8), np.log(1e7), _DEV_TABLE_SIZE)
    prof = galsim.DeVaucouleurs(half_light_radius=1.0)
    vals = np.array([prof.kValue(galsim.PositionD(float(np.exp(v / 2)), 0.0)).real for v in lk2])
    return lk2, vals


def _component_k(hlr_bulge, hlr_disk, e1, e2, kx, ky) -> tuple[np.ndarray, np.ndarray]:
    """Unit-flux k-space profiles (G, len(ky), len(kx)) of sheared bulges and disks.

    The sheared profile's transform at ``k`` is the round one's at ``|A k|``, with
    ``A = [[1 + e1, e2], [e2, 1 - e1]] / sqrt(1 - e^2)`` GalSim's shear matrix;
    exponential disks are analytic, ``(1 + (k r_s)^2)^-1.5``, de Vaucouleurs bulges
    interpolated in a table of GalSim's own profile. ``kx``, ``ky`` in rad / arcsec.
    """
    e1 = np.asarray(e1, float)[:, None, None]
    e2 = np.asarray(e2, float)[:, None, None]
    f = 1.0 / np.sqrt(1.0 - e1**2 - e2**2)
    kx = np.asarray(kx)[None, None, :]
    ky = np.asarray(ky)[None, :, None]
    qx = f * ((1 + e1) * kx + e2 * ky)
    qy = f * (e2 * kx + (1 - e1) * ky)
    k2 = qx * qx + qy * qy
    rs = _EXP_SCALE_PER_HLR * np.asarray(hlr_disk, float)[:, None, None]
    x = 1.0 + k2 * rs**2
    disk = 1.0 / (x * np.sqrt(x))
    lk2, vals = _devaucouleurs_table()
    hb2 = np.asarray(hlr_bulge, float)[:, None, None] ** 2
    bulge = np.interp(np.log(np.maximum(k2 * hb2, np.exp(lk2[0]))), lk2, vals, right=0.0)
    return bulge, disk


def render_sum(
    *,
    galaxies: Galaxies,
    flux_bulge: np.ndarray,
    flux_disk: np.ndarray,
    positions: np.ndarray,
    psfs,
    stamp_size: int,
    pixel_scale: float,
    fft_size: int,
    chunk: int = 64,
) -> np.ndarray:
    """Sum of the noiseless images of many galaxies, each band, in one transform per band.

    Same model and conventions as :func:`deblendkit.sim.render.render_galaxies`
    (positions in pixels, 0-based; PSF and pixel convolved; periodic FFT grid of
    ``fft_size`` pixels centred on the stamp) but the galaxies' spectra are
    summed before the inverse FFT and evaluated with numpy, not GalSim.
    Undersampled PSFs (wrap factor > 1) fall back to ``render_galaxies``.

    Parameters
    ----------
    galaxies : Galaxies (G of them)
    flux_bulge, flux_disk : (G, C) float, ADU
    positions : (G, 2) float, pixels
    psfs : list of C galsim PSF profiles (no pixel)
    stamp_size, fft_size : int, pixels
    pixel_scale : float, arcsec / pixel
    chunk : int, galaxies evaluated at once (memory ~ chunk x fft_size^2 x 16 bytes)

    Returns
    -------
    (C, H, W) float64, ADU per pixel.
    """
    n_gal, n_band = np.shape(flux_bulge)
    if n_gal == 0:
        return np.zeros((len(psfs), stamp_size, stamp_size))
    if wrap_factor(psfs, pixel_scale) > 1:
        bulges, disks = component_profiles(galaxies.hlr_bulge, galaxies.hlr_disk, galaxies.e1, galaxies.e2)
        return render_galaxies(bulges=bulges, disks=disks, flux_bulge=flux_bulge, flux_disk=flux_disk,
                               positions=positions, psfs=psfs, stamp_size=stamp_size,
                               pixel_scale=pixel_scale, fft_size=fft_size).sum(axis=0)
    n = int(fft_size)
    ky = 2.0 * np.pi * np.fft.fftfreq(n, d=pixel_scale)
    kx = 2.0 * np.pi * np.fft.rfftfreq(n, d=pixel_scale)
    c0 = stamp_size // 2
    shift = (np.asarray(positions, dtype=float) - c0) * pixel_scale
    # Single precision for the sum (1e-7 relative, far below the rendering tolerance).
    acc = np.zeros((n_band, n * (n // 2 + 1)), dtype=np.complex64)
    for a in range(0, n_gal, chunk):
        s = slice(a, min(a + chunk, n_gal))
        kb, kd = _component_k(galaxies.hlr_bulge[s], galaxies.hlr_disk[s], galaxies.e1[s], galaxies.e2[s], kx, ky)
        phase = (np.exp(-1j * ky[None, :, None] * shift[s, 1, None, None]).astype(np.complex64)
                 * np.exp(-1j * kx[None, None, :] * shift[s, 0, None, None]).astype(np.complex64))
        g = kb.shape[0]
        # complex x complex matmul: numpy's BLAS path (a real left operand is not)
        acc += np.asarray(flux_bulge[s], np.complex64).T @ (kb.astype(np.float32) * phase).reshape(g, -1)
        acc += np.asarray(flux_disk[s], np.complex64).T @ (kd.astype(np.float32) * phase).reshape(g, -1)
    spec = acc.reshape(n_band, n, n // 2 + 1) * psf_transfer(tuple(psfs), n, pixel_scale).astype(np.float32)
    img = np.fft.irfft2(spec, s=(n, n), axes=(-2, -1))
    idx = (np.arange(stamp_size) - c0) % n
    return img[:, idx[:, None], idx[None, :]]


# --------------------------------------------------------------------------
# Field-mode blend
# --------------------------------------------------------------------------
def simulate_field_blend(config: SimConfig, *, seed: int, split: str, index: int) -> BlendSample:
    """Simulate field-mode blend ``index`` of ``split``: deterministic in its arguments.

    Returns a :class:`~deblendkit.sim.blend_mode.BlendSample` with one truth row per
    galaxy drawn (labelled ones first, in slot order, then the unlabelled ones).
    """
    p = field_scene(config, seed=seed, split=split, index=index)
    gals, pos, rng = p.galaxies, p.positions, p.rng
    survey = config.survey_obj
    bands = config.band_names
    n_band, size, k_max, scale = len(bands), config.stamp_size, config.max_galaxies, config.pixel_scale
    n, n_lab = len(gals), p.n_labelled

    # Rendered one by one: brighter than label_limit and centred in the stamp (the
    # labelled galaxies come first); every other galaxy in one batch.
    inside = np.all((pos >= -0.5) & (pos < size - 0.5), axis=1)
    one_by_one = inside & (gals.mag < config.label_limit)
    bright = np.flatnonzero(one_by_one)
    faint = np.flatnonzero(~one_by_one)
    fft_size = config.fft_size or field_fft_size(
        config, float(gals.hlr_bulge.max(initial=0.0)), float(gals.hlr_disk.max(initial=0.0)))
    b_gals = gals.take(bright)
    bulges, disks = component_profiles(b_gals.hlr_bulge, b_gals.hlr_disk, b_gals.e1, b_gals.e2)
    iso = render_galaxies(
        bulges=bulges, disks=disks, flux_bulge=p.flux_bulge[bright], flux_disk=p.flux_disk[bright],
        positions=pos[bright], psfs=p.psfs, stamp_size=size, pixel_scale=scale, fft_size=fft_size,
    ) if len(bright) else np.zeros((0, n_band, size, size))
    faint_light = render_sum(
        galaxies=gals.take(faint), flux_bulge=p.flux_bulge[faint], flux_disk=p.flux_disk[faint],
        positions=pos[faint], psfs=p.psfs, stamp_size=size, pixel_scale=scale, fft_size=fft_size,
    )
    scene = iso.sum(axis=0) + faint_light

    noisy, sigma_sky, variance = add_noise(config, scene, rng)

    # Labelled galaxies are the first n_lab of `gals` (rows 0..n_lab-1 of iso).
    isolated = np.zeros((k_max, n_band, size, size), dtype=np.float32)
    isolated[:n_lab] = iso[:n_lab]
    centers = np.full((k_max, 2), np.nan, dtype=np.float32)
    centers[:n_lab] = pos[:n_lab]

    # Per-image truth of the bright galaxies (NaN for the batch-drawn faint ones).
    stamp_flux = np.full((n, n_band), np.nan)
    blend_b = np.full(n, np.nan)
    snr = np.full(n, np.nan)
    contam = np.full(n, np.nan)
    if len(bright):
        stamp_flux[bright] = iso.sum(axis=(-2, -1))
        own = iso.reshape(len(bright), -1)
        oo = np.einsum("ij,ij->i", own, own)
        oa = own @ scene.reshape(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            blend_b[bright] = np.clip(1.0 - np.where(oa > 0, oo / oa, 1.0), 0.0, 1.0)
        snr[bright] = np.sqrt(np.einsum("kchw,kchw->k", iso, iso / variance[None]))
        cb = bands.index(contamination_band(config))
        contam[bright] = contamination(iso[:, cb], scene[cb], float(sigma_sky[cb]))

    flux = p.flux_bulge + p.flux_disk
    slot = np.full(n, -1, dtype=np.int16)
    slot[:n_lab] = np.arange(n_lab)
    labelled = np.zeros(n, dtype=np.int8)
    labelled[:n_lab] = 1
    truth = {"blend_index": np.full(n, index, dtype=np.int64), "slot": slot, "x": pos[:, 0], "y": pos[:, 1]}
    for c, b in enumerate(bands):
        truth[f"flux_{b}"] = flux[:, c]
    for c, b in enumerate(bands):
        truth[f"mag_{b}"] = survey.adu_to_mag(flux[:, c], b, exposure_fraction=config.exposure_fraction)
    for c, b in enumerate(bands):
        truth[f"stamp_flux_{b}"] = stamp_flux[:, c]
    truth.update(
        hlr_disk=gals.hlr_disk, hlr_bulge=gals.hlr_bulge, e1=gals.e1, e2=gals.e2,
        bulge_fraction=gals.bulge_fraction, redshift=gals.redshift,
        sed_bulge=gals.sed_bulge.astype(np.int16), sed_disk=gals.sed_disk.astype(np.int16),
        blendedness=blend_b, snr=snr, labelled=labelled, contamination=contam,
    )
    return BlendSample(
        blend=noisy.astype(np.float32),
        isolated=isolated,
        psf=render_psf_images(p.psfs, size=config.psf_size, pixel_scale=scale, fft_size=fft_size),
        noise_sigma=sigma_sky.astype(np.float32),
        centers=centers,
        n_galaxies=n_lab,
        truth=truth,
    )


# --------------------------------------------------------------------------
# A big field for validation
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Sky:
    """A simulated square field and its galaxies (each array of shape (n,)).

    Attributes
    ----------
    config : SimConfig
    band : str
        Band of the image and of the contamination measure.
    area_arcmin2 : float
        Area of the inner region, arcmin^2 (statistics use galaxies centred in it).
    mag : reference-band AB magnitude
    hlr_disk, hlr_bulge : arcsec
    bulge_fraction : reference band
    flux : total flux in ``band``, ADU
    x, y : pixels in ``image``
    inner : bool, centre in the inner region (not the margin)
    bright : bool, brighter than ``label_limit`` (the "labelled" galaxies of the field)
    contamination : float, footprint contamination in ``band``; NaN unless bright and inner
    sigma : float, background noise sigma of ``band``, ADU / pixel
    image : (H, W) float32 noiseless image of every galaxy in ``band``, ADU, or None
    """

    config: SimConfig
    band: str
    area_arcmin2: float
    mag: np.ndarray
    hlr_disk: np.ndarray
    hlr_bulge: np.ndarray
    bulge_fraction: np.ndarray
    flux: np.ndarray
    x: np.ndarray
    y: np.ndarray
    inner: np.ndarray
    bright: np.ndarray
    contamination: np.ndarray
    sigma: float
    image: np.ndarray | None


def _postage_size(hlr_bulge: np.ndarray, hlr_disk: np.ndarray, scale: float) -> np.ndarray:
    """Postage-stamp side (pixels) per galaxy: twice max(32 pixels, 40 bulge / 12 disk hlr)."""
    r = np.maximum.reduce([np.full(len(hlr_disk), 32.0),
                           np.ceil(40 * hlr_bulge / scale), np.ceil(12 * hlr_disk / scale)])
    return np.array([galsim.Image.good_fft_size(int(2 * v)) for v in r])


def _postage_stamps(galaxies: Galaxies, flux_bulge, flux_disk, offsets, transfer, size: int,
                    scale: float) -> np.ndarray:
    """Images (G, size, size) of galaxies centred at pixel ``size // 2 + offset``, one band.

    Parameters
    ----------
    galaxies : Galaxies (G)
    flux_bulge, flux_disk : (G,) float, ADU
    offsets : (G, 2) float, (dx, dy) sub-pixel offsets from the central pixel, pixels
    transfer : (size, size // 2 + 1) PSF x pixel response (:func:`deblendkit.sim.render.psf_transfer`)
    size : int, pixels (the FFT grid: light farther than size / 2 wraps around)
    scale : float, arcsec / pixel
    """
    ky = 2.0 * np.pi * np.fft.fftfreq(size, d=scale)
    kx = 2.0 * np.pi * np.fft.rfftfreq(size, d=scale)
    kb, kd = _component_k(galaxies.hlr_bulge, galaxies.hlr_disk, galaxies.e1, galaxies.e2, kx, ky)
    shift = np.asarray(offsets, float) * scale
    phase = (np.exp(-1j * ky[None, :, None] * shift[:, 1, None, None])
             * np.exp(-1j * kx[None, None, :] * shift[:, 0, None, None]))
    fb = np.asarray(flux_bulge, float)[:, None, None]
    fd = np.asarray(flux_disk, float)[:, None, None]
    spec = (fb * kb + fd * kd) * phase * transfer
    return np.fft.fftshift(np.fft.irfft2(spec, s=(size, size), axes=(-2, -1)), axes=(-2, -1))


def simulate_sky(
    config: SimConfig,
    *,
    area_arcmin2: float = 180.0,
    seed: int = 0,
    band: str | None = None,
    keep_image: bool = False,
) -> Sky:
    """Simulate a square field of sky and measure the blending of its bright galaxies.

    Galaxies are drawn as in a field-mode scene (counts, sizes, colours from
    ``config``) over a square of ``area_arcmin2`` plus ``field_margin`` on each
    side, with the survey's median PSF (no seeing scatter) in one band. Each is
    rendered (numpy k-space, as :func:`render_sum`) into its own postage stamp,
    big enough for 40 bulge / 12 disk half-light radii, added into the image;
    footprints of the bright galaxies are kept to measure their contamination
    once every galaxy is in.

    Parameters
    ----------
    config : SimConfig
    area_arcmin2 : float
        Inner area, arcmin^2 (0.05 deg^2 = 180).
    seed : int
        Master seed; the field uses stream ``SeedSequence(seed, spawn_key=(SKY_STREAM,))``.
    band : str, optional
        Band of the image; default :func:`contamination_band`.
    keep_image : bool
        Return the image too (4 bytes per pixel: 66 MB at 180 arcmin^2).

    Returns
    -------
    Sky
    """
    if isinstance(area_arcmin2, bool) or not isinstance(area_arcmin2, (int, float)) or not (
            0 < area_arcmin2 <= 3600):
        raise ConfigError(f"area_arcmin2 must be in (0, 3600] arcmin^2, got {area_arcmin2!r}")
    band = contamination_band(config) if band is None else band
    survey = config.survey_obj
    survey.band(band)
    scale = config.pixel_scale
    inner_px = int(math.ceil(math.sqrt(area_arcmin2) * 60.0 / scale))
    m = _margin_px(config)
    side = inner_px + 2 * m
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(SKY_STREAM,)))
    n = int(rng.poisson(mean_count(config, (side * scale) ** 2 / 3600.0)))
    mag = sample_magnitudes(rng, n, (config.field_bright_limit, config.field_faint_limit), config.count_slope)
    pos = rng.uniform(-0.5, side - 0.5, size=(n, 2))
    gals = sample_population(config, rng, n, mag=mag)
    one = config.replace(bands=(band,), seeing_scatter=0.0)
    psfs, _ = scene_psfs(one, rng)
    fb, fd = _band_fluxes(config, gals, (band,))
    fb, fd = fb[:, 0], fd[:, 0]
    sigma = math.sqrt(survey.sky_adu_per_pixel(band, exposure_fraction=config.exposure_fraction) / survey.gain)

    inner = np.all((pos >= m - 0.5) & (pos < m + inner_px - 0.5), axis=1)
    bright = mag < config.label_limit
    measured = inner & bright
    image = np.zeros((side, side), dtype=np.float32)
    footprints: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    sizes = _postage_size(gals.hlr_bulge, gals.hlr_disk, scale)
    centre = np.rint(pos).astype(int)
    for size in np.unique(sizes):
        size = int(size)
        members = np.flatnonzero(sizes == size)
        transfer = psf_transfer(tuple(psfs), size, scale)[0]
        chunk = max(1, 2**21 // (size * size))
        half = size // 2
        for a in range(0, len(members), chunk):
            g = members[a: a + chunk]
            stamps = _postage_stamps(gals.take(g), fb[g], fd[g], pos[g] - centre[g], transfer, size, scale)
            for j, gi in enumerate(g):
                cx, cy = centre[gi]
                x0, y0 = cx - half, cy - half
                xa, ya = max(x0, 0), max(y0, 0)
                xb, yb = min(x0 + size, side), min(y0 + size, side)
                if xa >= xb or ya >= yb:
                    continue
                cut = stamps[j, ya - y0: yb - y0, xa - x0: xb - x0]
                image[ya:yb, xa:xb] += cut
                if measured[gi]:
                    fp = cut > FOOTPRINT_NSIGMA * sigma
                    if not fp.any():
                        fp = cut == cut.max()
                    yy, xx = np.nonzero(fp)
                    footprints[gi] = ((yy + ya) * side + (xx + xa), cut[fp].astype(np.float64))
    contam = np.full(n, np.nan)
    flat = image.reshape(-1)
    for gi, (idx, own) in footprints.items():
        tot = flat[idx].astype(np.float64).sum()
        contam[gi] = float(np.clip((tot - own.sum()) / tot, 0.0, 1.0))
    log.info("sky: %d galaxies over %.1f arcmin^2 (+margin), %d measured", n, area_arcmin2, len(footprints))
    return Sky(
        config=config, band=band, area_arcmin2=(inner_px * scale) ** 2 / 3600.0, mag=gals.mag,
        hlr_disk=gals.hlr_disk, hlr_bulge=gals.hlr_bulge, bulge_fraction=gals.bulge_fraction,
        flux=fb + fd, x=pos[:, 0], y=pos[:, 1], inner=inner, bright=bright, contamination=contam,
        sigma=sigma, image=image if keep_image else None,
    )
