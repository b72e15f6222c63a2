"""One blended scene: galaxies placed, rendered alone and together, noise added.

Determinism: blend ``index`` of split ``split`` with ``seed`` uses its own
generator, ``SeedSequence(seed, spawn_key=(split_code, index))`` -- the
``index``-th child of the split's sequence -- so a blend is the same bytes
whatever the number of workers or the chunking.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deblendkit.sim.catalog import load_catalog
from deblendkit.config import SimConfig
from deblendkit.sim.population import Galaxies, sample_population
from deblendkit.sim.psf import scene_psfs
from deblendkit.sim.render import component_profiles, fft_size_for, render_galaxies, render_psf_images
from deblendkit.sim.seds import band_flux_ratios, colour_table

__all__ = ["BlendSample", "SceneParams", "SPLIT_CODES", "blend_rng", "scene_parameters", "simulate_blend", "place_galaxies",
           "blendedness", "truth_columns"]

#: Stream of each split in the seed sequence (train and test never share a blend).
SPLIT_CODES = {"train": 0, "test": 1, "train_mini": 2, "test_mini": 3}


@dataclass(frozen=True)
class BlendSample:
    """One simulated blend (K = max_galaxies slots, C bands, H = W = stamp size).

    Attributes
    ----------
    blend : (C, H, W) float32, ADU, with noise
    isolated : (K, C, H, W) float32, ADU, noiseless; zeros in empty slots
    psf : (C, P, P) float32, unit sum
    noise_sigma : (C,) float32, background sigma, ADU / pixel
    centers : (K, 2) float32, (x, y) pixels; NaN in empty slots
    n_galaxies : int
    truth : dict of column name -> (n_galaxies,) array (see data/README.md)
    """

    blend: np.ndarray
    isolated: np.ndarray
    psf: np.ndarray
    noise_sigma: np.ndarray
    centers: np.ndarray
    n_galaxies: int
    truth: dict


def split_code(split: str) -> int:
    from deblendkit.errors import ConfigError

    if split not in SPLIT_CODES:
        raise ConfigError(f"unknown split {split!r}; allowed: {sorted(SPLIT_CODES)}")
    return SPLIT_CODES[split]


def blend_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of blend ``index`` of ``split`` (independent of chunking)."""
    ss = np.random.SeedSequence(int(seed), spawn_key=(split_code(split), int(index)))
    return np.random.default_rng(ss)


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


def blendedness(isolated: np.ndarray) -> np.ndarray:
    """``1 - <own, own> / <own, all>`` per galaxy, over all bands and pixels.

    Parameters
    ----------
    isolated : (n, C, H, W) noiseless images of the n galaxies of a blend.
    """
    own = isolated.reshape(len(isolated), -1).astype(np.float64)
    total = own.sum(axis=0)
    oo = np.einsum("ij,ij->i", own, own)
    oa = own @ total
    with np.errstate(invalid="ignore", divide="ignore"):
        b = 1.0 - np.where(oa > 0, oo / oa, 1.0)
    return np.clip(b, 0.0, 1.0)


def truth_columns(bands) -> list[str]:
    """Names of the truth-table columns, in order."""
    cols = ["blend_index", "slot", "x", "y"]
    cols += [f"flux_{b}" for b in bands] + [f"mag_{b}" for b in bands]
    cols += [f"stamp_flux_{b}" for b in bands]
    cols += ["hlr_disk", "hlr_bulge", "e1", "e2", "bulge_fraction", "redshift",
             "sed_bulge", "sed_disk", "blendedness", "snr", "labelled", "contamination"]
    return cols


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
    flux_bulge, flux_disk : (n, C) ADU
    rng : the blend's generator, positioned after these draws (noise comes next)
    """

    galaxies: Galaxies
    positions: np.ndarray
    psfs: list
    flux_bulge: np.ndarray
    flux_disk: np.ndarray
    rng: np.random.Generator


def scene_parameters(config: SimConfig, *, seed: int, split: str, index: int) -> SceneParams:
    """Draw the galaxies, positions, PSFs and band fluxes of one scene."""
    rng = blend_rng(seed, split, index)
    survey = config.survey_obj
    bands = config.band_names
    n = int(rng.integers(config.min_galaxies, config.max_galaxies + 1))
    gals = _draw_galaxies(config, rng, n)
    order = np.argsort(gals.mag, kind="stable")  # slot 0 = brightest
    gals = gals.take(order)
    pos = place_galaxies(config, rng, gals.hlr)
    psfs, _ = scene_psfs(config, rng)

    # Fluxes per component and band (ADU) from the reference-band magnitude and the SEDs.
    table = colour_table(config.survey, bands, config.ref_band)
    f_ref = survey.mag_to_adu(gals.mag, config.ref_band, exposure_fraction=config.exposure_fraction)
    flux_bulge = (gals.bulge_fraction * f_ref)[:, None] * band_flux_ratios(table, gals.sed_bulge, gals.redshift)
    flux_disk = ((1 - gals.bulge_fraction) * f_ref)[:, None] * band_flux_ratios(table, gals.sed_disk, gals.redshift)
    return SceneParams(gals, pos, psfs, flux_bulge, flux_disk, rng)


def add_noise(config: SimConfig, scene: np.ndarray, rng: np.random.Generator):
    """Noisy scene, background sigma and per-pixel variance (ADU) of a noiseless scene (C, H, W).

    Gaussian noise with the Poisson variance ``(sky + source) / gain`` (see
    data/README.md); ``config.noise == "none"`` returns the scene unchanged.
    Consumes ``rng`` only for Gaussian noise.
    """
    survey = config.survey_obj
    sky = np.array([survey.sky_adu_per_pixel(b, exposure_fraction=config.exposure_fraction)
                    for b in config.band_names])
    sigma_sky = np.sqrt(sky / survey.gain)
    variance = (sky[:, None, None] + np.clip(scene, 0, None)) / survey.gain
    if config.noise == "gaussian":
        noisy = scene + rng.standard_normal(scene.shape) * np.sqrt(variance)
    else:
        noisy = scene.copy()
    return noisy, sigma_sky, variance


def simulate_blend(config: SimConfig, *, seed: int, split: str, index: int) -> BlendSample:
    """Simulate blend ``index`` of ``split``: deterministic in (config, seed, split, index)."""
    from deblendkit.sim import field_mode as field  # field imports this module

    if config.mode == "field":
        return field.simulate_field_blend(config, seed=seed, split=split, index=index)
    p = scene_parameters(config, seed=seed, split=split, index=index)
    gals, pos, psfs, flux_bulge, flux_disk, rng = (
        p.galaxies, p.positions, p.psfs, p.flux_bulge, p.flux_disk, p.rng)
    survey = config.survey_obj
    bands = config.band_names
    n_band, size, k_max = len(bands), config.stamp_size, config.max_galaxies
    scale = config.pixel_scale
    n = len(gals)

    bulges, disks = component_profiles(gals.hlr_bulge, gals.hlr_disk, gals.e1, gals.e2)
    fft_size = config.fft_size or fft_size_for(size, float(gals.hlr_bulge.max()), float(gals.hlr_disk.max()), scale)
    iso = render_galaxies(
        bulges=bulges, disks=disks, flux_bulge=flux_bulge, flux_disk=flux_disk, positions=pos,
        psfs=psfs, stamp_size=size, pixel_scale=scale, fft_size=fft_size,
    )  # (n, C, H, W) float64
    scene = iso.sum(axis=0)

    noisy, sigma_sky, variance = add_noise(config, scene, rng)

    isolated = np.zeros((k_max, n_band, size, size), dtype=np.float32)
    isolated[:n] = iso
    centers = np.full((k_max, 2), np.nan, dtype=np.float32)
    centers[:n] = pos

    flux = flux_bulge + flux_disk
    stamp_flux = iso.sum(axis=(-2, -1))
    snr = np.sqrt(np.einsum("kchw,kchw->k", iso, iso / variance[None]))
    cb = bands.index(field.contamination_band(config))
    truth = {
        "blend_index": np.full(n, index, dtype=np.int64),
        "slot": np.arange(n, dtype=np.int16),
        "x": pos[:, 0], "y": pos[:, 1],
    }
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
        blendedness=blendedness(iso), snr=snr, labelled=np.ones(n, dtype=np.int8),
        contamination=field.contamination(iso[:, cb], scene[cb], float(sigma_sky[cb])),
    )
    return BlendSample(
        blend=noisy.astype(np.float32),
        isolated=isolated,
        psf=render_psf_images(psfs, size=config.psf_size, pixel_scale=scale, fft_size=fft_size),
        noise_sigma=sigma_sky.astype(np.float32),
        centers=centers,
        n_galaxies=n,
        truth=truth,
    )
