"""Tests of deblendkit.sim.psf: per-scene, per-band PSFs and their stored images."""
from __future__ import annotations

import galsim
import numpy as np
import pytest

from deblendkit.config import SimConfig
from deblendkit.sim.psf import psf_images, scene_psfs
from deblendkit.sim.survey import get_survey
from deblendkit.storage import read_dataset


def image_fwhm(img: np.ndarray, scale: float) -> float:
    """FWHM (arcsec) of a centred, symmetric image: half-maximum crossings along the
    central row and column, linearly interpolated, averaged."""
    c = img.shape[0] // 2
    half = img[c, c] / 2.0
    widths = []
    for profile in (img[c, :], img[:, c]):
        right = profile[c:]
        j = int(np.argmax(right < half))  # first sample below half maximum
        r = (j - 1) + (right[j - 1] - half) / (right[j - 1] - right[j])
        widths.append(2.0 * r)
    return float(np.mean(widths)) * scale


def first_moment(img: np.ndarray) -> tuple[float, float]:
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    s = img.sum()
    return float((img * xx).sum() / s), float((img * yy).sum() / s)


def test_image_fwhm_helper_on_a_gaussian():
    # A Gaussian of FWHM 1.0" sampled at 0.1": the helper's own accuracy (< 1%).
    img = galsim.Gaussian(fwhm=1.0).drawImage(nx=41, ny=41, scale=0.1, method="no_pixel").array
    assert image_fwhm(img, 0.1) == pytest.approx(1.0, rel=0.01)


@pytest.mark.parametrize("model", ["kolmogorov", "moffat"])
def test_scene_psfs_share_one_seeing_factor(model):
    config = SimConfig(psf_model=model, moffat_beta=3.0)
    survey = get_survey(config.survey)
    median = np.array([survey.band(b).psf_fwhm for b in config.simulated_bands])
    factors = []
    for seed in range(200):
        psfs, fwhm = scene_psfs(config, np.random.default_rng(seed))
        ratio = fwhm / median
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)  # one atmosphere per scene
        factors.append(ratio[0])
        for p, f in zip(psfs, fwhm):
            assert p.flux == pytest.approx(1.0)
            assert p.calculateFWHM() == pytest.approx(f, rel=1e-3)
            assert isinstance(p, galsim.Kolmogorov if model == "kolmogorov" else galsim.Moffat)
    # ln(factor) ~ N(0, seeing_scatter): sd within 5 x its standard error sqrt(1/(2 n)).
    sd = np.std(np.log(factors))
    assert sd == pytest.approx(config.seeing_scatter, rel=5 * np.sqrt(1 / (2 * len(factors))))
    if model == "moffat":
        assert psfs[0].beta == 3.0


def test_no_seeing_scatter_gives_the_survey_median():
    config = SimConfig(seeing_scatter=0.0)
    _, fwhm = scene_psfs(config, np.random.default_rng(0))
    np.testing.assert_array_equal(fwhm, [get_survey(config.survey).band(b).psf_fwhm for b in config.simulated_bands])


@pytest.mark.parametrize("fwhm", [0.5, 0.81, 1.2])
def test_psf_image_unit_sum_centred_and_of_the_right_width(fwhm):
    scale, size = 0.2, 25
    psfs = [galsim.Kolmogorov(fwhm=fwhm), galsim.Moffat(beta=2.5, fwhm=fwhm)]
    imgs = psf_images(psfs, size=size, pixel_scale=scale)
    assert imgs.shape == (2, size, size) and imgs.dtype == np.float32
    for img, p in zip(imgs, psfs):
        assert img.sum() == pytest.approx(1.0, abs=1e-5)
        assert np.unravel_index(np.argmax(img), img.shape) == (size // 2, size // 2)
        cx, cy = first_moment(img.astype(np.float64))
        assert cx == pytest.approx(size // 2, abs=1e-4) and cy == pytest.approx(size // 2, abs=1e-4)
        # The stored PSF is the effective one (atmosphere x pixel): its FWHM is that of
        # the profile convolved with the pixel. Measured: within 5% at 2.5 pixels FWHM
        # (linear interpolation of a coarsely sampled peak), < 1% at 4 pixels and more.
        effective = galsim.Convolve(p, galsim.Pixel(scale)).calculateFWHM()
        assert image_fwhm(img, scale) == pytest.approx(effective, rel=0.06)


def test_stored_psfs_of_a_data_file(small_data_dir):
    ds = read_dataset(small_data_dir / "train.h5")
    config = SimConfig.from_dict(ds.attrs["config"])  # read_dataset decodes the JSON
    survey = get_survey(config.survey)
    psf = ds.psf.astype(np.float64)
    n, c, p, _ = psf.shape
    assert (c, p) == (len(config.simulated_bands), config.psf_size)
    np.testing.assert_allclose(psf.sum(axis=(-2, -1)), 1.0, atol=1e-5)
    centre = p // 2
    for i in range(n):
        for b, band in enumerate(config.simulated_bands):
            cx, cy = first_moment(psf[i, b])
            assert abs(cx - centre) < 1e-3 and abs(cy - centre) < 1e-3
            # FWHM within 10% of the survey median times the seeing-factor range
            # exp(+-4 seeing_scatter) (4 sd of ln factor: 1 in 16000 scenes falls outside).
            median = survey.band(band).psf_fwhm
            spread = np.exp(4 * config.seeing_scatter)
            measured = image_fwhm(psf[i, b], config.pixel_scale)
            assert 0.9 * median / spread <= measured <= 1.1 * median * spread, (i, band, measured)
    # One atmosphere per scene: the measured widths of the bands move together.
    widths = np.array([[image_fwhm(psf[i, b], config.pixel_scale) for b in range(c)] for i in range(n)])
    median = np.array([survey.band(b).psf_fwhm for b in config.simulated_bands])
    factor = widths / median
    assert np.corrcoef(factor[:, 0], factor[:, -1])[0, 1] > 0.9
