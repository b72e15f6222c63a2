"""The one thing learned from the training data: each band's gain, from the noise of training blends."""
import numpy as np


def estimate_gain(blend: np.ndarray, isolated: np.ndarray, noise_sigma: np.ndarray) -> np.ndarray:
    """Gain of each band from the noise of training blends.

    The noise ``n = blend - sum_k isolated_k`` has variance
    ``noise_sigma^2 + I / gain`` where ``I = sum_k isolated_k`` (ADU): the
    least-squares slope of ``n^2 - noise_sigma^2`` against ``I`` is ``1 / gain``.

    Parameters
    ----------
    blend : ndarray, (n, C, H, W)
        Observed blends, ADU.
    isolated : ndarray, (n, K, C, H, W)
        Their labels, ADU.
    noise_sigma : ndarray, (n, C)
        Background noise, ADU / pixel.

    Returns
    -------
    ndarray, (C,)
        Electrons per ADU; ``inf`` for a band whose slope is not positive (no
        measurable source noise).
    """
    total = np.asarray(isolated, dtype=np.float64).sum(axis=1)  # (n, C, H, W)
    noise = np.asarray(blend, dtype=np.float64) - total
    var_sky = np.asarray(noise_sigma, dtype=np.float64)[:, :, None, None] ** 2
    excess = noise**2 - var_sky
    slope = np.zeros(total.shape[1])
    for _ in range(3):
        # Weighted least squares: n^2 has variance 2 (variance)^2, so weight
        # by the inverse squared variance under the current slope.
        w = 1.0 / (var_sky + np.maximum(slope, 0.0)[None, :, None, None] * total) ** 2
        slope = np.einsum("ncyx,ncyx,ncyx->c", w, excess, total) / np.maximum(
            np.einsum("ncyx,ncyx,ncyx->c", w, total, total), 1e-300
        )
    with np.errstate(divide="ignore"):
        return np.where(slope > 0, 1.0 / slope, np.inf)
