"""Per-scene, per-band PSFs.

Each scene draws one seeing factor ``exp(N(0, seeing_scatter))`` shared by all
its bands (the atmosphere is one), multiplying the survey's median FWHM of each
band. The stored PSF image is the *effective* PSF (atmosphere convolved with
the pixel), normalised to unit sum, centred on the central pixel of an odd
``psf_size`` stamp.
"""
from __future__ import annotations

import galsim
import numpy as np

from deblendkit.config import SimConfig
from deblendkit.sim.survey import get_survey

__all__ = ["scene_psfs", "psf_images"]


def scene_psfs(config: SimConfig, rng: np.random.Generator) -> tuple[list, np.ndarray]:
    """The GalSim PSF profile of every band of one scene.

    Returns
    -------
    psfs : list of galsim.GSObject, one per band (unit flux, no pixel)
    fwhm : ndarray (C,), arcsec
    """
    survey = get_survey(config.survey)
    factor = float(np.exp(config.seeing_scatter * rng.standard_normal()))
    fwhm = np.array([survey.band(b).psf_fwhm * factor for b in config.simulated_bands])
    if config.psf_model == "kolmogorov":
        psfs = [galsim.Kolmogorov(fwhm=float(f)) for f in fwhm]
    else:
        psfs = [galsim.Moffat(beta=config.moffat_beta, fwhm=float(f)) for f in fwhm]
    return psfs, fwhm


def psf_images(psfs, *, size: int, pixel_scale: float) -> np.ndarray:
    """Effective (pixel-convolved) PSF images, (C, size, size) float32, unit sum."""
    out = np.empty((len(psfs), size, size), dtype=np.float32)
    for c, p in enumerate(psfs):
        arr = p.drawImage(nx=size, ny=size, scale=pixel_scale).array
        out[c] = arr / arr.sum()
    return out
