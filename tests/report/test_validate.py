"""Tests of deblendkit.report.realism (the statistics, the report) and its command line deblendkit.cli.validate.

The statistics of a 0.05 deg^2 simulated field against the published values
(the issue's acceptance test) are marked slow (about a minute on two cores).
"""
from __future__ import annotations

import math
import re

import h5py
import numpy as np
import pytest

from deblendkit.cli import validate as validate_cli
from deblendkit.config import SimConfig
from deblendkit.report import morphology
from deblendkit.report import realism as validate
from deblendkit.sim.modes import simulate_scene
from deblendkit.sim.population import sample_magnitudes
from deblendkit.sim.sky import simulate_sky
from deblendkit.storage import DatasetWriter, truth_dtype


def write_file(path, config: SimConfig, n_blends: int, seed: int = 0, split: str = "train") -> None:
    """Simulate ``n_blends`` blends and write them with the io contract (no process pool)."""
    samples = [simulate_scene(config, seed=seed, split=split, index=i) for i in range(n_blends)]
    dtype = truth_dtype(config.simulated_bands)
    rows = np.zeros(sum(len(s.truth["blend_index"]) for s in samples), dtype=dtype)
    r = 0
    for s in samples:
        k = len(s.truth["blend_index"])
        for name in dtype.names:
            rows[name][r: r + k] = s.truth[name]
        r += k
    attrs = {"pixel_scale": config.pixel_scale, "config": config.to_json(), "seed": seed, "split": split,
             "first_index": 0, "bands": list(config.simulated_bands)}
    with DatasetWriter(path, n_blends=n_blends, bands=config.simulated_bands, max_galaxies=config.max_galaxies,
                       stamp_size=config.stamp_size, psf_size=config.psf_size, attrs=attrs) as w:
        w.write(0, blend=np.stack([s.blend for s in samples]), isolated=np.stack([s.isolated for s in samples]),
                psf=np.stack([s.psf for s in samples]), noise_sigma=np.stack([s.noise_sigma for s in samples]),
                centers=np.stack([s.centers for s in samples]),
                n_galaxies=np.array([s.n_galaxies for s in samples]), truth_rows=rows)


@pytest.fixture(scope="module")
def field_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("validate") / "field.h5"
    write_file(path, SimConfig(mode="field", bands=("r", "i")), 16)
    return path


@pytest.fixture(scope="module")
def blend_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("validate") / "blend.h5"
    write_file(path, SimConfig(bands=("r", "i")), 12)
    return path


# --------------------------------------------------------------------------
# Published values and statistics
# --------------------------------------------------------------------------
def test_published_laws_give_the_design_numbers():
    # shared/DESIGN.md section 6: hlr ~0.41" at i = 24, ~0.31" at i = 25; 46 at i < 25.
    assert validate.miller_hlr(24.0) == pytest.approx(0.41, abs=0.005)
    assert validate.miller_hlr(25.0) == pytest.approx(0.31, abs=0.005)
    assert validate.published_density(25.0) == pytest.approx(46.0)
    assert validate.published_density(25.3) == pytest.approx(57.0, abs=0.05)


@pytest.mark.parametrize("slope", [0.31, 0.45])
def test_count_slope_recovers_the_slope_of_the_drawn_counts(slope):
    mag = sample_magnitudes(np.random.default_rng(0), 200_000, (14.0, 27.0), slope)
    # N(<21) ~ 200000 x 10^(-6 slope): at least ~250 galaxies, 1/sqrt(250) ~ 6% at the bright end
    assert validate.count_slope(mag) == pytest.approx(slope, abs=0.02)


def test_count_slope_is_nan_without_bright_galaxies():
    assert math.isnan(validate.count_slope(np.array([22.0, 23.0, 24.0])))


def test_truncated_poisson_mean_undoes_the_selection():
    rng = np.random.default_rng(1)
    # tolerances ~3 standard errors of the MLE (low mu keeps few scenes, and the
    # truncated mean barely moves with mu)
    for mu, minimum, rel in ((1.45, 2, 0.02), (0.6, 2, 0.05), (3.0, 1, 0.02)):
        n = rng.poisson(mu, 400_000)
        kept = n[n >= minimum]
        assert kept.mean() > mu
        assert validate.truncated_poisson_mean(kept, minimum) == pytest.approx(mu, rel=rel)
    assert validate.truncated_poisson_mean(np.array([1, 2, 3]), 0) == pytest.approx(2.0)
    assert validate.truncated_poisson_mean(np.array([2, 2, 2]), 2) == 0.0
    with pytest.raises(ValueError, match="counts below the truncation 2"):
        validate.truncated_poisson_mean(np.array([1, 3]), 2)


def test_median_in_bins_and_blend_fraction():
    m, v, n = validate.median_in_bins([22.1, 22.2, 22.3, 23.7], [1.0, 2.0, 9.0, 4.0], [22.0, 23.0, 24.0, 25.0])
    np.testing.assert_allclose(m[:2], [22.2, 23.7])
    np.testing.assert_allclose(v[:2], [2.0, 4.0])
    assert np.isnan(m[2]) and list(n) == [3, 1, 0]
    assert validate.blend_fraction([0.0, 0.005, 0.01, 0.2, np.nan]) == 0.5
    assert math.isnan(validate.blend_fraction([np.nan]))


def _synthetic_sample(size_factor=1.0, contamination_blended=0.62, mode="sky"):
    rng = np.random.default_rng(2)
    area = 100.0
    n = rng.poisson(area * (validate.published_density(27.0) - validate.published_density(18.0)))
    mag = sample_magnitudes(rng, n, (18.0, 27.0), 0.31)
    hlr = size_factor * validate.miller_hlr(mag) * np.exp(0.3 * rng.standard_normal(n))
    bright = mag < 25.3
    blended = rng.random(bright.sum()) < contamination_blended
    contam = np.where(blended, 0.1, 0.001)
    return validate.Sample(name="syn", description="synthetic", mode=mode, mag=mag, hlr_disk=hlr,
                           area_arcmin2=area if mode != "blend" else None, labelled_mag=mag[bright],
                           contamination=contam)


def test_checks_pass_on_a_sample_drawn_from_the_published_laws():
    checks = validate.run_checks(_synthetic_sample())
    assert [c.status for c in checks] == ["PASS"] * len(checks)
    assert len(checks) == 2 + len(validate.SIZE_BINS) - 1 + 1


def test_checks_fail_where_the_sample_departs():
    checks = {c.name: c for c in validate.run_checks(_synthetic_sample(size_factor=1.5, contamination_blended=0.3))}
    sizes = [c for name, c in checks.items() if name.startswith("median disk hlr")]
    assert sizes and all(c.status == "FAIL" for c in sizes)
    assert all(c.value == pytest.approx(1.5 * c.reference, rel=0.1) for c in sizes)
    assert checks["blend fraction (>=1% flux from others)"].status == "FAIL"
    assert checks["count slope dlog10N/di, 21<i<25"].status == "PASS"


def test_blend_mode_density_and_blending_are_info():
    checks = {c.name: c for c in validate.run_checks(_synthetic_sample(mode="blend"))}
    assert checks["density i<25.3 /arcmin^2"].status == "INFO"
    assert checks["blend fraction (>=1% flux from others)"].status == "INFO"


def test_report_has_one_line_per_check():
    s = _synthetic_sample()
    checks = validate.run_checks(s)
    text = validate.format_report(s, checks)
    for c in checks:
        assert re.search(rf"^{re.escape(c.name)}\s+{c.value:.3f}\s+{c.reference:.3f}\s+\S+\s+{c.status}", text, re.M)
    assert text.splitlines()[-1] == f"{len(checks)} PASS, 0 FAIL, 0 INFO"


# --------------------------------------------------------------------------
# Data files and the command line
# --------------------------------------------------------------------------
def test_field_file_sample_counts_galaxies_in_the_stamps(field_file):
    s = validate.sample_from_file(field_file)
    assert s.mode == "field" and s.min_labelled == 2
    assert s.area_arcmin2 == pytest.approx(16 * (48 * 0.2) ** 2 / 3600)
    assert len(s.scene_counts) == 16 and s.scene_counts.min() >= 2
    assert int(s.scene_counts.sum()) == int(np.sum(s.mag < 25.3))
    assert 0 < s.rejected < 1 and 0 < s.rejected_expected < 1
    assert np.all(np.isfinite(s.contamination))


def test_cli_on_a_field_file_prints_the_lines_and_writes_the_plots(field_file, tmp_path, capsys):
    rc = validate_cli.main([str(field_file), "--plots", str(tmp_path / "plots")])
    out = capsys.readouterr().out
    statuses = re.findall(r" {2}(PASS|FAIL|INFO) {2}", out)
    structure = morphology.structure_checks(field_file)  # asymmetry, star share and colours
    assert len(statuses) == 2 + len(validate.SIZE_BINS) - 1 + 2 + len(structure)
    assert all(c.name in out for c in structure)
    assert rc == (1 if "FAIL" in statuses else 0)
    assert "scene draws rejected (< 2 labelled)" in out and "corrected for the >= 2 selection" in out
    for what in ("counts", "size_magnitude", "blendedness", "blend_fraction"):
        png = tmp_path / "plots" / f"field_{what}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_on_a_blend_file(blend_file, capsys):
    validate_cli.main([str(blend_file)])
    out = capsys.readouterr().out
    assert re.search(r"^density i<25.3 /arcmin\^2 .* INFO\s+blend mode", out, re.M)
    assert "blend mode imposes its overlaps" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "validate: error: give a data FILE, or --sky to simulate a big field (or both)"),
        (["/nonexistent/x.h5"], "validate: error: /nonexistent/x.h5 does not exist"),
        (["--sky", "--size-scale", "-1"], "validate: error: --size-scale must be > 0, got -1.0"),
        (["--sky", "--area", "0"], "validate: error: area_arcmin2 must be in (0, 3600] arcmin^2, got 0.0"),
    ],
)
def test_cli_errors_exit_2_with_one_line(argv, message, capsys):
    assert validate_cli.main(argv) == 2
    assert capsys.readouterr().err.strip() == message


def test_cli_refuses_a_schema_1_file(blend_file, tmp_path, capsys):
    old = tmp_path / "old.h5"
    old.write_bytes(blend_file.read_bytes())
    with h5py.File(old, "a") as f:
        f.attrs["schema_version"] = 1
    assert validate_cli.main([str(old)]) == 2
    assert re.search(r"old\.h5 has schema_version 1; this kit reads 3", capsys.readouterr().err)


# --------------------------------------------------------------------------
# The acceptance test: a 0.05 deg^2 field against the published values
# --------------------------------------------------------------------------
@pytest.mark.slow
def test_big_field_matches_the_published_statistics():
    sky = simulate_sky(SimConfig(mode="field"), area_arcmin2=180.0, seed=0)
    assert sky.area_arcmin2 >= 180.0
    checks = validate.run_checks(validate.sample_from_sky(sky))
    failed = [c for c in checks if c.status != "PASS"]
    assert not failed, validate.format_report(validate.sample_from_sky(sky), checks)
    by_name = {c.name: c for c in checks}
    assert abs(by_name["count slope dlog10N/di, 21<i<25"].value - 0.31) <= 0.05
    assert abs(by_name["density i<25.3 /arcmin^2"].value / 54.0 - 1) <= 0.20
    assert abs(by_name["blend fraction (>=1% flux from others)"].value - 0.62) <= 0.10
