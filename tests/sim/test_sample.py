"""Tests of deblendkit.sim.sample: what both scene modes share (seeds, noise, blendedness,
contamination, the truth table)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError
from deblendkit.sim.modes import simulate_scene
from deblendkit.sim.population import sample_population
from deblendkit.sim.sample import (
    SPLIT_CODES,
    add_noise,
    band_fluxes,
    blend_rng,
    blendedness,
    contamination,
    contamination_band,
    split_code,
    truth_table,
)
from deblendkit.sim.seds import band_flux_ratios, colour_table, star_colour_table, star_flux_ratios
from deblendkit.sim.survey import get_survey
from deblendkit.storage import truth_dtype


def test_blend_rng_is_the_index_th_child_of_the_split_sequence():
    split_seq = np.random.SeedSequence(42, spawn_key=(1,))  # "test" is stream 1
    child = split_seq.spawn(8)[7]
    np.testing.assert_array_equal(blend_rng(42, "test", 7).random(5), np.random.default_rng(child).random(5))
    with pytest.raises(ConfigError, match=re.escape("unknown split 'valid'; allowed: ")):
        blend_rng(0, "valid", 0)


def test_blendedness_definition_on_constructed_images():
    img = np.zeros((3, 2, 8, 8))
    img[0, :, 1, 1] = 5.0  # alone
    img[1, :, 6, 6] = 3.0  # two identical galaxies on top of each other
    img[2, :, 6, 6] = 3.0
    np.testing.assert_allclose(blendedness(img), [0.0, 0.5, 0.5])
    faint = np.zeros((2, 1, 8, 8))
    faint[0, 0, 3:6, 3:6] = 1000.0
    faint[1, 0, 4, 4] = 1.0  # a faint galaxy on a bright one is almost fully blended
    b = blendedness(faint)
    assert b[0] < 1e-3 and b[1] > 0.99


def test_contamination_on_constructed_images():
    yy, xx = np.mgrid[:20, :20]
    a = 100.0 * np.exp(-((xx - 5) ** 2 + (yy - 10) ** 2) / 4.0)
    b = 100.0 * np.exp(-((xx - 15) ** 2 + (yy - 10) ** 2) / 4.0)
    pedestal, sigma = 0.5, 2.0
    total = a + b + pedestal  # the pedestal: light of unlabelled galaxies
    got = contamination(np.stack([a, b]), total, sigma)
    for k, (own, other) in enumerate(((a, b), (b, a))):
        fp = own > sigma
        assert got[k] == pytest.approx((other[fp].sum() + pedestal * fp.sum()) / total[fp].sum())
    # no pixel above sigma: the brightest pixel is the footprint; no light at all: NaN
    faint = 0.1 * a / a.max()
    got = contamination(np.stack([faint, np.zeros_like(a)]), faint + pedestal, sigma)
    assert got[0] == pytest.approx(pedestal / (0.1 + pedestal)) and np.isnan(got[1])


def test_split_codes_are_distinct_and_an_unknown_split_names_the_allowed_ones():
    assert sorted(SPLIT_CODES.values()) == [0, 1, 2, 3]
    assert split_code("test_mini") == 3
    with pytest.raises(ConfigError, match=re.escape(
            "unknown split 'val'; allowed: ['test', 'test_mini', 'train', 'train_mini']")) as info:
        split_code("val")
    assert info.value.value == "val" and info.value.allowed == ("test", "test_mini", "train", "train_mini")


def test_blendedness_with_a_total_counts_the_other_light():
    img = np.zeros((1, 1, 4, 4))
    img[0, 0, 1, 1] = 2.0
    total = img[0].copy()
    assert blendedness(img, total)[0] == pytest.approx(0.0)
    total[0, 1, 1] += 2.0  # as much light again from a galaxy not in `isolated`
    assert blendedness(img, total)[0] == pytest.approx(0.5)
    np.testing.assert_array_equal(blendedness(img), blendedness(img, img.sum(axis=0)))


def test_add_noise_has_the_poisson_variance_and_none_is_the_scene():
    config = SimConfig(bands=("r", "i"), stamp_size=64, psf_size=15)
    survey = get_survey(config.survey)
    scene = np.zeros((2, 64, 64))
    scene[:, 20:40, 20:40] = 5000.0
    noisy, sigma, variance = add_noise(config, scene, np.random.default_rng(0))
    sky = np.array([survey.sky_adu_per_pixel(b) for b in ("r", "i")])
    np.testing.assert_allclose(sigma, np.sqrt(sky / survey.gain))
    np.testing.assert_allclose(variance, (sky[:, None, None] + scene) / survey.gain)
    z = (noisy - scene) / np.sqrt(variance)
    assert abs(z.std() - 1) < 0.02 and abs(z.mean()) < 0.02
    rng = np.random.default_rng(1)
    quiet, sigma0, _ = add_noise(config.replace(noise="none"), scene, rng)
    np.testing.assert_array_equal(quiet, scene)
    np.testing.assert_array_equal(sigma0, sigma)
    assert rng.random() == np.random.default_rng(1).random()  # no draw without noise


def test_contamination_band_is_r_else_the_magnitude_band_else_the_last():
    assert contamination_band(SimConfig()) == "r"
    assert contamination_band(SimConfig(bands=("g", "i", "z"))) == "i"
    assert contamination_band(SimConfig(bands=("g", "z"), reference_band="i")) == "z"
    assert contamination_band(SimConfig(survey="Euclid_VIS")) == "IE"


def test_band_fluxes_split_the_magnitude_band_flux_between_bulge_disk_and_knots():
    config = SimConfig(bands=("g", "i"), star_fraction=0.3)
    rng = np.random.default_rng(3)
    gals = sample_population(config, rng, 40)
    fb, fd, fk = band_fluxes(config, gals, config.simulated_bands)
    f_ref = get_survey(config.survey).mag_to_adu(gals.mag, "i")
    np.testing.assert_allclose(fb[:, 1] + fd[:, 1] + fk[:, 1], f_ref, rtol=1e-6)  # colour 0 in the magnitude band
    np.testing.assert_allclose(fb[:, 1], gals.bulge_fraction * f_ref, rtol=1e-6)
    disk = (1 - gals.bulge_fraction) * f_ref
    np.testing.assert_allclose(fk[:, 1], gals.knot_fraction * disk, rtol=1e-6, atol=1e-9)
    star = gals.kind == 1
    assert star.any() and not fd[star].any() and not fk[star].any()


@pytest.mark.parametrize("mode", ["blend", "field"])
def test_truth_table_columns_are_the_file_schema_in_order(mode):
    config = SimConfig(mode=mode, bands=("r", "i"), noise="none")
    truth = simulate_scene(config, seed=0, split="train", index=1).truth
    assert list(truth) == list(truth_dtype(config.simulated_bands).names)


def test_truth_table_magnitudes_follow_from_the_fluxes():
    config = SimConfig(bands=("g", "r"))
    gals = sample_population(config, np.random.default_rng(0), 3)
    flux = np.array([[1e4, 2e4], [3e3, 0.0], [5e5, 5e5]])
    nan = np.full(3, np.nan)
    truth = truth_table(config, index=7, slot=np.arange(3, dtype=np.int16), positions=np.zeros((3, 2)),
                        galaxies=gals, flux=flux, stamp_flux=flux,
                        per_image={"blendedness": nan, "snr": nan, "labelled": np.ones(3, np.int8),
                                   "contamination": nan})
    survey = get_survey(config.survey)
    np.testing.assert_array_equal(truth["blend_index"], [7, 7, 7])
    np.testing.assert_allclose(survey.mag_to_adu(truth["mag_g"][[0, 2]], "g"), flux[[0, 2], 0], rtol=1e-9)
    assert np.isnan(truth["mag_r"][1])  # no flux: no magnitude


def test_truth_colours_are_the_sed_colours():
    """mag_<band> - mag_<magnitude band> of a source is its SED's AB colour, whatever the bands'
    zero points and exposures (a galaxy's light-weighted mix of bulge, disk and knots; a star's locus)."""
    config = SimConfig(population="smooth")
    s = simulate_scene(config, seed=2, split="train", index=0)
    table = colour_table(config.survey, config.simulated_bands, config.magnitude_band)
    t = s.truth
    ref = config.magnitude_band
    # one template per component: the colour of the flux-weighted mix
    ratio_b = band_flux_ratios(table, t["sed_bulge"], t["redshift"])
    ratio_d = band_flux_ratios(table, t["sed_disk"], t["redshift"])
    expected = -2.5 * np.log10(t["bulge_fraction"][:, None] * ratio_b + (1 - t["bulge_fraction"])[:, None] * ratio_d)
    got = np.stack([t[f"mag_{b}"] - t[f"mag_{ref}"] for b in config.simulated_bands], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-9)
    stars = simulate_scene(SimConfig(star_fraction=0.95), seed=2, split="train", index=1).truth
    star = stars["kind"] == 1
    locus = star_flux_ratios(star_colour_table(config.survey, config.simulated_bands, ref), stars["locus"][star])
    got = np.stack([stars[f"mag_{b}"][star] - stars[f"mag_{ref}"][star] for b in config.simulated_bands], axis=1)
    np.testing.assert_allclose(got, -2.5 * np.log10(locus), atol=1e-9)
