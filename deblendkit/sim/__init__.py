"""Simulation: a :class:`~deblendkit.config.SimConfig` -> simulated scenes.

Modules, from the bottom up: ``survey`` (surveycodex parameters, bandpasses),
``seds`` (colours), ``population`` (galaxy parameters), ``catalog`` (an optional
user catalogue), ``psf``, ``render`` (GalSim and numpy k-space rendering),
``sample`` (what both modes share: :class:`BlendSample`, seeds, noise,
blendedness, contamination, the truth table), ``blend_mode`` and ``field_mode``
(the two scene modes), ``sky`` (a big simulated field for the realism checks)
and ``modes`` (the registry: :func:`simulate_scene` looks ``config.mode`` up).
"""
from deblendkit.sim.blend_mode import SceneParams, place_galaxies, scene_parameters, simulate_blend_mode
from deblendkit.sim.catalog import REQUIRED_COLUMNS, load_catalog
from deblendkit.sim.field_mode import (
    FieldScene,
    cumulative_density,
    draws_needed,
    field_rng,
    field_scene,
    mean_count,
    simulate_field_mode,
)
from deblendkit.sim.modes import mode_function, register_mode, registered_modes, simulate_scene
from deblendkit.sim.population import Galaxies, sample_population
from deblendkit.sim.psf import psf_images, scene_psfs
from deblendkit.sim.render import render_galaxies, render_sum
from deblendkit.sim.sample import (
    BLENDED_CONTAMINATION,
    FOOTPRINT_NSIGMA,
    SPLIT_CODES,
    BlendSample,
    add_noise,
    blend_rng,
    blendedness,
    contamination,
    contamination_band,
    split_code,
)
from deblendkit.sim.seds import SED_NAMES
from deblendkit.sim.sky import Sky, simulate_sky
from deblendkit.sim.survey import Band, Survey, available_surveys, bandpass, get_survey

__all__ = [
    "BLENDED_CONTAMINATION", "Band", "BlendSample", "FOOTPRINT_NSIGMA", "FieldScene", "Galaxies",
    "REQUIRED_COLUMNS", "SED_NAMES", "SPLIT_CODES", "SceneParams", "Sky", "Survey", "add_noise",
    "available_surveys", "bandpass", "blend_rng", "blendedness", "contamination", "contamination_band",
    "cumulative_density", "draws_needed", "field_rng", "field_scene", "get_survey", "load_catalog",
    "mean_count", "mode_function", "place_galaxies", "psf_images", "register_mode", "registered_modes",
    "render_galaxies", "render_sum", "sample_population", "scene_parameters", "scene_psfs", "simulate_blend_mode",
    "simulate_field_mode", "simulate_scene", "simulate_sky", "split_code",
]
