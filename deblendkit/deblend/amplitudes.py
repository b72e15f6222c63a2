"""Least-squares fluxes for given morphologies: refit each galaxy's amplitude per band.

A deblender's images carry two things: the shape of every galaxy and how much
of the blend's light it gets. :func:`refit_amplitudes` keeps the shapes and
re-measures the light: per blend and band it finds the non-negative
amplitudes ``a_k`` that minimise ``|| blend - sum_k a_k model_k ||^2`` (the
chi^2 under sky-dominated noise) and returns ``a_k model_k``. This is the
amplitude step of a forward model (scarlet's SED update with the morphology
fixed), usable after any method: a network trained on a relative-L2 loss
shrinks the galaxies it is unsure of, which lowers the L2 error and biases
the fluxes; refitting removes that bias where the shapes are right.

With ``noise_sigma`` the fit is the chi^2 in units of each band's noise, and
``amplitude_sigma`` adds a prior that each amplitude is 1 (the given image) with
that fractional width: ``chi^2 + sum_k ((a_k - 1) / amplitude_sigma)^2``. A galaxy
detected at high signal-to-noise then gets the flux the data say, a faint one
keeps the given flux, and two galaxies whose models are nearly the same shape
(where least squares is ill-conditioned) keep the given split.
"""
from __future__ import annotations

import numpy as np

from deblendkit.errors import ConfigError, PredictionError

__all__ = ["refit_amplitudes"]


def _solve_nonnegative(gram: np.ndarray, rhs: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Non-negative least squares by active sets, over leading axes.

    ``gram`` (..., K, K), ``rhs`` (..., K), ``active`` (..., K) bool: the slots
    that may be non-zero. A slot whose unconstrained solution is negative is set
    to zero and the rest solved again; at most K rounds.
    """
    k = gram.shape[-1]
    eye = np.eye(k, dtype=gram.dtype)
    active = active.copy()
    a = np.zeros_like(rhs)
    for _ in range(k):
        mask = active[..., :, None] & active[..., None, :]
        g = np.where(mask, gram, 0.0) + np.where(active, 0.0, 1.0)[..., None] * eye
        r = np.where(active, rhs, 0.0)
        a = np.linalg.solve(g, r[..., None])[..., 0]
        negative = active & (a < 0)
        if not negative.any():
            break
        active &= ~negative
    return np.where(active, np.maximum(a, 0.0), 0.0)


def refit_amplitudes(blend: np.ndarray, models: np.ndarray, *, noise_sigma: np.ndarray | None = None,
                     amplitude_sigma: float | None = None, max_gain: float = 10.0) -> np.ndarray:
    """Rescale each galaxy's image, per band, to the least-squares flux of the blend.

    Parameters
    ----------
    blend : ndarray, (n, C, H, W)
        Observed blends, ADU.
    models : ndarray, (n, K, C, H, W)
        A deblender's images of every galaxy, ADU; an all-zero image (empty
        slot, or a galaxy given no light in a band) stays zero.
    noise_sigma : ndarray, (n, C), keyword-only
        Background noise, ADU per pixel: the chi^2's units (needed with
        ``amplitude_sigma``; without either, plain least squares per band).
    amplitude_sigma : float, keyword-only
        Fractional width of the prior that each amplitude is 1; ``None``: no prior.
    max_gain : float, keyword-only
        Largest amplitude allowed (a model that is mostly noise can otherwise be
        scaled up without bound); amplitudes are clipped to ``[0, max_gain]``.

    Returns
    -------
    ndarray, (n, K, C, H, W) float32
        ``a_k * models_k``, ADU.

    Raises
    ------
    ConfigError
        ``amplitude_sigma`` or ``max_gain`` not a positive number, or
        ``amplitude_sigma`` without ``noise_sigma``.
    PredictionError
        Shapes that do not match.
    """
    blend, models, var = _checked(blend, models, noise_sigma, amplitude_sigma, max_gain)
    m = models.astype(np.float64)
    gram = np.einsum("nkcyx,njcyx->nckj", m, m) / var[..., None]  # (n, C, K, K)
    rhs = np.einsum("nkcyx,ncyx->nck", m, blend.astype(np.float64)) / var  # (n, C, K)
    active = np.einsum("ncjj->ncj", gram) > 0  # (n, C, K): slots with light in the band
    if amplitude_sigma is not None:
        gram = gram + np.eye(gram.shape[-1]) / amplitude_sigma**2
        rhs = rhs + 1.0 / amplitude_sigma**2
    a = np.clip(_solve_nonnegative(gram, rhs, active), 0.0, max_gain)  # (n, C, K)
    return models.astype(np.float32) * np.moveaxis(a, -1, 1)[..., None, None].astype(np.float32)


def _checked(blend, models, noise_sigma, amplitude_sigma, max_gain) -> tuple:
    """The arrays of :func:`refit_amplitudes`, checked; ``var`` (n, C, 1), noise variance or ones."""
    for name, value in (("amplitude_sigma", amplitude_sigma), ("max_gain", max_gain)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a finite number > 0, got {value!r}", value=value, allowed="> 0")
    blend, models = np.asarray(blend), np.asarray(models)
    if models.ndim != 5 or blend.shape != models.shape[:1] + models.shape[2:]:
        raise PredictionError(
            f"models must be (n, K, C, H, W) matching blend (n, C, H, W) {blend.shape}, got {models.shape}",
            value=models.shape, allowed=f"(n, K) + {blend.shape[1:]}")
    if noise_sigma is None:
        if amplitude_sigma is not None:
            raise ConfigError("amplitude_sigma needs noise_sigma (the chi^2's units), got noise_sigma=None",
                              value=None, allowed="(n, C) ADU per pixel")
        return blend, models, np.ones(blend.shape[:2] + (1,))
    sigma = np.asarray(noise_sigma, dtype=np.float64)
    if sigma.shape != blend.shape[:2] or not np.all(np.isfinite(sigma) & (sigma > 0)):
        raise ConfigError(f"noise_sigma must be finite, > 0 and of shape {blend.shape[:2]}, got shape "
                          f"{sigma.shape}", value=sigma.shape, allowed=blend.shape[:2])
    return blend, models, sigma[:, :, None] ** 2
