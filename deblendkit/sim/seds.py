"""Source colours from SED templates seen through survey bandpasses.

GalSim ships the Coleman, Wu & Weedman (1980) templates extended to the UV and
IR (``CWW_*_ext.sed``). A galaxy component (bulge or disk) takes one template
and a redshift; its flux in each band follows from the template redshifted and
integrated through the band's throughput. To keep the simulation fast the
colours ``mag_band - mag_ref`` are tabulated once per (survey, bands) on a grid
of redshifts and interpolated linearly in redshift.

Knots (the realistic population's star-forming regions) take the bluest
template, :data:`KNOT_SED` (``CWW_Im_ext``), at their galaxy's redshift, so a
knotty galaxy's morphology changes from band to band. (The DC2 Run 2 image
simulations gave knots the disk's SED, LSSTDESC/sims_GCRCatSimInterface
``CatalogClasses.py``; the current LSSTDESC/skyCatalogs gives them their own SED
component, ``sed_val_knots``.)

Stars take their colours from a published stellar locus (:data:`STELLAR_LOCUS`):
each locus point becomes a piecewise power-law SED whose synthetic LSST ugriz
colours are the table's, integrated through the survey's bandpasses
(:func:`star_colour_table`; y and other filters are its extrapolation).
"""
from __future__ import annotations

import functools
import os

import galsim
import numpy as np

from deblendkit.sim.survey import bandpass

__all__ = ["SED_NAMES", "Z_GRID", "KNOT_SED", "STELLAR_LOCUS", "LOCUS_COUNTS", "SDSS_WAVELENGTHS", "colour_table",
           "band_flux_ratios", "star_colour_table", "star_flux_ratios", "locus_colours"]

#: Template names, from early to late type. Index = ``sed_bulge`` / ``sed_disk``.
SED_NAMES = ("CWW_E_ext", "CWW_Sbc_ext", "CWW_Scd_ext", "CWW_Im_ext")
#: Template of the star-forming knots: the bluest, irregular-galaxy one.
KNOT_SED = 3
#: Redshift grid of the colour tables.
Z_GRID = np.round(np.arange(0.0, 3.0001, 0.05), 4)


@functools.lru_cache(maxsize=None)
def _sed(name: str):
    path = os.path.join(galsim.meta_data.share_dir, "SEDs", f"{name}.sed")
    return galsim.SED(path, wave_type="Ang", flux_type="flambda")


@functools.lru_cache(maxsize=None)
def colour_table(survey_name: str, bands: tuple[str, ...], ref_band: str) -> np.ndarray:
    """Colours ``mag_band - mag_ref``, shape (n_templates, n_z, n_bands), AB mag.

    Parameters
    ----------
    survey_name : str
        surveycodex survey name (selects the bandpasses).
    bands : tuple of str
        Bands of the table's last axis.
    ref_band : str
        Band in which magnitudes are drawn.
    """
    bps = {b: bandpass(survey_name, b) for b in set(bands) | {ref_band}}
    table = np.empty((len(SED_NAMES), len(Z_GRID), len(bands)))
    for t, name in enumerate(SED_NAMES):
        sed = _sed(name)
        for iz, z in enumerate(Z_GRID):
            sz = sed.atRedshift(float(z))
            mref = sz.calculateMagnitude(bps[ref_band])
            for ib, b in enumerate(bands):
                table[t, iz, ib] = sz.calculateMagnitude(bps[b]) - mref
    table.setflags(write=False)
    return table


def band_flux_ratios(table: np.ndarray, template: np.ndarray, redshift: np.ndarray) -> np.ndarray:
    """Flux in each band relative to the reference band.

    Parameters
    ----------
    table : ndarray (n_templates, n_z, n_bands)
        From :func:`colour_table`.
    template : int array (n,)
        Template index per galaxy component.
    redshift : float array (n,)
        Redshift per galaxy component, clipped to the grid.

    Returns
    -------
    ndarray (n, n_bands)
        ``10 ** (-0.4 * colour)``, linear in redshift between grid points.
    """
    template = np.asarray(template, dtype=int)
    z = np.clip(np.asarray(redshift, dtype=float), Z_GRID[0], Z_GRID[-1])
    pos = (z - Z_GRID[0]) / (Z_GRID[1] - Z_GRID[0])
    lo = np.minimum(np.floor(pos).astype(int), len(Z_GRID) - 2)
    w = (pos - lo)[:, None]
    colour = (1 - w) * table[template, lo] + w * table[template, lo + 1]
    return 10.0 ** (-0.4 * colour)


#: SDSS effective wavelengths of ugriz, nm (Fukugita et al. 1996, AJ 111, 1748, Table 2a, lambda_eff).
SDSS_WAVELENGTHS = (355.1, 468.6, 616.6, 748.0, 893.2)
#: Median colours (u-g, g-r, r-i, i-z) of stars along the SDSS stellar locus, blue to red, AB mag,
#: at g-i = 0.1, 0.3, ..., 3.5 and 4.0: Covey et al. 2007 (AJ 134, 2398), their machine-readable
#: median locus ("Locus colors as a function of g-i color", ``medianlocus.tbl``, as shipped with the
#: stellar-locus-regression code of High et al. 2009, fwhigh/stellar-locus-regression,
#: ``example_data/covey/medianlocus.tbl``), every tenth 0.02-step row. The locus's width there is
#: 0.02-0.06 mag in g-r, r-i and i-z.
STELLAR_LOCUS = (
    (1.05, 0.09, 0.02, -0.03),  # g-i = 0.10
    (1.07, 0.24, 0.06, 0.00),  # g-i = 0.30
    (1.14, 0.37, 0.13, 0.03),  # g-i = 0.50
    (1.40, 0.51, 0.19, 0.06),  # g-i = 0.70
    (1.73, 0.66, 0.24, 0.11),  # g-i = 0.90
    (2.04, 0.80, 0.30, 0.14),  # g-i = 1.10
    (2.28, 0.94, 0.35, 0.18),  # g-i = 1.30
    (2.46, 1.08, 0.41, 0.22),  # g-i = 1.50
    (2.57, 1.21, 0.49, 0.26),  # g-i = 1.70
    (2.61, 1.31, 0.59, 0.32),  # g-i = 1.90
    (2.62, 1.38, 0.71, 0.39),  # g-i = 2.10
    (2.60, 1.41, 0.88, 0.47),  # g-i = 2.30
    (2.59, 1.41, 1.08, 0.57),  # g-i = 2.50
    (2.61, 1.42, 1.28, 0.67),  # g-i = 2.70
    (2.61, 1.45, 1.45, 0.77),  # g-i = 2.90
    (2.62, 1.50, 1.60, 0.85),  # g-i = 3.10
    (2.60, 1.54, 1.75, 0.94),  # g-i = 3.30
    (2.46, 1.58, 1.92, 1.03),  # g-i = 3.50
    (2.14, 1.66, 2.34, 1.28),  # g-i = 4.00
)
#: Number of SDSS stars in each bin of :data:`STELLAR_LOCUS` (the same table's ``N``).
LOCUS_COUNTS = (25, 49, 1198, 2747, 2535, 2015, 1520, 1709, 1718, 2200, 2798, 2857, 3278, 2747, 1502, 611, 242, 91, 17)


def locus_colours() -> np.ndarray:
    """:data:`STELLAR_LOCUS` as an array (n_points, 4): u-g, g-r, r-i, i-z."""
    return np.array(STELLAR_LOCUS, dtype=float)


def _power_law_sed(node_mags: np.ndarray):
    """Piecewise power-law f_nu SED through AB magnitudes at :data:`SDSS_WAVELENGTHS`.

    Extrapolated from the end segments to 300 nm and 1100 nm (the LSST u and y edges).
    """
    lam = np.log(np.array(SDSS_WAVELENGTHS))
    logf = -0.4 * np.log(10.0) * np.asarray(node_mags, dtype=float)
    lo, hi = np.log(300.0), np.log(1100.0)
    f_lo = logf[0] + (logf[1] - logf[0]) / (lam[1] - lam[0]) * (lo - lam[0])
    f_hi = logf[-1] + (logf[-1] - logf[-2]) / (lam[-1] - lam[-2]) * (hi - lam[-1])
    wave = np.exp(np.concatenate([[lo], lam, [hi]]))
    fnu = np.exp(np.concatenate([[f_lo], logf, [f_hi]]))
    return galsim.SED(galsim.LookupTable(wave, fnu, interpolant="linear"), wave_type="nm", flux_type="fnu")


def _star_sed(colours: np.ndarray, iterations: int = 8):
    """The SED of one locus point: its ugriz colours reproduced through the LSST ugriz bandpasses.

    The published colours are SDSS ones; they are taken as LSST ugriz colours (the
    filters are close; the kit does not transform them) and the node magnitudes of a
    :func:`_power_law_sed` are corrected until its synthetic LSST colours match them
    (to < 1e-3 mag after 8 iterations); what the SED then gives in y (and in any
    other bandpass) is an extrapolation.
    """
    ug, gr, ri, iz = colours
    target = np.array([ug + gr, gr, 0.0, -ri, -ri - iz])  # ugriz relative to r
    bps = [bandpass("LSST", b) for b in "ugriz"]
    nodes = target.copy()
    for _ in range(iterations):
        sed = _power_law_sed(nodes)
        synth = np.array([sed.calculateMagnitude(bp) for bp in bps])
        nodes += target - (synth - synth[2])
    return _power_law_sed(nodes)


@functools.lru_cache(maxsize=None)
def star_colour_table(survey_name: str, bands: tuple[str, ...], ref_band: str) -> np.ndarray:
    """Colours ``mag_band - mag_ref`` of the stellar locus points, (n_points, n_bands), AB mag."""
    bps = {b: bandpass(survey_name, b) for b in set(bands) | {ref_band}}
    points = locus_colours()
    table = np.empty((len(points), len(bands)))
    for i, colours in enumerate(points):
        sed = _star_sed(colours)
        mref = sed.calculateMagnitude(bps[ref_band])
        for ib, b in enumerate(bands):
            table[i, ib] = sed.calculateMagnitude(bps[b]) - mref
    table.setflags(write=False)
    return table


def star_flux_ratios(table: np.ndarray, locus: np.ndarray) -> np.ndarray:
    """Flux in each band relative to the reference band of stars at ``locus`` in [0, 1].

    ``locus`` is the position along the table (0 = bluest point, 1 = reddest),
    linear between points. Returns (n, n_bands).
    """
    pos = np.clip(np.asarray(locus, dtype=float), 0.0, 1.0) * (len(table) - 1)
    lo = np.minimum(np.floor(pos).astype(int), len(table) - 2)
    w = (pos - lo)[:, None]
    return 10.0 ** (-0.4 * ((1 - w) * table[lo] + w * table[lo + 1]))
