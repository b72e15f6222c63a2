"""Forward-model deblender (constrained matrix factorisation, as in scarlet): the submission.

The code lives in the kit's package, :mod:`deblendkit.deblend.forward_model`
(its docstring describes the model, the fit and the two implementations, its
modules ``constraints``, ``psf``, ``render``, ``options``, ``fit``, ``batch``,
``gain`` and ``deblender``), so that other submissions can use it where the
hosted sandbox binds only the package and their own folder. This file
re-exports the names the workflow, the tests, the blind track and the
benchmarks use: ``Deblender`` is the submission's class.
"""
from deblendkit.deblend.forward_model.batch import BatchFitResult, fit_blends
from deblendkit.deblend.forward_model.constraints import (
    BatchConstraints,
    MorphologyConstraints,
    _source_trees,
    mirror_map,
    monotonic_tree,
    prox_monotonic,
    prox_positive,
    prox_symmetric,
    round_to_half_pixel,
)
from deblendkit.deblend.forward_model.deblender import Deblender
from deblendkit.deblend.forward_model.fit import FitResult, fit_blend, initial_morphologies
from deblendkit.deblend.forward_model.gain import estimate_gain
from deblendkit.deblend.forward_model.options import FAST_OPTIONS, FitOptions
from deblendkit.deblend.forward_model.psf import difference_kernels, embed_psf, gaussian_psf, shift_phases
from deblendkit.deblend.forward_model.render import BatchRenderer, Renderer

__all__ = [
    "BatchConstraints", "BatchFitResult", "BatchRenderer", "Deblender", "FAST_OPTIONS", "FitOptions", "FitResult",
    "MorphologyConstraints", "Renderer", "_source_trees", "difference_kernels", "embed_psf", "estimate_gain",
    "fit_blend", "fit_blends", "gaussian_psf", "initial_morphologies", "mirror_map", "monotonic_tree",
    "prox_monotonic", "prox_positive", "prox_symmetric", "round_to_half_pixel", "shift_phases",
]
