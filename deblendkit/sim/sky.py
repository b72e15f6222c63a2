"""The simulated sky: a big field of field mode's galaxies, and their blending.

:func:`simulate_sky` draws the same population as a field-mode scene
(:mod:`deblendkit.sim.field_mode`) over a square field (0.05 deg^2 = 180
arcmin^2 in the validation) plus a margin, renders every galaxy in one band
into one image (each in its own postage stamp, added in place: the "tiles" are
the galaxies' stamps), and measures the contamination
(:func:`deblendkit.sim.sample.contamination`, Sanchez et al. 2021) of every
galaxy brighter than ``label_limit`` in the inner area: this is the field
figure the published 62% is compared with (:mod:`deblendkit.report.realism`).
Unlike in a scene, the footprints are not cut by a stamp edge.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import galsim
import numpy as np

from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError
from deblendkit.sim.field_mode import margin_px, mean_count
from deblendkit.sim.population import Galaxies, sample_magnitudes, sample_population
from deblendkit.sim.psf import scene_psfs
from deblendkit.sim.render import component_k, psf_transfer
from deblendkit.sim.sample import FOOTPRINT_NSIGMA, band_fluxes, contamination_band
from deblendkit.sim.survey import get_survey

__all__ = ["SKY_STREAM", "Sky", "simulate_sky", "postage_size", "postage_stamps"]

log = logging.getLogger(__name__)

#: Seed-sequence stream of :func:`simulate_sky` (the splits use 0..3).
SKY_STREAM = 100


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


def postage_size(hlr_bulge: np.ndarray, hlr_disk: np.ndarray, scale: float) -> np.ndarray:
    """Postage-stamp side (pixels) per galaxy: twice max(32 pixels, 40 bulge / 12 disk hlr)."""
    r = np.maximum.reduce([np.full(len(hlr_disk), 32.0),
                           np.ceil(40 * hlr_bulge / scale), np.ceil(12 * hlr_disk / scale)])
    return np.array([galsim.Image.good_fft_size(int(2 * v)) for v in r])


def postage_stamps(galaxies: Galaxies, flux_bulge, flux_disk, offsets, transfer, size: int,
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
    kb, kd = component_k(galaxies.hlr_bulge, galaxies.hlr_disk, galaxies.e1, galaxies.e2, kx, ky,
                         e1_bulge=galaxies.e1_bulge, e2_bulge=galaxies.e2_bulge)
    shift = np.asarray(offsets, float) * scale
    phase = (np.exp(-1j * ky[None, :, None] * shift[:, 1, None, None])
             * np.exp(-1j * kx[None, None, :] * shift[:, 0, None, None]))
    fb = np.asarray(flux_bulge, float)[:, None, None]
    fd = np.asarray(flux_disk, float)[:, None, None]
    spec = (fb * kb + fd * kd) * phase * transfer
    return np.fft.fftshift(np.fft.irfft2(spec, s=(size, size), axes=(-2, -1)), axes=(-2, -1))


def _paint(image: np.ndarray, gals: Galaxies, fb: np.ndarray, fd: np.ndarray, pos: np.ndarray, psfs, *,
           scale: float, measured: np.ndarray, sigma: float) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Add every galaxy's postage stamp into ``image`` (side, side) float32, in place.

    Galaxies are grouped by stamp size and drawn in chunks of about 2^21 pixels.
    Returns the footprint of each ``measured`` galaxy: flat indices into ``image``
    and its own flux there (float64, ADU).
    """
    side = image.shape[0]
    footprints: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    sizes = postage_size(gals.hlr_bulge, gals.hlr_disk, scale)
    centre = np.rint(pos).astype(int)
    for size in np.unique(sizes):
        size = int(size)
        members = np.flatnonzero(sizes == size)
        transfer = psf_transfer(tuple(psfs), size, scale)[0]
        chunk = max(1, 2**21 // (size * size))
        half = size // 2
        for a in range(0, len(members), chunk):
            g = members[a: a + chunk]
            stamps = postage_stamps(gals.take(g), fb[g], fd[g], pos[g] - centre[g], transfer, size, scale)
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
    return footprints


def _footprint_contamination(image: np.ndarray, footprints: dict[int, tuple[np.ndarray, np.ndarray]],
                             n: int) -> np.ndarray:
    """(n,) contamination of the galaxies with a footprint in the finished image, NaN elsewhere."""
    contam = np.full(n, np.nan)
    flat = image.reshape(-1)
    for gi, (idx, own) in footprints.items():
        tot = flat[idx].astype(np.float64).sum()
        contam[gi] = float(np.clip((tot - own.sum()) / tot, 0.0, 1.0))
    return contam


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
    rendered (numpy k-space, as :func:`deblendkit.sim.render.render_sum`) into its own postage stamp,
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
        Band of the image; default :func:`deblendkit.sim.sample.contamination_band`.
    keep_image : bool
        Return the image too (4 bytes per pixel: 66 MB at 180 arcmin^2).

    Returns
    -------
    Sky
    """
    if isinstance(area_arcmin2, bool) or not isinstance(area_arcmin2, (int, float)) or not (
            0 < area_arcmin2 <= 3600):
        raise ConfigError(f"area_arcmin2 must be in (0, 3600] arcmin^2, got {area_arcmin2!r}",
                          value=area_arcmin2, allowed="(0, 3600] arcmin^2")
    band = contamination_band(config) if band is None else band
    survey = get_survey(config.survey)
    survey.band(band)
    scale = config.pixel_scale
    inner_px = int(math.ceil(math.sqrt(area_arcmin2) * 60.0 / scale))
    m = margin_px(config)
    side = inner_px + 2 * m
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(SKY_STREAM,)))
    n = int(rng.poisson(mean_count(config, (side * scale) ** 2 / 3600.0)))
    mag = sample_magnitudes(rng, n, (config.field_bright_limit, config.field_faint_limit), config.count_slope)
    pos = rng.uniform(-0.5, side - 0.5, size=(n, 2))
    gals = sample_population(config, rng, n, mag=mag)
    one = config.replace(bands=(band,), seeing_scatter=0.0)
    psfs, _ = scene_psfs(one, rng)
    fb, fd, fk = band_fluxes(config, gals, (band,))
    fb, fd = fb[:, 0], fd[:, 0] + fk[:, 0]  # knots drawn smooth, as part of the disk
    sigma = math.sqrt(survey.sky_adu_per_pixel(band, exposure_fraction=config.exposure_fraction) / survey.gain)

    inner = np.all((pos >= m - 0.5) & (pos < m + inner_px - 0.5), axis=1)
    bright = mag < config.label_limit
    measured = inner & bright
    image = np.zeros((side, side), dtype=np.float32)
    footprints = _paint(image, gals, fb, fd, pos, psfs, scale=scale, measured=measured, sigma=sigma)
    contam = _footprint_contamination(image, footprints, n)
    log.info("sky: %d galaxies over %.1f arcmin^2 (+margin), %d measured", n, area_arcmin2, len(footprints))
    return Sky(
        config=config, band=band, area_arcmin2=(inner_px * scale) ** 2 / 3600.0, mag=gals.mag,
        hlr_disk=gals.hlr_disk, hlr_bulge=gals.hlr_bulge, bulge_fraction=gals.bulge_fraction,
        flux=fb + fd, x=pos[:, 0], y=pos[:, 1], inner=inner, bright=bright, contamination=contam,
        sigma=sigma, image=image if keep_image else None,
    )
