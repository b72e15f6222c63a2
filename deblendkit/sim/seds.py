"""Galaxy colours from SED templates seen through survey bandpasses.

GalSim ships the Coleman, Wu & Weedman (1980) templates extended to the UV and
IR (``CWW_*_ext.sed``). A galaxy component (bulge or disk) takes one template
and a redshift; its flux in each band follows from the template redshifted and
integrated through the band's throughput. To keep the simulation fast the
colours ``mag_band - mag_ref`` are tabulated once per (survey, bands) on a grid
of redshifts and interpolated linearly in redshift.
"""
from __future__ import annotations

import functools
import os

import galsim
import numpy as np

from deblendkit.sim.survey import bandpass

__all__ = ["SED_NAMES", "Z_GRID", "colour_table", "band_flux_ratios"]

#: Template names, from early to late type. Index = ``sed_bulge`` / ``sed_disk``.
SED_NAMES = ("CWW_E_ext", "CWW_Sbc_ext", "CWW_Scd_ext", "CWW_Im_ext")
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
