"""Tests of deblendkit.sim.sky: a big simulated field and the contamination of its galaxies.

Fast checks on small fields; the 0.05 deg^2 statistics are in
``tests/report/test_validate.py`` (marked slow).
"""
from __future__ import annotations

import galsim
import numpy as np
import pytest

from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError
from deblendkit.sim.population import sample_population
from deblendkit.sim.render import psf_transfer
from deblendkit.sim.sky import postage_size, postage_stamps, simulate_sky


@pytest.fixture(scope="module")
def config():
    return SimConfig(mode="field", bands=("g", "r", "i"), noise="none")


def test_postage_stamps_match_galsim_draw_image(config):
    """Each galaxy in a stamp of the size the big field gives it (wrap-around negligible)."""
    rng = np.random.default_rng(11)
    g = sample_population(config.replace(population="smooth"), rng, 4, mag=np.array([21.0, 23.0, 24.5, 26.0]))
    psf = galsim.Kolmogorov(fwhm=0.8)
    sizes = postage_size(g.hlr_bulge, g.hlr_disk, 0.2)
    off = rng.uniform(-0.5, 0.5, (4, 2))
    fb, fd = 1e4 * g.bulge_fraction, 1e4 * (1 - g.bulge_fraction)
    for j in range(4):
        size = int(sizes[j])
        got = postage_stamps(g.take([j]), fb[[j]], fd[[j]], off[[j]],
                                    psf_transfer((psf,), size, 0.2)[0], size, 0.2)[0]
        shear = galsim.Shear(g1=g.e1[j], g2=g.e2[j])
        gal = (galsim.DeVaucouleurs(half_light_radius=g.hlr_bulge[j], flux=fb[j]).shear(shear)
               + galsim.Exponential(half_light_radius=g.hlr_disk[j], flux=fd[j]).shear(shear))
        # an even GalSim image is centred between pixels: +0.5 puts it on pixel size // 2
        ref = galsim.Convolve(gal, psf).drawImage(nx=size, ny=size, scale=0.2, offset=tuple(off[j] + 0.5)).array
        np.testing.assert_allclose(got, ref, atol=2e-4 * ref.max())
        assert got.sum() == pytest.approx(fb[j] + fd[j], rel=1e-6)  # periodic: no flux lost
        assert ref.sum() == pytest.approx(fb[j] + fd[j], rel=3e-3)  # GalSim's stamp holds nearly all


def test_small_sky_measures_the_bright_inner_galaxies():
    c = SimConfig(mode="field")
    sky = simulate_sky(c, area_arcmin2=1.0, seed=3, keep_image=True)
    measured = sky.inner & sky.bright
    assert measured.sum() > 20
    assert np.array_equal(np.isfinite(sky.contamination), measured)
    assert np.all((sky.contamination[measured] >= 0) & (sky.contamination[measured] <= 1))
    assert sky.area_arcmin2 == pytest.approx(1.0, rel=0.02)
    # Each galaxy's postage stamp holds its whole flux; the image gets the part of
    # it inside the image: all of it for stamps wholly inside, never more.
    side = sky.image.shape[0]
    half = postage_size(sky.hlr_bulge, sky.hlr_disk, c.pixel_scale) // 2
    cx, cy = np.rint(sky.x), np.rint(sky.y)
    whole = (cx - half >= 0) & (cx + half <= side) & (cy - half >= 0) & (cy + half <= side)
    assert 0 < sky.flux[whole].sum() < sky.flux.sum()
    assert sky.flux[whole].sum() * (1 - 1e-4) < sky.image.sum() < sky.flux.sum() * (1 + 1e-4)
    again = simulate_sky(c, area_arcmin2=1.0, seed=3)
    np.testing.assert_array_equal(again.contamination, sky.contamination)
    assert again.image is None
    with pytest.raises(ConfigError, match=r"area_arcmin2 must be in \(0, 3600\] arcmin\^2, got 0"):
        simulate_sky(c, area_arcmin2=0)


def test_sky_is_deterministic_in_its_seed_and_refuses_an_unknown_band():
    c = SimConfig(mode="field")
    a = simulate_sky(c, area_arcmin2=0.2, seed=1)
    b = simulate_sky(c, area_arcmin2=0.2, seed=2)
    assert a.band == "r"
    assert not (len(a.mag) == len(b.mag) and np.array_equal(a.mag, b.mag))
    with pytest.raises(ConfigError, match=r"unknown band 'q' for survey LSST; allowed: "):
        simulate_sky(c, area_arcmin2=0.2, band="q")
