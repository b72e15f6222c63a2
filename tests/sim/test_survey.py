"""Tests of deblendkit.sim.survey: survey numbers from surveycodex, flux units, bandpasses.

Also the "one config away" promise: an HSC and a Euclid VIS blend simulate.
"""
from __future__ import annotations

import re

import galsim
import numpy as np
import pytest
import surveycodex

from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError
from deblendkit.sim import render
from deblendkit.sim.blend_mode import simulate_blend_mode
from deblendkit.sim.survey import available_surveys, bandpass, get_survey

SURVEYS = ("LSST", "HSC", "Euclid_VIS")


# --------------------------------------------------------------------------
# Numbers come from surveycodex
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", SURVEYS)
def test_survey_fields_equal_surveycodex(name):
    survey = get_survey(name)
    sc = surveycodex.get_survey(name)
    assert survey.pixel_scale == sc.pixel_scale.to_value("arcsec")
    assert survey.gain == sc.gain.to_value("electron/adu")
    assert survey.mirror_diameter == sc.mirror_diameter.to_value("m")
    assert survey.band_names == tuple(sc.available_filters)
    for band in survey.bands:
        f = sc.get_filter(band.name)
        assert band.psf_fwhm == f.psf_fwhm.to_value("arcsec")
        assert band.zeropoint == f.zeropoint.to_value("mag")
        assert band.sky_brightness == f.sky_brightness.to_value("mag/arcsec2")
        assert band.exposure_time == f.full_exposure_time.to_value("s")
        assert band.effective_wavelength == f.effective_wavelength.to_value("nm")


def test_lsst_is_the_documented_default():
    # The numbers for LSST: 0.2"/pixel, six bands ugrizy, r-band median FWHM 0.81".
    survey = get_survey("LSST")
    assert survey.pixel_scale == pytest.approx(0.2)
    assert survey.band_names == ("u", "g", "r", "i", "z", "y")
    assert survey.band("r").psf_fwhm == pytest.approx(0.81)
    config = SimConfig()
    assert config.survey == "LSST"
    assert config.simulated_bands == survey.band_names
    assert config.pixel_scale == survey.pixel_scale
    assert config.magnitude_band == "i"


def test_available_surveys_lists_the_selectable_ones():
    names = available_surveys()
    assert set(SURVEYS) <= set(names)


def test_unknown_survey_is_a_config_error_listing_the_allowed_names():
    with pytest.raises(ConfigError, match=r"unknown survey 'Hubble'; allowed: \[.*'LSST'.*\]"):
        get_survey("Hubble")
    with pytest.raises(ConfigError, match=r"unknown survey 'lsst'"):
        SimConfig(survey="lsst")


def test_unknown_band_is_a_config_error_listing_the_bands():
    survey = get_survey("HSC")
    with pytest.raises(ConfigError, match=re.escape("unknown band 'u' for survey HSC; allowed: ['g', 'r', 'i', 'z', 'y']")):
        survey.band("u")
    with pytest.raises(ConfigError, match=r"unknown band 'u' for survey HSC"):
        bandpass("HSC", "u")


# --------------------------------------------------------------------------
# Flux units: AB zero point of 1 electron / s, ADU = electrons / gain
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", SURVEYS)
def test_zero_point_gives_one_electron_per_second(name):
    survey = get_survey(name)
    for band in survey.bands:
        adu = survey.mag_to_adu(band.zeropoint, band.name)
        # 1 e-/s over the full exposure, divided by the gain.
        assert adu == pytest.approx(band.exposure_time / survey.gain, rel=1e-12)
        # 5 magnitudes fainter = 100 times less flux; exposure_fraction scales linearly.
        assert survey.mag_to_adu(band.zeropoint + 5, band.name) == pytest.approx(adu / 100, rel=1e-12)
        assert survey.mag_to_adu(band.zeropoint, band.name, exposure_fraction=0.25) == pytest.approx(adu / 4, rel=1e-12)


def test_magnitude_round_trip_and_non_positive_flux():
    survey = get_survey("LSST")
    mags = np.linspace(15.0, 28.0, 27)
    for b in survey.band_names:
        back = survey.adu_to_mag(survey.mag_to_adu(mags, b, exposure_fraction=0.5), b, exposure_fraction=0.5)
        np.testing.assert_allclose(back, mags, rtol=0, atol=1e-10)
    assert np.all(np.isnan(survey.adu_to_mag(np.array([0.0, -3.0]), "r")))


def test_sky_level_follows_from_the_sky_brightness():
    survey = get_survey("LSST")
    for band in survey.bands:
        # Sky per pixel = flux of the sky magnitude per arcsec^2 times the pixel area.
        expected = survey.mag_to_adu(band.sky_brightness, band.name) * survey.pixel_scale**2
        assert survey.sky_adu_per_pixel(band.name) == pytest.approx(expected, rel=1e-12)
        assert survey.sky_adu_per_pixel(band.name, exposure_fraction=0.1) == pytest.approx(expected / 10, rel=1e-12)


# --------------------------------------------------------------------------
# Bandpasses
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", SURVEYS)
def test_bandpass_works_for_every_band(name):
    survey = get_survey(name)
    for band in survey.bands:
        bp = bandpass(name, band.name)
        assert isinstance(bp, galsim.Bandpass)
        assert bp.zeropoint is not None and np.isfinite(bp.zeropoint)  # AB zero point set
        assert bp.blue_limit < bp.effective_wavelength < bp.red_limit
        # The curve is centred near the survey's effective wavelength (within 5%: HSC and
        # Euclid borrow LSST curves or a top-hat, see deblendkit.sim.survey.bandpass).
        assert bp.effective_wavelength == pytest.approx(band.effective_wavelength, rel=0.05)
        waves = np.linspace(bp.blue_limit, bp.red_limit, 200)
        assert np.all(bp(waves) >= 0) and bp(bp.effective_wavelength) > 0


def test_euclid_vis_bandpass_is_the_instrument_top_hat():
    bp = bandpass("Euclid_VIS", "IE")
    assert (bp.blue_limit, bp.red_limit) == (550.0, 900.0)


# --------------------------------------------------------------------------
# Another survey is one config away
# --------------------------------------------------------------------------
def _check_sample(sample, config):
    k, c, w = config.max_galaxies, len(config.simulated_bands), config.stamp_size
    assert sample.blend.shape == (c, w, w)
    assert sample.isolated.shape == (k, c, w, w)
    assert sample.psf.shape == (c, config.psf_size, config.psf_size)
    assert sample.noise_sigma.shape == (c,)
    n = sample.n_galaxies
    assert config.min_galaxies <= n <= config.max_galaxies
    assert np.all(np.isfinite(sample.blend))
    # Galaxies have light in every band, empty slots none.
    assert np.all(sample.isolated[:n].sum(axis=(-2, -1)) > 0)
    assert not np.any(sample.isolated[n:])
    np.testing.assert_allclose(sample.psf.sum(axis=(-2, -1)), 1.0, rtol=1e-5)
    survey = get_survey(config.survey)
    sky_sigma = [np.sqrt(survey.sky_adu_per_pixel(b) / survey.gain) for b in config.simulated_bands]
    np.testing.assert_allclose(sample.noise_sigma, sky_sigma, rtol=1e-6)


def test_hsc_blend_has_five_bands_at_its_pixel_scale():
    config = SimConfig(survey="HSC", stamp_size=32, psf_size=15, edge_margin=6, max_galaxies=3)
    assert config.simulated_bands == ("g", "r", "i", "z", "y")
    assert config.pixel_scale == pytest.approx(0.168)
    sample = simulate_blend_mode(config, seed=5, split="train", index=0)
    _check_sample(sample, config)


def test_euclid_vis_blend_uses_the_folding_path(monkeypatch):
    config = SimConfig(survey="Euclid_VIS", stamp_size=32, psf_size=15, edge_margin=6, max_galaxies=3)
    assert config.simulated_bands == ("IE",)
    assert config.pixel_scale == pytest.approx(0.1)
    # The 0.17" VIS PSF at 0.1"/pixel is undersampled: the renderer must fold k-space.
    psf = galsim.Kolmogorov(fwhm=get_survey("Euclid_VIS").band("IE").psf_fwhm)
    assert render.wrap_factor([psf], config.pixel_scale) > 1
    calls = []
    real = render._render_wrapped

    def spy(*args, **kwargs):
        calls.append(args[-2])  # m, the wrap factor (args end with n, m, dk)
        return real(*args, **kwargs)

    monkeypatch.setattr(render, "_render_wrapped", spy)
    sample = simulate_blend_mode(config, seed=5, split="train", index=0)
    assert calls and calls[0] > 1
    _check_sample(sample, config)
