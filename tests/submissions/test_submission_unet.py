"""Tests of the U-Net baseline ``submissions/unet/deblender.py``.

The data are synthetic (built here): exponential profiles with per-band amplitudes,
smoothed by a Gaussian PSF, plus Gaussian noise. Networks and budgets are tiny
(options of the constructor), so each test runs in about a second.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import logging
import pickle
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch

_PATH = Path(__file__).resolve().parents[2] / "submissions" / "unet" / "deblender.py"


def _load_module():
    spec = importlib.util.spec_from_file_location("submission_unet_deblender", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


unet = _load_module()

TINY = dict(channels=(4, 8), epochs=1, batch_size=8, max_train_seconds=60.0, num_threads=1, pretrained=None)


# ------------------------------------------------------------------ synthetic data
class FakeBlendSet:
    """The attributes of ``deblendkit.deblend.blendset.BlendSet`` that submissions may use."""

    def __init__(self, blend, psf, noise_sigma, centers, n_galaxies, bands):
        self.blend, self.psf, self.noise_sigma = blend, psf, noise_sigma
        self.centers, self.n_galaxies, self.bands = centers, n_galaxies, bands
        self.pixel_scale = 0.2
        self.max_galaxies = centers.shape[1]

    def __len__(self):
        return len(self.blend)

    def __getitem__(self, idx):
        return FakeBlendSet(self.blend[idx], self.psf[idx], self.noise_sigma[idx], self.centers[idx],
                            self.n_galaxies[idx], self.bands)

    def batches(self, size):
        for lo in range(0, len(self), size):
            yield self[lo:lo + size]


def make_blends(n, *, size=16, k_max=3, n_bands=3, seed=0, k_min=1):
    """``(X, y)``: n blends of ``k_min..k_max`` galaxies, ``size`` x ``size`` pixels, ADU."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    y = np.zeros((n, k_max, n_bands, size, size), np.float32)
    centers = np.full((n, k_max, 2), np.nan, np.float32)
    n_gal = rng.integers(k_min, k_max + 1, n).astype(np.int32)
    sigma = rng.uniform(200.0, 600.0, (n, n_bands)).astype(np.float32)
    psf_sigma = rng.uniform(0.8, 1.5, n)
    for i in range(n):
        for k in range(n_gal[i]):
            x0, y0 = rng.uniform(3.0, size - 4.0, 2)
            centers[i, k] = x0, y0
            r_half = rng.uniform(0.8, 2.5)
            # exponential profile, softened by the PSF width in quadrature
            r = np.sqrt((xx - x0) ** 2 + (yy - y0) ** 2 + psf_sigma[i] ** 2)
            profile = np.exp(-1.678 * r / r_half)
            profile /= profile.sum()
            flux = 10 ** rng.uniform(4.0, 5.5) * rng.dirichlet(np.full(n_bands, 3.0)) * n_bands
            y[i, k] = flux[:, None, None] * profile[None]
    blend = (y.sum(axis=1) + rng.normal(size=(n, n_bands, size, size)) * sigma[..., None, None]).astype(np.float32)
    half = 3
    g = np.exp(-(np.arange(-half, half + 1) ** 2)[None, :] / (2 * psf_sigma[:, None] ** 2))  # (n, P)
    psf = g[:, :, None] * g[:, None, :]
    psf = np.repeat((psf / psf.sum(axis=(1, 2), keepdims=True))[:, None], n_bands, axis=1).astype(np.float32)
    X = FakeBlendSet(blend, psf, sigma, centers, n_gal, tuple("gri"[:n_bands]))
    return X, y


@pytest.fixture(scope="module")
def data():
    return make_blends(12, seed=1)


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return unet.Deblender(**TINY).fit(X, y)


# ------------------------------------------------------------------ predictions
def test_predict_shape_dtype_and_empty_slots_zero(fitted, data):
    X, y = data
    pred = fitted.predict(X)
    assert pred.shape == y.shape
    assert pred.dtype == np.float32
    assert np.all(np.isfinite(pred))
    empty = np.arange(y.shape[1])[None, :] >= X.n_galaxies[:, None]
    assert empty.any() and (~empty).any()
    assert np.all(pred[empty] == 0)
    assert np.all(np.abs(pred[~empty]).reshape((~empty).sum(), -1).max(axis=1) > 0)
    assert np.all(pred >= 0)  # clip_negative, the default


@pytest.mark.parametrize("options", [dict(output="arcsinh"), dict(use_psf_size=False, use_other_centers=False)])
def test_other_parametrisations_fit_and_predict(data, options):
    X, y = data
    model = unet.Deblender(**dict(TINY, **options)).fit(X, y)
    pred = model.predict(X)
    assert pred.shape == y.shape and pred.dtype == np.float32 and np.all(np.isfinite(pred))
    n_inputs = model._state["down.0.0.weight"].shape[1]
    # per band: the SNR level, the blend in target units, the template share, the PSF width,
    # the target's forward-model fit and the blend minus all fits; plus the centre maps
    assert n_inputs == (6 * 3 + 2 if options.get("use_psf_size", True) else 5 * 3 + 1)


def test_prediction_depends_on_target_center(fitted):
    X, _ = make_blends(1, seed=5, k_min=2, k_max=2)
    pred = fitted.predict(X)
    assert not np.allclose(pred[0, 0], pred[0, 1])
    # same target galaxy in another slot order -> same image (the slot index is not an input)
    swapped = FakeBlendSet(X.blend, X.psf, X.noise_sigma, X.centers[:, ::-1].copy(), X.n_galaxies, X.bands)
    pred_swapped = fitted.predict(swapped)
    np.testing.assert_allclose(pred_swapped[0, 1], pred[0, 0], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(pred_swapped[0, 0], pred[0, 1], rtol=1e-5, atol=1e-3)


def test_predict_in_batches_matches_one_batch(fitted, data):
    X, _ = data
    small = copy.copy(fitted)
    small.options = dataclasses.replace(fitted.options, predict_batch_size=3)
    np.testing.assert_allclose(small.predict(X), fitted.predict(X), rtol=1e-5, atol=1e-3)


def test_predict_before_fit_and_wrong_bands_raise(fitted):
    X, _ = make_blends(2, seed=3)
    with pytest.raises(RuntimeError, match="predict called before fit"):
        unet.Deblender(**TINY).predict(X)
    X4, _ = make_blends(2, seed=3, n_bands=4)
    with pytest.raises(ValueError, match="X has 4 bands, the model was trained on 3"):
        fitted.predict(X4)


def test_fit_rejects_mismatched_y(data):
    X, y = data
    with pytest.raises(ValueError, match=r"y must have shape \(12, 3, 3, 16, 16\), got \(12, 3, 3, 16, 15\)"):
        unet.Deblender(**TINY).fit(X, y[..., :15])


def test_pickle_round_trip_gives_same_predictions(fitted, data):
    """rampwf loads submissions outside ``sys.modules`` and pickles them with cloudpickle."""
    X, _ = data
    expected = fitted.predict(X)  # builds the cached network, which must not be pickled
    clone = pickle.loads(cloudpickle.dumps(fitted))
    assert clone._net is None
    np.testing.assert_array_equal(clone.predict(X), expected)


def test_fit_restores_torch_settings(data):
    X, y = data
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    unet.Deblender(**TINY).fit(X[:2], y[:2])
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == det


# ------------------------------------------------------------------ determinism
def test_same_seed_same_predictions_other_seed_differs():
    X, y = make_blends(6, seed=2)
    opts = dict(TINY, epochs=2)
    p1 = unet.Deblender(seed=3, **opts).fit(X, y).predict(X)
    p2 = unet.Deblender(seed=3, **opts).fit(X, y).predict(X)
    p3 = unet.Deblender(seed=4, **opts).fit(X, y).predict(X)
    np.testing.assert_array_equal(p1, p2)
    assert not np.array_equal(p1, p3)


# ------------------------------------------------------------------ normalisation
@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_normalisation_round_trip(scale):
    rng = np.random.default_rng(0)
    sigma = torch.tensor(rng.uniform(200, 600, (4, 3)), dtype=torch.float64)
    x = torch.tensor(rng.normal(0, 1, (4, 3, 8, 8)) * 10 ** rng.uniform(1, 5, (4, 3, 8, 8)), dtype=torch.float64)
    z = unet.to_network_space(x, sigma, scale)
    assert z.abs().max() < 12  # ~1e5 ADU / 200 ADU -> arcsinh(500) ~ 6.9: far from the clamp
    back = unet.from_network_space(z, sigma, scale)
    torch.testing.assert_close(back, x, rtol=1e-9, atol=1e-9)
    # linear near zero, in units of scale * sigma
    tiny = 1e-3 * scale * sigma[..., None, None]
    torch.testing.assert_close(unet.to_network_space(tiny.expand(4, 3, 2, 2), sigma, scale),
                               torch.full((4, 3, 2, 2), 1e-3, dtype=torch.float64), rtol=1e-6, atol=0)


# ------------------------------------------------------------------ augmentation
def _gaussian(height, width, x0, y0, s=1.3):
    yy, xx = np.mgrid[0:height, 0:width]
    return np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * s**2))


def _centroid(img):
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    return np.array([(xx * img).sum(), (yy * img).sum()]) / img.sum()


@pytest.mark.parametrize("t", range(8))
def test_dihedral_moves_a_galaxy_with_its_center(t):
    height, width = 20, 30  # not square, to catch x/y or H/W mix-ups
    center = np.array([[7.3, 12.6], [21.8, 4.4]], dtype=np.float64)
    images = np.stack([_gaussian(height, width, *c) for c in center])  # (2, H, W)
    out = unet.dihedral_images(torch.from_numpy(images), t).numpy()
    assert out.shape == ((2, height, width) if t % 2 == 0 else (2, width, height))
    # the light-weighted centroid is a point like any other: it must move as the centers do
    before = np.array([_centroid(img) for img in images])
    np.testing.assert_allclose(before, center, atol=0.01)  # the blobs are ~whole in the image
    after = np.array([_centroid(img) for img in out])
    np.testing.assert_allclose(after, unet.dihedral_centers(before, t, height, width), atol=1e-9)
    moved = unet.dihedral_centers(center, t, height, width)
    np.testing.assert_allclose(after, moved, atol=0.01)
    # the same for torch centers, and the 8 transforms are distinct
    torch.testing.assert_close(unet.dihedral_centers(torch.from_numpy(center), t, height, width),
                               torch.from_numpy(moved))


def test_dihedral_transforms_are_the_eight_symmetries():
    img = torch.arange(16.0).reshape(4, 4)
    outs = [unet.dihedral_images(img, t) for t in range(8)]
    assert len({tuple(o.flatten().tolist()) for o in outs}) == 8
    torch.testing.assert_close(outs[0], img)
    with pytest.raises(ValueError, match="transform index must be in 0..7, got 8"):
        unet.dihedral_images(img, 8)


@pytest.mark.parametrize("t", range(8))
def test_dihedral_inverse_undoes_the_transform(t):
    img = torch.arange(2 * 20 * 30, dtype=torch.float32).reshape(2, 20, 30)
    torch.testing.assert_close(unet.dihedral_images_inverse(unet.dihedral_images(img, t), t), img)


def test_full_test_time_augmentation_is_equivariant(data):
    """With all 8 transforms averaged, transforming the blend transforms the prediction.

    Without the forward-model prior and the flux refit: the forward model's fit is
    not itself equivariant (centres rounded to half pixels, its iterations).
    """
    fitted = unet.Deblender(**dict(TINY, prior=None, flux_refit=None)).fit(*data)
    X, _ = make_blends(3, seed=11)
    model = copy.copy(fitted)
    model.options = dataclasses.replace(fitted.options, tta=8)
    pred = model.predict(X)
    for t in (1, 6):
        Xt = FakeBlendSet(unet.dihedral_images(torch.from_numpy(X.blend), t).numpy(), X.psf, X.noise_sigma,
                          unet.dihedral_centers(X.centers, t, 16, 16), X.n_galaxies, X.bands)
        expected = unet.dihedral_images(torch.from_numpy(pred), t).numpy()
        np.testing.assert_allclose(model.predict(Xt), expected, rtol=1e-4, atol=1e-5 * float(np.abs(pred).max()))
    one_pass = fitted.predict(X)
    assert not np.allclose(one_pass, pred)  # a single pass is not equivariant


def test_shift_crop_centres_the_target_and_inverts():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.normal(size=(3, 2, 16, 16)).astype(np.float32))
    target = torch.tensor([[0, 0], [15, 9], [5, 12]])  # (row, col)
    canvas = 12
    row0, col0 = target[:, 0] - canvas // 2, target[:, 1] - canvas // 2
    win = unet.shift_crop(images, row0, col0, canvas, canvas)
    assert win.shape == (3, 2, canvas, canvas)
    for b in range(3):
        torch.testing.assert_close(win[b, :, canvas // 2, canvas // 2], images[b, :, target[b, 0], target[b, 1]])
    assert torch.all(win[0, :, :canvas // 2, :] == 0)  # above row 0 of the stamp: zeros
    back = unet.shift_crop(win, -row0, -col0, 16, 16)
    for b in range(3):
        r, c = target[b]
        rows = slice(max(0, r - canvas // 2), min(16, r + canvas // 2))
        cols = slice(max(0, c - canvas // 2), min(16, c + canvas // 2))
        torch.testing.assert_close(back[b, :, rows, cols], images[b, :, rows, cols])
        outside = torch.ones(16, 16, dtype=torch.bool)
        outside[rows, cols] = False
        assert torch.all(back[b][:, outside] == 0)


def test_center_maps_mark_target_and_others():
    centers = torch.tensor([[[3.0, 4.0], [10.0, 2.0], [0.0, 0.0]]])
    valid = torch.tensor([[True, True, False]])
    maps = unet.center_maps(centers, valid, torch.tensor([1]), 8, 12, 1.0)
    assert maps.shape == (1, 2, 8, 12)
    assert maps[0, 0].argmax().item() == 2 * 12 + 10  # target at x=10, y=2
    assert maps[0, 1].argmax().item() == 4 * 12 + 3  # the other valid galaxy
    assert maps[0, 0].max().item() == pytest.approx(1.0)
    assert maps[0, 1, 0, 0].item() < 1e-3  # the empty slot at (0, 0) is not drawn


def test_psf_width_of_a_gaussian_is_its_sigma():
    half = 20
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    psf = np.stack([np.exp(-(xx**2 + yy**2) / (2 * s**2)) for s in (1.0, 2.0, 3.5)])
    np.testing.assert_allclose(unet.psf_width(7.0 * psf), [1.0, 2.0, 3.5], rtol=1e-3)  # pixel sampling: 1e-4 at sigma 1


def test_target_amplitude_is_the_central_brightness_with_a_noise_floor():
    window = torch.zeros(2, 3, 8, 8)
    window[0, :, 3:6, 3:6] = torch.tensor([100.0, 200.0, 600.0])[:, None, None]  # centre (4, 4)
    window[0, :, 0, 0] = 1e6  # far from the centre: ignored
    sigma = torch.tensor([[10.0, 20.0, 30.0], [10.0, 20.0, 30.0]])
    amp = unet.target_amplitude(window, sigma)
    torch.testing.assert_close(amp, torch.tensor([300.0, 20.0]))  # mean of bands; floor 1 sigma


# ------------------------------------------------------------------ budget and options
def test_time_budget_environment_overrides(monkeypatch):
    opts = unet.UNetOptions(max_train_seconds=500.0, quick_test_seconds=7.0)
    monkeypatch.delenv(unet.TIME_BUDGET_ENV, raising=False)
    monkeypatch.delenv("RAMP_TEST_MODE", raising=False)
    monkeypatch.delenv("DEBLEND_TIME_BUDGET_S", raising=False)
    assert opts.time_budget() == 500.0
    monkeypatch.setenv("DEBLEND_TIME_BUDGET_S", "100")  # the workflow's step budget
    assert opts.time_budget() == 80.0
    monkeypatch.setenv("RAMP_TEST_MODE", "1")
    assert opts.time_budget() == 7.0
    monkeypatch.setenv(unet.TIME_BUDGET_ENV, "12.5")
    assert opts.time_budget() == 12.5
    monkeypatch.setenv(unet.TIME_BUDGET_ENV, "200")
    assert opts.time_budget() == 80.0
    monkeypatch.setenv("DEBLEND_TIME_BUDGET_S", "-3")
    with pytest.raises(ValueError, match="DEBLEND_TIME_BUDGET_S must be a positive number of seconds, got '-3'"):
        opts.time_budget()
    monkeypatch.delenv("DEBLEND_TIME_BUDGET_S")
    monkeypatch.setenv(unet.TIME_BUDGET_ENV, "soon")
    with pytest.raises(ValueError, match="DEBLEND_UNET_MAX_TRAIN_SECONDS must be a positive number of seconds, got 'soon'"):
        opts.time_budget()


def test_fit_stops_on_time_budget_with_a_log_message(monkeypatch, caplog, data):
    X, y = data
    monkeypatch.setenv(unet.TIME_BUDGET_ENV, "1e-6")
    with caplog.at_level(logging.WARNING, logger="submissions.unet"):
        model = unet.Deblender(**dict(TINY, epochs=50)).fit(X, y)
    assert model.epochs_run_ == 1
    assert "stopped on its time budget" in caplog.text
    assert model.predict(X).shape == y.shape


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(epochs=0), "epochs must be a positive integer, got 0"),
        (dict(lr=-1.0), r"lr must be a finite number > 0, got -1.0"),
        (dict(l1_weight=float("nan")), r"l1_weight must be a finite number >= 0, got nan"),
        (dict(device="tpu"), "device must be one of 'auto', 'cpu', 'cuda', got 'tpu'"),
        (dict(channels=()), r"channels must be a non-empty tuple of positive integers, got \(\)"),
        (dict(channels=(8, 16, 32), canvas_size=30), r"canvas_size must be a multiple of 4 .* got 30"),
        (dict(final_lr_fraction=0.0), r"final_lr_fraction must be in \(0, 1\], got 0.0"),
        (dict(tta=9), "tta must be an integer from 1 to 8, got 9"),
        (dict(ema_decay=1.0), r"ema_decay must be in \[0, 1\), got 1.0"),
        (dict(output="log"), "output must be 'scaled' or 'arcsinh', got 'log'"),
    ],
)
def test_invalid_options_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        unet.Deblender(**kwargs)


def test_unknown_option_is_rejected():
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        unet.Deblender(epoch=3)


def test_default_canvas_covers_the_stamp():
    opts = unet.UNetOptions(channels=(16, 32, 64), canvas_size=None)
    assert opts.canvas_for(48, 48) == 48
    assert opts.canvas_for(45, 50) == 52
    assert unet.UNetOptions(canvas_size=32).canvas_for(48, 48) == 32
    assert unet.UNetOptions(canvas_size=32).canvas_for(16, 16) == 16
    assert unet.UNetOptions(canvas_size=None).canvas_for(48, 48) == 48


# ------------------------------------------------------------------ learning
@pytest.mark.slow
def test_training_beats_zero_and_blend_share_predictions():
    """A short training must isolate galaxies better than two naive answers."""
    X, y = make_blends(48, seed=7, size=24)
    X_test, y_test = make_blends(16, seed=8, size=24)
    model = unet.Deblender(channels=(8, 16), epochs=30, batch_size=16, lr=3e-3, num_threads=2,
                           max_train_seconds=600.0)
    pred = model.fit(X, y).predict(X_test)
    assert model.history_[-1] < model.history_[0]

    def score(p):
        real = y_test.reshape(*y_test.shape[:2], -1).any(axis=-1)
        err = np.linalg.norm((p - y_test)[real].reshape(real.sum(), -1), axis=1)
        return np.mean(1 - np.minimum(1, err / np.linalg.norm(y_test[real].reshape(real.sum(), -1), axis=1)))

    # naive: each galaxy gets the blend divided evenly among the galaxies of its scene
    share = np.where(np.arange(3)[None, :, None, None, None] < X_test.n_galaxies[:, None, None, None, None],
                     X_test.blend[:, None] / X_test.n_galaxies[:, None, None, None, None], 0)
    assert score(np.zeros_like(y_test)) == 0
    assert score(pred) > max(0.3, score(share))
