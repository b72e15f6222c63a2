"""Tests of deblendkit.config: validation of every option, JSON/TOML round trips."""
from __future__ import annotations

import dataclasses
import json
import re

import pytest

from deblendkit.config import SimConfig, load_config
from deblendkit.errors import ConfigError
from deblendkit.sim.survey import get_survey

SMALL = dict(stamp_size=32, psf_size=15, edge_margin=6)


def test_defaults_are_valid_and_documented():
    c = SimConfig()
    assert (c.stamp_size, c.max_galaxies, c.min_galaxies) == (48, 6, 2)
    assert c.psf_size % 2 == 1 and c.psf_size <= c.stamp_size


def test_options_are_keyword_only_and_frozen():
    with pytest.raises(TypeError):
        SimConfig("LSST")  # the survey must be named: options are keyword-only
    c = SimConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.stamp_size = 64


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(stamp_size=-4), "stamp_size must be > 0, got -4"),
        (dict(stamp_size=0), "stamp_size must be > 0, got 0"),
        (dict(stamp_size=8, psf_size=5), "stamp_size must be >= 16 pixels, got 8"),
        (dict(stamp_size=32.0), "stamp_size must be an integer, got 32.0"),
        (dict(stamp_size=True), "stamp_size must be an integer, got True"),
        (dict(psf_size=0), "psf_size must be > 0, got 0"),
        (dict(psf_size=24), "psf_size must be odd (PSF centred on a pixel), got 24"),
        (dict(stamp_size=20, psf_size=25, edge_margin=4),
         "stamp_size (20 pixels) is smaller than the PSF image (psf_size=25)"),
        (dict(max_galaxies=1, min_galaxies=1), "max_galaxies must be >= 2 (a blend has 2 or more galaxies), got 1"),
        (dict(max_galaxies=0), "max_galaxies must be > 0, got 0"),
        (dict(min_galaxies=5, max_galaxies=4), "min_galaxies must be in [1, max_galaxies=4], got 5"),
        (dict(min_galaxies=-1), "min_galaxies must be > 0, got -1"),
        (dict(edge_margin=-1), "edge_margin must be >= 0, got -1"),
        (dict(edge_margin=23), "edge_margin=23 leaves no room in a 48-pixel stamp"),
        (dict(survey="Roman"), "unknown survey 'Roman'"),
        (dict(survey=3), "survey must be a survey name (str), got 3"),
        (dict(bands=("r", "w")), "unknown band 'w' for survey LSST"),
        (dict(bands=()), "bands must name at least one band"),
        (dict(bands="gri"), "bands must be a list of band names, got 'gri'"),
        (dict(bands=("r", "r")), "bands must not repeat, got ['r', 'r']"),
        (dict(reference_band="Q"), "unknown band 'Q' for survey LSST"),
        (dict(exposure_fraction=0.0), "exposure_fraction must be > 0, got 0.0"),
        (dict(exposure_fraction=float("nan")), "exposure_fraction must be a finite number, got nan"),
        (dict(psf_model="airy"), "psf_model must be one of ['kolmogorov', 'moffat'], got 'airy'"),
        (dict(psf_model="moffat", moffat_beta=1.0), "moffat_beta must be > 1.1, got 1.0"),
        (dict(noise="poisson"), "noise must be one of ['gaussian', 'none'], got 'poisson'"),
        (dict(mode="grid"), "mode must be one of ['blend', 'field'], got 'grid'"),
        (dict(seeing_scatter=-0.1), "seeing_scatter must be >= 0, got -0.1"),
        (dict(separation_range=(3.0, 1.0)), "separation_range must satisfy 0.0 <= low <= high <= 100.0, got (3.0, 1.0)"),
        (dict(separation_range=(1.0,)), "separation_range must be a pair (low, high) of numbers"),
        (dict(mag_range=(25.0, 19.0)), "mag_range must satisfy 10.0 <= low <= high <= 35.0, got (25.0, 19.0)"),
        (dict(hlr_range=(0.0, 3.0)), "hlr_range must satisfy 0.001 <= low <= high <= 5.0"),
        (dict(bulge_dominated_fraction=1.5), "bulge_dominated_fraction must be in [0, 1], got 1.5"),
        (dict(ellipticity_max=1.0), "ellipticity_max must be in (0, 1), got 1.0"),
        (dict(fft_size=32), "fft_size must be >= stamp_size=48, got 32"),
        (dict(catalog="/nonexistent/galaxies.fits"), "catalog file '/nonexistent/galaxies.fits' does not exist"),
        (dict(disk_size_slope=float("inf")), "disk_size_slope must be a finite number, got inf"),
        (dict(population="clumpy"), "population must be one of ['realistic', 'smooth'], got 'clumpy'"),
        (dict(knot_fraction_disk=(0.2, 1.0)), "knot_fraction_disk must satisfy 0.0 <= low <= high <= 0.95"),
        (dict(knot_fraction_bulge=(0.3, 0.1)), "knot_fraction_bulge must satisfy 0.0 <= low <= high <= 0.95"),
        (dict(knot_number_range=(0, 10)), "knot_number_range must be two integers 1 <= lo <= hi <= 500, got (0, 10)"),
        (dict(knot_number_range=(5.0, 10)), "knot_number_range must be two integers 1 <= lo <= hi <= 500"),
        (dict(bulge_rotation_max=120.0), "bulge_rotation_max must be <= 90, got 120.0"),
        (dict(bulge_offset_max=-0.1), "bulge_offset_max must be >= 0, got -0.1"),
        (dict(star_fraction=1.0), "star_fraction must be in [0, 1), got 1.0"),
        (dict(star_fraction=float("nan")), "star_fraction must be a finite number, got nan"),
        (dict(star_count_slope=2.0), "star_count_slope must be <= 1, got 2.0"),
    ],
)
def test_bad_option_is_one_clear_config_error(changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        SimConfig(**changes)


def test_config_error_is_also_a_value_error():
    with pytest.raises(ValueError):
        SimConfig(max_galaxies=1)


def test_replace_validates_again():
    c = SimConfig(**SMALL)
    assert c.replace(max_galaxies=3).max_galaxies == 3
    with pytest.raises(ConfigError, match=re.escape("max_galaxies must be >= 2")):
        c.replace(max_galaxies=1, min_galaxies=1)


def test_lists_become_tuples():
    c = SimConfig(bands=["g", "r"], mag_range=[20, 24])
    assert c.bands == ("g", "r")
    assert c.mag_range == (20.0, 24.0)
    assert c.simulated_bands == ("g", "r")


def test_derived_properties():
    c = SimConfig(survey="HSC", reference_band="r")
    assert c.magnitude_band == "r"
    assert SimConfig(survey="Euclid_VIS").magnitude_band == "IE"  # no i band: the reddest one
    assert SimConfig().magnitude_band == "i" and SimConfig().reference_band is None
    assert c.pixel_scale == get_survey(c.survey).pixel_scale
    assert SimConfig(survey="HSC").simulated_bands == get_survey("HSC").band_names
    assert c.simulated_bands == get_survey("HSC").band_names and c.bands is None


def test_no_derived_twin_of_a_field():
    """One name per concept: the options, and derived values under names that are not synonyms."""
    c = SimConfig()
    for gone in ("survey_obj", "band_names", "ref_band"):
        assert not hasattr(c, gone), gone


@pytest.mark.parametrize(
    "changes, value, allowed",
    [
        (dict(stamp_size=0), 0, "> 0"),
        (dict(edge_margin=-1), -1, ">= 0"),
        (dict(psf_size=24), 24, "an odd integer"),
        (dict(mode="grid"), "grid", ("blend", "field")),
        (dict(survey="Rubin"), "Rubin", None),
        (dict(bands=("g", "q")), "q", ("u", "g", "r", "i", "z", "y")),
        (dict(mag_range=(25.0, 19.0)), (25.0, 19.0), "10.0 <= low <= high <= 35.0"),
        (dict(field_min_labelled=7), 7, (1, 6)),
    ],
)
def test_config_errors_carry_the_value_and_what_is_allowed(changes, value, allowed):
    with pytest.raises(ConfigError) as info:
        SimConfig(**changes)
    assert info.value.value == value
    if allowed is None:
        assert "LSST" in info.value.allowed
    else:
        assert info.value.allowed == allowed


#: The ``config`` attribute of a default data file made before the restructure (commit 1282cec).
DEFAULT_CONFIG_JSON = (
    '{"bands": null, "bulge_dominated_fraction": 0.25, "bulge_offset_max": 0.1, '
    '"bulge_rotation_max": 45.0, "bulge_size_ratio": [0.3, 0.7], "catalog": null, "count_slope": 0.31, '
    '"disk_size_pivot": 23.0, "disk_size_slope": -0.269, "disk_size_zero": -1.145, "edge_margin": 8, '
    '"ellipticity_max": 0.7, "ellipticity_sigma": 0.25, "exposure_fraction": 1.0, "fft_size": null, '
    '"field_bright_limit": 18.0, "field_count_density": 46.0, "field_faint_limit": 27.0, '
    '"field_margin": 4.0, "field_max_tries": 100, "field_min_labelled": 2, "hlr_range": [0.05, 3.0], '
    '"knot_fraction_bulge": [0.0, 0.1], "knot_fraction_disk": [0.2, 0.5], "knot_number_range": [3, 30], '
    '"label_limit": 25.3, "mag_range": [19.0, 25.3], "max_galaxies": 6, "max_redshift": 3.0, '
    '"min_galaxies": 2, "min_separation": 2.0, "mode": "blend", "moffat_beta": 2.5, "noise": "gaussian", '
    '"population": "realistic", "psf_model": "kolmogorov", "psf_size": 25, "reference_band": null, '
    '"seeing_scatter": 0.1, "separation_range": [0.5, 5.0], "size_scatter": 0.3, "stamp_size": 48, '
    '"star_count_slope": 0.1, "star_fraction": 0.08, "survey": "LSST"}'
)


def test_to_json_bytes_are_those_of_the_data_files():
    """The ``config`` attribute of the data files (schema 3: with the realistic population's options)."""
    assert SimConfig().to_json() == DEFAULT_CONFIG_JSON
    assert SimConfig.from_json(DEFAULT_CONFIG_JSON).to_json() == DEFAULT_CONFIG_JSON


# --------------------------------------------------------------------------
# Serialisation
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config",
    [
        SimConfig(),
        SimConfig(survey="HSC", bands=("g", "i"), reference_band="i", stamp_size=40, psf_size=21,
                  max_galaxies=4, min_galaxies=3, psf_model="moffat", moffat_beta=3.0,
                  separation_range=(1.0, 2.0), mag_range=(20.0, 24.0), noise="none", fft_size=128,
                  exposure_fraction=0.3),
    ],
)
def test_json_round_trip_is_equal(config):
    text = config.to_json()
    assert json.loads(text)["stamp_size"] == config.stamp_size
    back = SimConfig.from_json(text)
    assert back == config
    assert back.to_json() == text


def test_from_json_rejects_bad_json_and_unknown_options():
    with pytest.raises(ConfigError, match="config is not valid JSON"):
        SimConfig.from_json("{stamp_size: 32")
    with pytest.raises(ConfigError, match=re.escape("unknown config option(s) ['stamp']; allowed:")):
        SimConfig.from_json('{"stamp": 32}')
    with pytest.raises(ConfigError, match="a config must be a mapping of option names to values, got list"):
        SimConfig.from_json("[1, 2]")


def test_load_config_json_and_toml(tmp_path):
    js = tmp_path / "sim.json"
    js.write_text(json.dumps({"stamp_size": 32, "psf_size": 15, "edge_margin": 6, "bands": ["g", "r"]}))
    assert load_config(str(js)) == SimConfig(stamp_size=32, psf_size=15, edge_margin=6, bands=("g", "r"))
    tm = tmp_path / "sim.toml"
    tm.write_text('stamp_size = 32\npsf_size = 15\nedge_margin = 6\nmag_range = [20.0, 24.0]\n')
    assert load_config(str(tm)) == SimConfig(stamp_size=32, psf_size=15, edge_margin=6, mag_range=(20.0, 24.0))


def test_load_config_errors(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match=re.escape(f"config file {str(missing)!r} does not exist")):
        load_config(str(missing))
    bad = tmp_path / "bad.json"
    bad.write_text('{"stamp_size": 32,')
    with pytest.raises(ConfigError, match=re.escape(f"config file {str(bad)!r} could not be parsed")):
        load_config(str(bad))
    badtoml = tmp_path / "bad.toml"
    badtoml.write_text("stamp_size = = 3")
    with pytest.raises(ConfigError, match="could not be parsed"):
        load_config(str(badtoml))
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"n_blends": 5}')
    with pytest.raises(ConfigError, match=re.escape("unknown config option(s) ['n_blends']")):
        load_config(str(unknown))
    yaml = tmp_path / "sim.yaml"
    yaml.write_text("stamp_size: 32")
    with pytest.raises(ConfigError, match=r"must end in \.json or \.toml"):
        load_config(str(yaml))
    invalid = tmp_path / "invalid.json"
    invalid.write_text('{"max_galaxies": 1, "min_galaxies": 1}')
    with pytest.raises(ConfigError, match=re.escape("max_galaxies must be >= 2")):
        load_config(str(invalid))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(bands=True), "bands must be a list of band names, got True"),
        (dict(bulge_dominated_fraction="abc"), "bulge_dominated_fraction must be a finite number, got 'abc'"),
        (dict(ellipticity_max=None), "ellipticity_max must be a finite number, got None"),
        (dict(exposure_fraction=1e-142), "exposure_fraction must be >= 1e-4, got 1e-142"),
        (dict(exposure_fraction=1e18), "exposure_fraction must be <= 1000, got 1e+18"),
        (dict(moffat_beta=1e308), "moffat_beta must be <= 100, got 1e+308"),
        (dict(seeing_scatter=50.0), "seeing_scatter must be <= 0.5, got 50.0"),
        (dict(hlr_range=(100.0, 100.0)), "hlr_range must satisfy 0.001 <= low <= high <= 5.0"),
    ],
)
def test_values_found_by_fuzzing_are_config_errors(changes, message):
    """Each of these once reached GalSim or numpy (TypeError, ZeroDivisionError, a 150 GB FFT)."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        SimConfig(**changes)


def test_negative_zero_interval_is_normalised():
    cfg = SimConfig(separation_range=(0.0, -0.0))
    assert cfg.separation_range == (0.0, 0.0)
    assert str(cfg.separation_range[1]) == "0.0"
