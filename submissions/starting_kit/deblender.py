"""Starting kit: a classical symmetric-template deblender (numpy only).

This is the idea of the SDSS photometric deblender (Lupton et al.), reduced
to its core. It learns nothing, runs in a few milliseconds per blend, and is
meant to be read in one sitting before writing your own submission.

A galaxy seen face-on or inclined is, to a good approximation, symmetric under
a point reflection about its centre: the pixel at ``centre + d`` is as bright
as the one at ``centre - d``. Neighbours break that symmetry. So for each
galaxy k of a blend, and each band:

1. **Template.** Take the (lightly smoothed, to beat the noise) blend image
   and, at every pixel, keep the *minimum* of the pixel and its mirror image
   through the galaxy's centre. A neighbour that brightens one side only is
   mostly removed, because its mirror side is faint. Values below a few times
   the noise are set to zero, and the template is optionally made monotonic
   (never brighter further out along a ray from the centre), which removes
   what is left of neighbours that happen to sit on both sides.
2. **Apportioning.** Each pixel of the *observed* blend is split among the
   galaxies in proportion to their templates at that pixel. The predictions
   therefore add up exactly to the blend wherever some template covers it,
   and flux is never created or lost there.

Interface of a submission
-------------------------
``X`` (a ``BlendSet``) carries, for n blends, C bands, K galaxy slots and
H x W pixel stamps:

* ``X.blend`` (n, C, H, W) float32: the observed images, ADU, with noise;
* ``X.psf`` (n, C, P, P) float32: the PSF of each band (unused here);
* ``X.noise_sigma`` (n, C): background noise standard deviation, ADU/pixel;
* ``X.centers`` (n, K, 2): (x, y) of each galaxy in pixels, 0-based, where
  pixel column i spans [i - 0.5, i + 0.5]; NaN in empty slots;
* ``X.n_galaxies`` (n,): slots ``0 .. n_galaxies - 1`` hold a galaxy.

``predict(X)`` returns (n, K, C, H, W) float32: slot k is galaxy k alone
(noiseless, PSF-convolved, same units as the blend); empty slots are zero.

Where it falls short (ideas for your submission)
------------------------------------------------
* The predictions are pieces of the *observed* blend, so they keep its noise;
  the labels are noiseless. A model of each galaxy (see the
  ``forward_model`` submission) does not copy the noise.
* Templates are built band by band: in a faint band (u, y) they are mostly
  noise. Sharing one shape across bands, with a colour per galaxy, is better.
* The PSF (``X.psf``) is not used, and ``fit`` learns nothing from the
  labels ``y``: a learned model can use both.
"""

import numpy as np

from deblendkit.deblend import predict_in_batches

# ---------------------------------------------------------------------------
# Building blocks. Each works on one blend; images are (C, H, W) stacks of
# bands or single (H, W) images where noted. Array index order is [y, x].
# ---------------------------------------------------------------------------


def round_to_half_pixel(center: np.ndarray) -> np.ndarray:
    """Round an (x, y) centre (pixels) to the nearest multiple of 0.5.

    The mirror image of pixel ``p`` through centre ``c`` is ``2 c - p``. When
    ``c`` is an integer or a half-integer, ``2 c`` is an integer and the mirror
    of every pixel is again exactly a pixel: no interpolation needed. The
    rounding moves the centre by at most a quarter of a pixel.
    """
    return np.round(2.0 * np.asarray(center, dtype=np.float64)) / 2.0


def reflect(image: np.ndarray, center: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Point-reflect an image through ``center`` (x, y, pixels).

    Parameters
    ----------
    image : ndarray, (..., H, W)
        Images that share the centre (e.g. all bands of one blend).
    center : array_like, (2,)
        (x, y) in pixels; rounded to the nearest half pixel first.

    Returns
    -------
    mirrored : ndarray, (..., H, W)
        ``mirrored[..., y, x] = image[..., 2 cy - y, 2 cx - x]``; 0 where that
        mirror pixel lies outside the stamp.
    inside : ndarray of bool, (H, W)
        Where the mirror pixel lies inside the stamp.
    """
    h, w = image.shape[-2:]
    two_cx, two_cy = (2.0 * round_to_half_pixel(center)).astype(int)
    # Mirror coordinates of every row / column.
    my = two_cy - np.arange(h)
    mx = two_cx - np.arange(w)
    inside = ((my >= 0) & (my < h))[:, None] & ((mx >= 0) & (mx < w))[None, :]
    mirrored = image[..., np.clip(my, 0, h - 1)[:, None], np.clip(mx, 0, w - 1)[None, :]]
    return np.where(inside, mirrored, 0.0), inside


def gaussian_smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Convolve the last two axes with a Gaussian of ``sigma`` pixels.

    The kernel is truncated at 3 sigma and normalised to unit sum; outside the
    stamp the image is taken as zero. ``sigma <= 0`` returns a copy.
    """
    image = np.asarray(image, dtype=np.float64)
    if sigma <= 0:
        return image.copy()
    half = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = image
    for axis in (-1, -2):  # separable: rows, then columns
        padded = np.moveaxis(out, axis, -1)
        n = padded.shape[-1]
        padded = np.pad(padded, [(0, 0)] * (padded.ndim - 1) + [(half, half)])
        acc = np.zeros(padded.shape[:-1] + (n,))
        for i, t in enumerate(taps):
            acc += t * padded[..., i : i + n]
        out = np.moveaxis(acc, -1, axis)
    return out


def smoothed_noise(noise_sigma: np.ndarray, sigma: float) -> np.ndarray:
    """Noise sigma after :func:`gaussian_smooth` of white noise of ``noise_sigma``.

    Smoothing averages neighbouring pixels, so the noise drops by the root of
    the sum of the squared kernel weights.
    """
    if sigma <= 0:
        return np.asarray(noise_sigma, dtype=np.float64)
    half = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    taps /= taps.sum()
    # The 2-d kernel is the outer product of ``taps`` with itself, so the sum
    # of its squares is sum(taps**2)**2, whose square root is sum(taps**2).
    return np.asarray(noise_sigma, dtype=np.float64) * np.sum(taps**2)


def make_monotonic(image: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Make images non-increasing outwards from ``center`` (x, y, pixels).

    A running minimum is taken along every row, walking away from the centre's
    column in both directions, then along every column, walking away from the
    centre's row. The result never increases when moving away from the centre
    in x or in y, hence never increases along any ray from the centre (a ray
    moves away in x and y at once). The column pass keeps what the row pass
    did: a minimum of rows that all decrease outwards decreases outwards.

    This is stricter than "non-increasing along rays" for elongated galaxies
    tilted to the axes, which is acceptable for a template used only as a
    weight. Input (..., H, W); all leading images share the centre. Applying
    it twice changes nothing, and a point-symmetric input stays symmetric.
    """
    h, w = image.shape[-2:]
    cx, cy = round_to_half_pixel(center)
    out = np.array(image, dtype=np.float64)
    # First and last pixel of the "centre" column / row (one pixel when the
    # centre is an integer, two adjacent ones when it is a half-integer),
    # clipped to the stamp.
    left, right = (int(np.clip(v, 0, w - 1)) for v in (np.floor(cx), np.ceil(cx)))
    low, high = (int(np.clip(v, 0, h - 1)) for v in (np.floor(cy), np.ceil(cy)))
    cummin = np.minimum.accumulate
    out[..., :, right:] = cummin(out[..., :, right:], axis=-1)
    out[..., :, : left + 1] = cummin(out[..., :, left::-1], axis=-1)[..., :, ::-1]
    out[..., high:, :] = cummin(out[..., high:, :], axis=-2)
    out[..., : low + 1, :] = cummin(out[..., low::-1, :], axis=-2)[..., ::-1, :]
    return out


def symmetric_template(image: np.ndarray, center: np.ndarray, *,
                       threshold: float | np.ndarray = 0.0, monotonic: bool = True) -> np.ndarray:
    """The symmetric template of one galaxy.

    Parameters
    ----------
    image : ndarray, (..., H, W)
        Image(s) of the blend, ADU (usually smoothed).
    center : array_like, (2,)
        (x, y) of the galaxy, pixels.
    threshold : float or ndarray broadcastable to (..., 1, 1)
        Template values below it (ADU) are set to zero.
    monotonic : bool
        Also cap the template so it never rises outwards from the centre.

    Returns
    -------
    ndarray, (..., H, W), >= 0
        ``min(image, mirrored image)``, 0 where the mirror pixel is off the
        stamp or the value is below ``threshold``.
    """
    mirrored, inside = reflect(image, center)
    template = np.where(inside, np.minimum(image, mirrored), 0.0)
    if monotonic:
        template = make_monotonic(template, center)
    return np.where(template > threshold, template, 0.0)


def apportion(blend: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """Split every pixel of the blend among galaxies in proportion to templates.

    Parameters
    ----------
    blend : ndarray, (C, H, W)
        Observed images, ADU.
    templates : ndarray, (k, C, H, W), >= 0
        One template per galaxy.

    Returns
    -------
    ndarray, (k, C, H, W)
        ``blend * templates[k] / templates.sum(0)``; where no template covers
        a pixel (sum 0) every galaxy gets 0 there. Summed over galaxies, it
        equals the blend wherever the templates cover it.
    """
    total = templates.sum(axis=0)
    covered = total > 0
    weights = templates / np.where(covered, total, 1.0)  # floor avoids 0 / 0
    return weights * np.where(covered, blend, 0.0)


def deblend(blend: np.ndarray, centers: np.ndarray, noise_sigma: np.ndarray, *,
            smoothing: float = 1.0, threshold: float = 2.0, monotonic: bool = True) -> np.ndarray:
    """Deblend one scene.

    Parameters
    ----------
    blend : ndarray, (C, H, W)
        Observed images, ADU.
    centers : ndarray, (k, 2)
        (x, y) of the k galaxies, pixels (no NaN).
    noise_sigma : ndarray, (C,)
        Background noise per band, ADU / pixel.
    smoothing : float
        Sigma (pixels) of the Gaussian smoothing applied before building
        templates.
    threshold : float
        Template values below ``threshold`` times the smoothed noise are
        zeroed.
    monotonic : bool
        Make templates monotonic.

    Returns
    -------
    ndarray, (k, C, H, W) float64
        One image per galaxy.
    """
    smooth = gaussian_smooth(blend, smoothing)
    cut = threshold * smoothed_noise(noise_sigma, smoothing)[:, None, None]
    templates = np.stack([
        symmetric_template(smooth, c, threshold=cut, monotonic=monotonic) for c in centers
    ]) if len(centers) else np.zeros((0,) + blend.shape)
    return apportion(blend.astype(np.float64), templates)


class Deblender:
    """The symmetric-template deblender as a submission.

    Parameters
    ----------
    smoothing : float
        Sigma (pixels) of the Gaussian smoothing before building templates.
    threshold : float
        Template floor in units of the smoothed background noise.
    monotonic : bool
        Make templates monotonic.
    """

    def __init__(self, *, smoothing: float = 1.0, threshold: float = 2.0, monotonic: bool = True):
        self.smoothing = smoothing
        self.threshold = threshold
        self.monotonic = monotonic

    def fit(self, X, y):
        """Nothing to learn: the method has no trained parameters."""
        return self

    def predict(self, X) -> np.ndarray:
        """Deblend every scene of ``X``; returns (n, K, C, H, W) float32, ADU."""
        return predict_in_batches(X, self._predict_blend, batch_size=256)

    def _predict_blend(self, batch, i: int) -> np.ndarray:
        """The (k, C, H, W) images of the k galaxies of blend ``i`` of ``batch``."""
        k = int(batch.n_galaxies[i])
        return deblend(
            np.asarray(batch.blend[i]), np.asarray(batch.centers[i, :k], dtype=np.float64),
            np.asarray(batch.noise_sigma[i], dtype=np.float64),
            smoothing=self.smoothing, threshold=self.threshold, monotonic=self.monotonic,
        )
