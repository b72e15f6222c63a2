"""Blend mode: a chosen number of galaxies placed around the stamp centre.

Each blend draws ``min_galaxies..max_galaxies`` galaxies (the parametric
population or a user catalogue), places them with a controlled overlap
(:func:`place_galaxies`), renders them alone and together, and adds noise. The
seeds, noise and truth columns are those both modes share
(:mod:`deblendkit.sim.sample`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deblendkit.config import SimConfig
from deblendkit.sim.catalog import load_catalog
from deblendkit.sim.population import Galaxies, sample_population
from deblendkit.sim.psf import scene_psfs
from deblendkit.sim.render import fft_size_for, render_galaxies, render_psf_images, source_profiles
from deblendkit.sim.sample import (
    BlendSample,
    add_noise,
    band_fluxes,
    blend_rng,
    blendedness,
    contamination,
    contamination_band,
    truth_table,
)

__all__ = ["SceneParams", "scene_parameters", "place_galaxies", "simulate_blend_mode"]


def place_galaxies(config: SimConfig, rng: np.random.Generator, hlr: np.ndarray) -> np.ndarray:
    """Centres (n, 2) in pixels for galaxies of half-light radii ``hlr`` (arcsec).

    The first galaxy sits within a pixel of the stamp centre; each next one at a
    random angle from a random earlier galaxy, at ``u x (hlr_new + hlr_anchor)``
    with ``u`` uniform in ``separation_range`` (so the set spans severe to mild
    overlap), inside the ``edge_margin`` box and at least ``min_separation``
    pixels from every other centre. After 50 rejected tries a uniform position
    in the box is used (still respecting the minimum separation when possible).
    """
    n = len(hlr)
    size = config.stamp_size
    lo, hi = config.edge_margin, size - 1 - config.edge_margin
    c0 = size // 2
    pos = np.empty((n, 2))
    pos[0] = c0 + rng.uniform(-1.0, 1.0, 2)
    scale = config.pixel_scale
    for j in range(1, n):
        placed = pos[:j]
        for attempt in range(100):
            if attempt < 50:
                anchor = rng.integers(j)
                r = rng.uniform(*config.separation_range) * (hlr[j] + hlr[anchor]) / scale
                theta = rng.uniform(0, 2 * np.pi)
                cand = pos[anchor] + r * np.array([np.cos(theta), np.sin(theta)])
            else:
                cand = rng.uniform(lo, hi, 2)
            inside = lo <= cand[0] <= hi and lo <= cand[1] <= hi
            far = np.min(np.hypot(*(placed - cand).T)) >= config.min_separation
            if inside and far:
                break
        pos[j] = np.clip(cand, lo, hi)
    return pos


def _draw_galaxies(config: SimConfig, rng: np.random.Generator, n: int) -> Galaxies:
    if config.catalog is not None:
        cat = load_catalog(config.catalog)
        return cat.take(rng.integers(len(cat), size=n))
    return sample_population(config, rng, n)


@dataclass(frozen=True)
class SceneParams:
    """Everything drawn at random for one scene, before rendering.

    Attributes
    ----------
    galaxies : Galaxies, n of them, brightest first (slot order)
    positions : (n, 2) pixels
    psfs : list of C galsim PSF profiles
    flux_bulge, flux_disk, flux_knots : (n, C) ADU
    rng : the blend's generator, positioned after these draws (noise comes next)
    """

    galaxies: Galaxies
    positions: np.ndarray
    psfs: list
    flux_bulge: np.ndarray
    flux_disk: np.ndarray
    flux_knots: np.ndarray
    rng: np.random.Generator

    @property
    def flux(self) -> np.ndarray:
        """Total flux of each source in each band, (n, C) ADU."""
        return self.flux_bulge + self.flux_disk + self.flux_knots


def scene_parameters(config: SimConfig, *, seed: int, split: str, index: int) -> SceneParams:
    """Draw the galaxies, positions, PSFs and band fluxes of one scene."""
    rng = blend_rng(seed, split, index)
    n = int(rng.integers(config.min_galaxies, config.max_galaxies + 1))
    gals = _draw_galaxies(config, rng, n)
    order = np.argsort(gals.mag, kind="stable")  # slot 0 = brightest
    gals = gals.take(order)
    pos = place_galaxies(config, rng, gals.hlr)
    psfs, _ = scene_psfs(config, rng)
    # Fluxes per component and band (ADU) from the magnitude-band magnitude and the SEDs.
    flux_bulge, flux_disk, flux_knots = band_fluxes(config, gals, config.simulated_bands)
    return SceneParams(gals, pos, psfs, flux_bulge, flux_disk, flux_knots, rng)


def simulate_blend_mode(config: SimConfig, *, seed: int, split: str, index: int) -> BlendSample:
    """Simulate blend-mode blend ``index`` of ``split``: deterministic in (config, seed, split, index).

    Every galaxy is labelled; slot order is brightness. Use
    :func:`deblendkit.sim.modes.simulate_scene` to simulate the mode ``config.mode`` names.
    """
    p = scene_parameters(config, seed=seed, split=split, index=index)
    gals, pos = p.galaxies, p.positions
    n_band, size, k_max = len(config.simulated_bands), config.stamp_size, config.max_galaxies
    scale = config.pixel_scale
    n = len(gals)

    bulges, disks, knots = source_profiles(gals)
    fft_size = config.fft_size or fft_size_for(size, float(gals.hlr_bulge.max()), float(gals.hlr_disk.max()), scale)
    iso = render_galaxies(
        bulges=bulges, disks=disks, knots=knots, flux_bulge=p.flux_bulge, flux_disk=p.flux_disk,
        flux_knots=p.flux_knots, positions=pos, psfs=p.psfs, stamp_size=size, pixel_scale=scale, fft_size=fft_size,
    )  # (n, C, H, W) float64
    scene = iso.sum(axis=0)

    noisy, sigma_sky, variance = add_noise(config, scene, p.rng)

    isolated = np.zeros((k_max, n_band, size, size), dtype=np.float32)
    isolated[:n] = iso
    centers = np.full((k_max, 2), np.nan, dtype=np.float32)
    centers[:n] = pos

    cb = config.simulated_bands.index(contamination_band(config))
    per_image = {
        "blendedness": blendedness(iso),
        "snr": np.sqrt(np.einsum("kchw,kchw->k", iso, iso / variance[None])),
        "labelled": np.ones(n, dtype=np.int8),
        "contamination": contamination(iso[:, cb], scene[cb], float(sigma_sky[cb])),
    }
    truth = truth_table(config, index=index, slot=np.arange(n, dtype=np.int16), positions=pos, galaxies=gals,
                        flux=p.flux, stamp_flux=iso.sum(axis=(-2, -1)), per_image=per_image)
    return BlendSample(
        blend=noisy.astype(np.float32),
        isolated=isolated,
        psf=render_psf_images(p.psfs, size=config.psf_size, pixel_scale=scale, fft_size=fft_size),
        noise_sigma=sigma_sky.astype(np.float32),
        centers=centers,
        n_galaxies=n,
        truth=truth,
    )
