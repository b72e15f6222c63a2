"""Survey parameters (pixel scale, PSF, zero points, sky, depth) from surveycodex.

This module sits below :mod:`deblendkit.config` (which validates survey and band
names with it); its public face is :mod:`deblendkit.sim.survey`, which adds the
bandpasses.

The numbers are not retyped here: they come from `surveycodex`, a maintained
package that carries them with units. A survey is selected by its surveycodex
name (``"LSST"``, ``"HSC"``, ``"Euclid_VIS"``, ...).

Units used throughout the kit:

* pixel scale, PSF FWHM, sizes: arcsec;
* zero point: AB magnitude of a source giving 1 electron per second;
* sky brightness: AB mag / arcsec^2;
* exposure time: seconds (full survey depth, all visits);
* images and fluxes: ADU = electrons / gain, for the full exposure time.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import surveycodex

from deblendkit.errors import ConfigError

__all__ = ["Survey", "Band", "get_survey", "available_surveys"]


@dataclass(frozen=True)
class Band:
    """One filter of a survey.

    Attributes
    ----------
    name : str
        Filter name as surveycodex spells it (``"r"``, ``"IE"``...).
    psf_fwhm : float
        Median PSF full width at half maximum, arcsec.
    zeropoint : float
        AB magnitude giving 1 electron / s.
    sky_brightness : float
        Sky surface brightness, AB mag / arcsec^2.
    exposure_time : float
        Total exposure time at full depth, s.
    effective_wavelength : float
        Effective wavelength, nm.
    """

    name: str
    psf_fwhm: float
    zeropoint: float
    sky_brightness: float
    exposure_time: float
    effective_wavelength: float


@dataclass(frozen=True)
class Survey:
    """A survey: its pixel scale, gain, mirror and bands.

    Attributes
    ----------
    name : str
        surveycodex name.
    pixel_scale : float
        arcsec / pixel.
    gain : float
        electrons / ADU.
    mirror_diameter : float
        m.
    obscuration : float
        Linear central obscuration, fraction of the diameter.
    bands : tuple of Band
        All filters of the survey, in surveycodex order.
    """

    name: str
    pixel_scale: float
    gain: float
    mirror_diameter: float
    obscuration: float
    bands: tuple[Band, ...]

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)

    def band(self, name: str) -> Band:
        """The band called ``name``; ConfigError listing the survey's bands otherwise."""
        for b in self.bands:
            if b.name == name:
                return b
        raise ConfigError(
            f"unknown band {name!r} for survey {self.name}; allowed: {list(self.band_names)}",
            value=name, allowed=self.band_names,
        )

    def counts_per_second(self, mag: np.ndarray | float, band: str) -> np.ndarray:
        """Electrons per second of a source of AB magnitude ``mag`` in ``band``."""
        return 10.0 ** (-0.4 * (np.asarray(mag, dtype=float) - self.band(band).zeropoint))

    def mag_to_adu(self, mag: np.ndarray | float, band: str, *, exposure_fraction: float = 1.0):
        """Total flux in ADU (full exposure times ``exposure_fraction``) of AB magnitude ``mag``."""
        b = self.band(band)
        return self.counts_per_second(mag, band) * b.exposure_time * exposure_fraction / self.gain

    def adu_to_mag(self, adu: np.ndarray | float, band: str, *, exposure_fraction: float = 1.0):
        """Inverse of :meth:`mag_to_adu` (NaN for non-positive flux)."""
        b = self.band(band)
        adu = np.asarray(adu, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = adu * self.gain / (b.exposure_time * exposure_fraction)
            mag = b.zeropoint - 2.5 * np.log10(rate)
        return np.where(adu > 0, mag, np.nan)

    def sky_adu_per_pixel(self, band: str, *, exposure_fraction: float = 1.0) -> float:
        """Mean sky level in ADU per pixel for the full exposure."""
        b = self.band(band)
        return float(
            self.counts_per_second(b.sky_brightness, band)
            * self.pixel_scale**2
            * b.exposure_time
            * exposure_fraction
            / self.gain
        )


def available_surveys() -> list[str]:
    """Names of the surveys surveycodex knows."""
    return list(surveycodex.available_surveys)


@functools.lru_cache(maxsize=None)
def get_survey(name: str) -> Survey:
    """Load survey ``name`` from surveycodex.

    Raises
    ------
    ConfigError
        If surveycodex has no survey of that name (the message lists them).
    """
    names = available_surveys()
    if name not in names:
        raise ConfigError(f"unknown survey {name!r}; allowed: {names}", value=name, allowed=tuple(names))
    s = surveycodex.get_survey(name)
    bands = []
    for fname in s.available_filters:
        f = s.get_filter(fname)
        bands.append(
            Band(
                name=fname,
                psf_fwhm=float(f.psf_fwhm.to_value("arcsec")),
                zeropoint=float(f.zeropoint.to_value("mag")),
                sky_brightness=float(f.sky_brightness.to_value("mag/arcsec2")),
                exposure_time=float(f.full_exposure_time.to_value("s")),
                effective_wavelength=float(f.effective_wavelength.to_value("nm")),
            )
        )
    return Survey(
        name=name,
        pixel_scale=float(s.pixel_scale.to_value("arcsec")),
        gain=float(s.gain.to_value("electron/adu")),
        mirror_diameter=float(s.mirror_diameter.to_value("m")),
        obscuration=float(s.obscuration.value),
        bands=tuple(bands),
    )
