"""Tests of deblendkit.sim.blend_mode: one blended scene, its noise, labels and truth table.

Statistical checks run on the session's small data set (``small_data_dir``:
24 LSST blends of 48x48 pixels, six bands) or on a few scenes simulated here.
"""
from __future__ import annotations

import numpy as np
import pytest

from deblendkit.config import SimConfig
from deblendkit.sim.blend_mode import place_galaxies, simulate_blend_mode
from deblendkit.sim.sample import blendedness
from deblendkit.sim.survey import get_survey
from deblendkit.storage import read_dataset

SMALL = dict(stamp_size=32, psf_size=15, edge_margin=6)


@pytest.fixture(scope="module")
def train(small_data_dir):
    ds = read_dataset(small_data_dir / "train.h5")
    config = SimConfig.from_dict(ds.attrs["config"])
    return ds, config


def per_galaxy(ds):
    """Yield (blend index, slot, truth row) for every galaxy of a data set."""
    for row in ds.truth.itertuples(index=False):
        yield int(row.blend_index), int(row.slot), row


def first_moment(img):
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    s = img.sum()
    return (img * xx).sum() / s, (img * yy).sum() / s


# --------------------------------------------------------------------------
# blend - sum(isolated) is noise
# --------------------------------------------------------------------------
def test_residual_is_noise_of_the_documented_variance(train):
    ds, _ = train
    gain = np.asarray(ds.attrs["gain"], dtype=float)
    scene = ds.isolated.astype(np.float64).sum(axis=1)  # (N, C, H, W)
    resid = ds.blend.astype(np.float64) - scene
    for c, band in enumerate(ds.bands):
        # data/README.md: per-pixel sd = sqrt(noise_sigma^2 + sum_k isolated / gain);
        # the source term is clipped at 0 (FFT ringing leaves |negative| values < 1e-3
        # of a peak; the simulator clips them too, and they are << noise_sigma^2 anyway).
        var = ds.noise_sigma[:, c, None, None].astype(np.float64) ** 2 + np.clip(scene[:, c], 0, None) / gain[c]
        z = resid[:, c] / np.sqrt(var)
        n = z.size
        # Chi-square: the sample variance of n unit normals has relative sd sqrt(2/n)
        # (0.6% here); 5 sd. The mean is 0 within 5/sqrt(n).
        assert np.mean(z**2) == pytest.approx(1.0, abs=5 * np.sqrt(2 / n)), band
        assert abs(np.mean(z)) < 5 / np.sqrt(n), band


def test_background_noise_equals_noise_sigma(train):
    ds, _ = train
    scene = ds.isolated.astype(np.float64).sum(axis=1)
    resid = ds.blend.astype(np.float64) - scene
    for c, band in enumerate(ds.bands):
        sigma = ds.noise_sigma[:, c, None, None].astype(np.float64)
        sky = scene[:, c] < 0.01 * sigma  # no source light to speak of
        n = int(sky.sum())
        assert n > 5000, band  # enough sky pixels for a 3% test
        ratio = resid[:, c][sky] / np.broadcast_to(sigma, sky.shape)[sky]
        # sd of n unit normals has relative sd sqrt(1/(2n)) (<1% here); 5 sd.
        assert np.std(ratio) == pytest.approx(1.0, abs=5 * np.sqrt(1 / (2 * n))), band


def test_noise_sigma_is_the_sky_noise(train):
    ds, config = train
    survey = get_survey(config.survey)
    expected = [np.sqrt(survey.sky_adu_per_pixel(b) / survey.gain) for b in config.simulated_bands]
    np.testing.assert_allclose(ds.noise_sigma, np.broadcast_to(expected, ds.noise_sigma.shape), rtol=1e-6)


def test_noiseless_scene_is_the_sum_of_the_labels():
    config = SimConfig(noise="none", **SMALL)
    s = simulate_blend_mode(config, seed=4, split="train", index=0)
    scene = s.isolated.astype(np.float64).sum(axis=0)
    # Both are float32 roundings of the same float64 sum: equal to float32 precision.
    np.testing.assert_allclose(s.blend, scene, rtol=0, atol=1e-6 * np.abs(scene).max())


def test_exposure_fraction_scales_flux_and_noise():
    base = SimConfig(noise="none", **SMALL)
    a = simulate_blend_mode(base, seed=8, split="train", index=3)
    b = simulate_blend_mode(base.replace(exposure_fraction=0.25), seed=8, split="train", index=3)
    assert a.n_galaxies == b.n_galaxies
    np.testing.assert_allclose(b.isolated, 0.25 * a.isolated, rtol=0, atol=1e-6 * a.isolated.max())
    np.testing.assert_allclose(b.noise_sigma, 0.5 * a.noise_sigma, rtol=1e-6)
    np.testing.assert_allclose(b.truth["mag_r"], a.truth["mag_r"], atol=1e-9)  # magnitudes are physical


# --------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------
def _assert_same(a, b):
    for name in ("blend", "isolated", "psf", "noise_sigma", "centers"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.n_galaxies == b.n_galaxies
    for name in a.truth:
        np.testing.assert_array_equal(a.truth[name], b.truth[name], err_msg=name)


def test_same_arguments_same_scene_and_other_seeds_differ():
    config = SimConfig(**SMALL)
    a = simulate_blend_mode(config, seed=11, split="train", index=5)
    _assert_same(a, simulate_blend_mode(config, seed=11, split="train", index=5))
    for other in (dict(seed=12, split="train", index=5), dict(seed=11, split="test", index=5),
                  dict(seed=11, split="train", index=6)):
        b = simulate_blend_mode(config, **other)
        assert not np.array_equal(a.blend, b.blend), other


# --------------------------------------------------------------------------
# Layout of a blend: slots, centres, counts
# --------------------------------------------------------------------------
def test_slots_centres_and_counts(train):
    ds, config = train
    k_max, size = config.max_galaxies, config.stamp_size
    lo, hi = config.edge_margin, size - 1 - config.edge_margin
    assert np.all((ds.n_galaxies >= config.min_galaxies) & (ds.n_galaxies <= config.max_galaxies))
    assert len(set(ds.n_galaxies.tolist())) > 1  # the number varies
    counts = ds.truth.groupby("blend_index").size()
    np.testing.assert_array_equal(counts.reindex(range(len(ds)), fill_value=0).to_numpy(), ds.n_galaxies)
    for i, n in enumerate(ds.n_galaxies):
        filled, empty = slice(0, n), slice(n, k_max)
        assert not np.any(ds.isolated[i, empty]), i
        assert np.all(np.isnan(ds.centers[i, empty])), i
        assert np.all(ds.isolated[i, filled].sum(axis=(-2, -1)) > 0), i
        assert np.all((ds.centers[i, filled] >= lo) & (ds.centers[i, filled] <= hi)), i
        rows = ds.truth[ds.truth.blend_index == i].sort_values("slot")
        np.testing.assert_array_equal(rows.slot, np.arange(n))
        np.testing.assert_array_equal(ds.centers[i, filled], np.c_[rows.x, rows.y].astype(np.float32))
        # Slot 0 is the brightest galaxy (in the reference band).
        assert np.all(np.diff(rows[f"mag_{config.magnitude_band}"].to_numpy()) >= 0), i
        # Centres are at least min_separation apart.
        c = ds.centers[i, filled].astype(float)
        d = np.hypot(*(c[:, None] - c[None]).transpose(2, 0, 1))[np.triu_indices(n, 1)]
        assert np.all(d >= config.min_separation - 1e-4), i


def _pair_separations(config, n=300):
    """Separation of a second galaxy from the first, in units of the summed half-light radii."""
    rng = np.random.default_rng(0)
    seps = []
    for _ in range(n):
        hlr = rng.uniform(0.2, 0.6, 2)
        pos = place_galaxies(config, rng, hlr)
        seps.append(np.hypot(*(pos[1] - pos[0])) * config.pixel_scale / hlr.sum())
    return np.array(seps)


def test_separations_are_uniform_in_the_range_when_the_stamp_allows():
    from scipy import stats

    config = SimConfig(stamp_size=256)  # the edge box never interferes
    lo, hi = config.separation_range
    seps = _pair_separations(config)
    assert seps.min() >= lo - 1e-9 and seps.max() <= hi + 1e-9
    # Kolmogorov-Smirnov against uniform(lo, hi): p-value > 1e-3.
    assert stats.kstest(seps, stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3


def test_default_placement_spans_mild_to_severe_overlap():
    seps = _pair_separations(SimConfig())
    # Severe (centres within one summed hlr; 1/9 of uniform(0.5, 5), measured 0.12) and
    # mild (> 2; measured 0.61) overlaps both occur often.
    assert np.mean(seps < 1.0) > 0.05 and np.mean(seps > 2.0) > 0.3


# --------------------------------------------------------------------------
# Truth-table fluxes
# --------------------------------------------------------------------------
def test_stamp_flux_is_the_sum_of_the_isolated_image(train):
    ds, _ = train
    for i, k, row in per_galaxy(ds):
        for c, band in enumerate(ds.bands):
            total = float(ds.isolated[i, k, c].astype(np.float64).sum())
            # The truth sums the float64 image, the file stores float32: the sum of
            # H*W roundings of relative size 6e-8 each stays within 1e-6 of the flux.
            assert getattr(row, f"stamp_flux_{band}") == pytest.approx(total, rel=1e-6, abs=1e-6 * getattr(row, f"flux_{band}"))


def test_model_flux_bounds_the_stamp_flux(train):
    ds, _ = train
    for _, _, row in per_galaxy(ds):
        for band in ds.bands:
            flux, stamp = getattr(row, f"flux_{band}"), getattr(row, f"stamp_flux_{band}")
            # A galaxy loses light at the stamp edge, never gains any; the renderer's
            # own flux error (<= 3e-4, tests/test_render.py) is the only slack.
            assert 0 < stamp <= flux * (1 + 3e-4)


def test_magnitude_follows_from_flux_through_the_zero_point(train):
    ds, _ = train
    zp = np.asarray(ds.attrs["zeropoint"], dtype=float)
    exptime = np.asarray(ds.attrs["exposure_time"], dtype=float)
    gain = np.asarray(ds.attrs["gain"], dtype=float)
    for c, band in enumerate(ds.bands):
        flux = ds.truth[f"flux_{band}"].to_numpy()
        # AB zero point = magnitude of 1 electron / s; ADU = electrons / gain.
        expected = zp[c] - 2.5 * np.log10(flux * gain[c] / exptime[c])
        np.testing.assert_allclose(ds.truth[f"mag_{band}"], expected, rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def big_stamps():
    """Scenes on 96x96 stamps, where many galaxies sit far from every edge."""
    config = SimConfig(stamp_size=96, population="smooth")  # centroid = centre: point-symmetric sources
    return config, [simulate_blend_mode(config, seed=21, split="train", index=i) for i in range(10)]


def test_truncation_is_small_far_from_the_edges(big_stamps):
    config, samples = big_stamps
    survey, scale, size = get_survey(config.survey), config.pixel_scale, config.stamp_size
    n_far = 0
    for s in samples:
        t = s.truth
        for k in range(s.n_galaxies):
            edge = min(t["x"][k] + 0.5, t["y"][k] + 0.5, size - 0.5 - t["x"][k], size - 0.5 - t["y"][k])
            hlr = max(t["hlr_bulge"][k], t["hlr_disk"][k]) / scale
            for c, band in enumerate(config.simulated_bands):
                # 3 FWHM of the widest PSF this band can get (seeing factor <= exp(4 sigma)).
                fwhm = survey.band(band).psf_fwhm * np.exp(4 * config.seeing_scatter) / scale
                if edge < 10 * hlr + 3 * fwhm:
                    continue
                n_far += 1
                # Measured: min stamp_flux / flux = 0.9935 over 94 galaxy-bands; even a
                # small galaxy loses ~0.1% (de Vaucouleurs and Kolmogorov wings: a de
                # Vaucouleurs profile has 2-4% of its light beyond 10-15 half-light radii,
                # and the bulge is 0.3-0.7 x the disk size). Required: > 0.99.
                assert t[f"stamp_flux_{band}"][k] / t[f"flux_{band}"][k] > 0.99, (k, band)
    assert n_far >= 50  # enough galaxy-bands for the test to mean something


def test_centroid_far_from_the_edges(big_stamps):
    config, samples = big_stamps
    r = config.simulated_bands.index("r")
    checked = 0
    for s in samples:
        for k in range(s.n_galaxies):
            if s.truth["stamp_flux_r"][k] / s.truth["flux_r"][k] < 0.995:
                continue
            cx, cy = first_moment(s.isolated[k, r].astype(np.float64))
            # Measured <= 0.12 pixel per axis; 0.25 catches a half-pixel convention error.
            assert abs(cx - s.centers[k, 0]) < 0.25 and abs(cy - s.centers[k, 1]) < 0.25
            checked += 1
    assert checked >= 20


def test_centroid_near_centers_in_the_data_file(train):
    ds, _ = train
    r = ds.bands.index("r")
    half = ds.stamp_size / 2
    n_inner = 0
    for i, k, row in per_galaxy(ds):
        cx, cy = first_moment(ds.isolated[i, k, r].astype(np.float64))
        shift = np.hypot(cx - ds.centers[i, k, 0], cy - ds.centers[i, k, 1])
        kept = row.stamp_flux_r / row.flux_r
        # The centre is the disk's: an offset bulge and knots (drawn from the disk's light,
        # their mean within ~2 disk half-light radii of it) move the light's centroid by at
        # most their share of the light times their distance.
        scale = float(ds.attrs["pixel_scale"])
        moved = (row.bulge_fraction * np.hypot(row.bulge_dx, row.bulge_dy)
                 + (1 - row.bulge_fraction) * row.knot_fraction * 2 * row.hlr_disk) / scale
        if kept > 0.99:
            # Nearly all the light in the stamp: measured <= 0.11 pixel for smooth sources.
            assert shift < 0.5 + moved, (i, k, shift)
            n_inner += 1
        # Truncated galaxies: the stamp light's centroid moves away from the lost light
        # by (lost / kept) x (distance of the lost light); measured distance <= 0.65
        # half-stamp (48 and 96-pixel stamps), so bound it by one half-stamp.
        assert shift < 0.5 + moved + (1 - kept) / kept * half, (i, k, shift, kept)
    assert n_inner >= 10


# --------------------------------------------------------------------------
# Blendedness and S/N
# --------------------------------------------------------------------------


def test_blendedness_in_unit_interval_and_recomputed(train):
    ds, _ = train
    b = ds.truth["blendedness"].to_numpy()
    assert np.all((b >= 0) & (b <= 1))
    assert b.min() < 0.05 and b.max() > 0.5  # spans mild to severe
    for i, n in enumerate(ds.n_galaxies):
        rows = ds.truth[ds.truth.blend_index == i].sort_values("slot")
        # From the stored float32 labels: equal to 1e-5 (the truth used float64 images).
        np.testing.assert_allclose(blendedness(ds.isolated[i, :n]), rows.blendedness, atol=1e-5)


def test_a_galaxy_alone_has_blendedness_zero():
    config = SimConfig(min_galaxies=1, max_galaxies=2, **SMALL)
    alone = 0
    for index in range(12):
        s = simulate_blend_mode(config, seed=6, split="train", index=index)
        if s.n_galaxies == 1:
            alone += 1
            assert s.truth["blendedness"][0] == pytest.approx(0.0, abs=1e-12)
    assert alone > 0


def test_snr_is_the_matched_filter_snr(train):
    ds, _ = train
    gain = np.asarray(ds.attrs["gain"], dtype=float)[:, None, None]
    for i, k, row in per_galaxy(ds):
        own = ds.isolated[i, k].astype(np.float64)
        scene = ds.isolated[i].astype(np.float64).sum(axis=0)
        var = ds.noise_sigma[i].astype(np.float64)[:, None, None] ** 2 + np.clip(scene, 0, None) / gain
        assert row.snr == pytest.approx(np.sqrt(np.sum(own**2 / var)), rel=1e-4)
