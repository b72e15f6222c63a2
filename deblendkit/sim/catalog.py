"""Optional user catalogue of galaxies (FITS or CSV, read with astropy).

Columns (case-sensitive; units in brackets):

=================== ========= ===================================================
column              required  meaning
=================== ========= ===================================================
``mag``             yes       AB magnitude in the config's reference band
``hlr_disk``        yes       disk half-light radius [arcsec], > 0
``hlr_bulge``       yes       bulge half-light radius [arcsec], > 0
``bulge_fraction``  yes       bulge share of the reference-band flux, in [0, 1]
``e1``, ``e2``      no (0)    ellipticity, shear convention, ``|e| < 1``
``redshift``        no (0.5)  redshift, used for the SED colours
``sed_bulge``       no (0)    template index into ``deblendkit.sim.seds.SED_NAMES``
``sed_disk``        no (1)    template index into ``deblendkit.sim.seds.SED_NAMES``
=================== ========= ===================================================

Each blend draws its galaxies from the rows uniformly with replacement.
"""
from __future__ import annotations

import functools

import numpy as np
from astropy.table import Table  # already loaded by galsim: no extra import cost

from deblendkit.errors import ConfigError
from deblendkit.sim.population import Galaxies
from deblendkit.sim.seds import SED_NAMES

__all__ = ["load_catalog", "REQUIRED_COLUMNS"]

REQUIRED_COLUMNS = ("mag", "hlr_disk", "hlr_bulge", "bulge_fraction")
DEFAULTS = {"e1": 0.0, "e2": 0.0, "redshift": 0.5, "sed_bulge": 0, "sed_disk": 1}


@functools.lru_cache(maxsize=4)
def load_catalog(path: str) -> Galaxies:
    """Read and validate a catalogue file; ConfigError naming the file and the problem."""
    try:
        fmt = "csv" if path.lower().endswith(".csv") else None
        table = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:  # astropy raises many types for unreadable files
        raise ConfigError(f"catalog {path!r} could not be read as FITS or CSV: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.colnames]
    if missing:
        raise ConfigError(
            f"catalog {path!r} lacks column(s) {missing}; required: {list(REQUIRED_COLUMNS)}, "
            f"optional: {sorted(DEFAULTS)}"
        )
    if len(table) == 0:
        raise ConfigError(f"catalog {path!r} has no rows")
    cols = {}
    for name in REQUIRED_COLUMNS + tuple(DEFAULTS):
        if name in table.colnames:
            cols[name] = np.asarray(table[name], dtype=float)
        else:
            cols[name] = np.full(len(table), float(DEFAULTS[name]))
        if not np.all(np.isfinite(cols[name])):
            raise ConfigError(f"catalog {path!r} column {name!r} has non-finite values")
    for name in ("hlr_disk", "hlr_bulge"):
        if np.any(cols[name] <= 0):
            raise ConfigError(f"catalog {path!r} column {name!r} must be > 0 arcsec")
    if np.any((cols["bulge_fraction"] < 0) | (cols["bulge_fraction"] > 1)):
        raise ConfigError(f"catalog {path!r} column 'bulge_fraction' must be in [0, 1]")
    if np.any(np.hypot(cols["e1"], cols["e2"]) >= 1):
        raise ConfigError(f"catalog {path!r} has |e| >= 1; ellipticities must satisfy |e| < 1")
    for name in ("sed_bulge", "sed_disk"):
        bad = (cols[name] < 0) | (cols[name] >= len(SED_NAMES)) | (cols[name] != np.round(cols[name]))
        if np.any(bad):
            raise ConfigError(
                f"catalog {path!r} column {name!r} must hold template indices 0..{len(SED_NAMES) - 1}"
            )
    return Galaxies(
        mag=cols["mag"], hlr_disk=cols["hlr_disk"], hlr_bulge=cols["hlr_bulge"],
        e1=cols["e1"], e2=cols["e2"], bulge_fraction=cols["bulge_fraction"],
        redshift=cols["redshift"], sed_bulge=cols["sed_bulge"].astype(np.int16),
        sed_disk=cols["sed_disk"].astype(np.int16),
    )
