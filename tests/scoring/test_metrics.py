"""Tests of deblendkit.scoring (checks, metrics, shapes, table): the primary score, secondary metrics, validation."""
from __future__ import annotations

import math

import galsim
import numpy as np
import pandas as pd
import pytest

from deblendkit.errors import ConfigError, PredictionError
from deblendkit.scoring import shapes
from deblendkit.scoring.checks import check_arrays
from deblendkit.scoring.metrics import deblend_scores
from deblendkit.scoring.shapes import MOMENT_FAILURE_DE, adaptive_ellipticity, fit_shear_bias, ssim
from deblendkit.scoring.table import galaxy_table, galaxy_table_batch, robust_scatter, summarize

LSST = ("u", "g", "r", "i", "z", "y")
FAST = ("flux", "colour", "cosine")  # no moments, no SSIM


def gaussian_stamps(n, *, k=3, c=6, size=24, seed=0, empty_last=True):
    """(n, k, c, size, size) float32 of round Gaussians; the last slot empty if asked."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    y = np.zeros((n, k, c, size, size), np.float32)
    for i in range(n):
        for j in range(k - 1 if empty_last else k):
            x0, y0 = rng.uniform(6, size - 6, 2)
            sig = rng.uniform(1.2, 3.0)
            prof = np.exp(-0.5 * ((xx - x0) ** 2 + (yy - y0) ** 2) / sig**2)
            y[i, j] = (rng.uniform(1e3, 1e5) * rng.uniform(0.3, 1.5, c))[:, None, None] * prof
    return y


def noisy(y, scale=0.05, seed=1):
    rng = np.random.default_rng(seed)
    return (y * rng.uniform(0.8, 1.2, y.shape[:3] + (1, 1)) + scale * np.roll(y, 1, axis=1)).astype(np.float32)


# ---------------------------------------------------------------------------
# Primary score
# ---------------------------------------------------------------------------
def test_perfect_prediction_scores_exactly_one():
    y = gaussian_stamps(4)
    table = galaxy_table(y, y.copy(), bands=LSST, metrics=FAST)
    assert (table["deblend"] == 1.0).all()
    assert summarize(table, bands=LSST)["deblend"] == 1.0
    assert np.all(deblend_scores(y, y)[1] == 1.0)


def test_all_zero_prediction_scores_exactly_zero():
    y = gaussian_stamps(4)
    table = galaxy_table(y, np.zeros_like(y), bands=LSST, metrics=FAST)
    # ||0 - y|| / ||y|| = 1 exactly, so 1 - min(1, 1) = 0.
    assert (table["nre"] == 1.0).all()
    assert summarize(table, bands=LSST)["deblend"] == 0.0


def test_anything_worse_than_zeros_is_clipped_at_zero():
    y = gaussian_stamps(2)
    table = galaxy_table(y, -3 * y, bands=LSST, metrics=())
    # NRE = ||-4 y|| / ||y|| = 4 > 1.
    np.testing.assert_allclose(table["nre"], 4.0, rtol=1e-6)
    assert (table["deblend"] == 0.0).all()


def test_mean_is_invariant_to_blend_order():
    y = gaussian_stamps(6, seed=2)
    p = noisy(y)
    perm = np.random.default_rng(3).permutation(len(y))
    a = summarize(galaxy_table(y, p, bands=LSST, metrics=FAST), bands=LSST)
    b = summarize(galaxy_table(y[perm], p[perm], bands=LSST, metrics=FAST), bands=LSST)
    assert a["deblend"] == pytest.approx(b["deblend"], rel=1e-12)
    assert a["flux_scatter_r"] == pytest.approx(b["flux_scatter_r"], rel=1e-12)


def test_doubling_truth_and_prediction_leaves_primary_unchanged():
    y = gaussian_stamps(3, seed=4)
    p = noisy(y)
    s1 = galaxy_table(y, p, bands=LSST, metrics=())["deblend"].to_numpy()
    s2 = galaxy_table(2 * y, 2 * p, bands=LSST, metrics=())["deblend"].to_numpy()
    np.testing.assert_allclose(s1, s2, rtol=1e-12)


def test_hand_computed_case():
    # One blend, two slots, bands (g, r), 2x2 pixels.
    y = np.zeros((1, 2, 2, 2, 2), np.float32)
    p = np.zeros_like(y)
    y[0, 0, 0, 0, 0] = 3.0  # slot 0, g band: one pixel of 3
    y[0, 0, 1, 1, 1] = 4.0  # slot 0, r band: one pixel of 4   -> ||y|| = 5
    p[0, 0, 0, 0, 0] = 3.0  # g exact
    p[0, 0, 1, 1, 1] = 1.0  # r: 1 instead of 4                 -> ||p - y|| = 3
    y[0, 1, 0, 0, 1] = 1.0  # slot 1: g only, ||y|| = 1, predicted as zeros
    table = galaxy_table(y, p, bands=("g", "r"), metrics=FAST)
    # slot 0: NRE = 3 / 5 = 0.6 -> 0.4 ; slot 1: NRE = 1 -> 0 ; mean = 0.2
    np.testing.assert_allclose(table["nre"], [0.6, 1.0])
    np.testing.assert_allclose(table["deblend"], [0.4, 0.0])
    # dF/F: slot 0 g = 0, r = (1 - 4) / 4 = -0.75; slot 1 g = (0 - 1) / 1 = -1, r: true flux 0 -> NaN
    np.testing.assert_allclose(table["flux_err_g"], [0.0, -1.0])
    assert table["flux_err_r"][0] == pytest.approx(-0.75) and math.isnan(table["flux_err_r"][1])
    # g - r error, slot 0: -2.5 log10((3/1) / (3/4)) = -2.5 log10(4); slot 1: predicted flux 0 -> undefined
    assert table["colour_err_g_r"][0] == pytest.approx(-2.5 * math.log10(4.0))
    assert math.isnan(table["colour_err_g_r"][1])
    # cosine: slot 0 both bands are single pixels in the same place -> 1; slot 1 g: zero prediction -> 0
    np.testing.assert_allclose(table[["cosine_g", "cosine_r"]].to_numpy()[0], [1.0, 1.0])
    assert table["cosine_g"][1] == 0.0 and math.isnan(table["cosine_r"][1])
    summary = summarize(table, bands=("g", "r"))
    assert summary["deblend"] == pytest.approx(0.2)
    assert summary["colour_catastrophic_g_r"] == 1.0  # |-1.505| > 0.2 and one undefined
    assert math.isnan(summary["colour_bias_r_i"])  # no i band


def test_neighbour_leakage_lowers_score_as_nre_predicts():
    y = gaussian_stamps(1, k=3, seed=5, empty_last=False)
    a, b = y[0, 0].astype(np.float64), y[0, 1].astype(np.float64)
    previous = 1.0
    for f in (0.05, 0.2, 0.5):
        p = y.copy()
        p[0, 0] = y[0, 0] + f * y[0, 1]  # slot 0 also holds a fraction f of its neighbour
        row = galaxy_table(y, p, bands=LSST, metrics=("cosine",)).iloc[0]
        nre = f * np.linalg.norm(b) / np.linalg.norm(a)  # residual is exactly f * b
        assert row["nre"] == pytest.approx(nre, rel=1e-5)
        # NRE^2 = (s - 1)^2 + 2 s (1 - cos theta), s = ||p|| / ||y||, theta over all bands
        pp = p[0, 0].astype(np.float64)
        s = np.linalg.norm(pp) / np.linalg.norm(a)
        cos = np.sum(pp * a) / (np.linalg.norm(pp) * np.linalg.norm(a))
        assert row["nre"] ** 2 == pytest.approx((s - 1) ** 2 + 2 * s * (1 - cos), rel=1e-5)
        assert row["deblend"] < previous
        previous = row["deblend"]


def test_garbage_in_empty_slots_is_ignored():
    y = gaussian_stamps(3, seed=6)  # last slot of every blend is empty
    p = noisy(y)
    before = galaxy_table(y, p, bands=LSST, metrics=FAST)
    p[:, -1] = np.random.default_rng(0).normal(0, 1e4, p[:, -1].shape)
    after = galaxy_table(y, p, bands=LSST, metrics=FAST)
    pd.testing.assert_frame_equal(before, after)
    assert (before["slot"] < y.shape[1] - 1).all()  # empty slots have no rows


def test_batches_and_fast_path_agree():
    y = gaussian_stamps(7, seed=7)
    p = noisy(y)
    whole = galaxy_table(y, p, bands=LSST, metrics=FAST, batch_size=100)
    pieces = galaxy_table(y, p, bands=LSST, metrics=FAST, batch_size=2)
    pd.testing.assert_frame_equal(whole, pieces)
    part = galaxy_table_batch(y[4:6], p[4:6], bands=LSST, blend_offset=4, metrics=FAST)
    pd.testing.assert_frame_equal(part, whole[whole.blend_index.isin([4, 5])].reset_index(drop=True))
    real, score = deblend_scores(y, p)
    assert real.sum() == len(whole)
    np.testing.assert_array_equal(score, whole["deblend"].to_numpy())


def test_float64_and_integer_inputs_give_the_float32_result():
    y = gaussian_stamps(2, seed=8)
    p = noisy(y)
    ref = galaxy_table(y, p, bands=LSST, metrics=FAST)
    got = galaxy_table(y.astype(np.float64), p.astype(np.float64), bands=LSST, metrics=FAST)
    pd.testing.assert_frame_equal(ref, got, rtol=1e-6)
    yi, pi = np.round(y).astype(np.int32), np.round(p).astype(np.int32)
    got_i = galaxy_table(yi, pi, bands=LSST, metrics=())
    ref_i = galaxy_table(yi.astype(np.float32), pi.astype(np.float32), bands=LSST, metrics=())
    pd.testing.assert_frame_equal(ref_i, got_i)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------
def test_wrong_shape_names_expected_shape():
    y = np.zeros((3, 6, 6, 48, 48), np.float32)
    p = np.zeros((3, 6, 6, 48, 47), np.float32)
    msg = (r"predictions have shape \(3, 6, 6, 48, 47\); expected \(3, 6, 6, 48, 48\) = "
           r"\(n_blends, max_galaxies, n_bands, height, width\)")
    with pytest.raises(PredictionError, match=msg):
        check_arrays(y, p)
    with pytest.raises(PredictionError, match=msg):
        galaxy_table(y, p, bands=LSST)


def test_wrong_ndim_is_reported():
    y = np.zeros((2, 2, 2, 4, 4), np.float32)
    with pytest.raises(PredictionError, match=r"predictions have shape \(2, 2, 4, 4\) \(4-D\); expected \(2, 2, 2, 4, 4\)"):
        check_arrays(y, y[:, 0])
    with pytest.raises(PredictionError, match=r"ground truth have shape \(2, 4, 4\) \(3-D\); expected 5 dimensions"):
        check_arrays(y[0, 0], y)


def test_nan_and_inf_are_counted_per_blend():
    y = np.ones((4, 2, 2, 4, 4), np.float32)
    p = y.copy()
    p[1, 0, 0, 0, :2] = np.nan
    p[3, 1, 1, 2, 2] = np.inf
    msg = (r"predictions contain 2 NaN and 1 inf values in 2 blend\(s\) \(blend indexes 1, 3\); "
           r"expected finite values")
    with pytest.raises(PredictionError, match=msg):
        check_arrays(y, p)
    # across batches of galaxy_table: all counted before raising
    with pytest.raises(PredictionError, match=msg):
        galaxy_table(y, p, bands=("g", "r"), metrics=FAST, batch_size=1)
    with pytest.raises(PredictionError, match=msg):
        deblend_scores(y, p)


def test_nan_in_ground_truth_is_reported_as_such():
    y = np.ones((2, 2, 2, 4, 4), np.float32)
    y[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(PredictionError, match=r"ground truth contain 1 NaN and 0 inf values in 1 blend\(s\) \(blend indexes 0\)"):
        galaxy_table(y, np.ones_like(y), bands=("g", "r"))


def test_list_is_accepted_and_ragged_or_object_input_rejected():
    y = gaussian_stamps(2, k=2, c=2, size=12)
    table = galaxy_table(y, [p for p in y], bands=("g", "r"), metrics=())
    assert (table["deblend"] == 1.0).all()
    ragged = [y[0], y[1, :1]]
    with pytest.raises(PredictionError, match=r"predictions could not be converted to an array .*expected a numeric array of shape \(2, 2, 2, 12, 12\)"):
        check_arrays(y, ragged)
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = y[0], y[1]
    with pytest.raises(PredictionError, match=r"predictions are an object array .*expected a numeric array of shape \(2, 2, 2, 12, 12\)"):
        check_arrays(y, obj)


@pytest.mark.parametrize("dtype", ["U3", bool, complex])
def test_non_numeric_dtype_is_rejected(dtype):
    y = np.zeros((1, 1, 1, 2, 2), np.float32)
    with pytest.raises(PredictionError, match=r"predictions have non-numeric dtype .*expected real numbers"):
        check_arrays(y, np.zeros(y.shape, dtype=dtype))


def test_band_count_mismatch_and_unknown_group():
    y = np.ones((1, 1, 2, 12, 12), np.float32)
    with pytest.raises(ConfigError, match=r"bands \['g', 'r', 'i'\] name 3 bands but the arrays have 2"):
        galaxy_table(y, y, bands=("g", "r", "i"))
    with pytest.raises(ConfigError, match=r"unknown metric groups \['fluxes'\]"):
        galaxy_table(y, y, bands=("g", "r"), metrics=("fluxes",))


# ---------------------------------------------------------------------------
# Secondary metrics
# ---------------------------------------------------------------------------
def test_flux_aggregates_on_known_values():
    table = pd.DataFrame({"flux_err_r": [-0.1, 0.0, 0.1, 0.5, np.nan]})
    s = summarize(table, bands=("r",))
    assert s["flux_bias_r"] == pytest.approx(0.05)  # median of the 4 finite values
    # |x - 0.05| = 0.15, 0.05, 0.05, 0.45 -> median 0.1 -> x 1.4826
    assert s["flux_scatter_r"] == pytest.approx(0.14826)
    assert s["flux_mape_r"] == pytest.approx(100 * 0.7 / 4)
    assert s["flux_catastrophic_r"] == pytest.approx(0.25)
    assert robust_scatter([1.0, 1.0, 1.0]) == 0.0 and math.isnan(robust_scatter([np.nan]))


def test_single_band_survey_gives_nan_not_errors():
    y = gaussian_stamps(2, c=1, size=24)
    p = noisy(y)
    table = galaxy_table(y, p, bands=("VIS",))
    s = summarize(table, bands=("VIS",))
    assert 0.0 < s["deblend"] < 1.0 and np.isfinite(s["flux_scatter_VIS"])
    for key in ("flux_scatter_r", "flux_catastrophic_r", "colour_scatter_g_r", "de_median", "ssim", "shear_m"):
        assert math.isnan(s[key]), key
    assert table["de"].isna().all() and table["colour_err_g_r"].isna().all()


def test_truth_table_join():
    y = gaussian_stamps(3, seed=9)
    p = noisy(y)
    truth = pd.DataFrame({
        "blend_index": np.repeat(np.arange(3), 2),
        "slot": np.tile(np.arange(2), 3),
        "mag_r": np.arange(6, dtype=float) + 20,
        "nre": np.zeros(6),  # clashes with a metric column
    })
    table = galaxy_table(y, p, bands=LSST, metrics=(), truth=truth)
    assert len(table) == 6
    np.testing.assert_array_equal(table["mag_r"], 20 + 2 * table["blend_index"] + table["slot"])
    assert "nre_truth" in table.columns and (table["nre"] > 0).all()
    # a structured array (the HDF5 compound) works too
    rec = truth.drop(columns="nre").to_records(index=False)
    assert "mag_r" in galaxy_table(y, p, bands=LSST, metrics=(), truth=rec).columns
    with pytest.raises(PredictionError, match=r"truth table lacks column\(s\) \['slot'\]"):
        galaxy_table(y, p, bands=LSST, metrics=(), truth=truth.drop(columns="slot"))


def _sheared_gaussian(g1, g2, *, size=48, sigma=3.0, flux=1e5):
    prof = galsim.Gaussian(sigma=sigma, flux=flux).shear(g1=g1, g2=g2)
    return prof.drawImage(nx=size, ny=size, scale=1.0, method="no_pixel").array.astype(np.float32)


def test_adaptive_moments_recover_a_known_shear():
    truth = _sheared_gaussian(0.3, -0.2)
    e1, e2, ok = adaptive_ellipticity(truth[None])
    assert ok[0]
    assert e1[0] == pytest.approx(0.3, abs=2e-3) and e2[0] == pytest.approx(-0.2, abs=2e-3)


def test_ellipticity_residual_and_failures_in_the_table():
    # slot 0: identical images (de = 0); slot 1: another shear (de = |dg|); slot 2: zero prediction
    y = np.zeros((1, 3, 3, 48, 48), np.float32)
    p = np.zeros_like(y)
    for band in range(3):
        y[0, 0, band] = _sheared_gaussian(0.3, -0.2)
        y[0, 1, band] = _sheared_gaussian(0.1, 0.1)
        y[0, 2, band] = _sheared_gaussian(-0.2, 0.0)
    p[0, 0] = y[0, 0]
    for band in range(3):
        p[0, 1, band] = _sheared_gaussian(-0.1, 0.25)
    table = galaxy_table(y, p, bands=("g", "r", "i"), metrics=("shape",))
    assert table["de"][0] == pytest.approx(0.0, abs=1e-9)
    assert table["de"][1] == pytest.approx(math.hypot(0.2, 0.15), abs=3e-3)
    assert table["de"][2] == MOMENT_FAILURE_DE
    assert list(table["moments_failed_pred"]) == [False, False, True]
    s = summarize(table, bands=("g", "r", "i"))
    assert s["moment_failures"] == 1.0 and s["moment_failures_isolated"] == 0.0
    assert s["de_median"] == pytest.approx(table["de"].median())


def test_shear_bias_is_recovered():
    rng = np.random.default_rng(10)
    e_true = rng.normal(0, 0.3, 200)
    m, c = -0.04, 0.003
    got_m, got_c = fit_shear_bias(e_true, (1 + m) * e_true + c)
    assert got_m == pytest.approx(m, abs=1e-12) and got_c == pytest.approx(c, abs=1e-12)
    assert all(math.isnan(v) for v in fit_shear_bias([0.1], [0.2]))
    # per component and pooled through summarize; a NaN pair is left out
    e1, e2 = rng.normal(0, 0.3, (2, 50))
    table = pd.DataFrame({
        "e1_isolated": e1, "e2_isolated": e2,
        "e1_pred": 1.02 * e1 + 0.01, "e2_pred": 0.95 * e2 - 0.01,
        "de": np.zeros(50), "moments_failed_pred": np.zeros(50, bool),
        "moments_failed_isolated": np.zeros(50, bool),
    })
    table.loc[0, "e1_pred"] = np.nan
    s = summarize(table, bands=("r",))
    assert s["shear_m1"] == pytest.approx(0.02) and s["shear_c1"] == pytest.approx(0.01)
    assert s["shear_m2"] == pytest.approx(-0.05) and s["shear_c2"] == pytest.approx(-0.01)
    # pooled: one line through both components' points (least squares, as numpy's polyfit)
    x = np.r_[e1[1:], e2]
    yv = np.r_[table["e1_pred"][1:], table["e2_pred"]]
    slope, intercept = np.polyfit(x, yv, 1)
    assert s["shear_m"] == pytest.approx(slope - 1) and s["shear_c"] == pytest.approx(intercept)


def naive_ssim(a, b, *, footprint=0.05):
    """SSIM with an explicit 11x11 Gaussian window (sigma 1.5), reflected borders, mean on the footprint."""
    a = a / a.max()
    b = b / b.max() if b.max() > 0 else b
    r = np.arange(-5, 6)
    g = np.exp(-0.5 * (r / 1.5) ** 2)
    w = np.outer(g, g) / np.outer(g, g).sum()
    pa = np.pad(a, 5, mode="symmetric")  # scipy 'reflect' == numpy 'symmetric'
    pb = np.pad(b, 5, mode="symmetric")
    vals = []
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            wa, wb = pa[i : i + 11, j : j + 11], pb[i : i + 11, j : j + 11]
            mx, my = np.sum(w * wa), np.sum(w * wb)
            if mx < footprint:
                continue
            vx, vy = np.sum(w * wa * wa) - mx**2, np.sum(w * wb * wb) - my**2
            cxy = np.sum(w * wa * wb) - mx * my
            c1, c2 = 0.01**2, 0.03**2
            vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return np.mean(vals)


def test_ssim_properties_and_definition():
    y = gaussian_stamps(2, k=2, c=1, size=24, seed=11, empty_last=False)[:, :, 0].reshape(-1, 24, 24)
    other = np.roll(y, 3, axis=-1) + 0.2 * y[::-1]
    np.testing.assert_allclose(ssim(y, y), 1.0, rtol=1e-12)
    np.testing.assert_allclose(ssim(y, 7.0 * y), 1.0, rtol=1e-12)  # each image scaled by its max
    got = ssim(y, other)
    assert np.all(got < 0.99)
    for k in range(len(y)):
        np.testing.assert_allclose(got[k], naive_ssim(y[k].astype(float), other[k].astype(float)), rtol=1e-9)


def test_ssim_of_an_empty_truth_is_nan_and_tiny_stamps_are_scored():
    assert np.isnan(ssim(np.zeros((1, 16, 16)), np.ones((1, 16, 16))))[0]
    y = np.ones((1, 1, 1, 4, 4), np.float32)
    np.testing.assert_allclose(galaxy_table(y, y, bands=("r",), metrics=("ssim",))["ssim"], 1.0)


def test_summary_of_realistic_blends_has_every_key(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    from tests.helpers.synthetic_blends import make_synthetic_blends

    X, y = make_synthetic_blends(3, seed=12, noise=False)
    p = y + 0.1 * np.roll(y, 1, axis=1)
    s = summarize(galaxy_table(y, p, bands=X.bands), bands=X.bands)
    assert s["n_galaxies"] == float((y.reshape(3, y.shape[1], -1) ** 2).sum(-1).astype(bool).sum())
    for key in ("deblend", "flux_scatter_r", "flux_catastrophic_r", "colour_scatter_g_r",
                "colour_scatter_r_i", "cosine", "de_median", "shear_m", "ssim"):
        assert np.isfinite(s[key]), key
    assert 0.0 < s["deblend"] < 1.0 and 0.0 < s["ssim"] <= 1.0


def test_primary_does_not_run_moments(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("moments must not run")

    monkeypatch.setattr(shapes, "adaptive_ellipticity", boom)
    monkeypatch.setattr(shapes, "ssim", boom)
    y = gaussian_stamps(2, size=24)
    galaxy_table(y, noisy(y), bands=LSST, metrics=FAST)
    deblend_scores(y, noisy(y))
