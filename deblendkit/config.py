"""The simulation configuration: one frozen, validated dataclass.

Every option of the simulator lives in :class:`SimConfig`. It is validated on
construction (a wrong value raises :class:`~deblendkit.errors.ConfigError`
naming the option, the value and what is allowed), serialises to JSON (stored
in every data file) and loads from a JSON or TOML file.

The population defaults cite their sources (checked by :mod:`deblendkit.report.realism`):

* magnitude counts: ``log10 N(<i) = 0.31 i + const`` (LSST Science Book,
  arXiv:0912.0201, eq. 3.7);
* disk scale length: ``ln(r_d / arcsec) = -1.145 - 0.269 (i - 23)``
  (Miller et al. 2013, arXiv:1210.8201, eq. B1), half-light radius
  ``1.678 r_d``;
* redshift: ``p(z) ~ z^2 exp(-z / z0)``, ``z0 = 0.0417 i - 0.744``
  (LSST Science Book eq. 3.8).

Field mode (``mode="field"``, :mod:`deblendkit.sim.field_mode`):

* surface density ``N(<i) = 46 x 10^(0.31 (i - 25))`` galaxies per arcmin^2
  (LSST Science Book eq. 3.7; it gives 57.0 at i < 25.3, the LSST CatSim sky
  catalogue ~54);
* labelled galaxies: i < 25.3, the LSST "gold sample" limit (LSST Science Book
  section 3.7.2; Ivezic et al. 2019, arXiv:0805.2366);
* faint limit i = 27: galaxies down to about the 10-year 5-sigma point-source
  depth (i ~ 26.8, Ivezic et al. 2019) are rendered as unlabelled light.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from dataclasses import dataclass
from typing import Any

from deblendkit._surveys import Survey, available_surveys, get_survey
from deblendkit.errors import ConfigError

__all__ = ["SimConfig", "load_config", "scaled_disk_size_zero"]

PSF_MODELS = ("kolmogorov", "moffat")
NOISE_MODELS = ("gaussian", "none")
MODES = ("blend", "field")
POPULATIONS = ("realistic", "smooth")


def _positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> None:
    """ConfigError unless ``value`` is an integer (or finite number) > 0 (>= 0 with ``allow_zero``).

    Not :mod:`deblendkit._checks`: its one message per check would change these two.
    """
    kind = int if integer else (int, float)
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, kind) or (
        not integer and not math.isfinite(value)
    ):
        what = "an integer" if integer else "a finite number"
        raise ConfigError(f"{name} must be {what}, got {value!r}", value=value, allowed=f"{what} {bound}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {bound}, got {value!r}", value=value, allowed=bound)


def _finite(name: str, value: Any) -> None:
    """ConfigError unless ``value`` is a finite int or float (``bool`` refused).

    Not :func:`deblendkit._checks.finite_number`: it takes any ``numbers.Real`` (a
    ``numpy.float32`` too, which the config's JSON could not hold).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}", value=value,
                          allowed="a finite number")


def _interval(name: str, value: Any, lo: float, hi: float) -> None:
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigError(f"{name} must be a pair (low, high) of numbers, got {value!r}", value=value,
                          allowed=f"{lo} <= low <= high <= {hi}")
    a, b = value
    if not (lo <= a <= b <= hi) or not (math.isfinite(a) and math.isfinite(b)):
        raise ConfigError(f"{name} must satisfy {lo} <= low <= high <= {hi}, got {tuple(value)!r}",
                          value=tuple(value), allowed=f"{lo} <= low <= high <= {hi}")


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """All options of the blend simulator.

    Survey and images
    -----------------
    survey : str
        surveycodex survey name (``"LSST"``, ``"HSC"``, ``"Euclid_VIS"``...).
    bands : tuple of str or None
        Bands to simulate, in this order; None = all bands of the survey.
    reference_band : str or None
        Band in which magnitudes (and sizes) are drawn; None = ``"i"`` if the
        survey has it, else its reddest band.
    stamp_size : int
        Side of the square scene, pixels.
    psf_size : int
        Side of the stored PSF image, pixels, odd, <= stamp_size.
    exposure_fraction : float
        Depth as a fraction of the survey's full exposure time (1 = full depth).
    psf_model : {"kolmogorov", "moffat"}
        Atmospheric PSF profile; FWHM = survey median per band times a per-scene
        seeing factor.
    seeing_scatter : float
        Standard deviation of ln(seeing factor), shared by all bands of a scene.
    moffat_beta : float
        Moffat index when ``psf_model="moffat"``.
    noise : {"gaussian", "none"}
        Gaussian noise with Poisson variance (sky + source), or noiseless.

    Scenes
    ------
    mode : {"blend", "field"}
        ``"blend"``: 2..max_galaxies galaxies placed around the centre with
        controlled overlap. ``"field"``: a patch of simulated sky, its blends
        come out of the number counts (see :mod:`deblendkit.sim.field_mode` and the
        ``field_*`` options).
    min_galaxies, max_galaxies : int
        Number of galaxies per blend, drawn uniformly in [min, max].
    separation_range : (float, float)
        Separation of a new galaxy from its anchor galaxy in units of the sum
        of their half-light radii; uniform in this range (small = severe
        overlap, > 2 = mild).
    min_separation : float
        Minimum distance between two galaxy centres, pixels.
    edge_margin : int
        Galaxy centres stay at least this many pixels from the stamp edge
        (blend mode).

    Field mode
    ----------
    field_count_density : float
        Galaxies per arcmin^2 brighter than 25 in the reference band; the
        cumulative counts are ``field_count_density x 10^(count_slope (m - 25))``
        (46 and 0.31: LSST Science Book eq. 3.7).
    field_bright_limit, field_faint_limit : float
        Reference-band magnitudes of the brightest and faintest galaxies drawn
        (every one is rendered into the blend).
    label_limit : float
        Galaxies brighter than this, with their centre in the stamp, are
        labelled (up to ``max_galaxies``, brightest first); the others are
        unlabelled light (``labelled = 0``, ``slot = -1`` in the truth table).
    field_margin : float
        Width of the band around the stamp where galaxies are also drawn, so
        that neighbours just outside spill light into it, arcsec.
    field_min_labelled : int
        A scene with fewer labelled galaxies is redrawn from the next
        seed-sequence child of its blend (see :mod:`deblendkit.sim.field_mode`).
    field_max_tries : int
        Draws per blend before giving up with an error.

    Population (reference band)
    ---------------------------
    mag_range : (float, float)
        Reference-band AB magnitude range.
    count_slope : float
        d log10 N / d mag of the cumulative counts (0.31 for i band).
    disk_size_zero, disk_size_slope, disk_size_pivot, size_scatter : float
        ``ln(r_d / arcsec) = zero + slope (mag - pivot)`` plus Gaussian scatter
        of ``size_scatter`` in ln r_d (Miller et al. 2013).
    hlr_range : (float, float)
        Clip of half-light radii, arcsec.
    bulge_size_ratio : (float, float)
        Bulge half-light radius / disk half-light radius, uniform.
    bulge_dominated_fraction : float
        Fraction of galaxies with bulge fraction in [0.5, 1] (else [0, 0.3]).
    ellipticity_sigma, ellipticity_max : float
        Per-component sigma of the (shear convention) ellipticity, and its cap.
    max_redshift : float
        Redshifts are clipped to [0.01, max_redshift].
    population : {"realistic", "smooth"}
        ``"smooth"``: bulge + disk galaxies with one centre and one ellipticity
        (point-symmetric, monotonic). ``"realistic"`` (default): the same galaxies
        with star-forming knots, tilted and offset bulges, and stars (the options
        below; :func:`deblendkit.sim.population.add_structure`).
    knot_fraction_disk, knot_fraction_bulge : (float, float)
        Share of the disk's light in knots, uniform in this range, for disk-dominated
        (bulge fraction < 0.5) and bulge-dominated galaxies.
    knot_number_range : (int, int)
        Number of knots per galaxy, uniform (inclusive).
    bulge_rotation_max : float
        The bulge's position angle differs from the disk's by ``U(-max, max)``, degrees
        (its ellipticity modulus is the disk's).
    bulge_offset_max : float
        The bulge's centre is offset from the disk's by ``U(0, max) x hlr_disk`` in a
        random direction.
    star_fraction : float
        Share of the sources that are stars, in [0, 1).
    star_count_slope : float
        d log10 N / d mag of the stars' cumulative counts in ``mag_range``.

    Realistic-population defaults and their sources: knot positions drawn from
    the disk's own light follow LSSTDESC/skyCatalogs (``galaxy_object.py``:
    ``RandomKnots(npoints, profile=disk)``), whose diffsky galaxies draw ``n_knot``
    uniform below a maximum of 3 to 50 growing with stellar mass (``diffsky_object.py``);
    the cap of 0.5 on the knots' share of the disk light is the DC2 Run 2 one for
    large disks (LSSTDESC/sims_GCRCatSimInterface, ``instance_crawler.py``:
    ``np.clip(knots_flux_ratio, 0, 0.5)``). How cosmoDC2 drew the share itself we
    could not find, so the ranges (0.2-0.5 for disks, 0-0.1 for bulges; 3-30 knots)
    are the kit's choice, set so that the labels reach the asymmetry goal of
    ``python -m deblendkit.cli.validate`` (:mod:`deblendkit.report.morphology`): on 80
    default test blends, median A 0.062 and 25% of galaxies above 0.1 (0.053 and 19%
    with 0.1-0.5 and 3-50).
    The bulge offset (up to 0.1 hlr) and rotation (up to 45 degrees) follow
    LSSTDESC/descwl-shear-sims (``galaxies.py``: ``max_bulge_shift_frac=0.1``,
    ``max_bulge_rot=np.pi/4``; its rotation range is ``[-pi/4, pi/16]``, ours symmetric).
    No published star share of the sources at i < 25.3 at high Galactic latitude
    was found to cite: 0.08 is the kit's choice (~5 stars per arcmin^2 beside the 57
    galaxies of the counts above; descwl-shear-sims draws 2-100 stars per arcmin^2
    from an LSST stellar-density map, ``stars.py``), as is the star counts' slope of
    0.1 (flatter than the galaxies': the stellar halo thins out at faint magnitudes).
    catalog : str or None
        Optional user catalogue (FITS or CSV) of galaxies to draw from instead
        of the parametric population (see :mod:`deblendkit.sim.catalog`).

    Rendering
    ---------
    fft_size : int or None
        FFT grid size, pixels; None = chosen per scene from the galaxies' and
        PSF's extent (see :mod:`deblendkit.sim.render`).
    """

    survey: str = "LSST"
    bands: tuple[str, ...] | None = None
    reference_band: str | None = None
    stamp_size: int = 48
    psf_size: int = 25
    exposure_fraction: float = 1.0
    psf_model: str = "kolmogorov"
    seeing_scatter: float = 0.1
    moffat_beta: float = 2.5
    noise: str = "gaussian"

    mode: str = "blend"
    min_galaxies: int = 2
    max_galaxies: int = 6
    separation_range: tuple[float, float] = (0.5, 5.0)
    min_separation: float = 2.0
    edge_margin: int = 8

    field_count_density: float = 46.0
    field_bright_limit: float = 18.0
    field_faint_limit: float = 27.0
    label_limit: float = 25.3
    field_margin: float = 4.0
    field_min_labelled: int = 2
    field_max_tries: int = 100

    mag_range: tuple[float, float] = (19.0, 25.3)
    count_slope: float = 0.31
    disk_size_zero: float = -1.145
    disk_size_slope: float = -0.269
    disk_size_pivot: float = 23.0
    size_scatter: float = 0.3
    hlr_range: tuple[float, float] = (0.05, 3.0)
    bulge_size_ratio: tuple[float, float] = (0.3, 0.7)
    bulge_dominated_fraction: float = 0.25
    ellipticity_sigma: float = 0.25
    ellipticity_max: float = 0.7
    max_redshift: float = 3.0
    catalog: str | None = None
    population: str = "realistic"
    knot_fraction_disk: tuple[float, float] = (0.2, 0.5)
    knot_fraction_bulge: tuple[float, float] = (0.0, 0.1)
    knot_number_range: tuple[int, int] = (3, 30)
    bulge_rotation_max: float = 45.0
    bulge_offset_max: float = 0.1
    star_fraction: float = 0.08
    star_count_slope: float = 0.1

    fft_size: int | None = None

    def __post_init__(self) -> None:
        self._check_survey()
        self._check_sizes()
        self._check_numbers()
        self._check_choices()
        self._check_population()
        self._check_fft_size()
        self._check_field()
        self._check_structure()
        self._check_catalog()

    def _check_survey(self) -> Survey:
        """Validate ``survey``, ``bands`` (made a tuple) and ``reference_band``."""
        survey = get_survey(self.survey) if isinstance(self.survey, str) else None
        if survey is None:
            raise ConfigError(f"survey must be a survey name (str), got {self.survey!r}", value=self.survey,
                              allowed=tuple(available_surveys()))
        if self.bands is not None:
            if not isinstance(self.bands, (tuple, list)) or not all(isinstance(b, str) for b in self.bands):
                raise ConfigError(f"bands must be a list of band names, got {self.bands!r}", value=self.bands,
                                  allowed=survey.band_names)
            object.__setattr__(self, "bands", tuple(self.bands))
            if len(self.bands) == 0:
                raise ConfigError("bands must name at least one band, got []", value=self.bands,
                                  allowed=survey.band_names)
            for b in self.bands:
                survey.band(b)
            if len(set(self.bands)) != len(self.bands):
                raise ConfigError(f"bands must not repeat, got {list(self.bands)}", value=self.bands,
                                  allowed=survey.band_names)
        if self.reference_band is not None:
            survey.band(self.reference_band)
        return survey

    def _check_sizes(self) -> None:
        """Validate the integer sizes: stamp, PSF, galaxy counts, edge margin."""
        for name in ("stamp_size", "psf_size", "min_galaxies", "max_galaxies"):
            _positive(name, getattr(self, name), integer=True)
        _positive("edge_margin", self.edge_margin, integer=True, allow_zero=True)
        for name, hi in (("stamp_size", 1024), ("psf_size", 255), ("max_galaxies", 64)):
            if getattr(self, name) > hi:
                raise ConfigError(f"{name} must be <= {hi}, got {getattr(self, name)!r}",
                                  value=getattr(self, name), allowed=f"<= {hi}")
        if self.max_galaxies < 2:
            raise ConfigError(f"max_galaxies must be >= 2 (a blend has 2 or more galaxies), got {self.max_galaxies}",
                              value=self.max_galaxies, allowed=">= 2")
        if self.min_galaxies < 1 or self.min_galaxies > self.max_galaxies:
            raise ConfigError(
                f"min_galaxies must be in [1, max_galaxies={self.max_galaxies}], got {self.min_galaxies}",
                value=self.min_galaxies, allowed=(1, self.max_galaxies),
            )
        if self.psf_size % 2 == 0:
            raise ConfigError(f"psf_size must be odd (PSF centred on a pixel), got {self.psf_size}",
                              value=self.psf_size, allowed="an odd integer")
        if self.stamp_size < 16:
            raise ConfigError(f"stamp_size must be >= 16 pixels, got {self.stamp_size}", value=self.stamp_size,
                              allowed=">= 16")
        if self.psf_size > self.stamp_size:
            raise ConfigError(
                f"stamp_size ({self.stamp_size} pixels) is smaller than the PSF image "
                f"(psf_size={self.psf_size}); use stamp_size >= psf_size",
                value=self.stamp_size, allowed=f">= psf_size={self.psf_size}",
            )
        if 2 * self.edge_margin >= self.stamp_size - 2:
            raise ConfigError(
                f"edge_margin={self.edge_margin} leaves no room in a {self.stamp_size}-pixel stamp; "
                f"use edge_margin < {(self.stamp_size - 2) // 2}",
                value=self.edge_margin, allowed=f"< {(self.stamp_size - 2) // 2}",
            )

    def _check_numbers(self) -> None:
        """Validate the real-valued options with a sign or a range (depth, PSF, scatters)."""
        for name in ("exposure_fraction", "moffat_beta", "max_redshift"):
            _positive(name, getattr(self, name))
        for name in ("seeing_scatter", "size_scatter", "ellipticity_sigma", "min_separation"):
            _positive(name, getattr(self, name), allow_zero=True)
        _positive("count_slope", self.count_slope, allow_zero=True)
        for name in ("disk_size_zero", "disk_size_slope", "disk_size_pivot"):
            _finite(name, getattr(self, name))
        if self.moffat_beta <= 1.1 and self.psf_model == "moffat":
            raise ConfigError(f"moffat_beta must be > 1.1, got {self.moffat_beta}", value=self.moffat_beta,
                              allowed="> 1.1")
        # Upper bounds: beyond them the physics is meaningless and GalSim's FFTs explode.
        for name, hi in (("exposure_fraction", 1e3), ("moffat_beta", 100.0), ("seeing_scatter", 0.5),
                         ("size_scatter", 2.0), ("ellipticity_sigma", 10.0), ("max_redshift", 10.0)):
            if getattr(self, name) > hi:
                raise ConfigError(f"{name} must be <= {hi:g}, got {getattr(self, name)!r}",
                                  value=getattr(self, name), allowed=f"<= {hi:g}")
        if self.exposure_fraction < 1e-4:
            raise ConfigError(f"exposure_fraction must be >= 1e-4, got {self.exposure_fraction!r}",
                              value=self.exposure_fraction, allowed=">= 1e-4")

    def _check_choices(self) -> None:
        """Validate the options naming a model or mode."""
        for name, allowed in (("psf_model", PSF_MODELS), ("noise", NOISE_MODELS), ("mode", MODES),
                              ("population", POPULATIONS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {list(allowed)}, got {value!r}", value=value,
                                  allowed=allowed)

    def _check_population(self) -> None:
        """Validate the intervals (made float tuples) and the population fractions."""
        _interval("separation_range", self.separation_range, 0.0, 100.0)
        _interval("mag_range", self.mag_range, 10.0, 35.0)
        _interval("hlr_range", self.hlr_range, 1e-3, 5.0)
        if self.hlr_range[0] <= 0:
            raise ConfigError(f"hlr_range must be > 0 arcsec, got {self.hlr_range}", value=self.hlr_range,
                              allowed="> 0 arcsec")
        _interval("bulge_size_ratio", self.bulge_size_ratio, 0.01, 10.0)
        for name in ("separation_range", "mag_range", "hlr_range", "bulge_size_ratio"):
            # + 0.0 turns -0.0 into 0.0 (numpy refuses uniform(0.0, -0.0))
            object.__setattr__(self, name, tuple(float(v) + 0.0 for v in getattr(self, name)))
        for name in ("bulge_dominated_fraction", "ellipticity_max"):
            _finite(name, getattr(self, name))
        if not (0.0 <= self.bulge_dominated_fraction <= 1.0):
            raise ConfigError(
                f"bulge_dominated_fraction must be in [0, 1], got {self.bulge_dominated_fraction!r}",
                value=self.bulge_dominated_fraction, allowed=(0.0, 1.0),
            )
        if not (0.0 < self.ellipticity_max < 1.0):
            raise ConfigError(f"ellipticity_max must be in (0, 1), got {self.ellipticity_max!r}",
                              value=self.ellipticity_max, allowed="(0, 1)")

    def _check_structure(self) -> None:
        """Validate the realistic population's options (checked for both populations)."""
        for name in ("knot_fraction_disk", "knot_fraction_bulge"):
            _interval(name, getattr(self, name), 0.0, 0.95)
            object.__setattr__(self, name, tuple(float(v) + 0.0 for v in getattr(self, name)))
        rng = tuple(self.knot_number_range) if isinstance(self.knot_number_range, list) else self.knot_number_range
        object.__setattr__(self, "knot_number_range", rng)
        if (not isinstance(rng, tuple) or len(rng) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                  for v in rng) or not 1 <= rng[0] <= rng[1] <= 500):
            raise ConfigError(f"knot_number_range must be two integers 1 <= lo <= hi <= 500, got {rng!r}",
                              value=rng, allowed="1 <= lo <= hi <= 500")
        for name, hi in (("bulge_rotation_max", 90.0), ("bulge_offset_max", 2.0), ("star_count_slope", 1.0)):
            _positive(name, getattr(self, name), allow_zero=True)
            if getattr(self, name) > hi:
                raise ConfigError(f"{name} must be <= {hi:g}, got {getattr(self, name)!r}",
                                  value=getattr(self, name), allowed=f"<= {hi:g}")
        _finite("star_fraction", self.star_fraction)
        if not 0.0 <= self.star_fraction < 1.0:
            raise ConfigError(f"star_fraction must be in [0, 1), got {self.star_fraction!r}",
                              value=self.star_fraction, allowed="[0, 1)")

    def _check_fft_size(self) -> None:
        if self.fft_size is not None:
            _positive("fft_size", self.fft_size, integer=True)
            if self.fft_size > 8192:
                raise ConfigError(f"fft_size must be <= 8192, got {self.fft_size!r}", value=self.fft_size,
                                  allowed=f"[stamp_size={self.stamp_size}, 8192]")
            if self.fft_size < self.stamp_size:
                raise ConfigError(
                    f"fft_size must be >= stamp_size={self.stamp_size}, got {self.fft_size}",
                    value=self.fft_size, allowed=f"[stamp_size={self.stamp_size}, 8192]",
                )

    def _check_catalog(self) -> None:
        if self.catalog is not None:
            if not isinstance(self.catalog, str):
                raise ConfigError(f"catalog must be a file path, got {self.catalog!r}", value=self.catalog,
                                  allowed="a file path (str)")
            if not os.path.isfile(self.catalog):
                raise ConfigError(f"catalog file {self.catalog!r} does not exist", value=self.catalog,
                                  allowed="an existing file")

    def _check_field(self) -> None:
        """Validate the ``field_*`` options (checked in every mode)."""
        _positive("field_count_density", self.field_count_density)
        _positive("field_margin", self.field_margin, allow_zero=True)
        _positive("field_min_labelled", self.field_min_labelled, integer=True)
        _positive("field_max_tries", self.field_max_tries, integer=True)
        for name in ("field_bright_limit", "field_faint_limit", "label_limit"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 10.0 <= v <= 35.0:
                raise ConfigError(f"{name} must be a magnitude in [10, 35], got {v!r}", value=v,
                                  allowed=(10.0, 35.0))
        if not self.field_bright_limit < self.label_limit <= self.field_faint_limit:
            raise ConfigError(
                "field mode needs field_bright_limit < label_limit <= field_faint_limit, got "
                f"{self.field_bright_limit} / {self.label_limit} / {self.field_faint_limit}",
                value=(self.field_bright_limit, self.label_limit, self.field_faint_limit),
                allowed="field_bright_limit < label_limit <= field_faint_limit",
            )
        if self.field_min_labelled > self.max_galaxies:
            raise ConfigError(
                f"field_min_labelled must be in [1, max_galaxies={self.max_galaxies}], "
                f"got {self.field_min_labelled}",
                value=self.field_min_labelled, allowed=(1, self.max_galaxies),
            )
        if self.mode == "field":
            if self.count_slope <= 0:
                raise ConfigError(
                    f"count_slope must be > 0 in field mode (the counts rise with magnitude), "
                    f"got {self.count_slope}",
                    value=self.count_slope, allowed="> 0",
                )
            if self.catalog is not None:
                raise ConfigError(
                    "catalog is not supported in field mode (it draws the parametric population "
                    f"from the number counts); got catalog={self.catalog!r} with mode='field'",
                    value=self.catalog, allowed=(None,),
                )

    # -- derived ---------------------------------------------------------
    @property
    def simulated_bands(self) -> tuple[str, ...]:
        """Bands simulated, in order: ``bands``, or every band of the survey when it is None."""
        return self.bands if self.bands is not None else get_survey(self.survey).band_names

    @property
    def magnitude_band(self) -> str:
        """Band in which magnitudes (and sizes) are drawn: ``reference_band``, or when it is
        None ``"i"`` if the survey has it, else the survey's reddest band.
        """
        if self.reference_band is not None:
            return self.reference_band
        names = get_survey(self.survey).band_names
        return "i" if "i" in names else names[-1]

    @property
    def pixel_scale(self) -> float:
        """Arcsec / pixel, the survey's."""
        return get_survey(self.survey).pixel_scale

    # -- serialisation ---------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The options as a plain dict (tuples as lists), as stored in a data file's ``config`` attribute."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def to_json(self) -> str:
        """The options as JSON with sorted keys (the data files' ``config`` attribute, byte for byte)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SimConfig":
        """A validated config from a mapping of option names to values (unknown names refused)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a mapping of option names to values, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config option(s) {unknown}; allowed: {sorted(known)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> "SimConfig":
        """A validated config from :meth:`to_json`'s text."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from None
        return cls.from_dict(d)

    def replace(self, **changes: Any) -> "SimConfig":
        """A copy with some options changed (validated again)."""
        return dataclasses.replace(self, **changes)


def load_config(path: str) -> SimConfig:
    """Read a :class:`SimConfig` from a ``.json`` or ``.toml`` file.

    Options absent from the file keep their defaults.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        if path.endswith(".toml"):
            d = tomllib.loads(raw.decode())
        elif path.endswith(".json"):
            d = json.loads(raw)
        else:
            raise ConfigError(f"config file {path!r} must end in .json or .toml")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path!r} could not be parsed: {exc}") from None
    try:
        return SimConfig.from_dict(d)
    except ConfigError as exc:
        raise ConfigError(f"config file {path!r}: {exc}") from None


def scaled_disk_size_zero(config: SimConfig, factor: float, *, option: str = "--size-scale") -> float:
    """``disk_size_zero`` that multiplies the population's median disk sizes by ``factor`` (> 0).

    ConfigError naming ``option`` (the caller's name for the factor) when it is not positive.
    """
    if not factor > 0:
        raise ConfigError(f"{option} must be > 0, got {factor}", value=factor, allowed="> 0")
    return config.disk_size_zero + math.log(factor)
