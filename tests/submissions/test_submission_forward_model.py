"""Tests of the forward-model baseline ``submissions/forward_model/deblender.py``.

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

_ROOT = Path(__file__).resolve().parents[2]
_PATH = _ROOT / "submissions" / "forward_model" / "deblender.py"

fm = import_module_from_source(str(_PATH), "deblender", sanitize=True)
sk = import_module_from_source(
    str(_ROOT / "submissions" / "starting_kit" / "deblender.py"), "deblender", sanitize=True
)

CENTERS = [(23.0, 23.0), (20.5, 26.0), (17.5, 30.5), (4.0, 44.5), (31.3, 12.8)]


def _nre(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.linalg.norm(pred - true) / np.linalg.norm(true))


def _mirror(img: np.ndarray, center) -> tuple[np.ndarray, np.ndarray]:
    """Point reflection of (..., H, W) through the rounded centre, and where it is defined."""
    h, w = img.shape[-2:]
    two_cx, two_cy = np.round(2 * np.asarray(center)).astype(int)
    yy, xx = np.mgrid[0:h, 0:w]
    my, mx = two_cy - yy, two_cx - xx
    inside = (my >= 0) & (my < h) & (mx >= 0) & (mx < w)
    out = np.zeros_like(img)
    out[..., inside] = img[..., my[inside], mx[inside]]
    return out, inside


def _scores(pred, y, n_galaxies):
    """Mean primary score 1 - min(1, NRE) over real galaxies."""
    return np.mean([
        1.0 - min(1.0, _nre(pred[i, k], y[i, k]))
        for i in range(len(y)) for k in range(int(n_galaxies[i]))
    ])


# ---------------------------------------------------------------- the file itself
def test_submission_imports_only_the_packages_forward_model():
    # The code lives in deblendkit.deblend.forward_model (whose modules need only numpy and scipy:
    # tests/deblend/test_forward_model_package.py); the file only re-exports it.
    tree = ast.parse(_PATH.read_text())
    modules = set()
    for node in ast.walk(tree):
        assert not isinstance(node, ast.Import), ast.unparse(node)
        if isinstance(node, ast.ImportFrom):
            modules.add(node.module)
    assert modules and all(m.startswith("deblendkit.deblend.forward_model.") for m in modules), modules


def test_options_are_validated():
    with pytest.raises(ValueError, match="e_rel must lie in \\(0, 1\\), got 0"):
        fm.FitOptions(e_rel=0)
    with pytest.raises(ValueError, match="model_psf_sigma must be > 0 pixels, got -1"):
        fm.Deblender(model_psf_sigma=-1)
    with pytest.raises(ValueError, match="max_iter must be >= 1, got 0"):
        fm.FitOptions(max_iter=0)
    with pytest.raises(TypeError):
        fm.Deblender(no_such_option=1)


# ---------------------------------------------------------------- proximal operators
def test_prox_positive_is_idempotent_and_nonexpansive():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, z = rng.normal(size=(2, 30, 30))
        px, pz = fm.prox_positive(x), fm.prox_positive(z)
        assert px.min() >= 0
        np.testing.assert_array_equal(fm.prox_positive(px), px)
        assert np.linalg.norm(px - pz) <= np.linalg.norm(x - z) + 1e-12


@pytest.mark.parametrize("center", CENTERS)
def test_prox_symmetric_is_the_projection_on_symmetric_images(center):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 48, 48))
    p = fm.prox_symmetric(x, center)
    mirrored, inside = _mirror(p, center)
    np.testing.assert_allclose(p[:, inside], mirrored[:, inside], rtol=0, atol=1e-12)
    # Pixels without a mirror on the image are unconstrained: kept.
    np.testing.assert_array_equal(p[:, ~inside], x[:, ~inside])
    # Projection: idempotent, and the residual is orthogonal to every
    # symmetric image (here another projected random image).
    np.testing.assert_allclose(fm.prox_symmetric(p, center), p, rtol=0, atol=1e-12)
    z = fm.prox_symmetric(rng.normal(size=(2, 48, 48)), center)
    assert abs(np.sum((x - p) * z)) < 1e-9 * np.linalg.norm(x) * np.linalg.norm(z)


@pytest.mark.parametrize("center", CENTERS)
def test_monotonic_tree_is_symmetric_and_points_inwards(center):
    parent, levels = fm.monotonic_tree((48, 48), center)
    cx, cy = fm.round_to_half_pixel(center)
    idx = np.arange(48 * 48)
    r = np.hypot(idx % 48 - cx, idx // 48 - cy)
    moved = parent != idx
    assert np.all(r[parent[moved]] < r[moved])  # every step goes closer
    py, px = np.divmod(parent, 48)
    assert np.all(np.abs(px - idx % 48) <= 1) and np.all(np.abs(py - idx // 48) <= 1)
    roots = idx[~moved]
    assert np.all(r[roots] <= np.sqrt(0.5) + 1e-9)  # the 1, 2 or 4 central pixels
    # Levels partition the non-roots, and each parent sits one level lower.
    level_of = np.full(48 * 48, 0)
    for j, lv in enumerate(levels, start=1):
        level_of[lv] = j
    assert sorted(np.concatenate(levels).tolist()) == idx[moved].tolist()
    assert np.all(level_of[parent[moved]] == level_of[moved] - 1)
    # Point symmetry: the parent of the mirror is the mirror of the parent.
    mirror, inside = fm.mirror_map((48, 48), center)
    both = inside & inside[parent]
    np.testing.assert_array_equal(parent[mirror[both]], mirror[parent[both]])


@pytest.mark.parametrize("center", CENTERS)
def test_prox_monotonic_is_nonincreasing_along_rays_and_idempotent(center):
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(3, 48, 48))
    m = fm.prox_monotonic(x, center)
    assert np.all(m <= x)
    parent, _ = fm.monotonic_tree((48, 48), center)
    flat = m.reshape(3, -1)
    assert np.all(flat <= flat[:, parent])  # never brighter than one step inwards
    np.testing.assert_array_equal(fm.prox_monotonic(m, center), m)


def test_prox_monotonic_along_straight_rays_from_an_integer_centre():
    rng = np.random.default_rng(3)
    m = fm.prox_monotonic(rng.uniform(size=(48, 48)), (20, 25))
    for dx, dy in [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1)]:
        steps = np.arange(0, 20)
        xs, ys = 20 + dx * steps, 25 + dy * steps
        ok = (xs >= 0) & (xs < 48) & (ys >= 0) & (ys < 48)
        assert np.all(np.diff(m[ys[ok], xs[ok]]) <= 0), (dx, dy)


def test_prox_monotonic_keeps_a_monotonic_profile():
    yy, xx = np.mgrid[0:48, 0:48]
    g = np.exp(-((xx - 21.5) ** 2 + 0.5 * (yy - 25) ** 2) / 20.0)
    np.testing.assert_array_equal(fm.prox_monotonic(g, (21.5, 25.0)), g)


def test_constraints_give_symmetric_monotonic_positive_morphologies():
    rng = np.random.default_rng(4)
    centers = np.array([(20.0, 30.5), (33.5, 14.5), (10.3, 10.9)])
    cons = fm.MorphologyConstraints((48, 48), centers)
    s = cons(rng.normal(size=(3, 48, 48)))
    assert s.min() >= 0
    np.testing.assert_array_equal(cons(s), s)
    for k, c in enumerate(centers):
        mirrored, inside = _mirror(s[k], c)
        np.testing.assert_allclose(s[k][inside], mirrored[inside], rtol=0, atol=1e-12)
        parent, _ = fm.monotonic_tree((48, 48), c)
        assert np.all(s[k].ravel() <= s[k].ravel()[parent])


# ---------------------------------------------------------------- PSF
def _moffat_psfs(size: int = 25) -> np.ndarray:
    """Moffat (beta 3.5) PSFs of 0.6" to 1.0" FWHM convolved with 0.2" pixels, unit sum."""
    import galsim

    out = [galsim.Moffat(beta=3.5, fwhm=f).drawImage(nx=size, ny=size, scale=0.2).array
           for f in (0.6, 0.8, 1.0)]
    return np.array([p / p.sum() for p in out])


@pytest.mark.parametrize("kind", ["gaussian", "moffat"])
def test_difference_kernels_map_the_model_psf_to_each_band_psf(kind):
    if kind == "gaussian":
        X, _ = make_synthetic_blends(1, seed=5, n_galaxies=1)
        psf = X.psf[0].astype(np.float64)  # (C, 25, 25) Gaussian seeing x pixel
    else:
        psf = _moffat_psfs()
    grid = (64, 64)
    sigma = 0.8
    kern = fm.difference_kernels(psf, grid, sigma)
    model = np.fft.rfft2(fm.gaussian_psf(grid, sigma))
    mapped = np.fft.irfft2(kern * model, s=grid)
    target = fm.embed_psf(psf, grid)
    for b in range(len(psf)):
        assert np.abs(mapped[b] - target[b]).max() < 1e-4 * target[b].max()
        # The regularisation eps = 1e-6 scales the zero frequency by 1 / (1 + eps).
        assert mapped[b].sum() == pytest.approx(1.0, abs=2e-6)


def test_embed_psf_puts_the_centre_at_the_origin():
    psf = np.zeros((5, 5))
    psf[2, 2], psf[2, 3], psf[0, 2] = 1.0, 2.0, 3.0  # centre, +1 in x, -2 in y
    out = fm.embed_psf(psf, (16, 16))
    assert out[0, 0] == 1.0 and out[0, 1] == 2.0 and out[14, 0] == 3.0
    assert out.sum() == psf.sum()


def test_shift_phases_move_the_centroid():
    grid = (64, 64)
    g = np.roll(fm.gaussian_psf(grid, 2.0), (32, 32), axis=(0, 1))  # centred at (32, 32)
    shifts = np.array([(0.25, -0.25), (-0.5, 0.0)])
    moved = np.fft.irfft2(np.fft.rfft2(g)[None] * fm.shift_phases(grid, shifts), s=grid)
    yy, xx = np.mgrid[0:64, 0:64]
    for img, (dx, dy) in zip(moved, shifts):
        assert (img * xx).sum() / img.sum() == pytest.approx(32 + dx, abs=1e-6)
        assert (img * yy).sum() / img.sum() == pytest.approx(32 + dy, abs=1e-6)


# ---------------------------------------------------------------- fits
def test_two_separated_noiseless_galaxies_are_recovered():
    X, y = make_synthetic_blends(
        2, seed=6, n_galaxies=2, max_galaxies=3, noise=False, min_separation=16.0, spread=11.0
    )
    pred = fm.Deblender().predict(X)
    for i in range(len(X)):
        for k in range(2):
            assert _nre(pred[i, k], y[i, k]) < 0.1


def test_fit_stops_on_convergence_before_the_cap():
    X, y = make_synthetic_blends(1, seed=7, n_galaxies=1, max_galaxies=1, noise=False)
    opts = fm.FitOptions(e_rel=1e-3, max_iter=300)
    res = fm.fit_blend(X.blend[0], X.psf[0], X.noise_sigma[0], X.centers[0], opts)
    assert res.converged
    assert res.n_iter < opts.max_iter
    assert len(res.loss) == res.n_iter
    assert res.loss[-1] < 1e-2 * res.loss[0]
    assert _nre(res.models[0], y[0, 0]) < 0.05
    # The fitted morphology obeys the constraints it was fitted under.
    assert res.morphology.min() >= 0
    assert res.morphology.max() == pytest.approx(1.0)
    # A cap of one iteration is reported as not converged.
    capped = fm.fit_blend(X.blend[0], X.psf[0], X.noise_sigma[0], X.centers[0],
                          fm.FitOptions(max_iter=1))
    assert capped.n_iter == 1 and not capped.converged


def test_empty_slots_are_zero_and_output_contract():
    X, _ = make_synthetic_blends(3, seed=8, max_galaxies=4, min_galaxies=1)
    pred = fm.Deblender(max_iter=20).predict(X)
    assert pred.shape == (3, 4, 6, 48, 48)
    assert pred.dtype == np.float32
    assert np.all(np.isfinite(pred))
    for i, k in enumerate(X.n_galaxies):
        assert np.all(pred[i, k:] == 0)
        assert np.all(pred[i, :k].sum(axis=(1, 2, 3)) > 0)


def test_blend_without_galaxies_and_empty_set():
    X, _ = make_synthetic_blends(2, seed=9, n_galaxies=0, max_galaxies=3)
    assert np.all(fm.Deblender().predict(X) == 0)
    assert fm.Deblender().predict(X[np.array([], dtype=int)]).shape == (0, 3, 6, 48, 48)


def test_reapportioned_predictions_sum_to_the_blend_where_covered():
    X, _ = make_synthetic_blends(1, seed=10, n_galaxies=3, max_galaxies=3)
    opts = dict(max_iter=30)
    models = fm.Deblender(**opts).predict(X)[0]
    split = fm.Deblender(reapportion=True, **opts).predict(X)[0]
    covered = models.sum(axis=0) > X.noise_sigma[0][:, None, None]
    assert covered.any()
    np.testing.assert_allclose(split.sum(axis=0)[covered], X.blend[0][covered],
                               rtol=1e-5, atol=1e-2)
    assert np.all(split[:, ~covered] == 0)


def test_beats_the_starting_kit_on_noisy_blends():
    X, y = make_synthetic_blends(4, seed=11, max_galaxies=4)
    fm_score = _scores(fm.Deblender().predict(X), y, X.n_galaxies)
    sk_score = _scores(sk.Deblender().predict(X), y, X.n_galaxies)
    # On these blends: about 0.9 against 0.6.
    assert fm_score > sk_score + 0.1


# ---------------------------------------------------------------- the gain
def test_estimate_gain_recovers_the_poisson_term():
    X, y = make_synthetic_blends(
        30, seed=13, gain=2.0, flux_range=(3e5, 3e6), noise_range=(100.0, 200.0)
    )
    gain = fm.estimate_gain(X.blend, y, X.noise_sigma)
    # Over 30 blends the estimate scatters by about 5 % between seeds.
    np.testing.assert_allclose(gain, 2.0, rtol=0.2)


def test_estimate_gain_without_poisson_noise_is_large_or_infinite():
    X, y = make_synthetic_blends(
        30, seed=14, flux_range=(3e5, 3e6), noise_range=(100.0, 200.0)
    )
    gain = fm.estimate_gain(X.blend, y, X.noise_sigma)
    # A source term at most 1/20 of the gain-2 one above.
    assert np.all(gain > 40.0)


def test_fit_measures_the_gain_and_survives_cloudpickle():
    X, y = make_synthetic_blends(6, seed=15, max_galaxies=2, gain=1.0, flux_range=(3e5, 3e6))
    deb = fm.Deblender(max_iter=10)
    assert deb.gain_ is None
    assert deb.fit(X, y) is deb
    assert deb.gain_.shape == (6,) and np.all(deb.gain_ > 0)
    clone = pickle.loads(cloudpickle.dumps(deb))
    np.testing.assert_array_equal(clone.gain_, deb.gain_)
    np.testing.assert_array_equal(clone.predict(X[:2]), deb.predict(X[:2]))
