"""The morphologies seen through each band's PSF, by FFT: :class:`Renderer` (one blend), :class:`BatchRenderer`.

Each source's kernel is the band's difference kernel (model PSF -> observed PSF)
times the phase of its sub-pixel offset from the half-pixel symmetry centre.
"""
import numpy as np
from scipy import fft

from deblendkit.deblend.forward_model.constraints import round_to_half_pixel
from deblendkit.deblend.forward_model.psf import difference_kernels, shift_phases


class Renderer:
    """Convolutions of the morphologies with each band's kernel, by FFT.

    Parameters
    ----------
    psf : ndarray, (C, P, P)
        Observed PSF per band, unit sum, centred.
    stamp : (H, W)
        Shape of the observed stamp, pixels.
    centers : ndarray, (K, 2)
        (x, y) of the sources on the stamp, pixels.
    margin : int
        Padding of the model grid on each side, pixels.
    model_sigma : float
        Sigma of the Gaussian model PSF, pixels.

    Attributes
    ----------
    grid : (H + 2 margin, W + 2 margin)
        Shape of the morphologies (and of the FFTs).
    centers : ndarray, (K, 2)
        Source centres on the grid, rounded to the nearest half pixel: the
        symmetry centres of the morphologies. The remaining sub-pixel offset
        is part of each source's kernel.
    kernels : ndarray, complex, (C, K, grid[0], grid[1] // 2 + 1)
        rfft2 of the kernel of band b and source k (difference kernel times
        sub-pixel shift).
    """

    def __init__(self, psf: np.ndarray, stamp: tuple[int, int], centers: np.ndarray,
                 margin: int, model_sigma: float):
        h, w = stamp
        self.stamp = (h, w)
        self.margin = margin
        self.grid = (h + 2 * margin, w + 2 * margin)
        exact = np.asarray(centers, dtype=np.float64) + margin
        self.centers = round_to_half_pixel(exact)
        diff = difference_kernels(psf, self.grid, model_sigma)  # (C, Y, X')
        kernels = diff[:, None] * shift_phases(self.grid, exact - self.centers)[None]
        # Largest gain of any kernel: bounds the operator norm of a convolution.
        self.gain2 = float(np.max(np.abs(kernels) ** 2))
        # The FFTs run in single precision: twice as fast, and its relative
        # error (1e-7) is far below the noise and the convergence threshold.
        self.kernels = kernels.astype(np.complex64)
        self.kernels_conj = np.conj(self.kernels)

    def _crop(self, img: np.ndarray) -> np.ndarray:
        m, (h, w) = self.margin, self.stamp
        return img[..., m: m + h, m: m + w]

    def transform(self, s: np.ndarray) -> np.ndarray:
        """rfft2 of morphologies (K, Y, X), single precision."""
        return fft.rfft2(s.astype(np.float32))

    def render(self, s_hat: np.ndarray) -> np.ndarray:
        """Every source in every band on the stamp, (C, K, H, W), unit amplitude.

        One band at a time: small FFT batches stay in the CPU cache.
        """
        return np.stack([
            self._crop(fft.irfft2(kb * s_hat, s=self.grid)) for kb in self.kernels
        ])

    def adjoint(self, a: np.ndarray, resid: np.ndarray) -> np.ndarray:
        """Gradient with respect to S of ``sum_b <resid_b, sum_k a_bk D_bk * S_k>``.

        ``a`` (C, K), ``resid`` (C, H, W) on the stamp; returns (K, Y, X): the
        correlation of the zero-padded residuals with each kernel, summed over
        bands with weights ``a``.
        """
        full = np.zeros(resid.shape[:-2] + self.grid, dtype=np.float32)
        self._crop(full)[...] = resid
        r_hat = fft.rfft2(full)  # (C, Y, X')
        a = a.astype(np.float32)
        grad_hat = np.zeros(self.kernels.shape[1:], dtype=np.complex64)
        for b in range(len(r_hat)):
            grad_hat += (a[b][:, None, None] * r_hat[b]) * self.kernels_conj[b]
        return fft.irfft2(grad_hat, s=self.grid).astype(np.float64)


class BatchRenderer:
    """:class:`Renderer` of n blends with K sources each, in single precision.

    Parameters
    ----------
    psf : ndarray, (n, C, P, P)
        Observed PSF per blend and band, unit sum, centred.
    stamp : (H, W)
        Shape of the observed stamps, pixels.
    centers : ndarray, (n, K, 2)
        (x, y) of the sources on each stamp, pixels.
    margin : int
        Padding of the model grid on each side, pixels.
    model_sigma : float
        Sigma of the Gaussian model PSF, pixels.

    Attributes
    ----------
    grid : (Y, X) = (H + 2 margin, W + 2 margin)
    centers : ndarray, (n, K, 2)
        Centres on the grid rounded to half pixels (the symmetry centres).
    gain2 : ndarray, (n,)
        Largest squared gain of any kernel of each blend.
    kernels : ndarray, complex64, (C, n, K, Y, X // 2 + 1)
        rfft2 of the kernel of each band, blend and source (band first: one
        band's kernels are contiguous).
    kernels_conj : ndarray, complex64, (C, n, K, Y, X // 2 + 1)
        Their conjugates times the phase of a shift by ``margin`` in x and y
        (the adjoint's residuals are transformed from the grid's corner).
    """

    def __init__(self, psf: np.ndarray, stamp: tuple[int, int], centers: np.ndarray,
                 margin: int, model_sigma: float):
        h, w = stamp
        self.stamp = (h, w)
        self.margin = margin
        self.grid = (h + 2 * margin, w + 2 * margin)
        exact = np.asarray(centers, dtype=np.float64) + margin
        self.centers = round_to_half_pixel(exact)
        n, k = exact.shape[:2]
        diff = difference_kernels(np.asarray(psf, dtype=np.float64), self.grid, model_sigma)
        phases = shift_phases(self.grid, (exact - self.centers).reshape(-1, 2))
        kernels = np.moveaxis(diff, 1, 0)[:, :, None] * phases.reshape((1, n, k) + phases.shape[1:])
        self.gain2 = np.max(np.abs(np.moveaxis(kernels, 1, 0).reshape(n, -1)) ** 2, axis=1, initial=0.0)
        self.kernels = kernels.astype(np.complex64)
        # For the adjoint: conj(kernel) times the phase of a shift by the
        # margin, so that the residual is transformed from the grid's corner
        # (rfft2 zero-pads at the end) instead of copied into the grid first.
        corner = shift_phases(self.grid, np.array([[margin, margin]], dtype=np.float64))[0]
        self.kernels_conj = (np.conj(kernels) * corner).astype(np.complex64)

    def take(self, rows: np.ndarray) -> "BatchRenderer":
        """The renderer of blends ``rows`` only."""
        new = object.__new__(BatchRenderer)
        new.stamp, new.margin, new.grid = self.stamp, self.margin, self.grid
        new.centers = self.centers[rows]
        new.gain2 = self.gain2[rows]
        new.kernels = self.kernels[:, rows]
        new.kernels_conj = self.kernels_conj[:, rows]
        return new

    def transform(self, s: np.ndarray) -> np.ndarray:
        """rfft2 of morphologies (n, K, Y, X), single precision."""
        return fft.rfft2(s.astype(np.float32, copy=False))

    def render(self, s_hat: np.ndarray) -> np.ndarray:
        """Every source in every band on the stamp, (n, C, K, H * W) float32, unit amplitude.

        One band at a time (the batch stays in the CPU cache); the inverse
        FFT along y keeps only the stamp's rows before the one along x.
        """
        m, (h, w) = self.margin, self.stamp
        c, n, k = self.kernels.shape[:3]
        out = np.empty((n, c, k, h, w), dtype=np.float32)
        prod = np.empty(self.kernels.shape[1:], dtype=np.complex64)
        for b in range(c):
            np.multiply(self.kernels[b], s_hat, out=prod)
            rows = fft.ifft(prod, axis=-2, overwrite_x=True)[..., m: m + h, :]
            out[:, b] = fft.irfft(rows, n=self.grid[1], axis=-1)[..., m: m + w]
        return out.reshape(n, c, k, h * w)

    def adjoint(self, a: np.ndarray, resid: np.ndarray) -> np.ndarray:
        """:meth:`Renderer.adjoint` of each blend: ``a`` (n, C, K), ``resid`` (n, C, H, W) -> (n, K, Y, X) float32."""
        r_hat = fft.rfft2(resid, s=self.grid)  # (n, C, Y, X'), from the corner (see __init__)
        a = a.astype(np.float32)
        grad_hat = np.zeros(self.kernels.shape[1:], dtype=np.complex64)
        tmp = np.empty_like(grad_hat)
        for b in range(r_hat.shape[1]):
            np.multiply(self.kernels_conj[b], r_hat[:, b, None], out=tmp)
            tmp *= a[:, b, :, None, None]
            grad_hat += tmp
        return fft.irfft2(grad_hat, s=self.grid, overwrite_x=True)
