"""What a data file records about how it was made: root attributes, package versions, time."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from deblendkit._fs import package_version
from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError
from deblendkit.sim.seds import SED_NAMES
from deblendkit.sim.survey import get_survey

__all__ = ["VERSIONED_PACKAGES", "package_versions", "created_time", "split_attrs"]

VERSIONED_PACKAGES = ("deblendkit", "galsim", "numpy", "h5py", "deflate", "surveycodex", "astropy")
"""The packages whose versions shape the data (recorded in files and chunk manifests)."""


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the data (``"unknown"`` for one not installed)."""
    return {name: package_version(name) or "unknown" for name in VERSIONED_PACKAGES}


def created_time() -> str:
    """ISO time (UTC, seconds) for the ``created`` attribute.

    ``SOURCE_DATE_EPOCH`` (seconds since 1970, the reproducible-builds
    convention), when set, replaces the current time so that two runs can give
    byte-identical files.

    Raises
    ------
    ConfigError
        ``SOURCE_DATE_EPOCH`` is set but not an integer number of seconds.
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        try:
            when = datetime.fromtimestamp(int(epoch), tz=timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise ConfigError(
                f"SOURCE_DATE_EPOCH must be an integer number of seconds since 1970, got {epoch!r}",
                value=epoch, allowed="an integer number of seconds since 1970",
            ) from None
    else:
        when = datetime.now(timezone.utc)
    return when.isoformat(timespec="seconds")


def split_attrs(config: SimConfig, *, seed: int, split: str) -> dict:
    """Root attributes of a data file (see data/README.md)."""
    survey = get_survey(config.survey)
    bands = config.simulated_bands
    return {
        "bands": list(bands),
        "pixel_scale": config.pixel_scale,
        "gain": [survey.gain] * len(bands),
        "zeropoint": [survey.band(b).zeropoint for b in bands],
        "exposure_time": [survey.band(b).exposure_time * config.exposure_fraction for b in bands],
        "config": config.to_json(),
        "seed": int(seed),
        "split": split,
        "first_index": 0,
        "versions": json.dumps(package_versions(), sort_keys=True),
        "sed_names": list(SED_NAMES),
        "survey": config.survey,
        "created": created_time(),
    }
