"""Tests of deblendkit.ramp.score_types: attributes, values, and use by rampwf."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from rampwf.utils import get_score_cv_bags

from deblendkit.errors import ConfigError
from deblendkit.ramp.prediction import make_predictions_type
from deblendkit.ramp.score_types import (
    SSIM,
    AbsFluxBias,
    CatastrophicFluxFraction,
    ColourScatter,
    CosineSimilarity,
    DeblendScore,
    EllipticityResidual,
    FluxScatter,
    make_score_types,
)
from deblendkit.scoring import shapes
from deblendkit.scoring.references import headline_scores
from deblendkit.scoring.table import galaxy_table, summarize

LSST = ("u", "g", "r", "i", "z", "y")


@pytest.fixture(scope="module")
def blends():
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from tests.helpers.synthetic_blends import make_synthetic_blends
    finally:
        sys.path.pop(0)
    X, y = make_synthetic_blends(4, seed=21, noise=False, stamp_size=32)
    rng = np.random.default_rng(0)
    p = (y * rng.uniform(0.85, 1.15, y.shape[:3] + (1, 1)) + 0.1 * np.roll(y, 1, axis=1)).astype(np.float32)
    return y, p


def test_make_score_types_order_and_attributes():
    types = make_score_types(LSST)
    expected = [
        # name, lower is better, minimum, maximum
        ("deblend", False, 0.0, 1.0),
        ("flux_scatter_r", True, 0.0, math.inf),
        ("abs_flux_bias_r", True, 0.0, math.inf),
        ("flux_catastrophic_r", True, 0.0, 1.0),
        ("colour_scatter_g_r", True, 0.0, math.inf),
        ("cosine", False, -1.0, 1.0),
        ("de_median", True, 0.0, 2.0),
        ("ssim", False, -1.0, 1.0),
    ]
    assert [(t.name, t.is_lower_the_better, t.minimum, t.maximum) for t in types] == expected
    assert isinstance(types[0], DeblendScore)
    assert all(isinstance(t.precision, int) and t.precision > 0 for t in types)
    # rampwf's "worst" is the bad end of the range
    assert types[0].worst == 0.0 and types[1].worst == math.inf


def test_single_band_survey_keeps_what_it_can():
    assert [t.name for t in make_score_types(("VIS",))] == ["deblend", "cosine"]
    names = [t.name for t in make_score_types(("VIS",), ref_band="VIS")]
    assert names == ["deblend", "flux_scatter_VIS", "abs_flux_bias_VIS", "flux_catastrophic_VIS",
                     "cosine", "de_median", "ssim"]


def test_bad_configuration_is_refused():
    with pytest.raises(ConfigError, match=r"FluxScatter needs band 'r', which is not among the bands \['VIS'\]"):
        FluxScatter(("VIS",))
    with pytest.raises(ConfigError, match=r"colour must be one of"):
        ColourScatter(LSST, colour=("u", "z"))
    with pytest.raises(ConfigError, match=r"bands must be a non-empty sequence of band names"):
        make_score_types("ugrizy")


def test_values_match_metrics(blends):
    y, p = blends
    s = summarize(galaxy_table(y, p, bands=LSST), bands=LSST)
    assert DeblendScore(LSST)(y, p) == pytest.approx(s["deblend"], rel=1e-12)
    assert FluxScatter(LSST)(y, p) == pytest.approx(s["flux_scatter_r"], rel=1e-12)
    assert AbsFluxBias(LSST)(y, p) == pytest.approx(abs(s["flux_bias_r"]), rel=1e-12)
    assert CatastrophicFluxFraction(LSST)(y, p) == pytest.approx(s["flux_catastrophic_r"])
    assert ColourScatter(LSST)(y, p) == pytest.approx(s["colour_scatter_g_r"], rel=1e-12)
    assert CosineSimilarity(LSST)(y, p) == pytest.approx(s["cosine"], rel=1e-12)
    assert EllipticityResidual(LSST)(y, p) == pytest.approx(s["de_median"], rel=1e-12)
    assert SSIM(LSST)(y, p) == pytest.approx(s["ssim"], rel=1e-12)
    assert 0.0 < s["deblend"] < 1.0  # a real, imperfect case


def test_reference_rows_use_the_score_types_names_and_values(blends):
    """deblendkit.scoring.references.headline_scores: the same names, order and values as the score types."""
    y, p = blends
    headline = headline_scores(summarize(galaxy_table(y, p, bands=LSST), bands=LSST))
    types = make_score_types(LSST)
    assert list(headline) == [t.name for t in types]
    for t in types:
        assert headline[t.name] == pytest.approx(t(y, p), rel=1e-12), t.name


def test_score_types_compute_only_what_they_need(blends, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("not needed by this score")

    monkeypatch.setattr(shapes, "adaptive_ellipticity", boom)
    monkeypatch.setattr(shapes, "ssim", boom)
    y, p = blends
    for score in make_score_types(LSST)[:6]:  # all but the shape and SSIM scores
        assert np.isfinite(score(y, p)), score.name
    with pytest.raises(AssertionError, match="not needed"):
        EllipticityResidual(LSST)(y, p)


def test_get_score_cv_bags_with_rampwf(blends):
    y, p_full = blends
    n = len(y)
    Predictions = make_predictions_type(max_galaxies=y.shape[1], n_bands=y.shape[2], stamp_size=y.shape[3])
    folds = [np.array([0, 1]), np.array([1, 2, 3]), np.array([3, 0])]  # overlapping, like ShuffleSplit
    rng = np.random.default_rng(5)
    per_fold = [(p_full * rng.uniform(0.9, 1.1)).astype(np.float32) for _ in folds]
    predictions_list = [Predictions(y_pred=pf, fold_is=f) for pf, f in zip(per_fold, folds)]
    ground_truth = Predictions(y_true=y)
    score = DeblendScore(LSST)
    combined, bags = get_score_cv_bags(score, predictions_list, ground_truth, test_is_list=folds)
    assert len(bags) == 3
    # first bag: fold 0 alone, scored on its rows
    assert bags[0] == pytest.approx(score(y[folds[0]], per_fold[0][folds[0]]), rel=1e-9)
    # last bag: every row, averaged over the folds that predicted it
    expected = np.zeros_like(p_full)
    count = np.zeros(n)
    for pf, f in zip(per_fold, folds):
        expected[f] += pf[f]
        count[f] += 1
    expected /= count[:, None, None, None, None]
    np.testing.assert_allclose(combined.y_pred, expected, rtol=1e-6)
    assert bags[-1] == pytest.approx(score(y, expected), rel=1e-6)
    # the ground truth rampwf deep-copied and sliced is untouched
    assert ground_truth.y_pred is y and ground_truth.valid_indexes.all()
    # the secondary scores go through the same machinery
    _, flux_bags = get_score_cv_bags(FluxScatter(LSST), predictions_list, ground_truth, test_is_list=folds)
    assert flux_bags[-1] == pytest.approx(FluxScatter(LSST)(y, expected), rel=1e-5)
    # score_function (rampwf's entry point) reads y_pred of both sides
    assert score.score_function(ground_truth, Predictions(y_pred=y)) == 1.0


def test_batched_scores_equal_the_whole_set_scores(blends):
    """The out-of-core path scores batch by batch: the same value as one call on everything."""
    y, p = blends
    batches = [(y[:1], p[:1]), (y[1:3], p[1:3]), (y[3:], p[3:])]
    for score_type in make_score_types(LSST):
        whole = score_type(y, p)
        got = score_type.score_batches(iter(batches))
        assert got == pytest.approx(whole, rel=1e-12, abs=1e-15) or (math.isnan(got) and math.isnan(whole)), \
            score_type.name
