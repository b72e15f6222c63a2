"""Tests of :func:`deblendkit.deblend.amplitudes.refit_amplitudes` (least-squares fluxes for given shapes)."""
from __future__ import annotations

import numpy as np
import pytest

from deblendkit.deblend.amplitudes import refit_amplitudes
from deblendkit.errors import ConfigError, PredictionError


def _gaussian(shape, x0, y0, sigma):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    g = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))
    return g / g.sum()


def _scene(n_bands=3, size=31):
    """Two overlapping galaxies (1, 2, C, H, W) with different colours, and their blend (1, C, H, W)."""
    g1 = _gaussian((size, size), 12.0, 15.0, 2.5)
    g2 = _gaussian((size, size), 19.0, 14.0, 3.5)
    flux1 = np.array([100.0, 250.0, 400.0][:n_bands])
    flux2 = np.array([300.0, 200.0, 50.0][:n_bands])
    truth = np.stack([flux1[:, None, None] * g1, flux2[:, None, None] * g2])[None].astype(np.float32)
    return truth, truth.sum(axis=1)


def test_recovers_the_fluxes_of_right_shapes_with_wrong_amplitudes():
    truth, blend = _scene()
    scale = np.array([0.6, 1.7])[None, :, None, None, None]  # shrunk and inflated
    out = refit_amplitudes(blend, truth * scale)
    np.testing.assert_allclose(out, truth, rtol=1e-4, atol=1e-6)
    # flux conservation: the refitted galaxies add up to the blend when the shapes are exact
    np.testing.assert_allclose(out.sum(axis=1), blend, rtol=1e-4, atol=1e-6)


def test_scales_with_the_blend():
    truth, blend = _scene()
    models = truth * np.array([0.8, 1.2])[None, :, None, None, None]
    noise = np.random.default_rng(1).normal(0, 0.05, blend.shape).astype(np.float32)
    base = refit_amplitudes(blend + noise, models)
    np.testing.assert_allclose(refit_amplitudes(3.0 * (blend + noise), models), 3.0 * base, rtol=1e-4,
                               atol=1e-5)


def test_amplitudes_are_never_negative_and_empty_slots_stay_zero():
    truth, blend = _scene()
    models = np.concatenate([truth, np.zeros_like(truth[:, :1])], axis=1)  # a third, empty slot
    models[0, 1] = -models[0, 1]  # a model that only fits with a negative amplitude
    out = refit_amplitudes(blend, models)
    assert np.all(out[0, 2] == 0)
    assert np.all(out[0, 1] == 0)  # amplitude clipped at 0, not -1
    # the remaining galaxy takes the least-squares amplitude alone
    m = models[0, 0].astype(np.float64)
    a = (m * blend[0]).sum(axis=(1, 2)) / (m * m).sum(axis=(1, 2))
    np.testing.assert_allclose(out[0, 0], a[:, None, None] * m, rtol=1e-4, atol=1e-7)


def test_the_amplitude_prior_keeps_faint_galaxies_and_refits_bright_ones():
    truth, blend = _scene()
    models = truth * np.array([0.5, 0.5])[None, :, None, None, None]
    sigma = np.full(blend.shape[:2], 0.01)
    free = refit_amplitudes(blend, models, noise_sigma=sigma)
    np.testing.assert_allclose(free, truth, rtol=1e-4, atol=1e-7)  # noise weights alone: still least squares
    held = refit_amplitudes(blend, models, noise_sigma=sigma, amplitude_sigma=1e-6)
    np.testing.assert_allclose(held, models, rtol=1e-4, atol=1e-7)
    # the same prior width: at high signal-to-noise the data win, at low the given flux
    bright = refit_amplitudes(blend, models, noise_sigma=sigma, amplitude_sigma=0.03)
    faint = refit_amplitudes(blend, models, noise_sigma=sigma * 1e4, amplitude_sigma=0.03)
    assert abs(bright.sum() / truth.sum() - 1) < 0.01
    assert abs(faint.sum() / models.sum() - 1) < 0.01


def test_max_gain_caps_the_amplitudes():
    truth, blend = _scene()
    models = truth * 0.5
    np.testing.assert_allclose(refit_amplitudes(blend, models, max_gain=1.5), 1.5 * models, rtol=1e-5)


def test_bad_arguments_name_the_value():
    truth, blend = _scene()
    sigma = np.ones(blend.shape[:2])
    with pytest.raises(ConfigError, match=r"amplitude_sigma must be a finite number > 0, got -1"):
        refit_amplitudes(blend, truth, noise_sigma=sigma, amplitude_sigma=-1)
    with pytest.raises(ConfigError, match=r"amplitude_sigma needs noise_sigma \(the chi\^2's units\)"):
        refit_amplitudes(blend, truth, amplitude_sigma=0.1)
    with pytest.raises(ConfigError, match=r"noise_sigma must be finite, > 0 and of shape \(1, 3\), got shape \(3,\)"):
        refit_amplitudes(blend, truth, noise_sigma=np.ones(3))
    with pytest.raises(ConfigError, match=r"max_gain must be a finite number > 0, got 0"):
        refit_amplitudes(blend, truth, max_gain=0)
    with pytest.raises(PredictionError, match=r"models must be \(n, K, C, H, W\) matching blend"):
        refit_amplitudes(blend, truth[:, :, :2])
