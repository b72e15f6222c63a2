"""Surveys (parameters from surveycodex) and their bandpasses (GalSim).

The numbers are not retyped here: they come from `surveycodex`, a maintained
package that carries them with units (read by :mod:`deblendkit._surveys`, which
sits below :mod:`deblendkit.config` so that the config can validate survey and
band names). A survey is selected by its surveycodex name (``"LSST"``,
``"HSC"``, ``"Euclid_VIS"``, ...); :func:`get_survey` ``(config.survey)`` is the
survey of a :class:`~deblendkit.config.SimConfig`. Units: see
:mod:`deblendkit._surveys`.
"""
from __future__ import annotations

import functools
import os

import galsim

from deblendkit._surveys import Band, Survey, available_surveys, get_survey

__all__ = ["Survey", "Band", "get_survey", "available_surveys", "bandpass"]


@functools.lru_cache(maxsize=None)
def bandpass(survey_name: str, band: str):
    """The throughput curve (a ``galsim.Bandpass`` with AB zero point) of a band.

    GalSim ships the LSST curves; a survey whose own curve GalSim lacks uses the
    LSST curve of the same letter (HSC grizy are close to LSST's), and any other
    filter a top-hat of +-15% around its effective wavelength (for Euclid VIS,
    the 550-900 nm top-hat of the instrument's definition). The curves only set
    galaxy colours, not the survey's depth, which comes from surveycodex.
    """
    survey = get_survey(survey_name)
    survey.band(band)  # validates the name
    share = os.path.join(galsim.meta_data.share_dir, "bandpasses")
    own = os.path.join(share, f"{survey_name}_{band}.dat")
    lsst = os.path.join(share, f"LSST_{band}.dat")
    if os.path.exists(own):
        bp = galsim.Bandpass(own, wave_type="nm")
    elif os.path.exists(lsst):
        bp = galsim.Bandpass(lsst, wave_type="nm")
    else:
        if survey_name == "Euclid_VIS":
            blue, red = 550.0, 900.0
        else:
            lam = survey.band(band).effective_wavelength
            blue, red = 0.85 * lam, 1.15 * lam
        bp = galsim.Bandpass(galsim.LookupTable([blue, red], [1.0, 1.0], interpolant="linear"),
                             wave_type="nm", blue_limit=blue, red_limit=red)
    return bp.thin(rel_err=1e-4).withZeropoint("AB")
