"""The embedded parametric source population (nothing to download).

``population="smooth"``: each galaxy is a bulge (de Vaucouleurs) plus a disk
(exponential) sharing one centre and one ellipticity, with a bulge fraction, a
redshift and one SED template per component: point-symmetric and monotonic.

``population="realistic"`` (the default) draws the same galaxies (the same
random numbers first, then the extra ones) and adds what real galaxies at
survey depth have (:func:`add_structure`):

* **star-forming knots**: a share ``knot_fraction`` of the disk's light in
  ``n_knots`` point-like knots scattered like the disk's light (GalSim
  ``RandomKnots`` with the disk as its profile), with their own, bluer SED
  (:data:`deblendkit.sim.seds.KNOT_SED`), so the morphology changes from band to band;
* a bulge with **its own ellipticity and position angle** and a small **centre
  offset** from the disk;
* **stars**: point sources (the PSF) with colours along the stellar locus
  (:func:`deblendkit.sim.seds.star_colour_table`), a share ``star_fraction`` of the sources.

Parameters are drawn in the magnitude band; the other bands follow from the SED
templates (:mod:`deblendkit.sim.seds`). The laws and their sources are listed in
:mod:`deblendkit.config`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deblendkit.config import SimConfig
from deblendkit.sim.seds import LOCUS_COUNTS

__all__ = ["Galaxies", "sample_population", "sample_magnitudes", "disk_hlr_median", "add_structure",
           "sample_locus", "GALAXY", "STAR"]

#: Exponential disk: half-light radius / scale length.
HLR_PER_SCALE_LENGTH = 1.678
#: ``kind`` codes of the truth table.
GALAXY, STAR = 0, 1
#: Size used to place a star beside its neighbours, arcsec (about the LSST PSF's half-light radius).
STAR_PLACEMENT_HLR = 0.35

_OPTIONAL = {  # field: (dtype, default from the smooth galaxy's own fields or a constant)
    "kind": (np.int8, GALAXY), "knot_fraction": (float, 0.0), "n_knots": (np.int16, 0),
    "knot_seed": (np.int64, 0), "e1_bulge": (float, "e1"), "e2_bulge": (float, "e2"),
    "bulge_dx": (float, 0.0), "bulge_dy": (float, 0.0), "locus": (float, -1.0),
}


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
    sed_bulge, sed_disk : template indices into :data:`deblendkit.sim.seds.SED_NAMES` (-1 for stars).

    Optional (the smooth population's values when not given):

    kind : :data:`GALAXY` (0) or :data:`STAR` (1).
    knot_fraction : share of the disk's magnitude-band flux in knots, in [0, 1).
    n_knots : number of knots (0 without knots).
    knot_seed : seed of the knots' positions (a ``galsim.BaseDeviate``), so the
        profile is a pure function of these parameters.
    e1_bulge, e2_bulge : the bulge's own ellipticity (default: the disk's ``e1, e2``).
    bulge_dx, bulge_dy : the bulge's centre offset from the disk's, arcsec.
    locus : position along the stellar locus table of a star (-1 for galaxies),
        see :func:`deblendkit.sim.seds.star_colour_table`.
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
    kind: np.ndarray | None = None
    knot_fraction: np.ndarray | None = None
    n_knots: np.ndarray | None = None
    knot_seed: np.ndarray | None = None
    e1_bulge: np.ndarray | None = None
    e2_bulge: np.ndarray | None = None
    bulge_dx: np.ndarray | None = None
    bulge_dy: np.ndarray | None = None
    locus: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.mag)
        for name, (dtype, default) in _OPTIONAL.items():
            value = getattr(self, name)
            if value is None:
                value = np.array(getattr(self, default), dtype=dtype) if isinstance(default, str) \
                    else np.full(n, default, dtype=dtype)
            object.__setattr__(self, name, np.asarray(value, dtype=dtype))

    def __len__(self) -> int:
        return len(self.mag)

    def take(self, idx) -> "Galaxies":
        """The galaxies at positions ``idx``."""
        return Galaxies(**{k: np.asarray(v)[idx] for k, v in vars(self).items()})

    @property
    def hlr(self) -> np.ndarray:
        """Flux-weighted half-light radius proxy, arcsec (for placement only; stars
        :data:`STAR_PLACEMENT_HLR`).
        """
        gal = self.bulge_fraction * self.hlr_bulge + (1 - self.bulge_fraction) * self.hlr_disk
        return np.where(self.kind == STAR, STAR_PLACEMENT_HLR, gal)


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
    """Draw ``n`` sources from the parametric population ``config.population``.

    The smooth galaxies are drawn first, with the same random numbers in both
    populations; ``"realistic"`` then adds knots, bulge offsets and
    misalignments, and turns a share of the sources into stars (:func:`add_structure`).

    Parameters
    ----------
    config : SimConfig
    rng : numpy Generator
        Consumed in a fixed order, so the same generator state gives the same galaxies.
    n : int
    mag : array (n,), optional
        Reference-band magnitudes to use instead of drawing them.
    """
    given = mag is not None
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
    gals = Galaxies(
        mag=mag, hlr_disk=hlr_disk, hlr_bulge=hlr_bulge, e1=e[:, 0], e2=e[:, 1],
        bulge_fraction=bf, redshift=z, sed_bulge=sed_bulge, sed_disk=sed_disk,
    )
    if config.population == "smooth":
        return gals
    return add_structure(config, rng, gals, keep_magnitudes=given)


def sample_locus(rng: np.random.Generator, n: int) -> np.ndarray:
    """Positions in [0, 1] along the stellar locus table, weighted by its star counts.

    A point of :data:`deblendkit.sim.seds.STELLAR_LOCUS` is chosen with probability
    proportional to the number of SDSS stars in its bin (the table's ``N``), then a
    uniform position within half a step of it.
    """
    counts = np.array(LOCUS_COUNTS, dtype=float)
    point = rng.choice(len(counts), size=n, p=counts / counts.sum())
    return np.clip((point + rng.uniform(-0.5, 0.5, n)) / (len(counts) - 1), 0.0, 1.0)


def add_structure(config: SimConfig, rng: np.random.Generator, gals: Galaxies, *,
                  keep_magnitudes: bool = False) -> Galaxies:
    """The realistic population from smooth galaxies: knots, bulge offsets and tilts, stars.

    Laws (options of :class:`~deblendkit.config.SimConfig`, sources there):

    * knots: a disk-dominated galaxy (bulge fraction < 0.5) puts a share
      ``U(knot_fraction_disk)`` of its disk light in knots, a bulge-dominated one
      ``U(knot_fraction_bulge)``; ``n_knots`` uniform in ``knot_number_range``;
    * the bulge's position angle turned by ``U(-bulge_rotation_max, bulge_rotation_max)``
      degrees from the disk's (same ellipticity modulus) and its centre offset by
      ``U(0, bulge_offset_max) x hlr_disk`` in a random direction (arcsec);
    * stars: each source is a star with probability ``star_fraction``; its magnitude
      is redrawn from counts of slope ``star_count_slope`` in ``mag_range`` (unless
      ``keep_magnitudes``: field mode draws every source's magnitude from its counts),
      its colour from a uniform position on the stellar locus table.

    The random numbers are drawn in a fixed order whatever the outcome, so a source's
    structure does not depend on whether its neighbours are stars.
    """
    n = len(gals)
    disky = gals.bulge_fraction < 0.5
    kf = np.where(disky, rng.uniform(*config.knot_fraction_disk, n), rng.uniform(*config.knot_fraction_bulge, n))
    lo, hi = config.knot_number_range
    n_knots = rng.integers(lo, hi + 1, n).astype(np.int16)
    knot_seed = rng.integers(1, 2**31 - 1, n)
    turn = np.deg2rad(rng.uniform(-config.bulge_rotation_max, config.bulge_rotation_max, n))
    cos2, sin2 = np.cos(2 * turn), np.sin(2 * turn)  # an ellipticity turns by twice the angle
    eb = np.stack([gals.e1 * cos2 - gals.e2 * sin2, gals.e1 * sin2 + gals.e2 * cos2], axis=1)
    r_off = rng.uniform(0.0, config.bulge_offset_max, n) * gals.hlr_disk
    phi = rng.uniform(0.0, 2 * np.pi, n)
    offset = np.stack([r_off * np.cos(phi), r_off * np.sin(phi)], axis=1)
    star = rng.random(n) < config.star_fraction
    star_mag = sample_magnitudes(rng, n, config.mag_range, config.star_count_slope)
    locus = sample_locus(rng, n)
    values = dict(vars(gals))
    values.update(kind=np.where(star, STAR, GALAXY), knot_fraction=np.where(star, 0.0, kf),
                  n_knots=np.where(star | (kf == 0), 0, n_knots), knot_seed=np.where(star, 0, knot_seed),
                  e1_bulge=np.where(star, 0.0, eb[:, 0]), e2_bulge=np.where(star, 0.0, eb[:, 1]),
                  bulge_dx=np.where(star, 0.0, offset[:, 0]), bulge_dy=np.where(star, 0.0, offset[:, 1]),
                  locus=np.where(star, locus, -1.0))
    if not keep_magnitudes:
        values["mag"] = np.where(star, star_mag, gals.mag)
    for name, star_value in (("hlr_disk", 0.0), ("hlr_bulge", 0.0), ("e1", 0.0), ("e2", 0.0),
                             ("bulge_fraction", 1.0), ("redshift", 0.0)):
        values[name] = np.where(star, star_value, values[name])
    for name in ("sed_bulge", "sed_disk"):
        values[name] = np.where(star, -1, values[name]).astype(np.int16)
    return Galaxies(**values)
