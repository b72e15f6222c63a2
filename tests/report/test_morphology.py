"""Tests of deblendkit.report.morphology: rotational asymmetry, star share and colours."""
from __future__ import annotations

import numpy as np
import pytest

from deblendkit.cli.validate import main as validate_main
from deblendkit.config import SimConfig
from deblendkit.report import morphology
from deblendkit.sim import seds
from deblendkit.sim.modes import simulate_scene
from deblendkit.sim.population import sample_population


def gaussian(shape, cx, cy, sigma, flux=1.0):
    y, x = np.mgrid[: shape[0], : shape[1]]
    g = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
    return flux * g / g.sum()


def test_point_symmetric_images_have_zero_asymmetry_at_any_sub_pixel_centre():
    centres = np.array([[20.3, 25.7], [24.0, 24.0], [18.51, 30.49]])
    images = np.stack([gaussian((48, 48), x, y, s) for (x, y), s in zip(centres, (2.5, 1.7, 3.0))])
    a = morphology.asymmetry(images, centres)
    assert np.all(a < 1e-6)  # 2e-8 for the widest: its wings cut by the stamp edge


def test_asymmetry_of_a_clump_is_its_share_of_the_light():
    """A symmetric body plus a clump of flux f off the centre: A = f / (1 + f) (body flux 1).

    Both are wider than a pixel (sigma >= 1.7 px, as after an LSST PSF), so the sub-pixel
    Fourier shift is exact.
    """
    for f in (0.05, 0.2, 0.5):
        img = gaussian((64, 64), 30.2, 31.6, 4.0) + gaussian((64, 64), 42.2, 31.6, 1.7, flux=f)
        a = morphology.asymmetry(img[None], np.array([[30.2, 31.6]]))[0]
        assert a == pytest.approx(f / (1 + f), rel=0.02)


def test_asymmetry_of_zeros_is_nan_and_it_is_scale_free():
    img = gaussian((48, 48), 20.0, 22.0, 2.0) + gaussian((48, 48), 25.0, 22.0, 1.0, flux=0.3)
    a = morphology.asymmetry(np.stack([img, 1e4 * img, np.zeros_like(img)]), np.array([[20.0, 22.0]] * 3))
    assert a[0] == pytest.approx(a[1], rel=1e-9) and np.isnan(a[2])


def test_profile_asymmetry_smooth_zero_knotty_positive_stars_zero():
    smooth = sample_population(SimConfig(population="smooth"), np.random.default_rng(1), 6)
    assert np.all(morphology.profile_asymmetry(smooth) < 1e-3)
    real = sample_population(SimConfig(star_fraction=0.3), np.random.default_rng(2), 30)
    a = morphology.profile_asymmetry(real)
    star = real.kind == 1
    assert star.any() and np.all(a[star] == 0)
    knotty = (real.kind == 0) & (real.knot_fraction > 0.2)
    assert knotty.any() and np.all(a[knotty] > 0.05)


def test_psf_lowers_the_asymmetry():
    """The same source before and after the survey PSF (the label's asymmetry is the lower)."""
    config = SimConfig(star_fraction=0.0, min_galaxies=2, max_galaxies=2, bands=("r",), noise="none")
    s = simulate_scene(config, seed=5, split="train", index=3)
    label = morphology.asymmetry(s.isolated[:2, 0], s.centers[:2])
    profile = morphology.profile_asymmetry(morphology.galaxies_from_truth(_frame(s.truth)))
    assert np.all(label < profile)


def _frame(truth):
    import pandas as pd

    return pd.DataFrame(truth)


def test_locus_distance_is_zero_on_the_locus_and_grows_off_it():
    pts = seds.locus_colours()
    assert np.all(morphology.locus_distance(pts[:, 1], pts[:, 2]) < 1e-12)
    mid = 0.5 * (pts[3, 1:3] + pts[4, 1:3])
    assert morphology.locus_distance(np.array([mid[0]]), np.array([mid[1]]))[0] < 1e-12
    off = morphology.locus_distance(np.array([1.0]), np.array([0.0]))[0]  # far below the M-dwarf branch
    assert off > 0.3


def test_structure_checks_on_the_default_data(small_data_dir):
    checks = {c.name: c for c in morphology.structure_checks(small_data_dir / "test.h5")}
    med = checks["asymmetry median, galaxies (label)"]
    assert med.status in ("PASS", "FAIL") and med.reference == morphology.MEDIAN_GOAL
    assert checks["star share of sources"].status == "PASS"
    assert "asymmetry median, disk-dominated galaxies (label)" in checks


def test_validate_prints_the_structure_lines(small_data_dir, capsys):
    validate_main([str(small_data_dir / "test.h5")])
    out = capsys.readouterr().out
    assert "asymmetry median, galaxies (label)" in out and "star share of sources" in out
    assert "Conselice 2003" in out


def test_stars_have_zero_asymmetry():
    """Point sources through a point-symmetric PSF; on a 96-pixel stamp the edge cuts little
    of their wings (on 48 pixels a star 8 pixels from the edge measures A ~ 0.007)."""
    config = SimConfig(star_fraction=0.9, bands=("r",), noise="none", stamp_size=96, separation_range=(0.5, 2.0))
    s = simulate_scene(config, seed=1, split="train", index=0)
    star = np.flatnonzero(s.truth["kind"][: s.n_galaxies] == 1)
    assert len(star)
    assert np.all(morphology.asymmetry(s.isolated[star, 0], s.centers[star]) < 2e-3)
