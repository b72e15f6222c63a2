"""The fit of one blend: :func:`fit_blend` (the reference implementation, ``Deblender(reference=True)``)."""
import dataclasses
import logging

import numpy as np

from deblendkit.deblend.forward_model.constraints import MorphologyConstraints
from deblendkit.deblend.forward_model.options import FitOptions
from deblendkit.deblend.forward_model.psf import _smooth, _smoothed_noise_factor
from deblendkit.deblend.forward_model.render import Renderer

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class FitResult:
    """Outcome of :func:`fit_blend`.

    Attributes
    ----------
    models : ndarray, (K, C, H, W)
        Each source rendered in each band's PSF on the stamp, ADU.
    sed : ndarray, (C, K)
        A, amplitudes per band (ADU per unit of the morphology).
    morphology : ndarray, (K, H + 2 margin, W + 2 margin)
        S, in the model PSF, maximum 1.
    n_iter : int
        Iterations run.
    converged : bool
        Whether the ``e_rel`` criterion stopped the fit (else ``max_iter``).
    loss : list of float
        Half chi-square at each iteration, after its A update (at the
        extrapolated morphologies when ``momentum`` is on).
    """

    models: np.ndarray
    sed: np.ndarray
    morphology: np.ndarray
    n_iter: int
    converged: bool
    loss: list


def initial_morphologies(detection: np.ndarray, constraints: MorphologyConstraints,
                         threshold: float) -> np.ndarray:
    """Starting-kit templates of a detection image, as initial morphologies.

    Parameters
    ----------
    detection : ndarray, (Y, X)
        Smoothed detection image on the model grid (any units; zero where
        nothing is observed).
    constraints : MorphologyConstraints
        The constraints of the K sources on that grid.
    threshold : float
        Template values below it are zeroed (units of ``detection``).

    Returns
    -------
    ndarray, (K, Y, X), >= 0
        ``min(image, mirror image)`` through each centre (0 where the mirror is
        off the grid), made monotonic, zeroed below ``threshold``, scaled to
        maximum 1. A source with an empty template gets a single 1 at the
        grid pixel nearest its centre.
    """
    k = constraints.k
    y, x = detection.shape
    npix = y * x
    flat = detection.ravel()
    local_mirror = constraints.mirror.reshape(k, npix) - (np.arange(k) * npix)[:, None]
    inside = constraints.inside.reshape(k, npix)
    t = np.where(inside, np.minimum(flat, flat[local_mirror]), 0.0).reshape(k, y, x)
    t = constraints(t)
    t = np.where(t > threshold, t, 0.0)
    peak = t.reshape(k, -1).max(axis=1)
    for j in np.flatnonzero(peak <= 0):
        cx, cy = np.floor(constraints.centers[j])  # a root pixel of the tree
        t[j, int(np.clip(cy, 0, y - 1)), int(np.clip(cx, 0, x - 1))] = 1.0
        peak[j] = 1.0
    return t / peak[:, None, None]


def _nnls_gram(gram: np.ndarray, rhs: np.ndarray, a: np.ndarray, steps: int) -> np.ndarray:
    """Projected gradient steps on ``0.5 a^T G a - r^T a`` with ``a >= 0``, per band.

    ``gram`` (C, K, K), ``rhs`` (C, K), start ``a`` (C, K); step ``1 / lambda_max(G_b)``.
    """
    lip = np.linalg.eigvalsh(gram)[:, -1]
    step = 1.0 / np.where(lip > 0, lip, 1.0)
    for _ in range(steps):
        grad = np.einsum("bkj,bj->bk", gram, a) - rhs
        a = np.maximum(a - step[:, None] * grad, 0.0)
    return a


def fit_blend(blend: np.ndarray, psf: np.ndarray, noise_sigma: np.ndarray, centers: np.ndarray,
              options: FitOptions = FitOptions(), *, gain: np.ndarray | None = None) -> FitResult:
    """Fit the factorised model to one blend.

    Parameters
    ----------
    blend : ndarray, (C, H, W)
        Observed images, ADU.
    psf : ndarray, (C, P, P)
        PSF per band, unit sum, centred.
    noise_sigma : ndarray, (C,)
        Background noise per band, ADU / pixel (the weights are 1 / sigma^2).
    centers : ndarray, (K, 2)
        (x, y) of the sources on the stamp, pixels (no NaN).
    options : FitOptions
        Fit settings.
    gain : ndarray, (C,), optional
        Electrons per ADU of each band (``inf`` for none). When given, the
        pixel variance adds the sources' Poisson term ``max(blend, 0) / gain``
        (from the smoothed blend) to ``noise_sigma^2``; otherwise it is
        ``noise_sigma^2`` alone.

    Returns
    -------
    FitResult
    """
    blend = np.asarray(blend, dtype=np.float64)
    c, h, w = blend.shape
    k = len(centers)
    m = options.margin
    grid = (h + 2 * m, w + 2 * m)
    if k == 0:
        return FitResult(np.zeros((0, c, h, w)), np.zeros((c, 0)), np.zeros((0,) + grid),
                         0, True, [])

    smooth = _smooth(blend, options.init_smoothing)
    sigma, weight, wmap = _weights(blend, noise_sigma, smooth, gain)
    wmax = wmap.reshape(c, -1).max(axis=1)
    centers = np.asarray(centers, dtype=np.float64)
    ren = Renderer(psf, (h, w), centers, m, options.model_psf_sigma)
    constraints = MorphologyConstraints(grid, ren.centers)

    # Initialisation: symmetric templates of the smoothed, inverse-variance
    # weighted sum of the bands, then amplitudes by least squares.
    detection = np.einsum("b,byx->yx", weight, smooth)
    detection /= weight.sum()
    det_noise = _smoothed_noise_factor(options.init_smoothing) / np.sqrt(weight.sum())
    padded = np.zeros(grid)
    padded[m: m + h, m: m + w] = detection
    s = initial_morphologies(padded, constraints, options.init_threshold * det_noise)
    data_w = (blend * wmap).reshape(c, -1)
    wflat = wmap.reshape(c, 1, -1)

    def update_a(a: np.ndarray, models: np.ndarray, steps: int) -> np.ndarray:
        flat = models.reshape(c, k, -1).astype(np.float64)
        gram = np.einsum("bkp,bjp->bkj", flat * wflat, flat)
        rhs = np.einsum("bkp,bp->bk", flat, data_w)
        return _nnls_gram(gram, rhs, a, steps)

    models = ren.render(ren.transform(s))  # (C, K, H, W), unit amplitudes
    a = update_a(np.zeros((c, k)), models, 50)

    a, s, it, converged, loss = _descend(a, s, update_a, ren, constraints, blend, wmap, wmax, options)
    models = ren.render(ren.transform(s))
    a = update_a(a, models, options.a_steps)
    out = np.moveaxis(a[:, :, None, None] * models, 1, 0)  # (K, C, H, W)
    if options.reapportion:
        total = out.sum(axis=0)
        cover = total > sigma[:, None, None]
        out = out / np.where(cover, total, 1.0) * np.where(cover, blend, 0.0)
    logger.debug("fit of %d sources: %d iterations, converged=%s", k, it, converged)
    return FitResult(out, a, s, it, converged, loss)


def _weights(blend: np.ndarray, noise_sigma: np.ndarray, smooth: np.ndarray,
             gain: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`fit_blend`'s background sigma (C,) (floored), its inverse variance (C,), the pixels' (C, H, W)."""
    sigma = np.asarray(noise_sigma, dtype=np.float64)
    sigma = np.maximum(sigma, 1e-6 * max(float(np.abs(blend).max()), 1e-30))  # guard sigma 0
    weight = 1.0 / sigma**2  # (C,), inverse variance of the background
    # Per-pixel inverse variance: background plus the sources' Poisson term,
    # estimated from the smoothed blend (clipped at 0) when the gain is known.
    if gain is None:
        wmap = np.broadcast_to(weight[:, None, None], blend.shape)
    else:
        inv_gain = 1.0 / np.asarray(gain, dtype=np.float64)
        wmap = 1.0 / (sigma[:, None, None] ** 2 + np.maximum(smooth, 0.0) * inv_gain[:, None, None])
    return sigma, weight, wmap


def _descend(a: np.ndarray, s: np.ndarray, update_a, ren: Renderer, constraints: MorphologyConstraints,
             blend: np.ndarray, wmap: np.ndarray, wmax: np.ndarray,
             options: FitOptions) -> tuple[np.ndarray, np.ndarray, int, bool, list]:
    """:func:`fit_blend`'s iterations from ``a`` (C, K), ``s`` (K, Y, X); returns (a, s, n_iter, converged, loss).

    ``update_a(a, models, steps)`` is the A update; ``wmap`` (C, H, W) and
    ``wmax`` (C,) the pixels' inverse variances and their maximum per band.
    """
    k = len(s)
    loss = []
    converged = False
    it = 0
    s_prev = s
    t_mom = 1.0  # momentum counter (FISTA sequence), reset when the loss rises
    for it in range(1, options.max_iter + 1):
        a_old, s_old = a, s
        # Inertial step (Pock & Sabach's iPALM): extrapolate S along its last
        # move, then update A and take the gradient step from there.
        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t_mom**2))
        beta = (t_mom - 1.0) / t_next if options.momentum else 0.0
        t_mom = t_next
        s_y = s + beta * (s - s_prev) if beta > 0 else s
        models = ren.render(ren.transform(s_y))
        a = update_a(a, models, options.a_steps)
        # Gradient of 0.5 sum_b w_b |model_b - blend_b|^2 with respect to S.
        resid = np.einsum("bk,bkyx->byx", a, models) - blend
        loss.append(0.5 * float(np.sum(wmap * resid * resid)))
        if len(loss) > 1 and loss[-1] > loss[-2]:
            t_mom = 1.0  # adaptive restart (O'Donoghue & Candes 2015)
        grad = ren.adjoint(a, resid * wmap)
        # Per-source steps from a diagonal majoriser of the Hessian. With
        # A >= 0 and |D| <= gain, Cauchy-Schwarz gives, for any S,
        # sum_b w_b |sum_k A_bk D_bk S_k|^2
        #     <= sum_k gain^2 (sum_b w_b A_bk sum_j A_bj) |S_k|^2,
        # so 1 / L_k with the bracket below is a safe step for source k.
        lip = ren.gain2 * np.einsum("b,bk,b->k", wmax, a, a.sum(axis=1))
        step = options.step_scale / np.maximum(lip, 1e-30)
        s_new = constraints(s_y - step[:, None, None] * grad)
        # Normalise: peak of each morphology 1, its amplitudes absorb the
        # scale (the previous iterate is rescaled alike for the momentum).
        peak = s_new.reshape(k, -1).max(axis=1)
        scale = np.where(peak > 0, 1.0 / np.maximum(peak, 1e-300), 1.0)[:, None, None]
        a = a * np.where(peak > 0, peak, 0.0)[None, :]
        s_prev, s = s * scale, s_new * scale
        da = _norm(a - a_old) / max(_norm(a), 1e-30)
        ds = _norm(s - s_old) / max(_norm(s), 1e-30)
        if da < options.e_rel and ds < options.e_rel:
            converged = True
            break
    return a, s, it, converged, loss


def _norm(x: np.ndarray) -> float:
    """Euclidean norm without BLAS (whose threads can stall on a busy machine)."""
    x = x.ravel()
    return float(np.sqrt(np.einsum("i,i->", x, x)))
