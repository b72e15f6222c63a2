"""The kernels: the Gaussian model PSF, PSF stamps on the FFT grid, difference kernels, sub-pixel shifts.

Also the Gaussian smoothing of the detection image and the noise it leaves.
"""
import numpy as np


def gaussian_psf(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """A circular Gaussian of ``sigma`` pixels, unit sum, centred on pixel (0, 0).

    Returned in FFT order (the centre at index [0, 0], negative offsets wrapped
    to the end), ready for :func:`numpy.fft.rfft2`.
    """
    h, w = shape
    fy = np.fft.fftfreq(h) * h  # signed integer offsets in FFT order
    fx = np.fft.fftfreq(w) * w
    img = np.exp(-0.5 * (fy[:, None] ** 2 + fx[None, :] ** 2) / sigma**2)
    return img / img.sum()


def embed_psf(psf: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Put centred PSF stamps (..., P, P) (P odd) on a grid in FFT order.

    The central pixel of the stamp goes to index [0, 0]; a stamp larger than
    the grid is cropped around its centre. The result keeps the stamp's sum
    unless cropped.
    """
    h, w = shape
    p = psf.shape[-1]
    half = p // 2
    out = np.zeros(psf.shape[:-2] + (h, w))
    offs = np.arange(-half, half + 1)
    keep_y = (offs >= -(h // 2)) & (offs < h - h // 2)
    keep_x = (offs >= -(w // 2)) & (offs < w - w // 2)
    iy = np.mod(offs[keep_y], h)
    ix = np.mod(offs[keep_x], w)
    out[..., iy[:, None], ix[None, :]] = psf[..., keep_y, :][..., keep_x]
    return out


def difference_kernels(psf: np.ndarray, shape: tuple[int, int], model_sigma: float,
                       regularisation: float = 1e-6) -> np.ndarray:
    """Fourier transforms of the kernels mapping the model PSF to each band's.

    ``D_b = F^-1[ P_b conj(G) / (|G|^2 + eps) ]`` where ``P_b`` and ``G`` are the
    transforms of the band PSF and of the Gaussian model PSF: a regularised
    deconvolution, exact wherever ``|G|^2 >> eps``.

    Parameters
    ----------
    psf : ndarray, (C, P, P)
        Observed PSF per band, unit sum, centred (P odd).
    shape : (H, W)
        FFT grid, pixels.
    model_sigma : float
        Sigma of the model PSF, pixels (narrower than every band's PSF).
    regularisation : float
        eps, relative to ``max |G|^2 = 1``.

    Returns
    -------
    ndarray, complex, (C, H, W // 2 + 1)
        rfft2 of the kernels.
    """
    p_hat = np.fft.rfft2(embed_psf(np.asarray(psf, dtype=np.float64), shape))
    g_hat = np.fft.rfft2(gaussian_psf(shape, model_sigma))
    return p_hat * np.conj(g_hat) / (np.abs(g_hat) ** 2 + regularisation)


def shift_phases(shape: tuple[int, int], shifts: np.ndarray) -> np.ndarray:
    """rfft2 phase factors that translate images by ``shifts`` (K, 2) (dx, dy) pixels."""
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    dx = shifts[:, 0, None, None]
    dy = shifts[:, 1, None, None]
    return np.exp(-2j * np.pi * (fx * dx + fy * dy))


def _smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing (sigma pixels) of the last two axes, zero outside."""
    if sigma <= 0:
        return np.asarray(image, dtype=np.float64)
    h, w = image.shape[-2:]
    half = int(np.ceil(3 * sigma))
    grid = (h + 2 * half, w + 2 * half)
    kern = np.fft.rfft2(gaussian_psf(grid, sigma))
    padded = np.zeros(image.shape[:-2] + grid)
    padded[..., half: half + h, half: half + w] = image
    return np.fft.irfft2(np.fft.rfft2(padded) * kern, s=grid)[..., half: half + h, half: half + w]


def _smoothed_noise_factor(sigma: float) -> float:
    """Noise of white noise after :func:`_smooth`, relative to before."""
    if sigma <= 0:
        return 1.0
    half = int(np.ceil(3 * sigma))
    g = gaussian_psf((2 * half + 1, 2 * half + 1), sigma)
    return float(np.sqrt(np.sum(g**2)))
