"""Are the sources as lumpy as real ones? Rotational asymmetry, star share and star colours.

The checks that ``python -m deblendkit.cli.validate FILE`` adds for the realistic
population (:mod:`deblendkit.sim.population`), beside the counts, sizes and blend
fraction of :mod:`deblendkit.report.realism`.

Rotational asymmetry
--------------------
``A = sum |I - R180(I)| / (2 sum |I|)`` about the source's true centre, on its
noiseless image (no background term: the labels have no noise). ``R180`` is the
image rotated by 180 degrees about the centre: the image is zero-padded, moved
by the centre's sub-pixel offset with a Fourier phase (exact for the
band-limited, PSF-convolved labels) and flipped about a pixel centre. A point
source or any point-symmetric profile gives 0 (to ~1e-6); the goal of the
default data, measured on the r-band labels of the galaxies, is a median
``A >= 0.04`` and at least 20% of galaxies above 0.1.

Published values (Conselice 2003, ApJS 147, 1, R band, nearby galaxies at high
resolution; mean +- scatter as copied in public CAS-analysis code, the table
itself not seen): ellipticals 0.02 +- 0.02, early-type disks (Sa-Sb)
0.07 +- 0.04, late-type disks (Sc-Sd) 0.15 +- 0.06, irregulars 0.17 +- 0.10. They
are measured on resolved galaxies without a PSF, so each type's asymmetry is also
measured here on the unconvolved profile (:func:`profile_asymmetry`: 0.03"
pixels, smoothed by a 0.1" FWHM Gaussian, about HST resolution, as point-like
knots need some width) next to the label's: the survey PSF (~0.8") lowers it.
The kit's types: *bulge-dominated* (bulge fraction >= 0.5) against ellipticals,
*disk-dominated* against early- and late-type disks, *stars*.
"""
from __future__ import annotations

import math
import os

import galsim
import numpy as np

from deblendkit.report.realism import Check, judge
from deblendkit.sim.population import GALAXY, STAR, Galaxies
from deblendkit.sim.render import source_profiles
from deblendkit.sim.seds import locus_colours
from deblendkit.storage import read_dataset

__all__ = ["asymmetry", "profile_asymmetry", "structure_checks", "galaxies_from_truth", "locus_distance",
           "LOCUS_TOL", "MAX_BLENDS", "PUBLISHED_ASYMMETRY", "MEDIAN_GOAL", "HIGH_A", "HIGH_FRACTION_GOAL",
           "HIGHRES_SCALE", "HIGHRES_FWHM"]

#: Conselice 2003, R band: type -> (mean A, scatter).
PUBLISHED_ASYMMETRY = {
    "ellipticals": (0.02, 0.02), "early-type disks (Sa-Sb)": (0.07, 0.04),
    "late-type disks (Sc-Sd)": (0.15, 0.06), "irregulars": (0.17, 0.10),
}
#: Goals of the default data on the r-band labels of its galaxies.
MEDIAN_GOAL, HIGH_A, HIGH_FRACTION_GOAL = 0.04, 0.1, 0.20
#: Pixel (arcsec) and Gaussian smoothing FWHM (arcsec) of the high-resolution profile images.
HIGHRES_SCALE, HIGHRES_FWHM = 0.03, 0.1
#: Stars' median distance from the stellar locus in (g-r, r-i) allowed, mag (its width is 0.02-0.06).
LOCUS_TOL = 0.1
#: Blends of a file the checks read (the first ones): enough for medians to +-0.005.
MAX_BLENDS = 400
#: High-resolution profiles drawn per type (GalSim drawImage: ~10 ms each).
MAX_PROFILES = 100


def asymmetry(images: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Rotational asymmetry of each image about its centre.

    Parameters
    ----------
    images : (n, H, W) float
        Noiseless images (any units).
    centers : (n, 2) float
        (x, y) centre of each, pixels, 0-based (pixel i spans [i - 0.5, i + 0.5]).

    Returns
    -------
    (n,) float: ``sum |I - R180(I)| / (2 sum |I|)``, NaN for an all-zero image.
    """
    images = np.asarray(images, dtype=np.float64)
    n, h, w = images.shape
    size = 2 * max(h, w)
    pad = np.zeros((n, size, size))
    pad[:, :h, :w] = images
    c = np.asarray(centers, dtype=np.float64)
    whole = np.rint(c)
    frac = c - whole  # move the centre onto pixel `whole` by shifting the image by -frac
    ky = 2 * np.pi * np.fft.fftfreq(size)[None, :, None]
    kx = 2 * np.pi * np.fft.rfftfreq(size)[None, None, :]
    phase = np.exp(1j * (kx * frac[:, 0, None, None] + ky * frac[:, 1, None, None]))
    moved = np.fft.irfft2(np.fft.rfft2(pad) * phase, s=(size, size))
    out = np.empty(n)
    for i in range(n):
        cx, cy = int(whole[i, 0]) % size, int(whole[i, 1]) % size
        # R180 about pixel (cx, cy): index j -> 2 c - j (periodic on the padded grid)
        rolled = np.roll(moved[i][::-1, ::-1], (2 * cy + 1 - size, 2 * cx + 1 - size), axis=(0, 1))
        total = np.abs(moved[i]).sum()
        out[i] = np.abs(moved[i] - rolled).sum() / (2 * total) if total > 0 else math.nan
    return out


def profile_asymmetry(galaxies: Galaxies, *, scale: float = HIGHRES_SCALE, fwhm: float = HIGHRES_FWHM,
                      band_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Asymmetry of each source's unconvolved profile at high resolution, (n,).

    Each source (bulge + disk + knots, with the magnitude band's split of the light:
    ``band_weights`` multiply the bulge, disk and knot shares) is drawn on a grid
    of ``scale`` arcsec covering 6 disk half-light radii (at least 64 pixels),
    smoothed by a Gaussian of ``fwhm`` arcsec, and measured about its centre.
    Stars give 0.
    """
    bulges, disks, knots = source_profiles(galaxies)
    out = np.zeros(len(galaxies))
    smooth = galsim.Gaussian(fwhm=fwhm)
    for i in range(len(galaxies)):
        if galaxies.kind[i] == STAR:
            continue
        bf, kf = float(galaxies.bulge_fraction[i]), float(galaxies.knot_fraction[i])
        parts = [bulges[i] * (bf * band_weights[0]), disks[i] * ((1 - bf) * (1 - kf) * band_weights[1])]
        if knots[i] is not None:
            parts.append(knots[i] * ((1 - bf) * kf * band_weights[2]))
        side = max(64, int(2 * math.ceil(6 * float(galaxies.hlr_disk[i]) / scale)))
        img = galsim.Convolve(galsim.Add(parts), smooth).drawImage(nx=side, ny=side, scale=scale,
                                                                  method="no_pixel").array
        c = (side - 1) / 2.0  # GalSim centres an even image between its two central pixels
        out[i] = asymmetry(img[None], np.array([[c, c]]))[0]
    return out


def galaxies_from_truth(truth) -> Galaxies:
    """The :class:`~deblendkit.sim.population.Galaxies` of truth-table rows (a pandas DataFrame)."""
    names = ("mag", "hlr_disk", "hlr_bulge", "e1", "e2", "bulge_fraction", "redshift", "sed_bulge", "sed_disk",
             "kind", "knot_fraction", "n_knots", "knot_seed", "e1_bulge", "e2_bulge", "bulge_dx", "bulge_dy", "locus")
    cols = {n: truth[n].to_numpy() for n in names if n != "mag"}
    mag_col = next(c for c in truth.columns if c.startswith("mag_"))
    return Galaxies(mag=truth[mag_col].to_numpy(), **cols)


def locus_distance(gr: np.ndarray, ri: np.ndarray) -> np.ndarray:
    """Distance (mag) of each (g-r, r-i) point from the stellar locus polyline of
    :data:`deblendkit.sim.seds.STELLAR_LOCUS`.
    """
    pts = locus_colours()[:, 1:3]
    p = np.stack([gr, ri], axis=1)[:, None, :]
    a, b = pts[:-1][None], pts[1:][None]
    t = np.clip(np.sum((p - a) * (b - a), axis=-1) / np.sum((b - a) ** 2, axis=-1), 0.0, 1.0)
    return np.min(np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1), axis=1)


def _label_asymmetry(ds, truth, band: str, n_blends: int) -> np.ndarray:
    """A of each labelled source's noiseless image in ``band`` (NaN for rows not read)."""
    c = ds.bands.index(band)
    out = np.full(len(truth), np.nan)
    index, slot = truth["blend_index"].to_numpy(), truth["slot"].to_numpy()
    for start in range(0, n_blends, 100):
        stop = min(start + 100, n_blends)
        iso = np.asarray(ds.isolated[start:stop])[:, :, c]
        centers = np.asarray(ds.centers[start:stop])
        rows = np.flatnonzero((index >= start) & (index < stop) & (slot >= 0))
        if len(rows):
            b, k = index[rows] - start, slot[rows]
            out[rows] = asymmetry(iso[b, k], centers[b, k])
    return out


def _type_lines(a_label, a_profile, kind, bf, sel) -> list[Check]:
    types = (("bulge-dominated galaxies", sel & (kind == GALAXY) & (bf >= 0.5), "ellipticals"),
             ("disk-dominated galaxies", sel & (kind == GALAXY) & (bf < 0.5), "late-type disks (Sc-Sd)"),
             ("stars", sel & (kind == STAR), None))
    out = []
    for name, m, ref in types:
        if not m.any():
            continue
        pub, scatter = PUBLISHED_ASYMMETRY[ref] if ref else (0.0, 0.0)
        hi = a_profile[m & np.isfinite(a_profile)]
        note = (f"{int(m.sum())} sources; unconvolved {HIGHRES_FWHM:g}\" profile: median {np.median(hi):.3f}"
                if len(hi) else f"{int(m.sum())} sources")
        if ref:
            note += f"; published: {ref} (Conselice 2003)"
            if ref != "ellipticals":
                note += f", early-type disks {PUBLISHED_ASYMMETRY['early-type disks (Sa-Sb)'][0]:.2f}"
        out.append(Check(f"asymmetry median, {name} (label)", float(np.median(a_label[m])), pub,
                         f"+-{scatter:.2f}", "INFO", note))
    return out


def structure_checks(path: str | os.PathLike, *, max_blends: int = MAX_BLENDS) -> list[Check]:
    """The realism checks of a data file's source structure (see the module docstring).

    Asymmetry of the first ``max_blends`` blends' labels (r band, or the
    contamination band's fallback) by type, with the goal PASS/FAIL for a realistic
    population and INFO for a smooth one; the star share against ``star_fraction``
    (binomial 4 sigma); the stars' median distance from the stellar locus in
    (g-r, r-i) (needs g, r and i).
    """
    ds = read_dataset(path, in_memory=False)
    try:
        cfg = ds.attrs.get("config") or {}
        cfg = cfg if isinstance(cfg, dict) else {}
        bands, n_blends = ds.bands, min(len(ds), max_blends)
        truth = ds.truth
        band = "r" if "r" in bands else bands[-1]
        a_label = _label_asymmetry(ds, truth, band, n_blends)
    finally:
        ds.close()
    population = cfg.get("population", "smooth")
    kind = truth["kind"].to_numpy()
    bf = truth["bulge_fraction"].to_numpy()
    sel = np.isfinite(a_label)
    gal = sel & (kind == GALAXY)
    rng = np.random.default_rng(0)
    pick = np.zeros(len(truth), bool)
    for m in (gal & (bf >= 0.5), gal & (bf < 0.5)):
        rows = np.flatnonzero(m)
        pick[rng.permutation(rows)[:MAX_PROFILES]] = True
    a_profile = np.full(len(truth), np.nan)
    a_profile[pick] = profile_asymmetry(galaxies_from_truth(truth[pick]))
    goal = population == "realistic"
    out = []
    if gal.any():
        med, high = float(np.median(a_label[gal])), float(np.mean(a_label[gal] > HIGH_A))
        where = f"{int(gal.sum())} galaxies of {n_blends} blends, {band} band; goal of the realistic population"
        out.append(Check("asymmetry median, galaxies (label)", med, MEDIAN_GOAL, ">= goal",
                         judge(med >= MEDIAN_GOAL) if goal else "INFO", where))
        out.append(Check(f"share of galaxies with A > {HIGH_A:g} (label)", high, HIGH_FRACTION_GOAL, ">= goal",
                         judge(high >= HIGH_FRACTION_GOAL) if goal else "INFO", where))
    out += _type_lines(a_label, a_profile, kind, bf, sel)
    out += _star_checks(truth, cfg, bands)
    return out


def _star_checks(truth, cfg: dict, bands) -> list[Check]:
    kind = truth["kind"].to_numpy()
    p = float(cfg.get("star_fraction", 0.0)) if cfg.get("population", "smooth") == "realistic" else 0.0
    share = float(np.mean(kind == STAR)) if len(kind) else math.nan
    tol = 4 * math.sqrt(max(p * (1 - p), 1e-12) / max(len(kind), 1))
    out = [Check("star share of sources", share, p, f"+-{tol:.3f}", judge(abs(share - p) <= tol),
                 f"{int((kind == STAR).sum())} stars of {len(kind)} sources; reference: the config's star_fraction")]
    star = kind == STAR
    if star.any() and all(f"mag_{b}" in truth.columns for b in "gri"):
        gr = truth["mag_g"].to_numpy()[star] - truth["mag_r"].to_numpy()[star]
        ri = truth["mag_r"].to_numpy()[star] - truth["mag_i"].to_numpy()[star]
        d = float(np.median(locus_distance(gr, ri)))
        out.append(Check("stars: median distance from the locus (g-r, r-i)", d, 0.0, f"<= {LOCUS_TOL:g}",
                         judge(d <= LOCUS_TOL), f"{int(star.sum())} stars; locus: Covey et al. 2007 (SDSS colours)"))
    return out
