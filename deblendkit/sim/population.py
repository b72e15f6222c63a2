"""The embedded parametric galaxy population (nothing to download).

Each galaxy is a bulge (de Vaucouleurs) plus a disk (exponential) sharing one
ellipticity, with a bulge fraction, a redshift and one SED template per
component. Parameters are drawn in the reference band; the other bands follow
from the SED templates (:mod:`deblendkit.sim.seds`). The laws and their sources are
listed in :mod:`deblendkit.config`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deblendkit.config import SimConfig

__all__ = ["Galaxies", "sample_population", "sample_magnitudes", "disk_hlr_median"]

#: Exponential disk: half-light radius / scale length.
HLR_PER_SCALE_LENGTH = 1.678


@dataclass(frozen=True)
class Galaxies:
    """Parameters of n galaxies (each attribute an array of shape (n,)).

    Attributes
    ----------
    mag : reference-band AB magnitude.
    hlr_disk, hlr_bulge : half-light radii, arcsec.
    e1, e2 : ellipticity (shear convention), shared by bulge and disk.
    bulge_fraction : bulge share of the reference-band flux.
    redshift : redshift.
    sed_bulge, sed_disk : template indices into :data:`deblendkit.sim.seds.SED_NAMES`.
    """

    mag: np.ndarray
    hlr_disk: np.ndarray
    hlr_bulge: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    bulge_fraction: np.ndarray
    redshift: np.ndarray
    sed_bulge: np.ndarray
    sed_disk: np.ndarray

    def __len__(self) -> int:
        return len(self.mag)

    def take(self, idx) -> "Galaxies":
        """The galaxies at positions ``idx``."""
        return Galaxies(**{k: np.asarray(v)[idx] for k, v in vars(self).items()})

    @property
    def hlr(self) -> np.ndarray:
        """Flux-weighted half-light radius proxy, arcsec (for placement only)."""
        return self.bulge_fraction * self.hlr_bulge + (1 - self.bulge_fraction) * self.hlr_disk


def sample_magnitudes(rng: np.random.Generator, n: int, mag_range, slope: float) -> np.ndarray:
    """Magnitudes with cumulative counts ``N(<m) ~ 10**(slope m)`` in ``mag_range``."""
    lo, hi = mag_range
    u = rng.random(n)
    if slope == 0 or hi == lo:
        return lo + u * (hi - lo)
    a, b = 10.0 ** (slope * (lo - hi)), 1.0
    return hi + np.log10(a + u * (b - a)) / slope


def disk_hlr_median(config: SimConfig, mag: np.ndarray) -> np.ndarray:
    """Median disk half-light radius at magnitude ``mag``, arcsec (Miller et al. 2013)."""
    ln_rd = config.disk_size_zero + config.disk_size_slope * (np.asarray(mag) - config.disk_size_pivot)
    return HLR_PER_SCALE_LENGTH * np.exp(ln_rd)


def sample_population(config: SimConfig, rng: np.random.Generator, n: int, *, mag=None) -> Galaxies:
    """Draw ``n`` galaxies from the parametric population.

    Parameters
    ----------
    config : SimConfig
    rng : numpy Generator
        Consumed in a fixed order, so the same generator state gives the same galaxies.
    n : int
    mag : array (n,), optional
        Reference-band magnitudes to use instead of drawing them.
    """
    if mag is None:
        mag = sample_magnitudes(rng, n, config.mag_range, config.count_slope)
    mag = np.asarray(mag, dtype=float)
    lo, hi = config.hlr_range
    hlr_disk = disk_hlr_median(config, mag) * np.exp(config.size_scatter * rng.standard_normal(n))
    hlr_disk = np.clip(hlr_disk, lo, hi)
    ratio = rng.uniform(*config.bulge_size_ratio, size=n)
    hlr_bulge = np.clip(hlr_disk * ratio, lo, hi)

    e = config.ellipticity_sigma * rng.standard_normal((n, 2))
    norm = np.hypot(e[:, 0], e[:, 1])
    scale = np.where(norm > config.ellipticity_max, config.ellipticity_max / np.maximum(norm, 1e-12), 1.0)
    e = e * scale[:, None]

    bulgy = rng.random(n) < config.bulge_dominated_fraction
    bf = np.where(bulgy, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.3, n))

    z0 = np.maximum(0.0417 * mag - 0.744, 0.05)
    z = np.clip(z0 * rng.gamma(3.0, 1.0, n), 0.01, config.max_redshift)

    sed_bulge = np.zeros(n, dtype=np.int16)  # elliptical template
    late = rng.choice(np.array([1, 2, 3], dtype=np.int16), size=n, p=[0.4, 0.35, 0.25])
    sed_disk = np.where(bulgy, np.int16(1), late).astype(np.int16)
    return Galaxies(
        mag=mag, hlr_disk=hlr_disk, hlr_bulge=hlr_bulge, e1=e[:, 0], e2=e[:, 1],
        bulge_fraction=bf, redshift=z, sed_bulge=sed_bulge, sed_disk=sed_disk,
    )
