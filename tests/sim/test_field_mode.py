"""Tests of deblendkit.sim.field_mode: field-mode scenes cut from a simulated sky.

Fast checks on small stamps (three bands); the 0.05 deg^2 statistics are in
``tests/report/test_validate.py`` (marked slow).
"""
from __future__ import annotations

import numpy as np
import pytest

from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError
from deblendkit.generation.split import generate_split
from deblendkit.sim import field_mode as field
from deblendkit.sim.modes import simulate_scene
from deblendkit.sim.render import render_galaxies, source_profiles
from deblendkit.sim.sample import contamination
from deblendkit.sim.survey import get_survey
from deblendkit.storage import read_dataset

FIELD = dict(mode="field", bands=("g", "r", "i"), noise="none")


@pytest.fixture(scope="module")
def config():
    return SimConfig(**FIELD)


@pytest.fixture(scope="module")
def samples(config):
    return {i: simulate_scene(config, seed=4, split="train", index=i) for i in range(6)}


# --------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(field_count_density=0.0), "field_count_density must be > 0, got 0.0"),
        (dict(field_margin=-1.0), "field_margin must be >= 0, got -1.0"),
        (dict(field_min_labelled=0), "field_min_labelled must be > 0, got 0"),
        (dict(field_min_labelled=7), r"field_min_labelled must be in \[1, max_galaxies=6\], got 7"),
        (dict(field_max_tries=0), "field_max_tries must be > 0, got 0"),
        (dict(label_limit=40.0), r"label_limit must be a magnitude in \[10, 35\], got 40.0"),
        (dict(label_limit=27.5), "field mode needs field_bright_limit < label_limit <= field_faint_limit, "
                                 "got 18.0 / 27.5 / 27.0"),
        (dict(field_bright_limit=26.0), "field_bright_limit < label_limit"),
        (dict(mode="field", count_slope=0.0), r"count_slope must be > 0 in field mode"),
    ],
)
def test_field_options_are_validated(changes, message):
    with pytest.raises(ConfigError, match=message):
        SimConfig(**changes)


def test_field_mode_refuses_a_catalogue(tmp_path):
    cat = tmp_path / "cat.csv"
    cat.write_text("mag\n24\n")
    with pytest.raises(ConfigError, match="catalog is not supported in field mode"):
        SimConfig(mode="field", catalog=str(cat))


def test_defaults_are_the_published_laws():
    c = SimConfig(mode="field")
    # LSST Science Book eq. 3.7: 46 per arcmin^2 at i < 25, slope 0.31; gold limit 25.3.
    assert field.cumulative_density(c, 25.0) == pytest.approx(46.0)
    assert field.cumulative_density(c, 25.3) == pytest.approx(46.0 * 10 ** (0.31 * 0.3))
    assert field.cumulative_density(c, 26.0) / field.cumulative_density(c, 25.0) == pytest.approx(10**0.31)
    assert (c.label_limit, c.field_faint_limit) == (25.3, 27.0)


# --------------------------------------------------------------------------
# The catalogue of a draw
# --------------------------------------------------------------------------
def test_number_per_draw_is_poisson_with_the_counts_mean(config):
    mu = field.mean_count(config, field._stamp_area(config))
    n = np.array([len(field._draw_layout(config, field.field_rng(1, "train", i, 0))[0]) for i in range(400)])
    assert abs(n.mean() - mu) < 4 * np.sqrt(mu / len(n))
    assert abs(n.var() / mu - 1) < 0.25  # Poisson: variance = mean


def test_magnitudes_and_positions_follow_the_sky(config):
    mags, pos = zip(*(field._draw_layout(config, field.field_rng(2, "train", i, 0)) for i in range(300)))
    mag, pos = np.concatenate(mags), np.concatenate(pos)
    lo = field.cumulative_density(config, config.field_bright_limit)
    p = (field.cumulative_density(config, 25.3) - lo) / (field.cumulative_density(config, 27.0) - lo)
    frac = np.mean(mag < 25.3)
    assert abs(frac - p) < 4 * np.sqrt(p * (1 - p) / len(mag))
    assert mag.min() >= config.field_bright_limit and mag.max() <= config.field_faint_limit
    m = int(np.ceil(config.field_margin / config.pixel_scale))
    lo_px, hi_px = -0.5 - m, config.stamp_size - 0.5 + m
    assert pos.min() >= lo_px and pos.max() < hi_px
    # uniform: a quarter of the box holds a quarter of the galaxies
    q = np.mean((pos[:, 0] < (lo_px + hi_px) / 2) & (pos[:, 1] < (lo_px + hi_px) / 2))
    assert abs(q - 0.25) < 4 * np.sqrt(0.25 * 0.75 / len(pos))


def test_draws_needed_replays_the_selection(config):
    for index in range(8):
        t = field.draws_needed(config, seed=3, split="test", index=index)
        for attempt in range(t):
            mag, pos = field._draw_layout(config, field.field_rng(3, "test", index, attempt))
            n_lab = len(field._labelled_order(config, mag, pos))
            assert (n_lab >= config.field_min_labelled) == (attempt == t - 1)
        assert field.field_scene(config, seed=3, split="test", index=index).attempts == t


def test_impossible_selection_names_the_blend_and_the_options():
    c = SimConfig(mode="field", label_limit=18.2, field_max_tries=3)
    with pytest.raises(ConfigError, match=r"blend 5 of split 'train' \(seed 1\) had fewer than "
                                          r"field_min_labelled=2 galaxies brighter than label_limit=18.2"):
        simulate_scene(c, seed=1, split="train", index=5)


# --------------------------------------------------------------------------
# One field-mode blend
# --------------------------------------------------------------------------
def test_labels_are_the_bright_galaxies_in_the_stamp(config, samples):
    w = config.stamp_size
    for s in samples.values():
        t = s.truth
        lab = t["labelled"] == 1
        n = s.n_galaxies
        assert config.field_min_labelled <= n <= config.max_galaxies and lab.sum() == n
        assert np.array_equal(t["slot"][lab], np.arange(n))
        assert np.all(t["slot"][~lab] == -1)
        assert np.all(np.diff(t["mag_i"][lab]) >= 0)  # slot order = brightness
        assert np.all(t["mag_i"][lab] < config.label_limit)
        inside = (t["x"] >= -0.5) & (t["x"] < w - 0.5) & (t["y"] >= -0.5) & (t["y"] < w - 0.5)
        assert np.all(inside[lab])
        # every other bright galaxy in the stamp is unlabelled only because the slots are full
        missed = inside & ~lab & (t["mag_i"] < config.label_limit)
        assert not missed.any() or n == config.max_galaxies
        np.testing.assert_array_equal(s.centers[:n], np.stack([t["x"][lab], t["y"][lab]], 1).astype(np.float32))
        assert np.all(np.isnan(s.centers[n:])) and not s.isolated[n:].any()


def test_blend_is_labels_plus_unlabelled_light(config, samples):
    """Noiseless: blend - sum(isolated) = the unlabelled galaxies, re-rendered with GalSim."""
    s = samples[0]
    p = field.field_scene(config, seed=4, split="train", index=0)
    rest = np.arange(s.n_galaxies, len(p.galaxies))
    g = p.galaxies.take(rest)
    bulges, disks, _ = source_profiles(g)  # the batch draws their knots' light as part of the disk
    fft = field.field_fft_size(config, float(p.galaxies.hlr_bulge.max()), float(p.galaxies.hlr_disk.max()))
    light = render_galaxies(bulges=bulges, disks=disks, flux_bulge=p.flux_bulge[rest],
                            flux_disk=p.flux_disk[rest] + p.flux_knots[rest],
                            positions=p.positions[rest], psfs=p.psfs, stamp_size=config.stamp_size,
                            pixel_scale=config.pixel_scale, fft_size=fft).sum(axis=0)
    residual = s.blend - s.isolated.sum(axis=0)
    assert light.max() > 0
    np.testing.assert_allclose(residual, light, atol=1e-5 * s.blend.max() + 1e-3)


def test_per_image_truth_is_finite_exactly_for_galaxies_rendered_one_by_one(config, samples):
    for s in samples.values():
        t = s.truth
        lab = t["labelled"] == 1
        for col in ("stamp_flux_r", "blendedness", "snr", "contamination"):
            assert np.all(np.isfinite(t[col][lab])), col
        faint = t["mag_i"] >= config.label_limit
        assert np.all(np.isnan(t["contamination"][faint]) & np.isnan(t["stamp_flux_r"][faint]))
        np.testing.assert_allclose(t["stamp_flux_r"][lab], s.isolated[: s.n_galaxies, 1].sum(axis=(-2, -1)),
                                   rtol=1e-5)
        assert np.all((t["contamination"][lab] >= 0) & (t["contamination"][lab] <= 1))


def test_field_blends_are_deterministic_in_any_order(config, samples):
    again = [simulate_scene(config, seed=4, split="train", index=i) for i in (3, 1)]
    for s, i in zip(again, (3, 1)):
        assert np.array_equal(s.blend, samples[i].blend)
        assert np.array_equal(s.isolated, samples[i].isolated)
        for k in s.truth:
            np.testing.assert_array_equal(s.truth[k], samples[i].truth[k])
    other = simulate_scene(config, seed=5, split="train", index=1)
    assert not np.array_equal(other.blend, samples[1].blend)


def test_noise_and_psf_as_in_blend_mode():
    c = SimConfig(mode="field", bands=("r",))
    s = simulate_scene(c, seed=0, split="train", index=0)
    quiet = simulate_scene(c.replace(noise="none"), seed=0, split="train", index=0)
    resid = (s.blend - quiet.blend)[0]
    survey = get_survey(c.survey)
    sky = survey.sky_adu_per_pixel("r")
    expected = np.sqrt((sky + np.clip(quiet.blend[0], 0, None)) / survey.gain)
    z = resid / expected
    assert abs(z.std() - 1) < 0.05 and abs(z.mean()) < 0.05
    assert s.noise_sigma[0] == pytest.approx(np.sqrt(sky / survey.gain), rel=1e-6)
    assert s.psf.sum() == pytest.approx(1.0, rel=1e-5)


def test_generate_split_writes_a_readable_field_mode_file(tmp_path):
    c = SimConfig(mode="field", bands=("r", "i"))
    path = tmp_path / "f.h5"
    generate_split(c, path=path, split="train", n_blends=4, seed=0, chunk_size=2, progress=False)
    ds = read_dataset(path)
    truth = ds.truth
    assert (truth["labelled"] == 0).sum() > 0 and np.all(truth.loc[truth["labelled"] == 0, "slot"] == -1)
    assert np.array_equal(ds.n_galaxies, np.bincount(truth["blend_index"][truth["labelled"] == 1], minlength=4))
    single = simulate_scene(c, seed=0, split="train", index=3)
    assert np.array_equal(ds.blend[3], single.blend)


# --------------------------------------------------------------------------
# Rendering and measures
# --------------------------------------------------------------------------


def test_blend_mode_fills_the_contamination_column():
    s = simulate_scene(SimConfig(bands=("r", "i"), noise="none"), seed=0, split="train", index=2)
    c = s.truth["contamination"]
    assert c.shape == (s.n_galaxies,) and np.all((c >= 0) & (c <= 1))
    own = s.isolated[: s.n_galaxies, 0].astype(np.float64)
    np.testing.assert_allclose(c, contamination(own, own.sum(axis=0), float(s.noise_sigma[0])), rtol=1e-5)


