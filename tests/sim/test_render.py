"""Accuracy of deblendkit.sim.render against converged GalSim renderings.

The reference for one galaxy in one band is ::

    galsim.Convolve(galsim.Add([bulge * f_bulge, disk * f_disk]), psf).drawImage(
        nx=W, ny=W, scale=s, offset=(x - (W-1)/2, y - (W-1)/2),
        gsparams=GSParams(folding_threshold=2e-4, maxk_threshold=1e-5))

(GalSim's default accuracy is itself ~1.4e-4 to 2.7e-4 off in flux on bulge+disk
galaxies). Required, in every band: max |ours - ref| <= 1e-3 x peak(ref) and
|sum(ours) - sum(ref)| <= 3e-4 x sum(ref).
"""
from __future__ import annotations

import galsim
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from deblendkit.config import SimConfig
from deblendkit.sim import render, seds
from deblendkit.sim.blend_mode import scene_parameters, simulate_blend_mode
from deblendkit.sim.population import sample_population
from deblendkit.sim.survey import get_survey

PEAK_TOL = 1e-3
FLUX_TOL = 3e-4
GSP = galsim.GSParams(folding_threshold=2e-4, maxk_threshold=1e-5)
LSST_FWHM = (0.9, 0.86, 0.81, 0.79, 0.77, 0.76)  # ugrizy medians, arcsec


def reference_image(hlr_bulge, hlr_disk, e1, e2, f_bulge, f_disk, x, y, psf, size, scale):
    """Converged GalSim rendering of one bulge+disk galaxy centred at pixel (x, y)."""
    shear = galsim.Shear(g1=float(e1), g2=float(e2))
    bulge = galsim.DeVaucouleurs(half_light_radius=float(hlr_bulge)).shear(shear)
    disk = galsim.Exponential(half_light_radius=float(hlr_disk)).shear(shear)
    obj = galsim.Convolve(galsim.Add([bulge * float(f_bulge), disk * float(f_disk)]), psf, gsparams=GSP)
    offset = (x - (size - 1) / 2, y - (size - 1) / 2)
    return obj.drawImage(nx=size, ny=size, scale=scale, offset=offset).array


def assert_matches_reference(images, *, hlr_bulge, hlr_disk, e1, e2, flux_bulge, flux_disk,
                             positions, psfs, size, scale):
    """Check every galaxy and band of ``images`` (K, C, H, W) against the reference."""
    worst_peak = worst_flux = 0.0
    for g in range(len(hlr_bulge)):
        for c, psf in enumerate(psfs):
            ref = reference_image(hlr_bulge[g], hlr_disk[g], e1[g], e2[g], flux_bulge[g, c],
                                  flux_disk[g, c], positions[g][0], positions[g][1], psf, size, scale)
            ours = np.asarray(images[g, c], dtype=np.float64)
            peak = np.abs(ours - ref).max() / ref.max()
            flux = abs(ours.sum() - ref.sum()) / ref.sum()
            assert peak <= PEAK_TOL, f"galaxy {g} band {c}: peak error {peak:.2e}"
            assert flux <= FLUX_TOL, f"galaxy {g} band {c}: flux error {flux:.2e}"
            worst_peak, worst_flux = max(worst_peak, peak), max(worst_flux, flux)
    return worst_peak, worst_flux


def run_case(*, hlr_bulge, hlr_disk, e, flux_bulge, flux_disk, positions, psfs, size=32, scale=0.2):
    e1 = [a for a, _ in e]
    e2 = [b for _, b in e]
    bulges, disks = render.component_profiles(hlr_bulge, hlr_disk, e1, e2)
    fb, fd = np.asarray(flux_bulge, float), np.asarray(flux_disk, float)
    n = render.fft_size_for(size, max(hlr_bulge), max(hlr_disk), scale)
    images = render.render_galaxies(
        bulges=bulges, disks=disks, flux_bulge=fb, flux_disk=fd,
        positions=np.asarray(positions, float), psfs=psfs, stamp_size=size, pixel_scale=scale,
        fft_size=n,
    )
    assert images.shape == (len(hlr_bulge), len(psfs), size, size)
    return assert_matches_reference(images, hlr_bulge=hlr_bulge, hlr_disk=hlr_disk, e1=e1, e2=e2,
                                    flux_bulge=fb, flux_disk=fd, positions=positions, psfs=psfs,
                                    size=size, scale=scale)


def lsst_psfs(n_bands=3):
    return [galsim.Kolmogorov(fwhm=f) for f in LSST_FWHM[:: 6 // n_bands][:n_bands]]


# Fluxes differ per band (colours) and bulge and disk differ in colour.
CASES = {
    "big_bulge_dominated": dict(
        hlr_bulge=[1.5], hlr_disk=[3.0], e=[(0.1, -0.05)],
        flux_bulge=[[8e4, 9e4, 1e5]], flux_disk=[[2e4, 3e4, 3e4]], positions=[(15.3, 16.2)],
        psfs=lsst_psfs()),
    "strongly_sheared": dict(
        hlr_bulge=[0.3, 0.5], hlr_disk=[0.8, 1.2], e=[(0.7, 0.0), (0.35, -0.606)],
        flux_bulge=[[1e4, 2e4, 3e4], [5e3, 5e3, 5e3]], flux_disk=[[3e4, 3e4, 2e4], [1e4, 2e4, 2e4]],
        positions=[(16.0, 16.0), (12.4, 20.7)], psfs=lsst_psfs()),
    "near_the_edge": dict(
        hlr_bulge=[0.4, 0.2], hlr_disk=[1.0, 0.6], e=[(0.2, 0.1), (-0.3, 0.2)],
        flux_bulge=[[1e4, 2e4, 3e4], [2e3, 4e3, 5e3]], flux_disk=[[3e4, 3e4, 2e4], [5e3, 5e3, 4e3]],
        positions=[(1.3, 29.6), (30.8, 0.4)], psfs=lsst_psfs()),
    "sub_pixel_offsets_six_bands": dict(
        hlr_bulge=[0.2, 0.1], hlr_disk=[0.5, 0.3], e=[(0.0, 0.1), (0.0, 0.0)],
        flux_bulge=[[1e3, 1e4, 2e4, 3e4, 3e4, 3e4], [1, 1, 1, 1, 1, 1]],
        flux_disk=[[3e3, 3e4, 3e4, 2e4, 2e4, 1e4], [1e3, 1e3, 1e3, 1e3, 1e3, 1e3]],
        positions=[(15.37, 16.81), (20.5, 10.5)], psfs=lsst_psfs(6)),
    "narrow_psf_folding": dict(
        hlr_bulge=[0.2, 0.5], hlr_disk=[0.5, 1.0], e=[(0.3, 0.0), (0.0, -0.3)],
        flux_bulge=[[1e4, 2e4], [3e3, 3e3]], flux_disk=[[3e4, 3e4], [1e4, 1e4]],
        positions=[(15.37, 16.81), (10.2, 22.9)],
        psfs=[galsim.Kolmogorov(fwhm=0.45), galsim.Kolmogorov(fwhm=0.5)]),
    "moffat_psf": dict(
        hlr_bulge=[0.3, 0.6], hlr_disk=[0.7, 1.6], e=[(0.3, 0.0), (0.0, -0.5)],
        flux_bulge=[[1e4, 2e4, 3e4], [3e3, 3e3, 3e3]], flux_disk=[[3e4, 3e4, 2e4], [1e4, 1e4, 1e4]],
        positions=[(15.37, 16.81), (10.2, 22.9)],
        psfs=[galsim.Moffat(beta=2.5, fwhm=f) for f in (0.9, 0.8, 0.7)]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_converged_galsim(name):
    run_case(**CASES[name])


def test_narrow_psf_case_takes_the_folding_path():
    # Kolmogorov FWHM 0.45" at 0.2"/pixel has power beyond Nyquist.
    assert render.wrap_factor(CASES["narrow_psf_folding"]["psfs"], 0.2) > 1
    assert render.wrap_factor(lsst_psfs(6), 0.2) == 1


def test_euclid_like_undersampled_psf():
    psfs = [galsim.Kolmogorov(fwhm=0.17)]
    assert render.wrap_factor(psfs, 0.1) > 1
    run_case(hlr_bulge=[0.1, 0.3], hlr_disk=[0.3, 0.6], e=[(0.3, 0.0), (0.0, -0.5)],
             flux_bulge=[[1e4], [3e3]], flux_disk=[[3e4], [1e4]],
             positions=[(15.37, 16.81), (10.2, 22.9)], psfs=psfs, scale=0.1)


def test_stars_and_knots_on_the_folding_path():
    """Undersampled PSF (power beyond Nyquist): a star and a knotty, offset-bulge galaxy."""
    psfs = [galsim.Kolmogorov(fwhm=0.45)]
    assert render.wrap_factor(psfs, 0.2) > 1
    disk = galsim.Exponential(half_light_radius=0.6).shear(g1=0.2, g2=-0.1)
    bulge = galsim.DeVaucouleurs(half_light_radius=0.25).shear(g1=-0.1, g2=0.2).shift(0.05, -0.03)
    knots = galsim.RandomKnots(12, profile=disk, rng=galsim.BaseDeviate(5))
    positions = [(15.37, 16.81), (10.2, 22.9)]
    fb, fd, fk = np.array([[2e4], [8e3]]), np.array([[0.0], [2e4]]), np.array([[0.0], [9e3]])
    images = render.render_galaxies(bulges=[galsim.DeltaFunction(), bulge], disks=[None, disk], knots=[None, knots],
                                    flux_bulge=fb, flux_disk=fd, flux_knots=fk, positions=positions, psfs=psfs,
                                    stamp_size=32, pixel_scale=0.2, fft_size=96)
    objs = [galsim.DeltaFunction(flux=2e4), galsim.Add([bulge * 8e3, disk * 2e4, knots * 9e3])]
    for g, obj in enumerate(objs):
        offset = (positions[g][0] - 15.5, positions[g][1] - 15.5)
        ref = galsim.Convolve(obj, psfs[0], gsparams=GSP).drawImage(nx=32, ny=32, scale=0.2, offset=offset).array
        assert np.abs(images[g, 0] - ref).max() <= PEAK_TOL * ref.max()
        assert abs(images[g, 0].sum() - ref.sum()) <= FLUX_TOL * ref.sum()


# --------------------------------------------------------------------------
# Properties of the renderer
# --------------------------------------------------------------------------
def test_fft_size_grows_with_the_galaxies_and_is_a_fast_size():
    small = render.fft_size_for(48, 0.1, 0.3, 0.2)
    big = render.fft_size_for(48, 1.5, 3.0, 0.2)
    assert small >= 2 * 48 + 32
    assert big >= 48 + 40 * 1.5 / 0.2 and big >= 48 + 12 * 3.0 / 0.2
    for n in (small, big):
        assert galsim.Image.good_fft_size(n) == n


def _render(positions, flux_scale=1.0, size=32):
    bulges, disks = render.component_profiles([0.3, 0.2], [0.8, 0.5], [0.2, -0.1], [0.1, 0.3])
    fb = flux_scale * np.array([[1e4, 2e4], [3e3, 4e3]])
    fd = flux_scale * np.array([[3e4, 2e4], [5e3, 5e3]])
    return render.render_galaxies(bulges=bulges, disks=disks, flux_bulge=fb, flux_disk=fd,
                                  positions=np.asarray(positions, float), psfs=lsst_psfs(2),
                                  stamp_size=size, pixel_scale=0.2, fft_size=128)


# The inverse FFTs run in single precision (see deblendkit.sim.render): exact relations
# hold to float32 rounding, measured <= 7e-7 of the peak pixel; tolerance 5e-6.
FLOAT32_TOL = 5e-6


def test_linear_in_flux_and_galaxies_are_rendered_alone():
    pos = [(14.3, 15.6), (18.2, 11.9)]
    a = _render(pos)
    np.testing.assert_allclose(_render(pos, flux_scale=3.0), 3.0 * a, rtol=0, atol=3 * FLOAT32_TOL * a.max())
    # Moving the second galaxy changes nothing in the first one's image.
    b = _render([pos[0], (5.0, 25.0)])
    np.testing.assert_allclose(b[0], a[0], rtol=0, atol=FLOAT32_TOL * a.max())


def test_integer_shift_moves_the_image_by_whole_pixels():
    a = _render([(14.3, 15.6), (18.2, 11.9)])
    b = _render([(17.3, 13.6), (18.2, 11.9)])  # first galaxy +3 in x, -2 in y
    shifted = np.roll(np.roll(a[0], 3, axis=-1), -2, axis=-2)
    inner = (slice(None), slice(4, 26), slice(6, 28))  # away from the rolled-in border
    np.testing.assert_allclose(b[0][inner], shifted[inner], rtol=0, atol=FLOAT32_TOL * a.max())


# --------------------------------------------------------------------------
# Through simulate_blend_mode: galaxies rebuilt from the truth table
# --------------------------------------------------------------------------
def _seeing_factor(sample, config):
    """The scene's seeing factor, recovered by fitting the stored PSF images."""
    survey = get_survey(config.survey)
    median = [survey.band(b).psf_fwhm for b in config.simulated_bands]

    def loss(factor):
        total = 0.0
        for c, m in enumerate(median):
            img = galsim.Kolmogorov(fwhm=m * factor).drawImage(
                nx=config.psf_size, ny=config.psf_size, scale=config.pixel_scale).array
            total += float(((img / img.sum() - sample.psf[c]) ** 2).sum())
        return total

    res = minimize_scalar(loss, bounds=(0.3, 3.0), method="bounded", options={"xatol": 1e-9})
    # The stored PSFs come from the scene's FFT grid, drawImage from its own: the fit leaves
    # a residual at the 1e-6-of-peak level (sum of squares over 6 x 25 x 25 pixels < 1e-9).
    assert res.fun < 1e-9
    return res.x, median


@pytest.mark.parametrize("index", [0, 1, 2])
def test_simulated_isolated_images_match_converged_galsim(index):
    config = SimConfig(stamp_size=32, psf_size=15, edge_margin=6, population="smooth")
    sample = simulate_blend_mode(config, seed=3, split="train", index=index)
    truth, n = sample.truth, sample.n_galaxies
    # Per-component band fluxes are not stored; they follow from the truth row: the
    # reference-band total flux split by bulge_fraction, each part coloured by its SED
    # template at the galaxy's redshift, in each band's ADU (zero point and exposure).
    table = seds.colour_table(config.survey, config.simulated_bands, config.magnitude_band)
    survey = get_survey(config.survey)
    adu = np.array([survey.mag_to_adu(0.0, b) for b in config.simulated_bands]) / survey.mag_to_adu(
        0.0, config.magnitude_band)
    f_ref = truth[f"flux_{config.magnitude_band}"][:, None] * adu
    fb = truth["bulge_fraction"][:, None] * f_ref * seds.band_flux_ratios(table, truth["sed_bulge"], truth["redshift"])
    fd = (1 - truth["bulge_fraction"])[:, None] * f_ref * seds.band_flux_ratios(table, truth["sed_disk"],
                                                                                truth["redshift"])
    total = np.stack([truth[f"flux_{b}"] for b in config.simulated_bands], axis=1)
    np.testing.assert_allclose(fb + fd, total, rtol=1e-12)  # the rebuild is exact
    factor, median = _seeing_factor(sample, config)
    psfs = [galsim.Kolmogorov(fwhm=m * factor) for m in median]
    # The stored PSF is the one the scene was rendered with.
    used = scene_parameters(config, seed=3, split="train", index=index).psfs
    np.testing.assert_allclose([p.fwhm for p in psfs], [p.fwhm for p in used], rtol=1e-5)
    positions = list(zip(truth["x"], truth["y"]))
    np.testing.assert_array_equal(sample.centers[:n], np.asarray(positions, dtype=np.float32))
    assert_matches_reference(sample.isolated[:n], hlr_bulge=truth["hlr_bulge"], hlr_disk=truth["hlr_disk"],
                             e1=truth["e1"], e2=truth["e2"], flux_bulge=fb, flux_disk=fd,
                             positions=positions, psfs=psfs, size=config.stamp_size, scale=config.pixel_scale)


def realistic_reference(sample, params, k, c, psf, size, scale):
    """Converged GalSim rendering of source ``k`` of a realistic blend in band ``c``, from its truth row."""
    t = {name: sample.truth[name][k] for name in sample.truth}
    if t["kind"] == 1:
        obj = galsim.DeltaFunction(flux=float(params.flux_bulge[k, c]))
    else:
        bulge = galsim.DeVaucouleurs(half_light_radius=float(t["hlr_bulge"]))
        bulge = bulge.shear(g1=float(t["e1_bulge"]), g2=float(t["e2_bulge"])).shift(float(t["bulge_dx"]),
                                                                                   float(t["bulge_dy"]))
        disk = galsim.Exponential(half_light_radius=float(t["hlr_disk"])).shear(g1=float(t["e1"]), g2=float(t["e2"]))
        parts = [bulge * float(params.flux_bulge[k, c]), disk * float(params.flux_disk[k, c])]
        if t["n_knots"] > 0:
            knots = galsim.RandomKnots(int(t["n_knots"]), profile=disk, rng=galsim.BaseDeviate(int(t["knot_seed"])))
            parts.append(knots * float(params.flux_knots[k, c]))
        obj = galsim.Add(parts)
    offset = (t["x"] - (size - 1) / 2, t["y"] - (size - 1) / 2)
    return galsim.Convolve(obj, psf, gsparams=GSP).drawImage(nx=size, ny=size, scale=scale, offset=offset).array


@pytest.mark.parametrize("index", [0, 5])
def test_realistic_sources_match_converged_galsim(index):
    """Knots (own SED), tilted and offset bulges and stars, rebuilt from the truth table alone."""
    config = SimConfig(stamp_size=32, psf_size=15, edge_margin=6, star_fraction=0.4, bands=("g", "r", "i"))
    sample = simulate_blend_mode(config, seed=4, split="train", index=index)
    params = scene_parameters(config, seed=4, split="train", index=index)
    kinds = sample.truth["kind"]
    assert (kinds == 1).any() and (sample.truth["n_knots"][kinds == 0] > 0).any()
    # The knots' own (bluer) SED: their share of the light falls from g to i.
    knotty = np.flatnonzero(sample.truth["n_knots"] > 0)
    share = params.flux_knots[knotty] / params.flux[knotty]
    assert np.all(share[:, 0] > share[:, 2])
    for k in range(sample.n_galaxies):
        for c, psf in enumerate(params.psfs):
            ref = realistic_reference(sample, params, k, c, psf, config.stamp_size, config.pixel_scale)
            ours = sample.isolated[k, c].astype(np.float64)
            assert np.abs(ours - ref).max() <= PEAK_TOL * ref.max(), (k, c)
            assert abs(ours.sum() - ref.sum()) <= FLUX_TOL * ref.sum(), (k, c)


@pytest.mark.parametrize("fwhm", [0.6, 0.81, 1.1])
def test_fft_psf_images_match_galsim_drawimage(fwhm):
    """The stored PSF images come from the scene's shared PSF transfer function."""
    import galsim

    from deblendkit.sim.psf import psf_images
    from deblendkit.sim.render import render_psf_images

    psfs = [galsim.Kolmogorov(fwhm=fwhm), galsim.Moffat(beta=2.5, fwhm=fwhm)]
    got = render_psf_images(psfs, size=25, pixel_scale=0.2, fft_size=128)
    ref = psf_images(psfs, size=25, pixel_scale=0.2)
    assert got.dtype == np.float32 and got.shape == (2, 25, 25)
    np.testing.assert_allclose(got.sum(axis=(1, 2)), 1.0, rtol=1e-6)
    assert np.abs(got - ref).max() < 1e-4 * ref.max()


# --------------------------------------------------------------------------
# numpy k-space rendering (field mode's faint galaxies, the sky)
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def field_config():
    return SimConfig(mode="field", bands=("g", "r", "i"), noise="none")


def test_component_profiles_match_galsim_k_images():
    n, scale = 96, 0.2
    dk = 2 * np.pi / (n * scale)
    ky = 2 * np.pi * np.fft.fftfreq(n, d=scale)
    kx = 2 * np.pi * np.fft.rfftfreq(n, d=scale)
    hb, hd, e1, e2 = np.array([0.08, 0.6]), np.array([0.3, 1.5]), np.array([0.3, -0.1]), np.array([-0.2, 0.5])
    kb, kd = render.component_k(hb, hd, e1, e2, kx, ky)
    for j in range(2):
        shear = galsim.Shear(g1=e1[j], g2=e2[j])
        ref_b = render._k_image(galsim.DeVaucouleurs(half_light_radius=hb[j]).shear(shear), n, dk)
        ref_d = render._k_image(galsim.Exponential(half_light_radius=hd[j]).shear(shear), n, dk)
        np.testing.assert_allclose(kb[j], ref_b, atol=1e-5)
        np.testing.assert_allclose(kd[j], ref_d, atol=1e-12)


def test_render_sum_equals_the_sum_of_render_galaxies(field_config):
    rng = np.random.default_rng(7)
    g = sample_population(field_config.replace(star_fraction=0.3), rng, 9, mag=rng.uniform(22, 27, 9))
    fb = rng.uniform(1e3, 1e5, (9, 3)) * g.bulge_fraction[:, None]
    fd = rng.uniform(1e3, 1e5, (9, 3)) * (1 - g.bulge_fraction[:, None])
    pos = rng.uniform(-20, 67, (9, 2))  # in the stamp and in the margin
    psfs = [galsim.Kolmogorov(fwhm=f) for f in (0.9, 0.8, 0.75)]
    kw = dict(positions=pos, psfs=psfs, stamp_size=48, pixel_scale=0.2, fft_size=150)
    assert (g.kind == 1).any() and (g.bulge_dx != 0).any()  # stars, offset and tilted bulges in the batch
    bulges, disks, _ = render.source_profiles(g)  # render_sum draws no knots: their light goes to the disk
    ref = render.render_galaxies(bulges=bulges, disks=disks, flux_bulge=fb, flux_disk=fd, **kw).sum(axis=0)
    got = render.render_sum(galaxies=g, flux_bulge=fb, flux_disk=fd, chunk=4, **kw)
    assert got.shape == (3, 48, 48)
    np.testing.assert_allclose(got, ref, atol=1e-5 * ref.max())
    empty = render.render_sum(galaxies=g.take([]), flux_bulge=fb[:0], flux_disk=fd[:0], **kw)
    assert empty.shape == (3, 48, 48) and not empty.any()


@pytest.mark.parametrize("index", [0, 3, 1182])  # 1182: a 2.6" disk, a 512-pixel FFT grid
def test_sources_rendered_a_few_at_a_time_give_the_same_bytes_and_layout(monkeypatch, index):
    """``SPECTRUM_BUDGET`` bounds how many sources' spectra are held at once (memory of a scene
    with a large FFT grid); each source is rendered alone, so any grouping gives the same values,
    in the same memory layout (the truth's snr sums over it)."""
    cfg = SimConfig()
    p = scene_parameters(cfg, seed=0, split="train", index=index)
    g = p.galaxies
    bulges, disks, knots = render.source_profiles(g)
    kw = dict(bulges=bulges, disks=disks, knots=knots, flux_bulge=p.flux_bulge, flux_disk=p.flux_disk,
              flux_knots=p.flux_knots, positions=p.positions, psfs=p.psfs, stamp_size=cfg.stamp_size,
              pixel_scale=cfg.pixel_scale,
              fft_size=render.fft_size_for(cfg.stamp_size, float(g.hlr_bulge.max()), float(g.hlr_disk.max()),
                                           cfg.pixel_scale))
    out = {}
    for budget in (1e30, 1):  # all sources at once; one source at a time
        monkeypatch.setattr(render, "SPECTRUM_BUDGET", budget)
        out[budget] = render.render_galaxies(**kw)
    whole, single = out[1e30], out[1]
    assert whole.shape == (len(g), len(cfg.simulated_bands), cfg.stamp_size, cfg.stamp_size)
    assert whole.tobytes() == single.tobytes() and whole.strides == single.strides
    assert (np.einsum("kchw,kchw->k", whole, whole).tobytes()
            == np.einsum("kchw,kchw->k", single, single).tobytes())
