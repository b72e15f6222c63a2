"""Tests of the starting kit ``submissions/starting_kit/deblender.py``.

The submission is loaded as the workflow loads it (by path, sanitised, not
registered in ``sys.modules``). Blends are synthetic (``synthetic_blends``).
"""
from __future__ import annotations

import ast
import pickle
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from rampwf.utils.importing import import_module_from_source

from tests.helpers.synthetic_blends import make_synthetic_blends

_PATH = Path(__file__).resolve().parents[2] / "submissions" / "starting_kit" / "deblender.py"

sk = import_module_from_source(str(_PATH), "deblender", sanitize=True)


def _nre(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.linalg.norm(pred - true) / np.linalg.norm(true))


def _is_point_symmetric(img: np.ndarray, center) -> bool:
    """``img[y, x] == img[2cy - y, 2cx - x]`` wherever both pixels are on the image."""
    mirrored, inside = sk.reflect(img, center)
    return bool(np.array_equal(np.where(inside, img, 0.0), mirrored))


# ---------------------------------------------------------------- the file itself
def test_submission_imports_only_numpy():
    tree = ast.parse(_PATH.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
            if node.module and node.module.startswith("deblendkit"):  # only the submission-facing API
                assert node.module == "deblendkit.deblend", node.module
    assert roots <= {"numpy", "deblendkit"}, roots


# ---------------------------------------------------------------- geometry
@pytest.mark.parametrize(
    "center, expected",
    [((10.0, 3.0), (10.0, 3.0)), ((10.24, 3.26), (10.0, 3.5)), ((-0.3, 7.76), (-0.5, 8.0))],
)
def test_round_to_half_pixel(center, expected):
    np.testing.assert_array_equal(sk.round_to_half_pixel(center), expected)


@pytest.mark.parametrize("center", [(12.0, 20.0), (12.5, 20.0), (30.5, 7.5), (3.3, 40.8)])
def test_reflect_twice_is_identity_where_inside(center):
    rng = np.random.default_rng(1)
    img = rng.normal(size=(2, 48, 48))
    once, inside = sk.reflect(img, center)
    twice, _ = sk.reflect(once, center)
    np.testing.assert_array_equal(twice[:, inside], img[:, inside])
    assert np.all(once[:, ~inside] == 0)
    # The mirror of the (rounded) centre pixel is itself.
    cx, cy = sk.round_to_half_pixel(center)
    if cx == int(cx) and cy == int(cy):
        assert once[0, int(cy), int(cx)] == img[0, int(cy), int(cx)]


# ---------------------------------------------------------------- templates
@pytest.mark.parametrize("monotonic", [False, True])
@pytest.mark.parametrize("center", [(23.0, 23.0), (20.5, 26.0), (17.3, 30.8), (4.5, 44.0)])
def test_template_is_point_symmetric_and_nonnegative(center, monotonic):
    rng = np.random.default_rng(2)
    img = rng.normal(size=(3, 48, 48)) + 2.0
    t = sk.symmetric_template(img, center, threshold=0.5, monotonic=monotonic)
    assert t.min() >= 0
    for band in t:
        assert _is_point_symmetric(band, center)
    # Zero where the mirror pixel is off the stamp.
    _, inside = sk.reflect(img, center)
    assert np.all(t[:, ~inside] == 0)
    # Never brighter than the image it comes from.
    assert np.all(t <= np.maximum(img, 0))


def test_template_removes_a_one_sided_neighbour():
    """A source on one side only has a faint mirror: the template drops it."""
    yy, xx = np.mgrid[0:48, 0:48]
    own = 100.0 * np.exp(-((xx - 20) ** 2 + (yy - 24) ** 2) / 8.0)
    other = 100.0 * np.exp(-((xx - 30) ** 2 + (yy - 24) ** 2) / 8.0)
    t = sk.symmetric_template(own + other, (20, 24), monotonic=False)
    # At the neighbour's peak the template holds the mirror pixel (x = 10),
    # which only sees the galaxy's own light there.
    assert t[24, 30] == pytest.approx((own + other)[24, 10])
    assert t[24, 30] < 0.01 * other[24, 30]


@pytest.mark.parametrize("center", [(23.0, 23.0), (20.5, 26.5), (5.0, 40.5)])
def test_make_monotonic_is_nonincreasing_outwards_and_idempotent(center):
    rng = np.random.default_rng(3)
    img = rng.uniform(size=(48, 48))
    m = sk.make_monotonic(img, center)
    assert np.all(m <= img)
    np.testing.assert_array_equal(sk.make_monotonic(m, center), m)
    cx, cy = sk.round_to_half_pixel(center)
    right, left = int(np.ceil(cx)), int(np.floor(cx))
    high, low = int(np.ceil(cy)), int(np.floor(cy))
    # Moving one pixel away from the centre in x or y never increases the value.
    assert np.all(np.diff(m[:, right:], axis=1) <= 0)
    assert np.all(np.diff(m[:, : left + 1], axis=1) >= 0)
    assert np.all(np.diff(m[high:, :], axis=0) <= 0)
    assert np.all(np.diff(m[: low + 1, :], axis=0) >= 0)


def test_make_monotonic_keeps_a_monotonic_profile():
    yy, xx = np.mgrid[0:48, 0:48]
    g = np.exp(-((xx - 21.5) ** 2 + (yy - 25) ** 2) / 20.0)
    np.testing.assert_array_equal(sk.make_monotonic(g, (21.5, 25.0)), g)


# ---------------------------------------------------------------- smoothing
def test_smoothing_keeps_flux_and_scales_noise_as_predicted():
    rng = np.random.default_rng(4)
    point = np.zeros((48, 48))
    point[24, 24] = 1.0
    assert sk.gaussian_smooth(point, 1.3).sum() == pytest.approx(1.0)
    noise = rng.normal(0.0, 5.0, size=(64, 128, 128))
    measured = sk.gaussian_smooth(noise, 1.0)[:, 10:-10, 10:-10].std()
    # ~700k samples: the sample std is good to ~0.1 %; 2 % is generous.
    assert measured == pytest.approx(float(sk.smoothed_noise(5.0, 1.0)), rel=0.02)


# ---------------------------------------------------------------- apportioning
def test_apportion_conserves_flux_where_covered():
    rng = np.random.default_rng(5)
    blend = rng.normal(100.0, 50.0, size=(6, 48, 48)).astype(np.float32)
    templates = np.maximum(rng.normal(size=(3, 6, 48, 48)), 0.0)
    templates[:, :, :10, :] = 0.0  # an uncovered strip
    parts = sk.apportion(blend, templates)
    covered = templates.sum(axis=0) > 0
    total = parts.sum(axis=0).astype(np.float32)
    np.testing.assert_allclose(total[covered], blend[covered], rtol=1e-6, atol=1e-4)
    assert np.all(parts[:, ~covered] == 0)
    # Each galaxy gets its template's share.
    ratio = templates / np.where(covered, templates.sum(0), 1.0)
    np.testing.assert_allclose(parts, ratio * np.where(covered, blend, 0.0))


def test_predictions_sum_to_the_blend_where_templates_cover_it():
    X, _ = make_synthetic_blends(3, seed=11, max_galaxies=4, min_galaxies=2)
    deb = sk.Deblender()
    pred = deb.predict(X)
    for i in range(len(X)):
        k = int(X.n_galaxies[i])
        smooth = sk.gaussian_smooth(X.blend[i], deb.smoothing)
        cut = deb.threshold * sk.smoothed_noise(X.noise_sigma[i], deb.smoothing)[:, None, None]
        templates = np.stack([
            sk.symmetric_template(smooth, c, threshold=cut) for c in X.centers[i, :k]
        ])
        covered = templates.sum(axis=0) > 0
        assert covered.mean() > 0.05  # the test is not vacuous
        total = pred[i].sum(axis=0)
        # float32 output: relative rounding ~1e-7 of each term.
        scale = np.abs(pred[i]).sum(axis=0)[covered]
        np.testing.assert_array_less(
            np.abs(total[covered] - X.blend[i][covered]), 1e-6 * scale + 1e-3
        )
        assert np.all(total[~covered] == 0)


# ---------------------------------------------------------------- end to end
def test_isolated_noiseless_galaxy_is_recovered():
    X, y = make_synthetic_blends(
        3, seed=12, n_galaxies=1, max_galaxies=2, noise=False, spread=0.2
    )
    # Within 0.2 px of the stamp centre (23.5, 23.5) the centre rounds to it,
    # so every pixel's mirror is on the stamp. With no threshold every pixel
    # is covered and the galaxy alone gets all of it: the blend itself.
    exact = sk.Deblender(threshold=0.0).predict(X)
    for i in range(len(X)):
        assert _nre(exact[i, 0], y[i, 0]) < 1e-6
    # With the default noise threshold (2 sigma of the smoothed noise, about
    # 200 ADU here) a bright galaxy loses only its faint wings.
    X, y = make_synthetic_blends(
        3, seed=12, n_galaxies=1, max_galaxies=2, noise=False, spread=0.2,
        flux_range=(5e5, 1e6),
    )
    default = sk.Deblender().predict(X)
    for i in range(len(X)):
        assert _nre(default[i, 0], y[i, 0]) < 0.1


def test_empty_slots_are_zero_and_output_contract():
    X, _ = make_synthetic_blends(4, seed=13, max_galaxies=5, min_galaxies=1)
    pred = sk.Deblender().predict(X)
    assert pred.shape == (4, 5, 6, 48, 48)
    assert pred.dtype == np.float32
    assert np.all(np.isfinite(pred))
    for i, k in enumerate(X.n_galaxies):
        assert np.all(pred[i, k:] == 0)
        assert np.all(np.abs(pred[i, :k]).sum(axis=(1, 2, 3)) > 0)


def test_blend_without_galaxies_and_empty_set():
    X, _ = make_synthetic_blends(2, seed=14, n_galaxies=0, max_galaxies=3)
    assert np.all(sk.Deblender().predict(X) == 0)
    empty = X[np.array([], dtype=int)]
    assert sk.Deblender().predict(empty).shape == (0, 3, 6, 48, 48)


def test_fit_learns_nothing_and_returns_self():
    X, y = make_synthetic_blends(2, seed=15)
    deb = sk.Deblender()
    before = deb.predict(X)
    assert deb.fit(X, y) is deb
    np.testing.assert_array_equal(deb.predict(X), before)


def test_batches_do_not_change_the_result():
    X, _ = make_synthetic_blends(5, seed=16)
    deb = sk.Deblender()
    whole = deb.predict(X)
    parts = np.concatenate([deb.predict(b) for b in X.batches(2)])
    np.testing.assert_array_equal(whole, parts)


def test_deblender_survives_cloudpickle():
    X, _ = make_synthetic_blends(1, seed=17)
    deb = sk.Deblender(threshold=1.5)
    clone = pickle.loads(cloudpickle.dumps(deb))
    np.testing.assert_array_equal(clone.predict(X), deb.predict(X))
