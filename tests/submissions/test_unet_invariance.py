"""Invariances built into the U-Net baseline (``submissions/unet/deblender.py``).

* Units: the network sees the blend in units of the noise and of the target's
  brightness, and predicts in units of the latter, so a blend scaled by ``s`` with
  its noise sigma scaled by ``s`` (and the gain, electrons per ADU, by ``1 / s``:
  the forward-model prior weights pixels by their Poisson noise) gets ``s`` times
  the prediction, flux refit included.
* The template share it starts from splits the blend without losing flux.
* The flux augmentation brightens galaxies and keeps the blend's noise.
* With the forward-model prior the network starts at the forward model's fit
  (its last layer starts at ~0) and the augmentation brightens the prior with
  the galaxies.

Tiny networks and budgets (about a second each).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch

from tests.submissions.test_submission_unet import TINY, FakeBlendSet, make_blends, unet


@pytest.fixture(scope="module")
def data():
    return make_blends(12, seed=21)


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return unet.Deblender(**dict(TINY, epochs=2)).fit(X, y)


@pytest.mark.parametrize("s", [1e-3, 7.5, 300.0])
def test_prediction_scales_with_the_blend_and_its_noise(fitted, s):
    X, _ = make_blends(5, seed=22)
    pred = fitted.predict(X)
    scaled = FakeBlendSet((X.blend * np.float32(s)).astype(np.float32), X.psf,
                          (X.noise_sigma * np.float32(s)).astype(np.float32), X.centers, X.n_galaxies, X.bands)
    in_new_units = copy.copy(fitted)
    in_new_units.prior_gain_ = fitted.prior_gain_ / s  # electrons per ADU, when an ADU is s times smaller
    pred_s = in_new_units.predict(scaled)
    assert np.abs(pred).max() > 0
    np.testing.assert_allclose(pred_s, s * pred, rtol=2e-3, atol=2e-4 * s * float(np.abs(pred).max()))


def test_template_shares_add_up_to_the_blend_where_covered():
    X, _ = make_blends(6, seed=23)
    k = X.centers.shape[1]
    valid = torch.from_numpy(np.arange(k)[None, :] < X.n_galaxies[:, None])
    blend = torch.from_numpy(X.blend)
    shares = unet.template_shares(blend, torch.from_numpy(X.noise_sigma),
                                  torch.from_numpy(np.nan_to_num(X.centers)), valid)
    assert shares.shape == (6, k, 3, 16, 16)
    assert torch.all(shares[~valid] == 0)
    total = shares.sum(dim=1)
    covered = total.abs().sum(dim=1) > 0  # (n, H, W)
    assert covered.float().mean() > 0.2
    torch.testing.assert_close(total.permute(0, 2, 3, 1)[covered], blend.permute(0, 2, 3, 1)[covered],
                               rtol=1e-5, atol=1e-2)
    assert torch.all(total.permute(0, 2, 3, 1)[~covered] == 0)


def test_symmetric_template_of_a_symmetric_galaxy_is_itself_and_caps_a_neighbour():
    yy, xx = np.mgrid[0:21, 0:21].astype(np.float64)
    galaxy = 100.0 * np.exp(-((xx - 10) ** 2 + (yy - 10) ** 2) / (2 * 2.0**2))
    neighbour = 80.0 * np.exp(-((xx - 17) ** 2 + (yy - 10) ** 2) / (2 * 1.0**2))
    centers = torch.tensor([[[10.0, 10.0]]], dtype=torch.float64)
    valid = torch.tensor([[True]])
    alone = unet.symmetric_templates(torch.from_numpy(galaxy)[None], centers, valid, threshold=1.0)[0, 0]
    expected = np.where(galaxy > 1.0, galaxy, 0.0)
    np.testing.assert_allclose(alone.numpy(), expected, rtol=1e-12)
    # a neighbour on one side only: its mirror side is faint, so the template keeps the galaxy there
    both = unet.symmetric_templates(torch.from_numpy(galaxy + neighbour)[None], centers, valid, threshold=0.01)[0, 0]
    assert both[10, 17].item() == pytest.approx(galaxy[10, 3] + neighbour[10, 3], rel=1e-9)
    assert both[10, 17].item() < 0.1 * (galaxy + neighbour)[10, 17]
    # never brighter outwards along the row from the centre
    row = both[10, 10:].numpy()
    assert np.all(np.diff(row) <= 1e-12)


def test_flux_augmentation_brightens_galaxies_and_keeps_the_noise():
    X, y = make_blends(8, seed=24)
    model = unet.Deblender(**dict(TINY, flux_augment=(1.0, 2.0), flux_augment_prob=1.0, noise_augment_prob=0.0))
    gen = torch.Generator().manual_seed(0)
    blend, labels = torch.from_numpy(X.blend), torch.from_numpy(y)
    sigma = torch.from_numpy(X.noise_sigma)
    gain = torch.full((3,), float("inf"))
    out_blend, out_labels, out_sigma = model._augment(blend, labels, sigma, gain, gen)
    # the noise (blend minus its galaxies) is the same realisation; sigma unchanged
    torch.testing.assert_close(out_blend - out_labels.sum(dim=1), blend - labels.sum(dim=1), rtol=0, atol=0.5)
    torch.testing.assert_close(out_sigma, sigma)
    real = labels.flatten(2).sum(dim=-1) > 0
    ratio = out_labels.flatten(2).sum(dim=-1)[real] / labels.flatten(2).sum(dim=-1)[real]
    assert float(ratio.min()) > 10 ** (1.0 - 4 * model.options.flux_jitter)
    assert float(torch.log10(ratio).mean()) == pytest.approx(1.5, abs=0.3)


def test_noise_augmentation_scales_sigma_and_the_added_noise_matches_it():
    n, c, h = 64, 3, 16
    model = unet.Deblender(**dict(TINY, flux_augment_prob=0.0, noise_augment=4.0, noise_augment_prob=1.0))
    blend = torch.zeros(n, c, h, h)
    sigma = torch.full((n, c), 10.0)
    labels = torch.zeros(n, 2, c, h, h)
    out_blend, _, out_sigma = model._augment(blend, labels, sigma, torch.full((c,), float("inf")),
                                             torch.Generator().manual_seed(1))
    g = out_sigma[:, 0] / 10.0
    assert float(g.min()) >= 1.0 and float(g.max()) <= 4.0
    measured = out_blend.flatten(1).std(dim=1)
    expected = 10.0 * (g**2 - 1).sqrt()
    keep = expected > 5
    torch.testing.assert_close(measured[keep], expected[keep], rtol=0.12, atol=0)


def test_estimate_gain_recovers_the_poisson_term():
    rng = np.random.default_rng(5)
    gain = np.array([2.0, 0.5, 8.0])
    sigma = np.full((40, 3), 30.0)
    y = np.zeros((40, 2, 3, 16, 16))
    y[:, 0] = rng.uniform(0, 4000, (40, 3, 16, 16))
    noise = rng.normal(size=y.shape[:1] + y.shape[2:]) * np.sqrt(sigma[..., None, None] ** 2 + y.sum(1) / gain[:, None, None])
    blend = y.sum(axis=1) + noise
    np.testing.assert_allclose(unet.estimate_gain(blend, y, sigma), gain, rtol=0.1)
    assert np.all(np.isinf(unet.estimate_gain(y.sum(1), y, sigma * 0)))  # no noise at all: no source term


def test_bad_augmentation_options_are_rejected():
    with pytest.raises(ValueError, match=r"flux_augment must be \(low, high\) with low <= high, got \(2.0, 1.0\)"):
        unet.Deblender(flux_augment=(2.0, 1.0))
    with pytest.raises(ValueError, match=r"noise_augment must be >= 1, got 0.5"):
        unet.Deblender(noise_augment=0.5)
    with pytest.raises(ValueError, match=r"flux_augment_prob must be in \[0, 1\], got 1.5"):
        unet.Deblender(flux_augment_prob=1.5)


# ------------------------------------------------------------------ pretrained weights
def test_fit_starts_from_saved_weights_and_still_trains(fitted, data, tmp_path, monkeypatch, caplog):
    X, y = data
    path = tmp_path / "weights.npz"
    fitted.save_weights(str(path))
    opts = dict(TINY, epochs=1, pretrained=str(path))
    # a learning rate of ~0 keeps the weights: the prediction is the saved model's
    frozen = unet.Deblender(**dict(opts, finetune_lr=1e-12, ema_decay=0.0)).fit(X, y)
    assert frozen.pretrained_
    np.testing.assert_allclose(frozen.predict(X), fitted.predict(X), rtol=1e-4, atol=1e-3)
    tuned = unet.Deblender(**opts).fit(X, y)  # fit trains on the data it is given
    assert tuned.pretrained_ and tuned.steps_run_ > 0
    assert not np.array_equal(tuned.predict(X), fitted.predict(X))
    # other architecture: not used, with a warning; the environment variable can switch them off
    with caplog.at_level("WARNING", logger="submissions.unet"):
        other = unet.Deblender(**dict(opts, channels=(4, 4))).fit(X, y)
    assert not other.pretrained_ and "are for another network" in caplog.text
    monkeypatch.setenv(unet.PRETRAINED_ENV, "none")
    assert not unet.Deblender(**opts).fit(X, y).pretrained_


def test_shipped_weights_are_small_and_fit_the_network_without_the_prior():
    path = Path(unet.__file__).parent / "pretrained.npz"
    if not path.exists():
        pytest.skip("no pretrained.npz shipped")
    assert path.stat().st_size <= 20e6
    with np.load(path, allow_pickle=False) as saved:
        meta = json.loads(str(saved["architecture"]))
    assert meta == unet.Deblender(prior=None).architecture(meta["n_bands"])  # the weights are for the network without the prior


# ------------------------------------------------------------------ forward-model prior
def test_with_the_forward_model_prior_the_network_starts_at_the_forward_models_fit():
    X, y = make_blends(6, seed=31)
    model = unet.Deblender(**dict(TINY, prior="forward_model", lr=1e-12, ema_decay=0.0, tta=1))
    pred = model.fit(X, y).predict(X)
    fm = unet.ForwardModel()
    fm.gain_ = model.prior_gain_
    prior = fm.predict(X)
    assert pred.shape == prior.shape == y.shape
    real = y.reshape(len(y), y.shape[1], -1).sum(axis=-1) > 0
    assert np.all(pred[~real] == 0)
    diff = np.linalg.norm((pred - prior)[real].reshape(real.sum(), -1), axis=1)
    size = np.linalg.norm(prior[real].reshape(real.sum(), -1), axis=1)
    assert float(np.max(diff / size)) < 0.05  # the untrained correction is small against the prior
    again = cloudpickle.loads(cloudpickle.dumps(model))  # as rampwf keeps a trained model
    np.testing.assert_array_equal(again.predict(X), pred)


def test_the_prior_is_brightened_with_its_galaxies():
    X, y = make_blends(8, seed=32)
    model = unet.Deblender(**dict(TINY, flux_augment=(1.0, 2.0), flux_augment_prob=1.0, noise_augment_prob=0.0))
    labels = torch.from_numpy(y)
    out = model._augment(torch.from_numpy(X.blend), labels, torch.from_numpy(X.noise_sigma),
                         torch.full((3,), float("inf")), torch.Generator().manual_seed(0), prior=0.5 * labels)
    assert len(out) == 4
    # the added light is fitted: the prior gains what the labels gained
    torch.testing.assert_close(out[3], 0.5 * labels + (out[1] - labels))
    assert not torch.allclose(out[3], 0.5 * out[1])  # not the prior scaled with the galaxy: its error stays


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), float("inf"), "auto", True])
def test_bad_flux_refit_is_rejected(bad):
    with pytest.raises(ValueError, match=r"flux_refit must be None, 'validate' or a finite number > 0, got"):
        unet.Deblender(flux_refit=bad)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(refit_widths=(0.1, 0.0)), r"refit_widths must be finite numbers > 0, got \(0.1, 0.0\)"),
        (dict(refit_widths=0.1), r"refit_widths must be finite numbers > 0, got 0.1"),
        (dict(validation_fraction=1.0), r"validation_fraction must be in \(0, 1\), got 1.0"),
        (dict(validation_fraction=0), r"validation_fraction must be in \(0, 1\), got 0"),
        (dict(flux_weight=-1.0), r"flux_weight must be a finite number >= 0, got -1.0"),
    ],
)
def test_bad_refit_choice_options_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        unet.Deblender(**kwargs)


# ------------------------------------------------------------------ the flux refit chosen on held-out blends
def test_validate_chooses_the_refit_of_best_held_out_score_and_predict_applies_it():
    X, y = make_blends(20, seed=41)
    model = unet.Deblender(**dict(TINY, epochs=2, flux_refit="validate", refit_widths=(0.3, 0.01),
                                  validation_fraction=0.2))
    model.fit(X, y)
    held = model._validation_blends(len(X))
    assert held.sum() == 4
    np.testing.assert_array_equal(held, model._validation_blends(len(X)))  # seeded: the same blends
    # the held-out blends' galaxies are not trained on: one epoch is the other 16 blends' galaxies
    n_train_pairs = int(X.n_galaxies[~held].sum())
    assert model.steps_run_ == 2 * -(-n_train_pairs // TINY["batch_size"])
    assert list(model.validation_scores_) == [None, 0.3, 0.01]
    # the scores are those of the held-out blends, recomputed here with the kit's score
    Xh = X[np.flatnonzero(held)]
    blend, sigma, centers, valid = model._read_inputs(Xh)
    raw = model._predict_arrays(blend, sigma, centers, valid, model._psf_widths(Xh, 4, 3), model._prior(Xh))
    per_galaxy = {}
    for width, value in model.validation_scores_.items():
        cand = raw if width is None else unet.refit_amplitudes(blend, raw, noise_sigma=sigma, amplitude_sigma=width)
        real, per_galaxy[width] = unet.deblend_scores(y[held], cand)
        assert value["score"] == pytest.approx(float(per_galaxy[width].mean()), abs=1e-6)
        ft, fp = y[held][real][:, 1].sum(axis=(-2, -1)), cand[real][:, 1].sum(axis=(-2, -1))  # band "r"
        assert value["flux_scatter"] == pytest.approx(unet.robust_scatter((fp - ft) / ft), abs=1e-5)
    # the one-standard-error rule: the least flux scatter among the scores within one SE of the best
    top = max(per_galaxy, key=lambda w: per_galaxy[w].mean())
    assert model.validation_scores_[top]["score_se"] == 0.0
    for width in per_galaxy:
        diff = per_galaxy[width] - per_galaxy[top]
        assert model.validation_scores_[width]["score_se"] == pytest.approx(
            diff.std(ddof=1) / np.sqrt(len(diff)), rel=1e-6, abs=1e-12)
    near = [w for w, v in model.validation_scores_.items()
            if v["score"] >= model.validation_scores_[top]["score"] - v["score_se"]]
    assert top in near and model.flux_refit_ in near
    assert model.validation_scores_[model.flux_refit_]["flux_scatter"] == min(
        model.validation_scores_[w]["flux_scatter"] for w in near)
    # predict applies the chosen refit (or none) to the network's images
    Xn, _ = make_blends(5, seed=42)
    blend, sigma, centers, valid = model._read_inputs(Xn)
    raw = model._predict_arrays(blend, sigma, centers, valid, model._psf_widths(Xn, 5, 3), model._prior(Xn))
    want = raw if model.flux_refit_ is None else unet.refit_amplitudes(
        blend, raw, noise_sigma=sigma, amplitude_sigma=model.flux_refit_)
    np.testing.assert_allclose(model.predict(Xn), want, rtol=1e-6, atol=1e-6)


def test_a_fixed_refit_holds_nothing_out():
    X, y = make_blends(10, seed=43)
    model = unet.Deblender(**dict(TINY, flux_refit=0.05)).fit(X, y)
    assert not model._validation_blends(len(X)).any()
    assert model.flux_refit_ == 0.05 and model.validation_scores_ == {}
    assert model.steps_run_ == -(-int(X.n_galaxies.sum()) // TINY["batch_size"])


def test_bad_prior_is_rejected():
    with pytest.raises(ValueError, match="prior must be None or 'forward_model', got 'scarlet2'"):
        unet.Deblender(prior="scarlet2")
