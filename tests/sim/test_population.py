"""Tests of deblendkit.sim.population (the parametric galaxy population) and deblendkit.sim.seds.

The laws are the ones cited in deblendkit.config; each test recomputes them here
from the published formula rather than calling the code under test.
"""
from __future__ import annotations

import numpy as np
import pytest

from deblendkit.config import SimConfig
from deblendkit.sim import seds
from deblendkit.sim.population import GALAXY, STAR, sample_magnitudes, sample_population
from deblendkit.sim.survey import bandpass

N_DRAWS = 20000


@pytest.fixture(scope="module")
def population():
    """The smooth population: the laws below are its own (the realistic one keeps them, see the end)."""
    config = SimConfig(population="smooth")
    return config, sample_population(config, np.random.default_rng(12345), N_DRAWS)


def miller_disk_hlr(mag):
    """Miller et al. 2013 eq. B1: ln(r_d / arcsec) = -1.145 - 0.269 (i - 23); hlr = 1.678 r_d."""
    return 1.678 * np.exp(-1.145 - 0.269 * (np.asarray(mag) - 23.0))


# --------------------------------------------------------------------------
# Magnitude counts: log10 N(<m) = 0.31 m + const
# --------------------------------------------------------------------------
def test_cumulative_counts_slope():
    # A very bright lower limit (10) makes the bright-end truncation negligible over the
    # fitted range 20..25.3 (it changes log10 N by < 10**(-0.31 * 10) ~ 1e-3), so the
    # fitted slope is the law's. 20000 draws: statistical sd of the slope ~ 0.003;
    # tolerance 0.02 (the issue's).
    config = SimConfig(mag_range=(10.0, 25.3))
    mag = np.sort(sample_magnitudes(np.random.default_rng(7), N_DRAWS, config.mag_range, config.count_slope))
    assert mag.min() >= 10.0 and mag.max() <= 25.3
    n_brighter = np.arange(1, len(mag) + 1)
    sel = mag >= 20.0
    slope = np.polyfit(mag[sel], np.log10(n_brighter[sel]), 1)[0]
    assert slope == pytest.approx(0.31, abs=0.02)


def test_differential_counts_slope_of_the_default_population(population):
    # dN/dm ~ 10**(0.31 m) holds exactly in the truncated range too (the cumulative
    # law is bent near the bright limit); weighted fit of log10 counts in 0.3-mag bins.
    config, gals = population
    lo, hi = config.mag_range
    assert gals.mag.min() >= lo and gals.mag.max() <= hi
    counts, edges = np.histogram(gals.mag, bins=np.arange(lo, hi + 1e-9, 0.3))
    centres = 0.5 * (edges[1:] + edges[:-1])
    slope = np.polyfit(centres, np.log10(counts), 1, w=np.sqrt(counts))[0]
    assert slope == pytest.approx(config.count_slope, abs=0.02)


def test_zero_slope_gives_uniform_magnitudes():
    mag = sample_magnitudes(np.random.default_rng(1), N_DRAWS, (20.0, 24.0), 0.0)
    counts, _ = np.histogram(mag, bins=4, range=(20.0, 24.0))
    # Uniform: 5000 per bin, Poisson sd ~ 71; 5 sd.
    assert np.all(np.abs(counts - N_DRAWS / 4) < 5 * np.sqrt(N_DRAWS / 4))


# --------------------------------------------------------------------------
# Sizes, shapes, bulge fraction, redshift
# --------------------------------------------------------------------------
def test_median_disk_size_follows_miller(population):
    config, gals = population
    edges = np.arange(19.0, 25.31, 0.5)
    checked = 0
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (gals.mag >= a) & (gals.mag < b)
        if sel.sum() < 200:  # too few for a 10% median (bright bins)
            continue
        checked += 1
        expected = miller_disk_hlr(np.median(gals.mag[sel]))
        assert np.median(gals.hlr_disk[sel]) == pytest.approx(expected, rel=0.10), (a, b)
    assert checked >= 8


def test_size_ranges(population):
    config, gals = population
    lo, hi = config.hlr_range
    assert np.all((gals.hlr_disk >= lo) & (gals.hlr_disk <= hi))
    assert np.all((gals.hlr_bulge >= lo) & (gals.hlr_bulge <= hi))
    unclipped = gals.hlr_bulge > lo
    ratio = gals.hlr_bulge[unclipped] / gals.hlr_disk[unclipped]
    r0, r1 = config.bulge_size_ratio
    assert np.all((ratio >= r0 - 1e-12) & (ratio <= r1 + 1e-12))
    # Log-normal scatter around the relation: sd of ln(hlr / median) ~ size_scatter (5%).
    resid = np.log(gals.hlr_disk / miller_disk_hlr(gals.mag))
    assert np.std(resid) == pytest.approx(config.size_scatter, rel=0.05)


def test_ellipticity_is_capped(population):
    config, gals = population
    e = np.hypot(gals.e1, gals.e2)
    assert np.all(e <= config.ellipticity_max + 1e-12)
    assert e.max() > 0.9 * config.ellipticity_max  # the cap is reached, not avoided
    # Uncapped components keep the configured sigma (the cap at 0.7 = 2.8 sigma cuts ~2%).
    assert np.std(gals.e1) == pytest.approx(config.ellipticity_sigma, rel=0.05)


def test_bulge_fraction_in_unit_interval_and_bimodal(population):
    config, gals = population
    bf = gals.bulge_fraction
    assert np.all((bf >= 0) & (bf <= 1))
    bulgy = bf >= 0.5
    assert np.all(bf[~bulgy] <= 0.3)
    # Binomial sd of the fraction: sqrt(p (1-p) / n) ~ 0.003; 5 sd.
    p = config.bulge_dominated_fraction
    assert bulgy.mean() == pytest.approx(p, abs=5 * np.sqrt(p * (1 - p) / N_DRAWS))
    # Bulges use the early-type template, disks of bulge-dominated galaxies too.
    assert np.all(gals.sed_bulge == 0)
    assert np.all(gals.sed_disk[bulgy] == 1)
    assert set(np.unique(gals.sed_disk)) <= set(range(len(seds.SED_NAMES)))


def test_redshift_in_range_and_mean_follows_the_science_book(population):
    config, gals = population
    z = gals.redshift
    assert np.all((z >= 0.01) & (z <= config.max_redshift))
    # p(z) ~ z^2 exp(-z / z0) has mean 3 z0, z0 = 0.0417 i - 0.744 (LSST Science Book eq. 3.8).
    for a, b in ((21.0, 22.0), (23.0, 24.0), (24.3, 25.3)):
        sel = (gals.mag >= a) & (gals.mag < b)
        z0 = np.maximum(0.0417 * gals.mag[sel] - 0.744, 0.05)
        # Relative sd of the mean of a gamma(3) sample is 1/sqrt(3 n) < 1.5%; 5% tolerance.
        assert z[sel].mean() == pytest.approx(np.mean(3 * z0), rel=0.05), (a, b)


def test_max_redshift_clips():
    config = SimConfig(max_redshift=0.5)
    gals = sample_population(config, np.random.default_rng(3), 2000)
    assert gals.redshift.max() <= 0.5


def test_sampling_is_deterministic_and_honours_given_magnitudes():
    config = SimConfig()
    a = sample_population(config, np.random.default_rng(9), 50)
    b = sample_population(config, np.random.default_rng(9), 50)
    for name, value in vars(a).items():
        np.testing.assert_array_equal(value, getattr(b, name), err_msg=name)
    mags = np.linspace(20.0, 24.0, 50)
    c = sample_population(config, np.random.default_rng(9), 50, mag=mags)
    np.testing.assert_array_equal(c.mag, mags)
    assert len(c) == 50 and len(c.take(np.arange(10))) == 10


# --------------------------------------------------------------------------
# SED colours
# --------------------------------------------------------------------------
def test_colour_table_matches_galsim_seds_through_the_bandpasses():
    import galsim

    bands = ("g", "r", "i", "z")
    table = seds.colour_table("LSST", bands, "i")
    assert table.shape == (len(seds.SED_NAMES), len(seds.Z_GRID), len(bands))
    bps = {b: bandpass("LSST", b) for b in bands}
    for t in (0, 3):
        sed = galsim.SED(f"{galsim.meta_data.share_dir}/SEDs/{seds.SED_NAMES[t]}.sed", "Ang", "flambda")
        for z in (0.3, 1.2):
            sz = sed.atRedshift(z)
            direct = [sz.calculateMagnitude(bps[b]) - sz.calculateMagnitude(bps["i"]) for b in bands]
            iz = int(np.argmin(np.abs(seds.Z_GRID - z)))
            np.testing.assert_allclose(table[t, iz], direct, atol=1e-6)
            # Off the grid: linear interpolation in z (grid step 0.05) within 0.03 mag.
            z_off = z + 0.025
            sz = sed.atRedshift(z_off)
            direct = np.array([sz.calculateMagnitude(bps[b]) - sz.calculateMagnitude(bps["i"]) for b in bands])
            ratios = seds.band_flux_ratios(table, np.array([t]), np.array([z_off]))[0]
            np.testing.assert_allclose(-2.5 * np.log10(ratios), direct, atol=0.03)


def test_reference_band_ratio_is_one_and_early_types_are_redder():
    bands = ("g", "i")
    table = seds.colour_table("LSST", bands, "i")
    z = np.full(len(seds.SED_NAMES), 0.4)
    ratios = seds.band_flux_ratios(table, np.arange(len(seds.SED_NAMES)), z)
    np.testing.assert_array_equal(ratios[:, 1], 1.0)
    g_minus_i = -2.5 * np.log10(ratios[:, 0])
    # Templates go from early (E) to late (Im): g - i decreases.
    assert np.all(np.diff(g_minus_i) < 0)


# --------------------------------------------------------------------------
# The realistic population: knots, tilted and offset bulges, stars
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def realistic():
    config = SimConfig()
    return config, sample_population(config, np.random.default_rng(12345), N_DRAWS)


def test_realistic_galaxies_are_the_smooth_ones_with_structure(population, realistic):
    """Same generator state: every galaxy keeps the smooth draw (laws above hold), stars replace some."""
    _, smooth = population
    _, real = realistic
    gal = real.kind == GALAXY
    for name in ("mag", "hlr_disk", "hlr_bulge", "e1", "e2", "bulge_fraction", "redshift", "sed_bulge", "sed_disk"):
        np.testing.assert_array_equal(getattr(real, name)[gal], getattr(smooth, name)[gal], err_msg=name)
    assert not smooth.knot_fraction.any() and np.all(smooth.kind == GALAXY)
    np.testing.assert_array_equal(smooth.e1_bulge, smooth.e1)


def test_star_share_and_star_parameters(realistic):
    config, g = realistic
    star = g.kind == STAR
    p = config.star_fraction
    assert abs(star.mean() - p) < 4 * np.sqrt(p * (1 - p) / len(g))
    assert np.all(g.hlr_disk[star] == 0) and np.all(g.knot_fraction[star] == 0) and np.all(g.sed_disk[star] == -1)
    assert np.all((g.locus[star] >= 0) & (g.locus[star] <= 1)) and np.all(g.locus[~star] == -1)
    lo, hi = config.mag_range
    assert np.all((g.mag[star] >= lo) & (g.mag[star] <= hi))
    # Star counts follow their own, flatter slope: a smaller share of stars than of galaxies is faint.
    faint = lo + 0.8 * (hi - lo)
    assert np.mean(g.mag[star] > faint) < np.mean(g.mag[~star] > faint)


def test_knot_fractions_by_type(realistic):
    config, g = realistic
    gal = g.kind == GALAXY
    disky, bulgy = gal & (g.bulge_fraction < 0.5), gal & (g.bulge_fraction >= 0.5)
    lo, hi = config.knot_fraction_disk
    assert np.all((g.knot_fraction[disky] >= lo) & (g.knot_fraction[disky] <= hi))
    assert np.all(g.knot_fraction[bulgy] <= config.knot_fraction_bulge[1])
    assert g.knot_fraction[disky].mean() > 3 * g.knot_fraction[bulgy].mean()
    a, b = config.knot_number_range
    with_knots = gal & (g.knot_fraction > 0)
    assert np.all((g.n_knots[with_knots] >= a) & (g.n_knots[with_knots] <= b))


def test_bulge_rotation_and_offset_within_their_laws(realistic):
    config, g = realistic
    gal = g.kind == GALAXY
    np.testing.assert_allclose(np.hypot(g.e1_bulge, g.e2_bulge)[gal], np.hypot(g.e1, g.e2)[gal], rtol=1e-12)
    turn = 0.5 * (np.arctan2(g.e2_bulge, g.e1_bulge) - np.arctan2(g.e2, g.e1))
    turn = (turn + np.pi / 2) % np.pi - np.pi / 2  # position angles are defined modulo 180 degrees
    assert np.degrees(np.abs(turn[gal])).max() <= config.bulge_rotation_max + 1e-9
    assert np.degrees(np.abs(turn[gal])).max() > 0.9 * config.bulge_rotation_max
    offset = np.hypot(g.bulge_dx, g.bulge_dy)[gal] / g.hlr_disk[gal]
    assert offset.max() <= config.bulge_offset_max + 1e-12 and offset.mean() > 0.4 * config.bulge_offset_max


def test_star_colours_reproduce_the_stellar_locus():
    """The locus SEDs give back the published g-r and r-i through the LSST bandpasses."""
    table = seds.star_colour_table("LSST", ("g", "r", "i"), "i")
    locus = seds.locus_colours()
    np.testing.assert_allclose(table[:, 0] - table[:, 1], locus[:, 1], atol=0.06)
    np.testing.assert_allclose(table[:, 1] - table[:, 2], locus[:, 2], atol=0.05)
    np.testing.assert_allclose((table[:-1, 0] - table[:-1, 1]), locus[:-1, 1], atol=0.015)  # all but the reddest
    ratio = seds.star_flux_ratios(table, np.array([0.0, 1.0]))
    np.testing.assert_allclose(ratio, 10 ** (-0.4 * table[[0, -1]]), rtol=1e-12)
