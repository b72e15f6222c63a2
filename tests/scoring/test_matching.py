"""Matching and the blind score on hand-made catalogues (deblendkit.scoring.matching, blind_metrics)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from deblendkit.errors import ConfigError
from deblendkit.ramp.blind_prediction import check_output, pack_catalogues, truth_dtype
from deblendkit.scoring import deblend_scores
from deblendkit.scoring.blind_metrics import blind_evaluate, blind_summary, breakdown
from deblendkit.scoring.matching import match_catalogue, psf_fwhm

K, C, S, K_OUT = 3, 2, 16, 5
CENTRES = np.array([[4.0, 4.0], [11.0, 5.0], [7.0, 12.0]])


def blob(x, y, sigma=1.5, flux=100.0):
    yy, xx = np.mgrid[:S, :S]
    g = np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / sigma**2)
    return np.stack([flux * (c + 1) * g / g.sum() for c in range(C)]).astype(np.float32)


def truth(n_gal=3, radius=2.0):
    y = np.zeros(1, dtype=truth_dtype(K, C, S))
    y["centers"] = np.nan
    y["centers"][0, :n_gal] = CENTRES[:n_gal]
    for k in range(n_gal):
        y["isolated"][0, k] = blob(*CENTRES[k], sigma=1.0 + 0.3 * k)
    y["n_galaxies"] = n_gal
    y["mag"][0] = [21.0, 23.5, 25.5]
    y["blendedness"][0] = [0.05, 0.3, 0.7]
    y["match_radius"] = radius
    y["faint_centers"] = np.nan  # no unlabelled galaxies (blend mode)
    return y


def catalogue(xy, images):
    c, i = pack_catalogues([(np.asarray(xy, float).reshape(-1, 2), np.asarray(images).reshape(-1, C, S, S))],
                           k_out=K_OUT, n_bands=C, stamp_size=S)
    return check_output((c, i), n_blends=1, k_out=K_OUT, n_bands=C, stamp_size=S)


def summary(y, p):
    return blind_summary(blind_evaluate(y, p, bands=("g", "r"), metrics=("flux",)), bands=("g", "r"))


def test_perfect_catalogue_scores_one():
    y = truth()
    s = summary(y, catalogue(CENTRES, y["isolated"][0]))
    assert s["blind"] == 1.0 and s["recall"] == 1.0 and s["precision"] == 1.0 and s["f1"] == 1.0
    assert s["unrecognised"] == 0.0 and s["flux_scatter_r"] == 0.0


def test_detection_of_an_unlabelled_galaxy_is_ignored():
    # Field mode: an unmatched detection within the radius of an unlabelled galaxy is neither
    # matched nor spurious; one farther away is spurious.
    y = truth(radius=2.0)
    y["faint_centers"][0, 0] = (14.0, 14.0)
    xy = np.vstack([CENTRES, [[14.5, 13.0]]])
    images = np.concatenate([y["isolated"][0], blob(14.5, 13.0)[None]])
    s = summary(y, catalogue(xy, images))
    assert s["blind"] == 1.0 and s["precision"] == 1.0 and s["n_detections"] == 3 and s["n_spurious"] == 0
    xy[3] = (14.0, 10.0)  # 4 px away from it
    s = summary(y, catalogue(xy, images))
    assert s["blind"] == pytest.approx(3 / 4) and s["n_spurious"] == 1


def test_true_centres_equal_the_first_track_score():
    y = truth()
    images = y["isolated"][0] * np.array([0.8, 1.1, 0.5], np.float32)[:, None, None, None]
    images[2] += blob(5.0, 5.0, flux=30.0)
    _, first = deblend_scores(y["isolated"], images[None])
    assert summary(y, catalogue(CENTRES + 0.3, images))["blind"] == pytest.approx(first.mean(), abs=1e-12)


def test_missed_source_costs_its_share():
    y = truth()
    s = summary(y, catalogue(CENTRES[:2], y["isolated"][0, :2]))
    assert s["blind"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["precision"] == 1.0 and s["unrecognised"] == 0.0  # no detection near the missed one


def test_spurious_detection_adds_to_the_denominator():
    y = truth()
    xy = np.vstack([CENTRES, [[14.0, 14.0]]])
    images = np.concatenate([y["isolated"][0], blob(14.0, 14.0)[None]])
    s = summary(y, catalogue(xy, images))
    assert s["blind"] == pytest.approx(3 / 4) and s["precision"] == pytest.approx(3 / 4)
    assert s["n_spurious"] == 1 and s["recall"] == 1.0


def test_swapped_pair_scores_each_image_against_the_other():
    y = truth()
    a, b, c = y["isolated"][0]
    s = summary(y, catalogue(CENTRES, np.stack([b, a, c])))

    def one(pred, true):
        return 1 - min(1.0, float(np.linalg.norm(pred - true) / np.linalg.norm(true)))

    assert s["blind"] == pytest.approx((one(b, a) + one(a, b) + 1.0) / 3)
    assert s["recall"] == 1.0


def test_tie_one_match_one_spurious_whichever_wins():
    y = truth(n_gal=1)
    a = y["isolated"][0, 0]
    x0, y0 = CENTRES[0]
    s = summary(y, catalogue([[x0 - 1, y0], [x0 + 1, y0]], np.stack([a, a])))
    assert s["blind"] == pytest.approx(0.5) and s["precision"] == 0.5 and s["recall"] == 1.0


def test_empty_catalogue_and_empty_truth():
    y = truth()
    s = summary(y, catalogue(np.zeros((0, 2)), np.zeros((0, C, S, S))))
    assert s["blind"] == 0.0 and s["recall"] == 0.0 and math.isnan(s["precision"]) and s["f1"] == 0.0
    none = truth(n_gal=0)
    s = summary(none, catalogue(np.zeros((0, 2)), np.zeros((0, C, S, S))))
    assert math.isnan(s["blind"]) and math.isnan(s["recall"])
    s = summary(none, catalogue([[3.0, 3.0]], blob(3.0, 3.0)[None]))
    assert s["blind"] == 0.0 and s["precision"] == 0.0


def test_radius_is_inclusive_and_farther_is_missed():
    m = match_catalogue([[0.0, 0.0]], [[3.0, 4.0]], radius=5.0)
    assert m.detection_of.tolist() == [0] and m.distance[0] == 5.0
    m = match_catalogue([[0.0, 0.0]], [[3.0, 4.001]], radius=5.0)
    assert m.detection_of.tolist() == [-1] and m.spurious.tolist() == [True] and np.isnan(m.distance[0])


def test_hungarian_matches_more_than_greedy_nearest():
    # Greedy (closest pair first) gives d0 to B (1.4 px) and leaves A with nothing within 2 px.
    m = match_catalogue([[0.0, 0.0], [3.0, 0.0]], [[1.6, 0.0], [4.5, 0.0]], radius=2.0)
    assert m.detection_of.tolist() == [0, 1] and m.n_spurious == 0


def test_unrecognised_blend():
    # One detection between two close sources: one matched, the other missed and unrecognised;
    # a missed source with no detection near it is not unrecognised.
    m = match_catalogue([[0.0, 0.0], [2.0, 0.0], [20.0, 0.0]], [[0.9, 0.0]], radius=2.5)
    assert m.detection_of.tolist() == [0, -1, -1]
    assert m.unrecognised.tolist() == [False, True, False]


def test_breakdown_by_magnitude():
    y = truth()
    res = blind_evaluate(y, catalogue(CENTRES[:1], y["isolated"][0, :1]))
    table = breakdown(res, by="mag", bins=(20.0, 22.0, 24.0, 26.0))
    assert table["n_true"].tolist() == [1, 1, 1] and table["recall"].tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(ConfigError, match="by must be 'mag' or 'blendedness', got 'snr'"):
        breakdown(res, by="snr")


def test_bad_catalogues_and_radius_are_refused():
    with pytest.raises(ConfigError, match=r"detected centres must have shape \(n, 2\), got \(3,\)"):
        match_catalogue([[0.0, 0.0]], [1.0, 2.0, 3.0], radius=2.0)
    with pytest.raises(ConfigError, match="true centres must be finite"):
        match_catalogue([[np.nan, 0.0]], [[1.0, 2.0]], radius=2.0)
    with pytest.raises(ConfigError, match="radius must be a positive number of pixels, got 0"):
        match_catalogue([[0.0, 0.0]], [[1.0, 2.0]], radius=0)


def test_psf_fwhm_of_a_gaussian():
    sigma = 2.0
    yy, xx = np.mgrid[-12:13, -12:13]
    g = np.exp(-0.5 * (xx**2 + yy**2) / sigma**2)
    fwhm = 2.3548 * sigma
    assert fwhm <= psf_fwhm(g) <= 1.12 * fwhm  # whole pixels counted: a little over
    assert psf_fwhm(np.stack([g, g[::-1]])).shape == (2,)
