"""Synthetic blends with the submission interface, for tests.

:func:`make_synthetic_blends` draws small scenes with GalSim: Gaussian or
exponential galaxies, each with its own spectral energy distribution (a
per-band amplitude vector), convolved with a per-band Gaussian PSF and the
pixel, plus optional Gaussian noise. It returns a :class:`FakeBlendSet` that
duck-types ``deblendkit.deblend.blendset.BlendSet`` (the ``X`` a submission receives) and
the labels ``y`` (the isolated, noiseless, PSF-convolved galaxies).

Nothing here reads the challenge data: tests that use it run without any
data file. The scenes are deliberately simple (no bulges, no Moffat wings)
and are not a substitute for the real simulator.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from deblendkit.errors import ConfigError

__all__ = ["FakeBlendSet", "make_synthetic_blends", "LSST_BANDS"]

LSST_BANDS = ("u", "g", "r", "i", "z", "y")

# Seeing FWHM (arcsec) of the six LSST-like bands: wider in the blue, as the
# atmosphere's lambda^-0.2 law. Other band counts interpolate this range.
_FWHM_BLUE, _FWHM_RED = 0.92, 0.74


@dataclasses.dataclass(frozen=True, eq=False)
class FakeBlendSet:
    """A set of blends with the attributes of ``deblendkit.deblend.blendset.BlendSet``.

    Parameters
    ----------
    blend : ndarray, (n, C, H, W) float32
        Observed scenes, ADU per pixel, with noise.
    psf : ndarray, (n, C, P, P) float32
        Effective PSF (atmosphere convolved with the pixel) of each band, unit
        sum, centred on the central pixel (P odd).
    noise_sigma : ndarray, (n, C) float32
        Background noise standard deviation per band, ADU per pixel.
    centers : ndarray, (n, K, 2) float32
        (x, y) pixel position of each galaxy, 0-based (pixel i spans
        [i - 0.5, i + 0.5]); NaN in empty slots.
    n_galaxies : ndarray, (n,) int
        Number of galaxies per blend; slots ``0 .. n_galaxies - 1`` are filled.
    bands : tuple of str
        Band names, length C.
    pixel_scale : float
        Arcsec per pixel.
    """

    blend: np.ndarray
    psf: np.ndarray
    noise_sigma: np.ndarray
    centers: np.ndarray
    n_galaxies: np.ndarray
    bands: tuple[str, ...]
    pixel_scale: float = 0.2

    def __post_init__(self) -> None:
        if self.blend.ndim != 4:
            raise ConfigError(f"blend must be (n, C, H, W), got shape {self.blend.shape}")
        n, c = self.blend.shape[:2]
        expected = {
            "psf": (self.psf, (n, c)),
            "noise_sigma": (self.noise_sigma, (n, c)),
            "centers": (self.centers, (n,)),
            "n_galaxies": (self.n_galaxies, (n,)),
        }
        for name, (arr, lead) in expected.items():
            if arr.shape[: len(lead)] != lead:
                raise ConfigError(
                    f"{name} must start with shape {lead} to match blend {self.blend.shape}, "
                    f"got {arr.shape}"
                )
        if self.centers.ndim != 3 or self.centers.shape[2] != 2:
            raise ConfigError(f"centers must be (n, K, 2), got shape {self.centers.shape}")
        if len(self.bands) != c:
            raise ConfigError(f"bands must name the {c} bands of blend, got {self.bands!r}")
        if np.any(self.n_galaxies > self.max_galaxies) or np.any(self.n_galaxies < 0):
            raise ConfigError(
                f"n_galaxies must lie in [0, {self.max_galaxies}], "
                f"got {self.n_galaxies.min()}..{self.n_galaxies.max()}"
            )

    @property
    def max_galaxies(self) -> int:
        """K, the number of galaxy slots per blend."""
        return int(self.centers.shape[1])

    def __len__(self) -> int:
        return int(self.blend.shape[0])

    def __getitem__(self, idx: int | slice | np.ndarray) -> FakeBlendSet:
        """The subset of blends ``idx`` (an int gives a subset of one blend)."""
        if isinstance(idx, (int, np.integer)):
            idx = np.array([idx])
        return FakeBlendSet(
            blend=self.blend[idx],
            psf=self.psf[idx],
            noise_sigma=self.noise_sigma[idx],
            centers=self.centers[idx],
            n_galaxies=self.n_galaxies[idx],
            bands=self.bands,
            pixel_scale=self.pixel_scale,
        )

    def batches(self, batch_size: int) -> Iterator[FakeBlendSet]:
        """Consecutive subsets of at most ``batch_size`` blends."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield self[slice(start, start + batch_size)]


def _band_names(n_bands: int) -> tuple[str, ...]:
    if n_bands == len(LSST_BANDS):
        return LSST_BANDS
    return tuple(f"b{i}" for i in range(n_bands))


def _place_centers(
    rng: np.random.Generator, k: int, stamp_size: int, spread: float, min_separation: float
) -> np.ndarray:
    """``k`` (x, y) centres uniform within ``spread`` pixels of the stamp centre."""
    mid = (stamp_size - 1) / 2.0
    for _ in range(1000):
        xy = mid + rng.uniform(-spread, spread, size=(k, 2))
        d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
        if k < 2 or d[np.triu_indices(k, 1)].min() >= min_separation:
            return xy
    raise ConfigError(
        f"cannot place {k} galaxies {min_separation} pixels apart within +-{spread} pixels"
    )


def make_synthetic_blends(
    n: int,
    *,
    n_bands: int = 6,
    stamp_size: int = 48,
    max_galaxies: int = 6,
    seed: int = 0,
    noise: bool = True,
    min_galaxies: int = 2,
    n_galaxies: int | None = None,
    min_separation: float = 3.0,
    spread: float | None = None,
    profiles: tuple[str, ...] = ("gaussian", "exponential"),
    flux_range: tuple[float, float] = (3e4, 1e6),
    hlr_range: tuple[float, float] = (0.25, 1.0),
    max_shear: float = 0.4,
    noise_range: tuple[float, float] = (200.0, 600.0),
    gain: float | None = None,
    psf_size: int = 25,
    pixel_scale: float = 0.2,
) -> tuple[FakeBlendSet, np.ndarray]:
    """Draw ``n`` synthetic blends and their isolated galaxies.

    Parameters
    ----------
    n : int
        Number of blends.
    n_bands : int
        C, number of bands (6 names them ugrizy, otherwise b0, b1, ...).
    stamp_size : int
        H = W, pixels.
    max_galaxies : int
        K, slots per blend.
    seed : int
        Seed of the random generator: same seed, same blends.
    noise : bool
        Add Gaussian background noise of ``noise_sigma`` (ADU) per band.
    min_galaxies : int
        Least number of galaxies per blend, when ``n_galaxies`` is None.
    n_galaxies : int or None
        Fixed number of galaxies per blend; None draws it uniformly in
        ``[min_galaxies, max_galaxies]``.
    min_separation : float
        Least distance between two centres, pixels.
    spread : float or None
        Centres lie within +-spread pixels of the stamp centre (default
        ``stamp_size / 4``).
    profiles : tuple of str
        Radial profiles drawn from, among "gaussian" and "exponential".
    flux_range : (float, float)
        Total flux in the reference (middle) band, ADU, drawn log-uniform.
    hlr_range : (float, float)
        Half-light radius, arcsec, drawn log-uniform.
    max_shear : float
        Largest reduced shear |g| of the galaxy ellipses.
    noise_range : (float, float)
        Background noise sigma per band, ADU per pixel, drawn uniform.
    gain : float or None
        Electrons per ADU: with noise, the pixel variance is
        ``noise_sigma**2 + max(signal, 0) / gain`` (ADU^2), the sources'
        Poisson term as in the challenge data; None leaves it out.
    psf_size : int
        P, odd size of the PSF stamps, pixels.
    pixel_scale : float
        Arcsec per pixel.

    Returns
    -------
    X : FakeBlendSet
        The blends (see its attributes).
    y : ndarray, (n, K, C, H, W) float32
        Isolated noiseless PSF-convolved galaxies, ADU; zeros in empty slots.
        Without noise, ``X.blend[i] == y[i].sum(axis=0)`` up to float32 rounding.
    """
    import galsim

    if not 1 <= max_galaxies:
        raise ConfigError(f"max_galaxies must be >= 1, got {max_galaxies}")
    if n_galaxies is not None and not 0 <= n_galaxies <= max_galaxies:
        raise ConfigError(f"n_galaxies must lie in [0, {max_galaxies}], got {n_galaxies}")
    if n_galaxies is None and not 1 <= min_galaxies <= max_galaxies:
        raise ConfigError(f"min_galaxies must lie in [1, {max_galaxies}], got {min_galaxies}")
    if gain is not None and not gain > 0:
        raise ConfigError(f"gain must be > 0 electrons per ADU or None, got {gain}")
    if psf_size % 2 != 1:
        raise ConfigError(f"psf_size must be odd, got {psf_size}")
    unknown = set(profiles) - {"gaussian", "exponential"}
    if not profiles or unknown:
        raise ConfigError(f"profiles must be among ('gaussian', 'exponential'), got {profiles!r}")

    rng = np.random.default_rng(seed)
    spread = stamp_size / 4.0 if spread is None else spread
    c, s, k_max = n_bands, stamp_size, max_galaxies
    ref_band = n_bands // 2
    base_fwhm = np.linspace(_FWHM_BLUE, _FWHM_RED, n_bands)

    blend = np.zeros((n, c, s, s), np.float32)
    y = np.zeros((n, k_max, c, s, s), np.float32)
    psf = np.zeros((n, c, psf_size, psf_size), np.float32)
    sigma = rng.uniform(*noise_range, size=(n, c)).astype(np.float32)
    centers = np.full((n, k_max, 2), np.nan, np.float32)
    counts = np.zeros(n, np.int64)
    mid = (s - 1) / 2.0

    for i in range(n):
        k = n_galaxies if n_galaxies is not None else int(rng.integers(min_galaxies, k_max + 1))
        counts[i] = k
        xy = _place_centers(rng, k, s, spread, min_separation) if k else np.zeros((0, 2))
        centers[i, :k] = xy
        fwhm = base_fwhm * rng.uniform(0.9, 1.1)  # this scene's seeing
        psfs = [galsim.Gaussian(fwhm=f) for f in fwhm]
        for b in range(c):
            img = psfs[b].drawImage(nx=psf_size, ny=psf_size, scale=pixel_scale).array
            psf[i, b] = img / img.sum()
        for j in range(k):
            flux = np.exp(rng.uniform(*np.log(flux_range)))
            hlr = np.exp(rng.uniform(*np.log(hlr_range)))
            profile = profiles[int(rng.integers(len(profiles)))]
            g = rng.uniform(0, max_shear)
            beta = rng.uniform(0, np.pi)
            # SED: a random walk in log flux across bands, 1 in the reference band.
            log_sed = np.concatenate([[0.0], np.cumsum(rng.normal(0.0, 0.35, c - 1))])
            sed = np.exp(log_sed - log_sed[ref_band])
            if profile == "gaussian":
                gal = galsim.Gaussian(half_light_radius=hlr)
            else:
                gal = galsim.Exponential(half_light_radius=hlr)
            gal = gal.shear(g=g, beta=beta * galsim.radians)
            offset = (xy[j, 0] - mid, xy[j, 1] - mid)
            for b in range(c):
                obj = galsim.Convolve(gal.withFlux(flux * sed[b]), psfs[b])
                y[i, j, b] = obj.drawImage(
                    nx=s, ny=s, scale=pixel_scale, offset=offset
                ).array
        blend[i] = y[i].sum(axis=0)
        if noise:
            var = np.broadcast_to(sigma[i, :, None, None].astype(np.float64) ** 2, (c, s, s))
            if gain is not None:
                var = var + np.maximum(blend[i], 0.0) / gain
            blend[i] += (rng.normal(size=(c, s, s)) * np.sqrt(var)).astype(np.float32)

    X = FakeBlendSet(
        blend=blend,
        psf=psf,
        noise_sigma=sigma,
        centers=centers,
        n_galaxies=counts,
        bands=_band_names(n_bands),
        pixel_scale=pixel_scale,
    )
    return X, y
