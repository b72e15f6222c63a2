"""Tests of deblendkit.sim.catalog: a user catalogue (CSV or FITS, astropy) drives the simulation."""
from __future__ import annotations

import re

import numpy as np
import pytest
from astropy.table import Table

from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError
from deblendkit.sim.blend_mode import simulate_blend_mode
from deblendkit.sim.catalog import REQUIRED_COLUMNS, load_catalog

SMALL = dict(stamp_size=32, psf_size=15, edge_margin=6, max_galaxies=4)
N_ROWS = 12


def catalogue_table(n=N_ROWS):
    """Distinct magnitudes so every simulated galaxy identifies its row."""
    rng = np.random.default_rng(0)
    return Table({
        "mag": np.linspace(20.0, 24.4, n),
        "hlr_disk": rng.uniform(0.2, 0.8, n),
        "hlr_bulge": rng.uniform(0.1, 0.3, n),
        "bulge_fraction": rng.uniform(0.0, 1.0, n),
        "e1": rng.uniform(-0.3, 0.3, n),
        "e2": rng.uniform(-0.3, 0.3, n),
        "redshift": rng.uniform(0.1, 1.5, n),
        "sed_bulge": np.zeros(n, dtype=int),
        "sed_disk": rng.integers(1, 4, n),
    })


def write(table, path):
    table.write(str(path), format="csv" if str(path).endswith(".csv") else "fits", overwrite=True)
    return str(path)


@pytest.mark.parametrize("suffix", [".csv", ".fits"])
def test_catalogue_rows_drive_the_simulation(tmp_path, suffix):
    table = catalogue_table()
    path = write(table, tmp_path / f"galaxies{suffix}")
    config = SimConfig(catalog=path, **SMALL)
    seen = set()
    for index in range(4):
        sample = simulate_blend_mode(config, seed=2, split="train", index=index)
        truth = sample.truth
        for k in range(sample.n_galaxies):
            # The reference-band (i) magnitude of the truth is the catalogue's (no colour term).
            row = int(np.argmin(np.abs(table["mag"] - truth["mag_i"][k])))
            assert truth["mag_i"][k] == pytest.approx(table["mag"][row], abs=1e-9)
            for col in ("hlr_disk", "hlr_bulge", "bulge_fraction", "e1", "e2", "redshift"):
                assert truth[col][k] == pytest.approx(table[col][row], rel=1e-12), col
            assert truth["sed_disk"][k] == table["sed_disk"][row]
            seen.add(row)
    assert len(seen) > 3  # rows are drawn, not one repeated


def test_optional_columns_take_their_documented_defaults(tmp_path):
    table = catalogue_table()
    table.remove_columns(["e1", "e2", "redshift", "sed_bulge", "sed_disk"])
    gals = load_catalog(write(table, tmp_path / "minimal.csv"))
    assert np.all(gals.e1 == 0) and np.all(gals.e2 == 0)
    assert np.all(gals.redshift == 0.5)
    assert np.all(gals.sed_bulge == 0) and np.all(gals.sed_disk == 1)
    np.testing.assert_array_equal(gals.mag, table["mag"])


def test_csv_and_fits_give_the_same_galaxies(tmp_path):
    table = catalogue_table()
    a = load_catalog(write(table, tmp_path / "g.csv"))
    b = load_catalog(write(table, tmp_path / "g.fits"))
    for name, value in vars(a).items():
        np.testing.assert_allclose(value, getattr(b, name), rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("column", REQUIRED_COLUMNS)
def test_missing_required_column(tmp_path, column):
    table = catalogue_table()
    table.remove_column(column)
    path = write(table, tmp_path / "cat.csv")
    with pytest.raises(ConfigError, match=re.escape(f"lacks column(s) [{column!r}]; required: ")):
        load_catalog(path)
    # The same error stops a simulation that uses the file.
    config = SimConfig(catalog=path, **SMALL)
    with pytest.raises(ConfigError, match=re.escape(f"lacks column(s) [{column!r}]")):
        simulate_blend_mode(config, seed=0, split="train", index=0)


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("hlr_disk", 0.0, "column 'hlr_disk' must be > 0 arcsec"),
        ("hlr_bulge", -0.1, "column 'hlr_bulge' must be > 0 arcsec"),
        ("bulge_fraction", 1.2, "column 'bulge_fraction' must be in [0, 1]"),
        ("e1", 0.99, "has |e| >= 1; ellipticities must satisfy |e| < 1"),
        ("mag", np.nan, "column 'mag' has non-finite values"),
        ("sed_disk", 7, "column 'sed_disk' must hold template indices 0..3"),
        ("sed_bulge", 0.5, "column 'sed_bulge' must hold template indices 0..3"),
    ],
)
def test_bad_values(tmp_path, column, value, message):
    table = catalogue_table()
    if column in ("sed_disk", "sed_bulge"):
        table[column] = table[column].astype(float)
    table[column][3] = value
    if column == "e1":
        table["e2"][3] = 0.5
    path = write(table, tmp_path / "bad.fits")
    with pytest.raises(ConfigError, match=re.escape(f"catalog {path!r} {message}")):
        load_catalog(path)


def test_empty_and_unreadable_files(tmp_path):
    empty = write(catalogue_table()[:0], tmp_path / "empty.csv")
    with pytest.raises(ConfigError, match=re.escape(f"catalog {empty!r} has no rows")):
        load_catalog(empty)
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"\x00\x01 this is not a table \xff" * 10)
    with pytest.raises(ConfigError, match=re.escape(f"catalog {str(junk)!r} could not be read as FITS or CSV")):
        load_catalog(str(junk))


def test_missing_catalogue_file_is_a_config_error(tmp_path):
    path = str(tmp_path / "absent.csv")
    with pytest.raises(ConfigError, match=re.escape(f"catalog file {path!r} does not exist")):
        SimConfig(catalog=path)
