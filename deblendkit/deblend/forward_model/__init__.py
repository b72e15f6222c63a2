"""Forward-model deblender: constrained matrix factorisation, as in scarlet.

The ``forward_model`` submission (``submissions/forward_model/deblender.py``)
re-exports it; it lives here so that other submissions (the U-Net's
``prior="forward_model"``) can use it where only the package and their own
folder are bound. The modules, one job each,
in the order they build on one another:

* ``constraints``: point symmetry, monotonicity, positivity as proximal
  operators (:func:`mirror_map`, :func:`monotonic_tree`, the ``prox_*``),
  :class:`MorphologyConstraints` of one blend, :class:`BatchConstraints` of
  many (their monotonic trees cut from cached canvas trees);
* ``psf``: the Gaussian model PSF, PSF stamps on the FFT grid, the difference
  kernels, sub-pixel shift phases, the smoothing of the detection image;
* ``render``: :class:`Renderer` and :class:`BatchRenderer`, the morphologies
  seen through each band's PSF by FFT, and their adjoints;
* ``options``: :class:`FitOptions` and the submission's :data:`FAST_OPTIONS`;
* ``fit``: :func:`fit_blend`, one blend at a time (the reference), with
  :class:`FitResult` and :func:`initial_morphologies`;
* ``batch``: :func:`fit_blends`, many blends of the same number of galaxies
  at once, with :class:`BatchFitResult`;
* ``gain``: :func:`estimate_gain`, each band's gain from training blends;
* ``deblender``: :class:`Deblender`, the submission's class.

The model
---------
Each galaxy k of a blend is modelled as a spectral energy distribution
``A[:, k]`` (one amplitude per band, ADU, >= 0) times a morphology ``S[k]`` (an
image, >= 0, maximum 1). The morphologies live in a narrow common *model PSF*
(a Gaussian of ``model_psf_sigma`` pixels); band b sees them through a
difference kernel ``D_b`` (model PSF -> observed PSF of band b), so that

    blend[b] ~ sum_k A[b, k] * (D_b conv S[k]) + noise.

The fit minimises the inverse-variance weighted squared residual by proximal
gradient descent (Melchior et al. 2018, "scarlet"), alternating

* an update of ``A`` (a small non-negative least squares problem per band,
  solved by a few projected gradient steps on the K x K Gram matrix), and
* a gradient step on all morphologies with per-source step sizes from a
  diagonal majoriser of the Hessian, followed by the constraints as proximal
  operators: point symmetry about the galaxy's centre, monotonicity (never
  brighter outwards along rays from the centre), positivity; then each
  morphology is rescaled to maximum 1, its amplitude absorbing the factor.
  As in scarlet the constraints are applied one after the other; the
  monotonic operator caps pixels rather than projecting them, so descent is
  not guaranteed: inertia (momentum) is restarted whenever the loss rises.

The weights are the inverse pixel variances: the background
``noise_sigma^2`` plus, once ``fit`` has measured each band's gain from the
training data (the only thing it learns), the sources' Poisson term.

It stops when the relative change of both ``A`` and ``S`` is below ``e_rel``
or after ``max_iter`` iterations. Slot k of the prediction is galaxy k's
model rendered in each band's observed PSF, cropped to the stamp: an
isolated, noiseless, PSF-convolved image, like the label. Optionally the
observed pixels are then split in proportion to the models (``reapportion``).

Geometry: centres are (x, y) pixels, 0-based, pixel i spanning
[i - 0.5, i + 0.5]; arrays are indexed [y, x]. Morphologies are symmetric
about the centre rounded to the nearest half pixel (so that the mirror of a
pixel is a pixel) and shifted by the remaining sub-pixel offset (<= 0.25 px)
when rendered, through a phase factor in Fourier space. The model grid is the
stamp padded by ``margin`` pixels on each side, so galaxies near the edge are
modelled beyond it.

Known weakness: a faint galaxy on the wing of a much brighter one can take
part of that wing into its own (monotonic but broad) morphology; such
galaxies are the ones that score poorly (about 5 % of galaxies below 0.5 on
the default simulation).

Only numpy and scipy.fft are used; all convolutions are FFTs (single
precision), vectorised over sources. Two implementations of the same fit:

* :func:`fit_blend`, one blend at a time (the original; on 48 x 48 stamps,
  6 bands and 4 galaxies 0.4 s of one idle CPU core on average, 5 ms per
  iteration, 60 to 300 iterations), used by ``Deblender(reference=True)``;
* :func:`fit_blends`, the submission's default: the blends with the same
  number of galaxies fitted together (arrays over blends x sources), all
  pixel arithmetic in single precision, each blend with its own momentum,
  restarts and stopping test, a converged blend dropped from the arrays.
  With the same options it runs the same iterations as :func:`fit_blend`
  (tested); the default options (:data:`FAST_OPTIONS`) also double the
  steps, loosen the stopping threshold and cap the iterations at 150;
  groups of blends are fitted on several threads (``n_threads``). On an
  idle machine, 400 default test blends: 4.1x the reference on one thread,
  7.3x on two, deblend score -0.0013, r-band flux scatter 0.164 against
  0.164; a full ``ramp-test`` in 4 minutes on 2 cores. Speed and scores
  against the reference: ``benchmarks/bench_baselines.py --forward-model 400``.
"""
from deblendkit.deblend.forward_model.batch import BatchFitResult, fit_blends
from deblendkit.deblend.forward_model.constraints import (
    BatchConstraints,
    MorphologyConstraints,
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
    "FAST_OPTIONS", "BatchConstraints", "BatchFitResult", "BatchRenderer", "Deblender", "FitOptions", "FitResult",
    "MorphologyConstraints", "Renderer", "difference_kernels", "embed_psf", "estimate_gain", "fit_blend",
    "fit_blends", "gaussian_psf", "initial_morphologies", "mirror_map", "monotonic_tree", "prox_monotonic",
    "prox_positive", "prox_symmetric", "round_to_half_pixel", "shift_phases",
]
