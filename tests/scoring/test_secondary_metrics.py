"""Every secondary metric on three predictions: perfect, all zeros, a known perturbation with its value.

The values are those documented in deblendkit.scoring.metrics; SSIM's shifted
truth is checked against an independent pixel-by-pixel implementation.
"""
from __future__ import annotations

import math

import galsim
import numpy as np
import pytest

from deblendkit.scoring.shapes import MOMENT_FAILURE_DE, SSIM_FOOTPRINT, ssim
from deblendkit.scoring.table import galaxy_table, summarize

from .test_metrics import naive_ssim

BANDS = ("g", "r", "i")
SIZE = 32


def galaxies(n=4, *, seed=0, shear=(0.0, 0.0)) -> np.ndarray:
    """(n, 2, 3, 32, 32) float32: two well-separated Gaussian galaxies per blend, GalSim-drawn."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, 2, len(BANDS), SIZE, SIZE), np.float32)
    for i in range(n):
        for k, x0 in enumerate((-7.0, 7.0)):
            gal = galsim.Gaussian(sigma=rng.uniform(1.8, 2.6)).shear(g1=shear[0], g2=shear[1])
            img = gal.drawImage(nx=SIZE, ny=SIZE, scale=1.0, offset=(x0, rng.uniform(-2, 2)), method="no_pixel").array
            sed = rng.uniform(1e3, 1e4, len(BANDS))
            y[i, k] = sed[:, None, None] * img[None]
    return y


def table_and_summary(y, p):
    table = galaxy_table(y, p.astype(np.float32), bands=BANDS)
    return table, summarize(table, bands=BANDS)


# ---------------------------------------------------------------------------
# perfect
# ---------------------------------------------------------------------------
def test_perfect_prediction():
    y = galaxies()
    table, s = table_and_summary(y, y)
    np.testing.assert_array_equal(table["flux_err_r"], 0.0)
    np.testing.assert_array_equal(table["colour_err_g_r"], 0.0)
    np.testing.assert_allclose(table["cosine"], 1.0, rtol=1e-12)
    np.testing.assert_array_equal(table["de"], 0.0)
    np.testing.assert_allclose(table["ssim"], 1.0, rtol=1e-12)
    assert s["flux_scatter_r"] == 0 and s["flux_catastrophic_r"] == 0 and s["colour_catastrophic_g_r"] == 0
    assert s["flux_mape_r"] == 0 and s["colour_scatter_g_r"] == 0 and s["cosine"] == pytest.approx(1.0)
    assert s["de_median"] == 0 and s["moment_failures"] == 0
    assert s["shear_m"] == pytest.approx(0.0, abs=1e-12) and s["shear_c"] == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------
# zeros
# ---------------------------------------------------------------------------
def test_all_zero_prediction():
    y = galaxies()
    table, s = table_and_summary(y, np.zeros_like(y))
    np.testing.assert_array_equal(table["flux_err_r"], -1.0)  # dF/F = (0 - F) / F
    assert s["flux_catastrophic_r"] == 1.0 and s["flux_bias_r"] == -1.0 and s["flux_mape_r"] == 100.0
    assert s["flux_scatter_r"] == 0.0  # every galaxy off by the same -1
    assert table["colour_err_g_r"].isna().all() and s["colour_catastrophic_g_r"] == 1.0  # undefined colour
    np.testing.assert_array_equal(table["cosine"], 0.0)
    np.testing.assert_array_equal(table["de"], MOMENT_FAILURE_DE)  # moments fail on an empty image
    assert s["moment_failures"] == len(table)
    assert math.isnan(s["shear_m"]) and math.isnan(s["shear_c"])  # no predicted shape to fit
    # SSIM on the footprint: at most C1 / (0.05^2 + C1) per pixel, ~0 in practice
    bound = 0.01**2 / (SSIM_FOOTPRINT**2 + 0.01**2)
    assert bound == pytest.approx(0.0385, abs=1e-4)
    assert np.all(table["ssim"] <= bound) and s["ssim"] < 0.01


def test_zeros_no_longer_flatter_ssim():
    """Averaged over the whole stamp, the matching empty background gave zeros ~0.7."""
    y = galaxies(2)[:, 0, 1]
    assert np.all(ssim(y, np.zeros_like(y)) < 0.01)


# ---------------------------------------------------------------------------
# known perturbations
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("a", [0.5, 0.8, 1.25])
def test_scaled_prediction(a):
    """y_hat = a y: dF/F = a - 1, colour 0, cosine 1, de 0, SSIM 1 (scale-free)."""
    y = galaxies()
    table, s = table_and_summary(y, a * y)
    np.testing.assert_allclose(table["flux_err_r"], a - 1.0, rtol=1e-6)
    assert s["flux_bias_r"] == pytest.approx(a - 1.0, rel=1e-6)
    assert s["flux_catastrophic_r"] == float(abs(a - 1.0) > 0.2)
    assert s["flux_mape_r"] == pytest.approx(100.0 * abs(a - 1.0), rel=1e-5)
    assert s["flux_scatter_r"] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(table["colour_err_g_r"], 0.0, atol=1e-6)
    np.testing.assert_allclose(table["cosine"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(table["de"], 0.0, atol=1e-6)
    np.testing.assert_allclose(table["ssim"], 1.0, rtol=1e-6)


@pytest.mark.parametrize("a", [0.5, 2.0])
def test_one_band_scaled_gives_the_colour_error(a):
    """g scaled by a: colour error g-r = -2.5 log10(a), r-i untouched."""
    y = galaxies()
    p = y.copy()
    p[:, :, 0] *= a
    table, s = table_and_summary(y, p)
    np.testing.assert_allclose(table["colour_err_g_r"], -2.5 * math.log10(a), rtol=1e-5)
    np.testing.assert_allclose(table["colour_err_r_i"], 0.0, atol=1e-6)
    assert s["colour_catastrophic_g_r"] == 1.0 and s["colour_scatter_g_r"] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
def test_light_of_the_neighbour_gives_the_cosine(c):
    """y_hat_0 = y_0 + c ||y_0|| z / ||z||, z the neighbour's light orthogonal to y_0: cosine = 1 / sqrt(1 + c^2)."""
    y = galaxies().astype(np.float64)
    dot = lambda a, b: (a * b).sum(axis=(-2, -1), keepdims=True)  # noqa: E731
    z = y[:, 1] - dot(y[:, 1], y[:, 0]) / dot(y[:, 0], y[:, 0]) * y[:, 0]  # per band, orthogonal to y_0
    p = y.copy()
    p[:, 0] = y[:, 0] + c * np.sqrt(dot(y[:, 0], y[:, 0]) / dot(z, z)) * z
    table, _ = table_and_summary(y.astype(np.float32), p)
    first = table[table["slot"] == 0]
    np.testing.assert_allclose(first["cosine"], 1.0 / math.sqrt(1.0 + c * c), rtol=1e-5)
    for b in BANDS:
        np.testing.assert_allclose(first[f"cosine_{b}"], 1.0 / math.sqrt(1.0 + c * c), rtol=1e-5)


@pytest.mark.parametrize("g1", [0.05, 0.2])
def test_sheared_prediction_gives_its_shear_as_de(g1):
    """A round galaxy predicted with shear g1 (drawn without pixel response): de = |g1|."""
    y = galaxies()
    p = galaxies(shear=(g1, 0.0))
    table, s = table_and_summary(y, p)
    np.testing.assert_allclose(table["de"], g1, atol=2e-3)
    np.testing.assert_allclose(table["e1_pred"], g1, atol=2e-3)
    np.testing.assert_allclose(table["e1_isolated"], 0.0, atol=2e-3)


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_shifted_truth_gives_the_footprint_ssim(shift):
    """The truth shifted by a few pixels: the SSIM of the reference implementation, falling with the shift."""
    y = galaxies(2)[:, 0, 1].astype(np.float64)
    shifted = np.roll(y, shift, axis=-1)
    got = ssim(y, shifted)
    for k in range(len(y)):
        assert got[k] == pytest.approx(naive_ssim(y[k], shifted[k]), rel=1e-9)
    assert np.all(got < 1.0)
    previous = ssim(y, np.roll(y, shift - 1, axis=-1))
    assert np.all(got < previous)
