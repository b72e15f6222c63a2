"""What both scene modes share: the sample they return, its seeds, noise and truth.

Determinism: blend ``index`` of split ``split`` with ``seed`` uses its own
generator, ``SeedSequence(seed, spawn_key=(split_code, index))`` -- the
``index``-th child of the split's sequence -- so a blend is the same bytes
whatever the number of workers or the chunking.

Blend fraction (Sanchez et al. 2021, arXiv:2103.02078)
------------------------------------------------------
A galaxy is *blended* when at least 1% of the flux in its own pixels comes from
other galaxies. Its own pixels (its footprint) are those where its noiseless,
PSF-convolved image in the r band (see :func:`contamination_band` when r is not
simulated) exceeds one background-noise sigma of that band (``noise_sigma``); a
galaxy with no such pixel uses its brightest pixel. ``contamination`` is
``sum_fp(total - own) / sum_fp(total)`` over the footprint, with ``total`` the
noiseless image of every galaxy; blended means ``contamination >= 0.01``. In a
scene the footprint is cut by the stamp edge; :func:`deblendkit.sim.sky.simulate_sky`
measures it on a large field, where it is not.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError
from deblendkit.sim.population import STAR, Galaxies
from deblendkit.sim.seds import KNOT_SED, band_flux_ratios, colour_table, star_colour_table, star_flux_ratios
from deblendkit.sim.survey import get_survey

__all__ = [
    "BlendSample", "SPLIT_CODES", "BLENDED_CONTAMINATION", "FOOTPRINT_NSIGMA", "split_code",
    "blend_rng", "band_fluxes", "add_noise", "blendedness", "contamination", "contamination_band",
    "truth_table", "TRUTH_COLUMNS", "STRUCTURE_COLUMNS",
]

#: Stream of each split in the seed sequence (train and test never share a blend).
SPLIT_CODES = {"train": 0, "test": 1, "train_mini": 2, "test_mini": 3}
#: Sanchez et al. 2021: blended when >= 1% of the footprint flux is from others.
BLENDED_CONTAMINATION = 0.01
#: Footprint: pixels where the galaxy's own noiseless image exceeds this many sky sigmas.
FOOTPRINT_NSIGMA = 1.0
#: The truth table's columns in file order, ``(name, dtype)``; ``{band}`` repeats a
#: column for every simulated band. :func:`deblendkit.storage.schema.truth_dtype`
#: builds the file's dtype from it; :func:`truth_table` returns the columns in this order.
TRUTH_COLUMNS: tuple[tuple[str, str], ...] = (
    ("blend_index", "i8"), ("slot", "i2"), ("x", "f8"), ("y", "f8"),
    ("flux_{band}", "f8"), ("mag_{band}", "f8"), ("stamp_flux_{band}", "f8"),
    ("hlr_disk", "f8"), ("hlr_bulge", "f8"), ("e1", "f8"), ("e2", "f8"), ("bulge_fraction", "f8"),
    ("redshift", "f8"), ("sed_bulge", "i2"), ("sed_disk", "i2"), ("blendedness", "f8"), ("snr", "f8"),
    ("labelled", "i1"), ("contamination", "f8"),
    ("kind", "i1"), ("knot_fraction", "f8"), ("n_knots", "i2"), ("knot_seed", "i8"), ("e1_bulge", "f8"),
    ("e2_bulge", "f8"), ("bulge_dx", "f8"), ("bulge_dy", "f8"), ("locus", "f8"),
)
#: Source-structure columns copied from :class:`~deblendkit.sim.population.Galaxies`.
STRUCTURE_COLUMNS = ("kind", "knot_fraction", "n_knots", "knot_seed", "e1_bulge", "e2_bulge", "bulge_dx", "bulge_dy",
                     "locus")


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
    """Seed-sequence stream of ``split``; ConfigError naming the allowed splits otherwise."""
    if split not in SPLIT_CODES:
        raise ConfigError(f"unknown split {split!r}; allowed: {sorted(SPLIT_CODES)}", value=split,
                          allowed=tuple(sorted(SPLIT_CODES)))
    return SPLIT_CODES[split]


def blend_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of blend ``index`` of ``split`` (independent of chunking)."""
    ss = np.random.SeedSequence(int(seed), spawn_key=(split_code(split), int(index)))
    return np.random.default_rng(ss)


def band_fluxes(config: SimConfig, gals: Galaxies,
                bands: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bulge, disk and knot fluxes (n, C), ADU, from the magnitude-band magnitudes and the SEDs.

    In the magnitude band a galaxy's flux splits as ``bulge_fraction`` (bulge),
    ``(1 - bulge_fraction)(1 - knot_fraction)`` (disk) and
    ``(1 - bulge_fraction) knot_fraction`` (knots, with the :data:`KNOT_SED` template
    at the galaxy's redshift); a star's flux is all in the bulge slot, with its
    stellar-locus colours. A band's ADU follow from its AB magnitude
    ``mag + colour`` through that band's zero point and exposure
    (:meth:`~deblendkit._surveys.Survey.mag_to_adu`), so ``mag_<band>`` in the truth
    table differs from the magnitude band's by the SED colour.
    """
    table = colour_table(config.survey, tuple(bands), config.magnitude_band)
    survey = get_survey(config.survey)
    ef = config.exposure_fraction
    f_ref = survey.mag_to_adu(gals.mag, config.magnitude_band, exposure_fraction=ef)
    # ADU of one unit of AB flux in each band, relative to the magnitude band (zero points, exposures)
    per_band = np.array([survey.mag_to_adu(0.0, b, exposure_fraction=ef) for b in bands])
    f_ref = f_ref[:, None] * (per_band / survey.mag_to_adu(0.0, config.magnitude_band, exposure_fraction=ef))
    star = gals.kind == STAR
    gal_sed = np.where(star, 0, gals.sed_bulge), np.where(star, 0, gals.sed_disk)
    disk = (1 - gals.bulge_fraction)[:, None] * f_ref
    fb = (gals.bulge_fraction[:, None] * f_ref) * band_flux_ratios(table, gal_sed[0], gals.redshift)
    fd = (disk * (1 - gals.knot_fraction)[:, None]) * band_flux_ratios(table, gal_sed[1], gals.redshift)
    fk = (disk * gals.knot_fraction[:, None]) * band_flux_ratios(table, np.full(len(gals), KNOT_SED), gals.redshift)
    if np.any(star):
        stars = star_colour_table(config.survey, tuple(bands), config.magnitude_band)
        fb[star] = f_ref[star] * star_flux_ratios(stars, gals.locus[star])
        fd[star] = 0.0
        fk[star] = 0.0
    return fb, fd, fk


def add_noise(config: SimConfig, scene: np.ndarray, rng: np.random.Generator):
    """Noisy scene, background sigma and per-pixel variance (ADU) of a noiseless scene (C, H, W).

    Gaussian noise with the Poisson variance ``(sky + source) / gain`` (see
    data/README.md); ``config.noise == "none"`` returns the scene unchanged.
    Consumes ``rng`` only for Gaussian noise.

    Returns
    -------
    noisy : (C, H, W) float64, ADU
    sigma_sky : (C,) float64, background sigma, ADU / pixel
    variance : (C, H, W) float64, ADU^2
    """
    survey = get_survey(config.survey)
    sky = np.array([survey.sky_adu_per_pixel(b, exposure_fraction=config.exposure_fraction)
                    for b in config.simulated_bands])
    sigma_sky = np.sqrt(sky / survey.gain)
    variance = (sky[:, None, None] + np.clip(scene, 0, None)) / survey.gain
    if config.noise == "gaussian":
        noisy = scene + rng.standard_normal(scene.shape) * np.sqrt(variance)
    else:
        noisy = scene.copy()
    return noisy, sigma_sky, variance


def blendedness(isolated: np.ndarray, total: np.ndarray | None = None) -> np.ndarray:
    """``1 - <own, own> / <own, all>`` per galaxy, over all bands and pixels.

    Parameters
    ----------
    isolated : (n, C, H, W) noiseless images of the n galaxies, ADU.
    total : (C, H, W), optional
        Noiseless image of every galaxy (default the sum of ``isolated``); field
        mode passes the scene, which also holds the batch-drawn galaxies.
    """
    if total is None:
        own = isolated.reshape(len(isolated), -1).astype(np.float64)
        all_light = own.sum(axis=0)
    else:
        own = isolated.reshape(len(isolated), -1)
        all_light = total.reshape(-1)
    oo = np.einsum("ij,ij->i", own, own)
    oa = own @ all_light
    with np.errstate(invalid="ignore", divide="ignore"):
        b = 1.0 - np.where(oa > 0, oo / oa, 1.0)
    return np.clip(b, 0.0, 1.0)


def contamination_band(config: SimConfig) -> str:
    """Band of the contamination measure: r (Sanchez et al. 2021) if simulated, else the
    magnitude band if simulated, else the last band simulated.
    """
    bands = config.simulated_bands
    if "r" in bands:
        return "r"
    return config.magnitude_band if config.magnitude_band in bands else bands[-1]


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


def truth_table(
    config: SimConfig,
    *,
    index: int,
    slot: np.ndarray,
    positions: np.ndarray,
    galaxies: Galaxies,
    flux: np.ndarray,
    stamp_flux: np.ndarray,
    per_image: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The truth columns of one blend, in file order (see data/README.md).

    Parameters
    ----------
    index : int, the blend's index in its split
    slot : (n,) int16, slot of each galaxy (-1 = unlabelled)
    positions : (n, 2) float, pixels
    galaxies : Galaxies (n)
    flux, stamp_flux : (n, C) float, total and in-stamp flux per band, ADU
    per_image : the columns ``blendedness``, ``snr``, ``labelled``, ``contamination``
    """
    survey = get_survey(config.survey)
    n = len(galaxies)
    truth = {"blend_index": np.full(n, index, dtype=np.int64), "slot": slot,
             "x": positions[:, 0], "y": positions[:, 1]}
    bands = config.simulated_bands
    for c, b in enumerate(bands):
        truth[f"flux_{b}"] = flux[:, c]
    for c, b in enumerate(bands):
        truth[f"mag_{b}"] = survey.adu_to_mag(flux[:, c], b, exposure_fraction=config.exposure_fraction)
    for c, b in enumerate(bands):
        truth[f"stamp_flux_{b}"] = stamp_flux[:, c]
    truth.update(
        hlr_disk=galaxies.hlr_disk, hlr_bulge=galaxies.hlr_bulge, e1=galaxies.e1, e2=galaxies.e2,
        bulge_fraction=galaxies.bulge_fraction, redshift=galaxies.redshift,
        sed_bulge=galaxies.sed_bulge.astype(np.int16), sed_disk=galaxies.sed_disk.astype(np.int16),
    )
    truth.update({name: getattr(galaxies, name) for name in STRUCTURE_COLUMNS})
    for name in ("blendedness", "snr", "labelled", "contamination"):
        truth[name] = per_image[name]
    order = [name.format(band=b) for name, _ in TRUTH_COLUMNS for b in (bands if "{band}" in name else "_")]
    return {name: truth[name] for name in order}
