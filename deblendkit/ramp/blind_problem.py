"""What ``blind/problem.py`` exposes to rampwf: the blind track's data and CV.

The blind track reads the same data files as the first track
(``<kit>/data/{train,test}[_mini].h5``, the ``_mini`` ones under
``ramp-test --quick-test``) and hands submissions what a survey gives:

* ``X``: a :class:`BlindSet`, the blend images, PSFs and noise levels, and
  nothing else (no centres, no galaxy counts, no truth);
* ``y``: the truth as a structured array of
  :func:`deblendkit.ramp.blind_prediction.truth_dtype`: the true centres,
  isolated images, counts, reference-band magnitudes, blendedness and the
  blend's match radius (pixels). ``fit(X, y)`` may learn from it;
  ``predict(X)`` never sees it.

The match radius of a blend is the FWHM of its widest-band PSF (pixels,
:func:`deblendkit.scoring.matching.psf_fwhm`, measured from the PSF stamps of
the file), at least :data:`~deblendkit.scoring.matching.MIN_MATCH_RADIUS`:
about 3.7-5.6 pixels (0.75-1.1 arcsec) on the default LSST-like data, close
to BlendingToolKit's fixed 5 pixels.
"""
from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Iterator

import numpy as np

from deblendkit.errors import ConfigError, DataFileError
from deblendkit.ramp.blind_prediction import truth_dtype
from deblendkit.ramp.problem import data_meta, get_cv, split_path
from deblendkit.scoring.matching import MIN_MATCH_RADIUS, psf_fwhm
from deblendkit.storage import read_dataset

__all__ = ["BLIND_PROBLEM_TITLE", "K_OUT_FACTOR", "BlindSet", "blind_meta", "get_cv",
           "get_train_data", "get_test_data", "load_blind", "match_radius", "truth_array"]

logger = logging.getLogger(__name__)

BLIND_PROBLEM_TITLE = ("Blind galaxy deblending: detect every galaxy of a multi-band blend "
                       "and recover its isolated image")
#: ``K_out`` (detection slots per blend) is this many times the data's ``max_galaxies``.
K_OUT_FACTOR = 2
#: Reference band of the ``mag`` truth field (else the last band).
REF_BAND = "r"


class BlindSet:
    """What a blind-track submission sees of ``n`` blends.

    Attributes
    ----------
    blend : ndarray, (n, C, S, S) float32, read-only
        Observed scenes, ADU (sky-subtracted, with noise).
    psf : ndarray, (n, C, P, P) float32, read-only
        PSF per blend and band, unit sum.
    noise_sigma : ndarray, (n, C) float32, read-only
        Background noise, ADU per pixel.
    bands : tuple of str
    pixel_scale : float
        Arcsec per pixel.
    k_out : int
        Detection slots of the output per blend.
    n_bands, stamp_size, psf_size : int

    There are no centres and no galaxy counts: ``X.centers`` and
    ``X.n_galaxies`` raise ``AttributeError``. ``X[idx]`` (int, slice, int
    array, boolean mask) is a subset; ``X.batches(n)`` yields subsets.
    """

    __slots__ = ("_blend", "_psf", "_noise", "bands", "pixel_scale", "k_out")

    def __init__(self, *, blend, psf, noise_sigma, bands, pixel_scale: float, k_out: int) -> None:
        blend = np.asarray(blend, dtype=np.float32)
        psf = np.asarray(psf, dtype=np.float32)
        noise = np.asarray(noise_sigma, dtype=np.float32)
        if blend.ndim != 4 or psf.ndim != 4 or noise.shape != blend.shape[:2] \
                or psf.shape[:2] != blend.shape[:2]:
            raise ConfigError(f"blend (n, C, S, S), psf (n, C, P, P) and noise_sigma (n, C) disagree: "
                              f"{blend.shape}, {psf.shape}, {noise.shape}",
                              value=(blend.shape, psf.shape, noise.shape))
        if isinstance(k_out, bool) or not isinstance(k_out, numbers.Integral) or k_out < 1:
            raise ConfigError(f"k_out must be a positive integer, got {k_out!r}", value=k_out,
                              allowed=">= 1")
        for arr in (blend, psf, noise):
            arr.flags.writeable = False
        self._blend, self._psf, self._noise = blend, psf, noise
        self.bands = tuple(bands)
        self.pixel_scale = float(pixel_scale)
        self.k_out = int(k_out)

    blend = property(lambda self: self._blend, doc="Observed scenes, (n, C, S, S), ADU.")
    psf = property(lambda self: self._psf, doc="PSFs, (n, C, P, P), unit sum.")
    noise_sigma = property(lambda self: self._noise, doc="Background noise, (n, C), ADU/pixel.")
    n_bands = property(lambda self: len(self.bands), doc="Bands C.")
    stamp_size = property(lambda self: int(self._blend.shape[-1]), doc="Stamp side S, pixels.")
    psf_size = property(lambda self: int(self._psf.shape[-1]), doc="PSF side P, pixels.")

    def __len__(self) -> int:
        return int(self._blend.shape[0])

    def __getitem__(self, key) -> "BlindSet":
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            key = [int(key)]
        idx = np.arange(len(self))[key]
        return BlindSet(blend=self._blend[idx], psf=self._psf[idx], noise_sigma=self._noise[idx],
                        bands=self.bands, pixel_scale=self.pixel_scale, k_out=self.k_out)

    def batches(self, batch_size: int) -> Iterator["BlindSet"]:
        """Consecutive subsets of at most ``batch_size`` blends."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}",
                              value=batch_size, allowed=">= 1")
        for lo in range(0, len(self), int(batch_size)):
            yield self[lo:lo + int(batch_size)]

    def __repr__(self) -> str:
        s = self.stamp_size
        return f"BlindSet({len(self)} blends, bands {''.join(self.bands)}, stamp {s}x{s} px, K_out={self.k_out})"


def match_radius(psf) -> np.ndarray:
    """Match radius per blend, pixels: the widest band's PSF FWHM, floored (module doc)."""
    return np.maximum(psf_fwhm(psf).max(axis=-1), MIN_MATCH_RADIUS)


def truth_array(ds) -> np.ndarray:
    """The blind truth of a :class:`deblendkit.storage.datafile.DataFile` (in memory)."""
    iso = np.asarray(ds.isolated)
    n, k, c, s = iso.shape[0], iso.shape[1], iso.shape[2], iso.shape[-1]
    y = np.zeros(n, dtype=truth_dtype(k, c, s))
    y["centers"], y["isolated"], y["n_galaxies"] = ds.centers, iso, ds.n_galaxies
    y["mag"], y["blendedness"] = np.nan, np.nan
    band = REF_BAND if REF_BAND in ds.bands else ds.bands[-1]
    t = ds.truth
    lab = t[t["slot"] >= 0]
    bi = lab["blend_index"].to_numpy() - ds.start
    sl = lab["slot"].to_numpy()
    y["mag"][bi, sl] = lab[f"mag_{band}"].to_numpy()
    y["blendedness"][bi, sl] = lab["blendedness"].to_numpy()
    y["match_radius"] = match_radius(ds.psf)
    y["faint_centers"] = np.nan
    # Unlabelled galaxies, in the stamp or in the margin (their light reaches the edge).
    faint = t[t["slot"] < 0]
    faint = faint.sort_values(["blend_index", f"mag_{band}"], kind="stable")
    room = y["faint_centers"].shape[1]
    for b, rows in faint.groupby("blend_index", sort=False):
        xy = rows[["x", "y"]].to_numpy()[:room]
        y["faint_centers"][int(b) - ds.start, : len(xy)] = xy
    return y


def blind_meta(path: str = ".") -> tuple[tuple[str, ...], int, int]:
    """``(bands, k_out, stamp_size)`` of the data (see :func:`deblendkit.ramp.problem.data_meta`)."""
    meta = data_meta(path)
    return tuple(meta.bands), K_OUT_FACTOR * int(meta.max_galaxies), int(meta.stamp_size)


def load_blind(path: str | os.PathLike, *, k_out: int | None = None):
    """``(X, y)`` of a data file: a :class:`BlindSet` and the truth array."""
    ds = read_dataset(path)
    k_out = K_OUT_FACTOR * ds.max_galaxies if k_out is None else k_out
    X = BlindSet(blend=ds.blend, psf=ds.psf, noise_sigma=ds.noise_sigma, bands=ds.bands,
                 pixel_scale=ds.pixel_scale, k_out=k_out)
    return X, truth_array(ds)


def _load(path: str, split: str):
    f = split_path(path, split)
    if not os.path.exists(f):
        raise DataFileError(f"data file {f} does not exist; make the data first with "
                            f"`python prepare_data.py` (in {os.path.abspath(path)})", value=f)
    return load_blind(f)


def get_train_data(path: str = "."):
    """``(X, y)`` of the training split (BlindSet, truth array)."""
    return _load(path, "train")


def get_test_data(path: str = "."):
    """``(X, y)`` of the test split."""
    return _load(path, "test")
